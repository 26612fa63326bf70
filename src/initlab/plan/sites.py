"""Where each parameter of a model lives: its module, role, depth, fans and blocks.

:func:`parameter_sites` reads every parameter once; what a parameter *is* inside its layer
(role, fans, the q/k/v or gate blocks of a stacked weight, a weight norm's parts) comes from
:func:`initlab.layers.parameter_structure`, the one home of that knowledge.
"""

from __future__ import annotations

import numbers
import re
import weakref
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from initlab.fans import Fans, Layout
from initlab.layers.structure import (
    ROLES,
    Block,
    Role,
    Structure,
    packed_projections,
    padding_rows,
    parameter_structure,
)

__all__ = ["ROLES", "ParameterSite", "Role", "block_depth", "parameter_sites"]

_DEPTH = re.compile(r"(?:^|\.)(\d+)(?:\.|$)")


@dataclass(frozen=True)
class ParameterSite:
    """One parameter as initlab sees it.

    Attributes:
        name: qualified name (``model.named_parameters()``), the first one for a tied tensor.
        shape: the parameter's shape.
        module_name: qualified name of the layer that owns it (for the original of a
            reparametrized weight, the layer whose weight it makes).
        module_type: that module's class name.
        attribute: its path under that module (``weight``, ``in_proj_weight``,
            ``parametrizations.weight.original1``...).
        role: see :mod:`initlab.layers.structure`.
        depth: the block index: the first integer component of ``name`` (``None`` if none).
        layout: how the fan shape's axes are ordered.
        groups: the layer's groups.
        fan_shape: the shape the fans are read from (a block's; the layer's weight for a bias).
        fans_note: why initlab's fans differ from torch's array rule, if they do.
        tied_to: other names of the same tensor (shared parameters).
        fans: the fans initlab uses for this parameter (``None`` for roles without fans).
        torch_fans: the fans of torch's array rule for ``fan_shape`` (what a ``fans="torch"``
            rule reads; ``None`` for roles without fans).
        blocks: the layers stacked along the first axis (attention q/k/v, recurrent gates).
        magnitude_of: for a weight norm's magnitude, the qualified name of its direction.
        zero_rows: the rows (first axis) its layers keep at 0, set to 0 after any draw: the
            ``padding_idx`` row of an embedding, under any of the tensor's names.
    """

    name: str
    shape: tuple[int, ...]
    module_name: str
    module_type: str
    attribute: str
    role: Role
    depth: int | None
    layout: Layout
    groups: int
    fan_shape: tuple[int, ...]
    fans_note: str
    tied_to: tuple[str, ...] = ()
    fans: Fans | None = None
    torch_fans: Fans | None = None
    blocks: tuple[Block, ...] = ()
    magnitude_of: str = ""
    zero_rows: tuple[int, ...] = ()


def block_depth(name: str) -> int | None:
    """The first integer path component of a qualified name: ``blocks.3.attn.w`` -> 3."""
    match = _DEPTH.search(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class _Owner:
    """The layer a parameter belongs to.

    Attributes:
        name: the layer's qualified name.
        module: the layer.
        attribute: the parameter's path under it.
    """

    name: str
    module: nn.Module
    attribute: str


def _owner(
    module_name: str, module: nn.Module, attribute: str, modules: dict[str, nn.Module]
) -> _Owner:
    """The layer a parameter belongs to: a parametrization's original belongs to the layer
    whose weight it makes (``lin.parametrizations.weight`` -> ``lin``)."""
    if isinstance(module, parametrize.ParametrizationList):
        head, _, weight = module_name.rpartition("parametrizations.")
        owner = head.removesuffix(".")
        if owner in modules:
            return _Owner(owner, modules[owner], f"parametrizations.{weight}.{attribute}")
    return _Owner(module_name, module, attribute)


def _site(
    module_name: str, module: nn.Module, attribute: str, tensor: torch.Tensor, structure: Structure
) -> ParameterSite:
    name = f"{module_name}.{attribute}" if module_name else attribute
    magnitude_of = ""
    if structure.magnitude_of:
        prefix = f"{module_name}." if module_name else ""
        magnitude_of = prefix + structure.magnitude_of
    return ParameterSite(
        name=name,
        shape=tuple(tensor.shape),
        module_name=module_name,
        module_type=type(module).__name__,
        attribute=attribute,
        role=structure.role,
        depth=block_depth(name),
        layout=structure.layout,
        groups=structure.groups,
        fan_shape=structure.fan_shape or tuple(tensor.shape),
        fans_note=structure.note,
        fans=structure.fans,
        torch_fans=structure.torch_fans,
        blocks=structure.blocks,
        magnitude_of=magnitude_of,
        zero_rows=structure.zero_rows,
    )


def parameter_sites(model: nn.Module) -> list[ParameterSite]:
    """Every distinct parameter of ``model`` in registration order, tied names folded in.

    A tensor registered under several names (e.g. an embedding tied to the output layer) is
    listed once, under its first name, with the others in ``tied_to``. Buffers are not listed.
    Each layer's fans are computed once: a bias reads them from its weight's structure. A tied
    tensor's ``zero_rows`` are those of every layer it serves (an output layer tied to a padded
    embedding keeps the padding row at 0).

    The answer is kept while the model lives and given again while the model is unchanged:
    the same modules (identity and class) under the same names, the same parameter tensors
    (identity and shape) and the same plain settings (numbers, numpy's too, strings, flags, and
    tuples or lists of them: ``groups``, ``padding_idx``, ``stride``...); any change computes
    it afresh.
    """
    fingerprint = _fingerprint(model)
    known = _SITES.get(model)
    if known is not None and known[0] == fingerprint:
        return list(known[1])
    sites = _parameter_sites(model)
    _SITES[model] = (fingerprint, sites)
    return list(sites)


# Forgotten when the model dies.
_SITES: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[Any, ...], list[ParameterSite]]] = (
    weakref.WeakKeyDictionary()
)


