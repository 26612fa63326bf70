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

A copy casts to the parameter's dtype and moves to its device; shapes must be equal.

The scheme is a description (a path and two prefixes); the opened files are a resource of the
step that reads them: :func:`open_checkpoints` opens each file once for a block of work (a
:meth:`~initlab.plan.plan.Plan.apply` resolves and fills inside one) and lets it go at the end.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch

from initlab.errors import ConfigError, ShapeError
from initlab.optional import require
from initlab.plan.sites import ParameterSite
from initlab.schemes.base import Scheme
from initlab.schemes.checkpoint import CHECKPOINT_SUFFIXES, Checkpoint, unknown_file_kind

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "Checkpoint",
    "CheckpointFile",
    "CheckpointFiles",
    "CheckpointSource",
    "open_checkpoints",
]

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
            raise ConfigError(unknown_file_kind(str(path)))
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


@dataclasses.dataclass(frozen=True)
class CheckpointSource:
    """Where one parameter's values come from, as :meth:`CheckpointFiles.source` found it.

    Attributes:
        key: the file's key for the parameter, ``None`` when the file holds none.
        source: the table's ``source``, naming the file and the key (or saying it is kept).
    """

    key: str | None
    source: str


class CheckpointFiles:
    """The checkpoint files one block of work reads, each opened once (see
    :func:`open_checkpoints`, which owns one)."""

    def __init__(self) -> None:
        self._opened: dict[str, CheckpointFile] = {}

    def file(self, scheme: Checkpoint) -> CheckpointFile:
        """``scheme``'s file, opened on first use."""
        if scheme.path not in self._opened:
            self._opened[scheme.path] = CheckpointFile(scheme.path)
        return self._opened[scheme.path]

    def close(self) -> None:
        """Let go of every file (a memory-mapped one is unmapped when nothing else holds it)."""
        self._opened.clear()

    def find_key(self, scheme: Checkpoint, site: ParameterSite) -> str | None:
        """The key of ``site`` in ``scheme``'s file: under its name, else under a tied name."""
        keys = self.file(scheme).keys
        for name in (site.name, *site.tied_to):
            key = scheme.key_of(name)
            if key is not None and key in keys:
                return key
        return None

    def provides(self, scheme: Scheme | str, site: ParameterSite) -> bool:
        """Whether a rule with ``scheme`` can serve ``site``: always, unless it is a checkpoint
        whose file holds no key for the parameter."""
        if not isinstance(scheme, Checkpoint):
            return True
        return self.find_key(scheme, site) is not None

    def mapping_hint(self, scheme: Checkpoint, names: Sequence[str]) -> str:
        """Why no key of ``scheme``'s file maps to any of ``names``: the prefixes of both."""
        keys = sorted(self.file(scheme).keys)
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

    def source(self, scheme: Checkpoint, site: ParameterSite, source: str) -> CheckpointSource:
        """The key of ``site`` in ``scheme``'s file, its shape checked, and ``source`` naming
        the file and the key. A parameter the file does not hold (possible only for a
        checkpoint default) is kept.

        Raises:
            ShapeError: the file's tensor has another shape than the parameter.
        """
        key = self.find_key(scheme, site)
        if key is None:
            return CheckpointSource(None, f"{source} -> keep (not in checkpoint {scheme.path})")
        self._check_shape(scheme, site, key)
        return CheckpointSource(key, f"{source} -> checkpoint {scheme.path} [{key}]")

    def _check_shape(self, scheme: Checkpoint, site: ParameterSite, key: str) -> None:
        found = self.file(scheme).shape(key)
        if found != site.shape:
            raise ShapeError(
                f"Parameter {site.name!r} has shape {site.shape}, but checkpoint "
                f"{scheme.path!r} key {key!r} has shape {found}. Fix the name mapping "
                "(strip_prefix / add_prefix) or narrow the rule so it skips this parameter."
            )

    def copy_(self, scheme: Checkpoint, tensor: torch.Tensor, site: ParameterSite) -> None:
        """Copy the file's tensor for ``site`` into ``tensor`` (cast to its dtype and device).

        Raises:
            ConfigError: the file holds no key for the parameter.
            ShapeError: the file's tensor has another shape (both are named).
        """
        key = self.find_key(scheme, site)
        if key is None:
            mapped = scheme.key_of(site.name)
            why = "no add_prefix" if mapped is None else f"looked up {mapped!r}"
            raise ConfigError(
                f"checkpoint {scheme.path!r} holds no key for parameter {site.name!r} ({why}). "
                f"Check strip_prefix={scheme.strip_prefix!r} and "
                f"add_prefix={scheme.add_prefix!r}."
            )
        self._check_shape(scheme, site, key)
        with torch.no_grad():
            tensor.copy_(self.file(scheme).tensor(key))


_OPEN_CHECKPOINTS: ContextVar[CheckpointFiles | None] = ContextVar(
    "initlab_open_checkpoints", default=None
)


@contextmanager
def open_checkpoints() -> Iterator[CheckpointFiles]:
    """The checkpoint files read inside the block, each opened once and let go at its end.

    Nested blocks (a resolve inside an apply, a fill inside the apply loop) share the
    outermost block's files.
    """
    current = _OPEN_CHECKPOINTS.get()
    if current is not None:
        yield current
        return
    files = CheckpointFiles()
    token = _OPEN_CHECKPOINTS.set(files)
    try:
        yield files
    finally:
        _OPEN_CHECKPOINTS.reset(token)
        files.close()


def _prefixes(names: Sequence[str], shown: int = 4) -> str:
    """The distinct first dotted components of ``names``, e.g. ``'module.', 'head.'``."""
    firsts = dict.fromkeys(name.split(".", 1)[0] + ("." if "." in name else "") for name in names)
    listed = [repr(first) for first in list(firsts)[:shown]]
    return ", ".join(listed) + (", ..." if len(firsts) > shown else "")
