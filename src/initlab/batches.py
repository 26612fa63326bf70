"""What a model takes and returns: the batch and output forms every feature accepts.

A *batch* is a tensor (``model(batch)``), a tuple or list of inputs (``model(*batch)``) or a
mapping of keyword inputs (``model(**batch)``, e.g. Hugging Face's ``{"input_ids": ...,
"attention_mask": ...}``). Values that are not tensors (a flag, ``None``) are passed through
unchanged; the batch's size is the leading size of its first tensor.

An *output* is a tensor, a tuple or list, a mapping, a dataclass or a Hugging Face
``ModelOutput``. The tensor the doctor measures is ``logits`` when the output has one, else the
first floating-point tensor found in order (depth first), or whatever the user's ``output_fn``
returns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

import torch

from initlab.errors import ConfigError, InitlabError

__all__ = [
    "Batch",
    "OutputFunction",
    "batch_size",
    "call_model",
    "check_batch",
    "describe",
    "first_floating_tensor",
    "floating_input",
    "map_inputs",
    "output_tensor",
    "replace_input",
    "short_reason",
    "slice_examples",
]

Batch: TypeAlias = torch.Tensor | Sequence[Any] | Mapping[str, Any]
OutputFunction: TypeAlias = Callable[[Any], torch.Tensor]

_OUTPUT_FN_HINT = (
    "Pass output_fn=, a function from the model's output to the tensor to measure, "
    "e.g. output_fn=lambda out: out['hidden']."
)


def describe(value: Any) -> str:
    """A short description of a value for error messages: its type and, for containers, keys."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, Mapping):
        keys = ", ".join(repr(key) for key in list(value)[:6])
        more = ", ..." if len(value) > 6 else ""
        return f"a {type(value).__name__} with keys {keys}{more}" if keys else "an empty mapping"
    if isinstance(value, tuple | list):
        kinds = ", ".join(type(item).__name__ for item in value[:6])
        more = ", ..." if len(value) > 6 else ""
        return f"a {type(value).__name__} of {len(value)} ({kinds}{more})"
    return f"a {type(value).__name__}"


def _items(batch: Batch) -> list[tuple[str, Any]]:
    """The batch's inputs with a name each (``batch``, ``batch[1]``, ``batch['input_ids']``)."""
    if isinstance(batch, torch.Tensor):
        return [("batch", batch)]
    if isinstance(batch, Mapping):
        return [(f"batch[{key!r}]", value) for key, value in batch.items()]
    return [(f"batch[{index}]", value) for index, value in enumerate(batch)]


def check_batch(batch: Any, feature: str = "doctor") -> None:
    """Raise a clear :class:`InitlabError` for a batch the doctor cannot use.

    Raises:
        InitlabError: not a tensor, tuple/list or mapping; no tensor in it; a tensor with 0
            examples; NaN or inf in a floating-point input.
    """
    if not isinstance(batch, torch.Tensor | tuple | list | Mapping):
        hint = " Convert it with torch.from_numpy(...)." if hasattr(batch, "__array__") else ""
        raise ConfigError(
            f"{feature}: batch must be a torch.Tensor, a tuple/list of tensors (model(*batch)) "
            f"or a mapping of tensors (model(**batch)), got {describe(batch)}.{hint} Pass one "
            "input batch, e.g. next(iter(loader))[0]."
        )
    items = _items(batch)
    tensors = [(name, value) for name, value in items if isinstance(value, torch.Tensor)]
    if not tensors:
        raise ConfigError(
            f"{feature}: the batch holds no torch.Tensor (got {describe(batch)}); give the "
            "model's inputs as tensors, e.g. torch.tensor(values)."
        )
    for name, tensor in tensors:
        if tensor.dim() > 0 and tensor.shape[0] == 0:
            raise ConfigError(
                f"{feature}: {name} holds 0 examples (shape {tuple(tensor.shape)}); give a "
                "batch of at least one example, ideally 16 or more."
            )
        # A meta tensor holds no values to check (materialize runs on a meta copy of a batch).
        strided = tensor.layout == torch.strided and not tensor.is_nested and not tensor.is_meta
        if strided and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ConfigError(
                f"{feature}: {name} contains NaN or inf; clean the data before diagnosing."
            )


def call_model(model: Callable[..., Any], batch: Batch) -> Any:
    """``model(batch)``, ``model(*batch)`` or ``model(**batch)`` by the batch's form."""
    if isinstance(batch, torch.Tensor):
        return model(batch)
    if isinstance(batch, Mapping):
        return model(**batch)
    return model(*batch)