def _settings(module: nn.Module) -> tuple[Any, ...]:
    """A module's plain settings as ``(name, value)`` pairs: numbers (numpy's too), strings,
    ``None``, and tuples or lists of them (a list is held as a tuple, so a change in place is
    seen). One dict lookup per attribute's type: the fingerprint runs on every call."""
    held = []
    for key, value in module.__dict__.items():
        kind = _KINDS.get(type(value)) or _kind(type(value))
        if kind is _SCALAR:
            held.append((key, value))
        elif kind is _SEQUENCE and all(
            (_KINDS.get(type(item)) or _kind(type(item))) is _SCALAR for item in value
        ):
            held.append((key, tuple(value)))
    return tuple(held)


_SCALAR, _SEQUENCE, _OTHER = "scalar", "sequence", "other"
_KINDS: dict[type, str] = {}


def _kind(kind: type) -> str:
    """Whether values of ``kind`` are plain scalars, sequences, or neither (asked once per
    type: ``numbers.Number`` is an abstract class, slow to test against)."""
    if issubclass(kind, tuple | list):
        found = _SEQUENCE
    elif issubclass(kind, numbers.Number | str | None):
        found = _SCALAR
    else:
        found = _OTHER
    _KINDS[kind] = found
    return found


def _fingerprint(model: nn.Module) -> tuple[Any, ...]:
    """What :func:`parameter_sites` reads from ``model``: every module's name, identity and
    class, its own parameters' identities and shapes, and its plain settings."""
    return tuple(
        (
            name,
            id(module),
            type(module),
            tuple(
                (local, id(tensor), tensor.shape)
                for local, tensor in module._parameters.items()
                if tensor is not None
            ),
            _settings(module),
        )
        for name, module in model.named_modules(remove_duplicate=False)
    )


def _parameter_sites(model: nn.Module) -> list[ParameterSite]:
    first_name: dict[int, int] = {}
    sites: list[ParameterSite] = []
    aliases: dict[int, list[str]] = {}
    alias_rows: dict[int, tuple[int, ...]] = {}
    structures: dict[str, dict[str, Structure]] = {}  # owner -> attribute -> structure
    modules = dict(model.named_modules(remove_duplicate=False))
    for module_name, module in modules.items():
        for local, tensor in module.named_parameters(recurse=False, remove_duplicate=False):
            key = id(tensor)
            owner = _owner(module_name, module, local, modules)
            name = f"{owner.name}.{owner.attribute}" if owner.name else owner.attribute
            if key in first_name:
                aliases.setdefault(key, []).append(name)
                rows = padding_rows(owner.module, owner.attribute)
                alias_rows[key] = (*alias_rows.get(key, ()), *rows)
                continue
            first_name[key] = len(sites)
            known = structures.setdefault(owner.name, {})
            parent_name, _, local_name = owner.name.rpartition(".")
            packed = packed_projections(owner.module, local_name, modules.get(parent_name))
            structure = parameter_structure(
                owner.module, owner.attribute, tensor, known=known, packed=packed
            )
            known[owner.attribute] = structure
            sites.append(_site(owner.name, owner.module, owner.attribute, tensor, structure))
    for key, names in aliases.items():
        index = first_name[key]
        site = sites[index]
        others = tuple(n for n in dict.fromkeys(names) if n != site.name)
        zero_rows = tuple(sorted({*site.zero_rows, *alias_rows[key]}))
        if others or zero_rows != site.zero_rows:
            sites[index] = replace(site, tied_to=others, zero_rows=zero_rows)
    return sites
