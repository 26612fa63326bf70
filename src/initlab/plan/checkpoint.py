r"""The ``checkpoint`` scheme: parameters copied, by name, from a file of tensors.

.. code-block:: python

    plan = initlab.Plan([
        initlab.rule(scheme="checkpoint", path="encoder.safetensors", add_prefix="encoder."),
    ], default="auto")
    table = plan.apply(model, seed=0)   # encoder.* from the file, the rest by "auto"

A rule whose scheme is a :class:`Checkpoint` selects a parameter only when its conditions hold
*and* the file holds a tensor for the parameter's name; every other parameter falls to the later
rules and the default. The plan's table therefore says which parameters came from the file
(``rule 0 (...) -> checkpoint encoder.safetensors [fc.weight]``) and which did not.

Name mapping. A file key :math:`k` that starts with ``strip_prefix`` stands for the parameter

.. math::

    n = \text{add\_prefix} + k[\,|\text{strip\_prefix}|:\,],

so a parameter ``n`` that starts with ``add_prefix`` is read from the key
``strip_prefix + n[len(add_prefix):]``. A file saved from ``DataParallel`` (keys
``module.fc.weight``) is read with ``strip_prefix="module."``; a backbone's file loaded into a
wrapper (parameters ``backbone.fc.weight``, keys ``fc.weight``) with ``add_prefix="backbone."``.
A tied parameter is found under any of its names.

Files. ``.safetensors`` is opened with ``safe_open`` (memory-mapped, tensors read on demand).
``.pt`` / ``.pth`` / ``.bin`` go through ``torch.load(map_location="cpu", weights_only=True)``,
which refuses any pickled code. Nested dictionaries are flattened with dots (Lightning's
``{"state_dict": {"fc.weight": ...}}`` has the key ``state_dict.fc.weight``: read it with
``strip_prefix="state_dict."``); entries that are not tensors are ignored.

A copy casts to the parameter's dtype and moves to its device; shapes must be equal. Each file
is opened once per :meth:`~initlab.plan.plan.Plan.resolve`, and the resolved table keeps it
open until the table is dropped.
"""

from __future__ import annotations

import dataclasses
import math
import os
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from initlab.errors import ConfigError, ShapeError
from initlab.fans import Layout
from initlab.optional import require
from initlab.plan.sites import ParameterSite
from initlab.schemes.base import Scheme, ValueStats, register

__all__ = ["CHECKPOINT_SUFFIXES", "Checkpoint", "CheckpointFile", "CheckpointFiles"]

CHECKPOINT_SUFFIXES: dict[str, str] = {
    ".safetensors": "safetensors",
    ".pt": "torch",
    ".pth": "torch",
    ".bin": "torch",
}
_REFUSAL_MARK = "WeightsUnpickler error:"


class CheckpointFile:
    """One checkpoint file opened for reading: every key at once, each tensor on demand.

    Args:
        path: a ``.safetensors``, ``.pt``, ``.pth`` or ``.bin`` file.

    Raises:
        ConfigError: the file is missing, of an unknown kind, unreadable, or (torch files)
            holds anything ``torch.load(weights_only=True)`` refuses.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        kind = CHECKPOINT_SUFFIXES.get(self.path.suffix.lower())
        if kind is None:
            raise ConfigError(_suffix_message(str(path)))
        if not self.path.is_file():
            raise ConfigError(
                f"checkpoint {str(path)!r}: no such file (looked for {self.path.resolve()}). "
                "Check the path; a relative path is read from the current directory."
            )
        self._handle: Any = None
        self._tensors: dict[str, torch.Tensor] = {}
        if kind == "safetensors":
            self._handle = self._open_safetensors()
            self.keys: frozenset[str] = frozenset(self._handle.keys())
        else:
            self._tensors = dict(_flatten(self._load_torch()))
            self.keys = frozenset(self._tensors)

    def __repr__(self) -> str:
        return f"CheckpointFile({str(self.path)!r}, {len(self.keys)} tensors)"

    def _open_safetensors(self) -> Any:
        safetensors = require("safetensors", "the checkpoint scheme (.safetensors files)")
        try:
            return safetensors.safe_open(str(self.path), framework="pt", device="cpu")
        except Exception as error:  # SafetensorError and OSError: a damaged or foreign file
            raise ConfigError(
                f"checkpoint {str(self.path)!r}: not a readable safetensors file ({error}). "
                "Re-save it with safetensors.torch.save_file, or use a .pt state dict."
            ) from None

    def _load_torch(self) -> object:
        # Memory-map the zip format (torch >= 1.6's default) so that the table holding this
        # file does not hold a copy of every tensor; the legacy format cannot be mapped.
        mmap = zipfile.is_zipfile(self.path)
        try:
            return torch.load(self.path, map_location="cpu", weights_only=True, mmap=mmap)
        except Exception as error:  # UnpicklingError (refused), RuntimeError/KeyError (damaged)
            text = str(error)
            if _REFUSAL_MARK in text:
                reason = text.split(_REFUSAL_MARK, 1)[1].strip().splitlines()[0]
                reason = reason.split(" Please use", 1)[0].rstrip(".") + "."
                raise ConfigError(
                    f"checkpoint {str(self.path)!r}: torch.load(weights_only=True) refused it: "
                    f"{reason} initlab never unpickles code from a file. Save plain tensors "
                    "instead: torch.save(model.state_dict(), path), or a .safetensors file."
                ) from None
            first_line = text.splitlines()[0] if text else type(error).__name__
            raise ConfigError(
                f"checkpoint {str(self.path)!r}: torch.load could not read it "
                f"({type(error).__name__}: {first_line}). Is it a torch.save file?"
            ) from None

    def shape(self, key: str) -> tuple[int, ...]:
        """The shape of the tensor under ``key`` (read from the header for safetensors)."""
        if self._handle is not None:
            return tuple(int(d) for d in self._handle.get_slice(key).get_shape())
        return tuple(self._tensors[key].shape)

    def tensor(self, key: str) -> torch.Tensor:
        """The tensor under ``key``, on the CPU, in the file's dtype."""
        if self._handle is not None:
            tensor: torch.Tensor = self._handle.get_tensor(key)
            return tensor
        return self._tensors[key]