def batch_size(batch: Batch) -> int:
    """The leading size of the batch's first tensor (1 for a 0-dimensional one)."""
    for _, value in _items(batch):
        if isinstance(value, torch.Tensor):
            return int(value.shape[0]) if value.dim() > 0 else 1
    return 1


def floating_input(batch: Batch) -> tuple[str, torch.Tensor] | None:
    """The first floating-point input with a batch dimension, with its name, if any."""
    for name, value in _items(batch):
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dim() > 0:
            return name, value
    return None


def replace_input(batch: Batch, name: str, tensor: torch.Tensor) -> Batch:
    """A copy of ``batch`` with the input called ``name`` (see :func:`floating_input`) replaced."""
    if isinstance(batch, torch.Tensor):
        return tensor
    if isinstance(batch, Mapping):
        return {
            key: tensor if f"batch[{key!r}]" == name else value for key, value in batch.items()
        }
    items = [tensor if f"batch[{index}]" == name else value for index, value in enumerate(batch)]
    return tuple(items) if isinstance(batch, tuple) else items


def map_inputs(batch: Batch, function: Callable[[Any], Any]) -> Batch:
    """``batch`` in the same form with ``function`` applied to each input."""
    if isinstance(batch, torch.Tensor):
        mapped: Batch = function(batch)
        return mapped
    if isinstance(batch, Mapping):
        return {key: function(value) for key, value in batch.items()}
    items = [function(value) for value in batch]
    return tuple(items) if isinstance(batch, tuple) else items


def slice_examples(batch: Batch, start: int, stop: int) -> Batch:
    """Examples ``start:stop``: every tensor whose leading size is the batch's is cut."""
    size = batch_size(batch)
    if start <= 0 and stop >= size:
        return batch

    def cut(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == size:
            return value[start:stop]
        return value

    return map_inputs(batch, cut)


def first_floating_tensor(value: Any, *, depth: int = 0) -> torch.Tensor | None:
    """``logits`` when ``value`` has one, else its first floating-point tensor, depth first.

    Looks inside tuples, lists, mappings (Hugging Face ``ModelOutput`` is one) and dataclasses,
    up to four levels deep.
    """
    if isinstance(value, torch.Tensor):
        return value if value.is_floating_point() else None
    if depth > 4:
        return None
    children: Sequence[Any]
    if isinstance(value, Mapping):
        logits = value.get("logits")
        if isinstance(logits, torch.Tensor) and logits.is_floating_point():
            return logits
        children = list(value.values())
    elif isinstance(value, tuple | list):
        children = value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        logits = getattr(value, "logits", None)
        if isinstance(logits, torch.Tensor) and logits.is_floating_point():
            return logits
        children = [getattr(value, field.name) for field in dataclasses.fields(value)]
    else:
        return None
    for child in children:
        found = first_floating_tensor(child, depth=depth + 1)
        if found is not None:
            return found
    return None


def output_tensor(
    output: Any, output_fn: OutputFunction | None = None, feature: str = "doctor"
) -> torch.Tensor:
    """The tensor to measure in a model's output (see the module docstring).

    Raises:
        InitlabError: ``output_fn`` failed or returned something other than a floating-point
            tensor, or the output holds no floating-point tensor.
    """
    if output_fn is not None:
        try:
            chosen = output_fn(output)
        except Exception as error:
            raise InitlabError(
                f"{feature}: output_fn failed on the model's output ({describe(output)}): "
                f"{type(error).__name__}: {_first_line(error)}"
            ) from None
        if not isinstance(chosen, torch.Tensor) or not chosen.is_floating_point():
            raise InitlabError(
                f"{feature}: output_fn must return a floating-point tensor, got "
                f"{describe(chosen)}."
            )
        return chosen
    found = first_floating_tensor(output)
    if found is None:
        raise InitlabError(
            f"{feature}: the model returned {describe(output)}, with no floating-point tensor "
            f"to measure. {_OUTPUT_FN_HINT}"
        )
    return found


def _first_line(error: BaseException, limit: int = 160) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def short_reason(error: BaseException) -> str:
    """``Type: first line of the message`` (at most ~160 characters), for skipped notes."""
    return f"{type(error).__name__}: {_first_line(error)}" if str(error) else type(error).__name__
