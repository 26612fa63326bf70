r"""The ``checkpoint`` scheme: a description of where a parameter's values are read from.

A :class:`Checkpoint` holds a file path and two name prefixes; reading the file is the work of
:mod:`initlab.plan.checkpoint`, since the key depends on the parameter's name, which only a plan
knows. The scheme lives here, beside the others, so the catalogue (``initlab schemes``) lists it
without loading torch.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from initlab.errors import ConfigError
from initlab.schemes.base import Scheme, ValueStats, Weight, register

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["CHECKPOINT_SUFFIXES", "Checkpoint", "unknown_file_kind"]

CHECKPOINT_SUFFIXES: dict[str, str] = {
    ".safetensors": "safetensors",
    ".pt": "torch",
    ".pth": "torch",
    ".bin": "torch",
}


def unknown_file_kind(path: str) -> str:
    """The error text for a checkpoint path whose suffix names no known file kind."""
    return (
        f"checkpoint {path!r}: unknown file kind {Path(path).suffix or '(no suffix)'!r}. "
        f"Known: {', '.join(CHECKPOINT_SUFFIXES)} (safetensors, or a torch.save state dict)."
    )


class _FilePath:
    """A dataclass field holding a path as ``str``, whatever ``os.PathLike`` it was given.

    A data descriptor: the frozen dataclass's ``__init__`` sets it through ``__set__``, which
    stores the converted value, so the instance itself is never mutated after it is built.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_{name}"

    def __get__(self, instance: object | None, owner: type | None = None) -> str:
        if instance is None:
            return ""  # the field's default
        value: str = instance.__dict__[self._slot]
        return value

    def __set__(self, instance: object, value: str | os.PathLike[str]) -> None:
        instance.__dict__[self._slot] = (
            os.fspath(value) if isinstance(value, os.PathLike) else value
        )


@register()
@dataclasses.dataclass(frozen=True)
class Checkpoint(Scheme):
    r"""Copy a parameter from a checkpoint file: :math:`w = \text{file}[\text{key}(n)]`.

    A description only: where the file is and how names map to its keys. Only a
    :class:`~initlab.plan.plan.Plan` can use it, since the key depends on the parameter's name
    (see the module docstring for the mapping); ``fill_`` and ``array`` raise
    :class:`ConfigError`.

    Example:
        >>> initlab.get("checkpoint", path="model.safetensors", strip_prefix="module.")

    Args:
        path: a ``.safetensors``, ``.pt``, ``.pth`` or ``.bin`` file (relative paths are read
            from the current directory); an ``os.PathLike`` is kept as its ``str``.
        strip_prefix: removed from the file's keys.
        add_prefix: added to the file's keys (after ``strip_prefix`` is removed).
    """

    name = "checkpoint"
    formula = "w = file[strip_prefix + name.removeprefix(add_prefix)]"
    path: str = _FilePath()  # type: ignore[assignment]
    strip_prefix: str = ""
    add_prefix: str = ""

    def __post_init__(self) -> None:
        for field in ("path", "strip_prefix", "add_prefix"):
            value = getattr(self, field)
            if not isinstance(value, str):
                raise ConfigError(
                    f"checkpoint: {field} must be a string, got {value!r} "
                    f"({type(value).__name__})."
                )
        if not self.path:
            raise ConfigError(
                "checkpoint: give path=..., the file to copy from "
                f"({', '.join(CHECKPOINT_SUFFIXES)})."
            )
        if Path(self.path).suffix.lower() not in CHECKPOINT_SUFFIXES:
            raise ConfigError(unknown_file_kind(self.path))

    def key_of(self, name: str) -> str | None:
        """The file key parameter ``name`` maps to, ``None`` if it lacks ``add_prefix``."""
        if not name.startswith(self.add_prefix):
            return None
        return self.strip_prefix + name[len(self.add_prefix) :]

    # --- the Scheme interface ----------------------------------------------------------------
    def _stats(self, weight: Weight) -> ValueStats:
        """Unknown until the file is read: mean and std are NaN, no bound."""
        return ValueStats(math.nan, math.nan, None)

    def _needs_a_plan(self) -> ConfigError:
        return ConfigError(
            f"{self}: a checkpoint scheme needs the parameter's name to find its key, so it "
            "cannot fill a bare tensor. Use it in a plan: initlab.Plan([initlab.rule("
            f"scheme='checkpoint', path={self.path!r})]).apply(model)."
        )

    def _fill(
        self, tensor: torch.Tensor, generator: torch.Generator | None, weight: Weight
    ) -> torch.Tensor:
        raise self._needs_a_plan()

    def _array(self, weight: Weight, rng: np.random.Generator, dtype: Any) -> np.ndarray[Any, Any]:
        raise self._needs_a_plan()
