"""Which layers LSUV fits, why it leaves the others, and the orthonormal pre-init.

A weight-bearing module (:func:`initlab.plan.activations.layer_names`: one owning a parameter
of two or more dimensions, embeddings aside) is a :class:`Target` when LSUV can measure its
output and that output is linear in one weight; otherwise the reason, in plain words, is what
the log shows for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from initlab.layers import is_norm
from initlab.plan.activations import layer_names
from initlab.rng import parameter_generator
from initlab.schemes.structured import Orthogonal

__all__ = ["LSUV_LAYER_TYPES", "NEVER_RAN", "Target", "classify", "orthonormal", "unmeasurable"]

LSUV_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Bilinear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
NEVER_RAN = "never ran as a module in the forward pass on this batch"
_RECURRENT = (
    "recurrent: its output variance depends on the sequence dynamics; LSUV's per-layer "
    "rescaling does not apply (initialize it with orthogonal recurrent weights, e.g. Plan "
    "default 'auto')"
)
_NORM = "normalization layer: LSUV fits the layers that feed it and leaves its affine weight"
_PARAMETRIZED = (
    "its weight is computed from other parameters (weight norm or another parametrization), "
    "so LSUV cannot rescale it"
)



def _qualified(name: str, attribute: str) -> str:
    return f"{name}.{attribute}" if name else attribute


@dataclass(frozen=True)
class Target:
    """A layer LSUV fits: the module whose output it measures and the weight it rescales."""

    name: str
    module: nn.Module
    weight_name: str
    weight: torch.Tensor
    bias: torch.Tensor | None


def _weight_bearing(model: nn.Module, modules: dict[str, nn.Module]) -> list[str]:
    """The layers every one of which the log accounts for, in module order.

    A parametrized module's parameters live in its ``parametrizations`` child: the module
    itself stands for them. The children of a MultiheadAttention are covered by it.
    """
    names: list[str] = []
    for name in layer_names(model):
        parts = name.split(".")
        if "parametrizations" in parts:
            owner = ".".join(parts[: parts.index("parametrizations")])
            if parametrize.is_parametrized(modules[owner]):
                name = owner
        if name not in names:
            names.append(name)
    composites = [name for name in names if isinstance(modules[name], nn.MultiheadAttention)]
    prefixes = tuple(f"{name}." if name else "" for name in composites)
    return [
        name
        for name in names
        if name in composites or not (prefixes and name.startswith(prefixes))
    ]


def _owners(model: nn.Module) -> dict[int, list[tuple[str, nn.Module]]]:
    """For each parameter (by id), the modules holding it directly, with a name of each."""
    owners: dict[int, list[tuple[str, nn.Module]]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        for parameter in module.parameters(recurse=False):
            held = owners.setdefault(id(parameter), [])
            if all(other is not module for _, other in held):
                held.append((name, module))
    return owners


def _is_hf_conv1d(module: nn.Module) -> bool:
    """Hugging Face's ``Conv1D`` (GPT-2): ``x @ weight + bias``, a Linear with its weight
    transposed."""
    kind = type(module)
    return kind.__name__ == "Conv1D" and kind.__module__.startswith("transformers.")


def _target(
    name: str, module: nn.Module, owners: dict[int, list[tuple[str, nn.Module]]]
) -> Target | str:
    """What LSUV fits for this module, or why it cannot fit it."""
    if isinstance(module, nn.RNNBase | nn.RNNCellBase):
        return _RECURRENT
    if is_norm(module):
        return _NORM
    owner: nn.Module = module
    attribute = "weight"
    if isinstance(module, nn.MultiheadAttention):
        owner, attribute = module.out_proj, "out_proj.weight"
    elif not (isinstance(module, LSUV_LAYER_TYPES) or _is_hf_conv1d(module)):
        own = ", ".join(
            f"{key} {tuple(parameter.shape)}"
            for key, parameter in module.named_parameters(recurse=False)
            if parameter.dim() >= 2
        )
        return (
            f"its output is not known to be linear in one weight (its parameters: {own}); "
            "LSUV fits Linear, Conv, ConvTranspose, Bilinear and MultiheadAttention layers"
        )
    weight = getattr(owner, "weight", None)
    if not isinstance(weight, nn.Parameter):
        return _PARAMETRIZED
    others = [other for other, holder in owners.get(id(weight), []) if holder is not owner]
    if others:
        return (
            f"its weight is tied to {others[0]!r} (shared weights): rescaling it would rescale "
            "that module too"
        )
    bias = getattr(owner, "bias", None)
    return Target(
        name, module, _qualified(name, attribute), weight,
        bias if isinstance(bias, torch.Tensor) else None,
    )  # fmt: skip


def _first_output(output: Any) -> torch.Tensor | None:
    """The tensor a probe measures: the output, or the first element of a tuple or list."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


def unmeasurable(output: Any) -> str:
    """Why LSUV cannot measure this output; empty when it can."""
    tensor = _first_output(output)
    if tensor is None:
        return (
            f"its output is a {type(output).__name__}, not a tensor or a tuple starting with "
            "one, so LSUV cannot measure it"
        )
    if not tensor.is_floating_point():
        return f"its output is a {tensor.dtype} tensor, so LSUV cannot measure its variance"
    return ""


def _fill_orthogonal(weight: torch.Tensor, name: str, seed: int) -> None:
    Orthogonal().fill_(weight, parameter_generator(seed, name, weight.device))


def orthonormal(target: Target, seed: int) -> None:
    """The pre-init: orthonormal weight, zero bias. A MultiheadAttention's query, key and
    value projections get one orthonormal block each: one orthonormal (3d, d) matrix would
    leave each block's singular values near :math:`1/\\sqrt 3`, shrinking q, k and v."""
    module = target.module
    if isinstance(module, nn.MultiheadAttention):
        stacked = module.in_proj_weight
        if stacked is not None:
            name = _qualified(target.name, "in_proj_weight")
            generator = parameter_generator(seed, name, stacked.device)
            for block in stacked.chunk(3):
                Orthogonal().fill_(block, generator)
        else:
            for attribute in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                weight = getattr(module, attribute)
                _fill_orthogonal(weight, _qualified(target.name, attribute), seed)
        if module.in_proj_bias is not None:
            module.in_proj_bias.zero_()
    _fill_orthogonal(target.weight, target.weight_name, seed)
    if target.bias is not None:
        target.bias.zero_()