def _flatten(value: object, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(value, torch.Tensor):
        yield prefix.rstrip("."), value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}{key}.")


def _suffix_message(path: str) -> str:
    return (
        f"checkpoint {path!r}: unknown file kind {Path(path).suffix or '(no suffix)'!r}. "
        f"Known: {', '.join(CHECKPOINT_SUFFIXES)} (safetensors, or a torch.save state dict)."
    )


@register()
@dataclasses.dataclass(frozen=True)
class Checkpoint(Scheme):
    r"""Copy a parameter from a checkpoint file: :math:`w = \text{file}[\text{key}(n)]`.

    Only a :class:`~initlab.plan.plan.Plan` can use it, since the key depends on the
    parameter's name (see the module docstring for the mapping). ``fill_`` and ``array``
    raise :class:`ConfigError`.

    Example:
        >>> initlab.get("checkpoint", path="model.safetensors", strip_prefix="module.")

    Args:
        path: a ``.safetensors``, ``.pt``, ``.pth`` or ``.bin`` file (relative paths are read
            from the current directory).
        strip_prefix: removed from the file's keys.
        add_prefix: added to the file's keys (after ``strip_prefix`` is removed).
    """

    name = "checkpoint"
    formula = "w = file[strip_prefix + name.removeprefix(add_prefix)]"
    path: str = ""
    strip_prefix: str = ""
    add_prefix: str = ""
    # The file this scheme was resolved against: a cache, not a parameter.
    opened: CheckpointFile | None = dataclasses.field(
        default=None, init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        if isinstance(self.path, os.PathLike):
            object.__setattr__(self, "path", os.fspath(self.path))
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
            raise ConfigError(_suffix_message(self.path))

    # --- name mapping ------------------------------------------------------------------------
    def key_of(self, name: str) -> str | None:
        """The file key parameter ``name`` maps to, ``None`` if it lacks ``add_prefix``."""
        if not name.startswith(self.add_prefix):
            return None
        return self.strip_prefix + name[len(self.add_prefix) :]

    def open(self) -> CheckpointFile:
        """The file this scheme was resolved against, else the file freshly opened."""
        return self.opened if self.opened is not None else CheckpointFile(self.path)

    def bound(self, opened: CheckpointFile) -> Checkpoint:
        """This scheme holding ``opened`` (so that filling reads the file already open)."""
        copy = dataclasses.replace(self)
        object.__setattr__(copy, "opened", opened)
        return copy

    def find_key(self, names: Sequence[str]) -> str | None:
        """The first of ``names`` (a parameter's name, then its tied names) held by the file."""
        keys = self.open().keys
        for name in names:
            key = self.key_of(name)
            if key is not None and key in keys:
                return key
        return None

    # --- copying -----------------------------------------------------------------------------
    def check_shape(self, site: ParameterSite, key: str) -> None:
        """Raise :class:`ShapeError` unless the file's ``key`` has the parameter's shape."""
        found = self.open().shape(key)
        if found != site.shape:
            raise ShapeError(
                f"Parameter {site.name!r} has shape {site.shape}, but checkpoint "
                f"{self.path!r} key {key!r} has shape {found}. Fix the name mapping "
                "(strip_prefix / add_prefix) or narrow the rule so it skips this parameter."
            )

    def copy_(self, tensor: torch.Tensor, site: ParameterSite) -> torch.Tensor:
        """Copy the file's tensor for ``site`` into ``tensor`` (cast to its dtype and device).

        Raises:
            ConfigError: the file holds no key for the parameter.
            ShapeError: the file's tensor has another shape (both are named).
        """
        bound = self if self.opened is not None else self.bound(self.open())
        key = bound.find_key((site.name, *site.tied_to))
        if key is None:
            mapped = self.key_of(site.name)
            why = "no add_prefix" if mapped is None else f"looked up {mapped!r}"
            raise ConfigError(
                f"checkpoint {self.path!r} holds no key for parameter {site.name!r} ({why}). "
                f"Check strip_prefix={self.strip_prefix!r} and add_prefix={self.add_prefix!r}."
            )
        bound.check_shape(site, key)
        with torch.no_grad():
            return tensor.copy_(bound.open().tensor(key))

    # --- the Scheme interface ----------------------------------------------------------------
    def stats(
        self, shape: Sequence[int], *, layout: Layout = "torch", groups: int = 1
    ) -> ValueStats:
        """Unknown until the file is read: mean and std are NaN, no bound."""
        return ValueStats(math.nan, math.nan, None)

    def _needs_a_plan(self) -> ConfigError:
        return ConfigError(
            f"{self}: a checkpoint scheme needs the parameter's name to find its key, so it "
            "cannot fill a bare tensor. Use it in a plan: initlab.Plan([initlab.rule("
            f"scheme='checkpoint', path={self.path!r})]).apply(model)."
        )

    def fill_(
        self,
        tensor: torch.Tensor,
        generator: torch.Generator | None = None,
        *,
        layout: Layout = "torch",
        groups: int = 1,
    ) -> torch.Tensor:
        raise self._needs_a_plan()

    def array(
        self,
        shape: Sequence[int],
        rng: np.random.Generator | None = None,
        *,
        layout: Layout = "keras",
        groups: int = 1,
        dtype: Any = np.float64,
    ) -> np.ndarray[Any, Any]:
        raise self._needs_a_plan()


class CheckpointFiles:
    """The checkpoint files one plan resolution reads, each opened once."""

    def __init__(self) -> None:
        self._opened: dict[str, CheckpointFile] = {}

    def _bind(self, scheme: Checkpoint) -> Checkpoint:
        if scheme.opened is not None:
            return scheme
        if scheme.path not in self._opened:
            self._opened[scheme.path] = CheckpointFile(scheme.path)
        return scheme.bound(self._opened[scheme.path])

    def provides(self, scheme: Scheme | str, site: ParameterSite) -> bool:
        """Whether a rule with ``scheme`` can serve ``site``: always, unless it is a checkpoint
        whose file holds no key for the parameter."""
        if not isinstance(scheme, Checkpoint):
            return True
        return self._bind(scheme).find_key((site.name, *site.tied_to)) is not None

    def mapping_hint(self, scheme: Checkpoint, names: Sequence[str]) -> str:
        """Why no key of ``scheme``'s file maps to any of ``names``: the prefixes of both."""
        keys = sorted(self._bind(scheme).open().keys)
        if not keys:
            return f"Checkpoint {scheme.path} holds no tensor."
        return (
            f"Checkpoint {scheme.path}'s keys start with {_prefixes(keys)} (e.g. {keys[0]!r}); "
            f"the model's parameters with {_prefixes(names)} (e.g. {names[0]!r}). With "
            f"strip_prefix={scheme.strip_prefix!r} and add_prefix={scheme.add_prefix!r} no key "
            "maps to a parameter: fix strip_prefix / add_prefix."
            if names
            else f"The model has no parameter; checkpoint {scheme.path} has {len(keys)} keys."
        )

    def resolve(
        self, scheme: Checkpoint, site: ParameterSite, source: str
    ) -> tuple[Checkpoint | None, str]:
        """``scheme`` bound to its open file, and ``source`` naming the file and the key.

        A parameter the file does not hold (possible only for a checkpoint default) is kept.

        Raises:
            ShapeError: the file's tensor has another shape than the parameter.
        """
        bound = self._bind(scheme)
        key = bound.find_key((site.name, *site.tied_to))
        if key is None:
            return None, f"{source} -> keep (not in checkpoint {scheme.path})"
        bound.check_shape(site, key)
        return bound, f"{source} -> checkpoint {scheme.path} [{key}]"


def _prefixes(names: Sequence[str], shown: int = 4) -> str:
    """The distinct first dotted components of ``names``, e.g. ``'module.', 'head.'``."""
    firsts = dict.fromkeys(name.split(".", 1)[0] + ("." if "." in name else "") for name in names)
    listed = [repr(first) for first in list(firsts)[:shown]]
    return ", ".join(listed) + (", ..." if len(firsts) > shown else "")
