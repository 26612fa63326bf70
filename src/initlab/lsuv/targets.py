"""Which layers LSUV fits, why it leaves the others, and the orthonormal pre-init.

A weight-bearing module (:func:`initlab.layers.is_layer`: one owning a parameter of two or more
dimensions, directly or through a parametrization, embeddings aside) is a :class:`Target` when
LSUV can measure its output and that output is linear in one weight; otherwise the reason, in
plain words, is what the log shows for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from initlab.batches import describe, first_floating_tensor
from initlab.layers import LAYER_TYPES, is_hf_conv1d, is_layer, is_norm, parameter_structure
from initlab.rng import parameter_generator
from initlab.schemes.structured import Orthogonal

__all__ = ["LSUV_LAYER_TYPES", "NEVER_RAN", "Target", "classify", "orthonormal", "unmeasurable"]

#: The module types whose output is linear in their own ``weight`` (MultiheadAttention, linear
#: in its out_proj's weight, and Hugging Face's Conv1D are fitted beside them).
LSUV_LAYER_TYPES: tuple[type[nn.Module], ...] = LAYER_TYPES
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
    """A layer LSUV fits: the module whose output it measures and the weight it rescales.

    Attributes:
        name: the module's qualified name.
        module: the module.
        weight_name: the qualified name of the weight its output is linear in.
        weight: that weight.
        bias: the bias added after it (``None`` without one).
    """

    name: str
    module: nn.Module
    weight_name: str
    weight: torch.Tensor
    bias: torch.Tensor | None


def classify(model: nn.Module) -> tuple[list[str], dict[str, Target], dict[str, str]]:
    """Every weight-bearing layer of ``model`` in module order, the ones LSUV fits, and the
    reason for each of the others (before running anything).

    A parametrized module stands for the parameters its ``parametrizations`` child holds; a
    MultiheadAttention covers its ``out_proj``.
    """
    modules = dict(model.named_modules())
    inner: set[int] = set()  # torch's ParametrizationLists and MHA's children
    for module in modules.values():
        if parametrize.is_parametrized(module):
            inner.update(id(child) for child in module.parametrizations.modules())
        elif isinstance(module, nn.MultiheadAttention):
            inner.update(id(child) for child in module.modules() if child is not module)
    names = [name for name, module in modules.items() if id(module) not in inner]
    names = [name for name in names if is_layer(modules[name])]
    holders = _holders(model)
    targets: dict[str, Target] = {}
    reasons: dict[str, str] = {}
    for name in names:
        found = _target(name, modules[name], holders)
        if isinstance(found, Target):
            targets[name] = found
        else:
            reasons[name] = found
    return names, targets, reasons


def _holders(model: nn.Module) -> dict[int, list[tuple[str, nn.Module]]]:
    """For each parameter (by id), the modules holding it directly, with a name of each."""
    holders: dict[int, list[tuple[str, nn.Module]]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        for parameter in module.parameters(recurse=False):
            held = holders.setdefault(id(parameter), [])
            if all(other is not module for _, other in held):
                held.append((name, module))
    return holders


def _target(
    name: str, module: nn.Module, holders: dict[int, list[tuple[str, nn.Module]]]
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
    elif not (isinstance(module, LSUV_LAYER_TYPES) or is_hf_conv1d(module)):
        own = ", ".join(
            f"{key} {tuple(parameter.shape)}"
            for key, parameter in module.named_parameters(recurse=False)
            if parameter.dim() >= 2
        )
        return (
            f"its output is not known to be linear in one weight (its parameters: {own}); "
            "LSUV fits Linear, Conv, ConvTranspose, Bilinear, HF Conv1D and "
            "MultiheadAttention layers"
        )
    weight = getattr(owner, "weight", None)
    if not isinstance(weight, nn.Parameter):
        return _PARAMETRIZED
    others = [other for other, holder in holders.get(id(weight), []) if holder is not owner]
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


def unmeasurable(output: Any) -> str:
    """Why LSUV cannot measure this output; empty when it can. What is measured is the
    output's first floating-point tensor (:func:`~initlab.batches.first_floating_tensor`;
    MultiheadAttention's attention output, the first element of its tuple)."""
    tensor = first_floating_tensor(output)
    if tensor is None:
        return (
            f"its output ({describe(output)}) holds no floating-point tensor, so LSUV cannot "
            "measure it"
        )
    if tensor.layout != torch.strided or tensor.is_nested:
        return "its output is a nested or sparse tensor, which LSUV cannot measure"
    if tensor.numel() == 0:
        return "its output is empty on this batch"
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
            for block in parameter_structure(module, "in_proj_weight", stacked).blocks:
                Orthogonal().fill_(stacked[block.start : block.stop], generator)
        else:
            for attribute in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                weight = getattr(module, attribute)
                _fill_orthogonal(weight, _qualified(target.name, attribute), seed)
        if module.in_proj_bias is not None:
            module.in_proj_bias.zero_()
    _fill_orthogonal(target.weight, target.weight_name, seed)
    if target.bias is not None:
        target.bias.zero_()
