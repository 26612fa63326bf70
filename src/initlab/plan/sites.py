"""Where each parameter of a model lives: its role, its depth and the fans its module implies.

A weight's fans depend on the layer, not only on the array: a ``ConvTranspose2d`` weight is
``(in, out/groups, *k)``, a grouped convolution's fan_out is ``out/groups * k``, Hugging Face's
GPT-2 ``Conv1D`` stores ``(in, out)``. :func:`parameter_sites` reads every parameter once and
records the layout, groups and the shape its fans come from (a bias takes the fans of its
layer's weight, so PyTorch's ``U(+-1/sqrt(fan_in))`` bias rule is expressible).

Roles: ``weight`` (Linear/Conv/RNN/attention matrices), ``bias``, ``embedding``,
``norm_weight``, ``norm_bias`` (affine parameters of normalization layers), ``other``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal, get_args

import torch
from torch import nn

from initlab.fans import Layout, compute_fans, torch_fans

__all__ = ["ROLES", "ParameterSite", "Role", "block_depth", "parameter_sites"]

Role = Literal["weight", "bias", "embedding", "norm_weight", "norm_bias", "other"]
ROLES: tuple[str, ...] = get_args(Role)

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.RMSNorm,
)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, *_TRANSPOSED)
_DEPTH = re.compile(r"(?:^|\.)(\d+)(?:\.|$)")


@dataclass(frozen=True)
class ParameterSite:
    """One parameter as initlab sees it.

    Attributes:
        name: qualified name (``model.named_parameters()``), the first one for a tied tensor.
        shape: the parameter's shape.
        module_name: qualified name of the module that owns it directly.
        module_type: that module's class name.
        attribute: the attribute on the module (``weight``, ``bias``, ``in_proj_weight``...).
        role: see the module docstring.
        depth: the block index: the first integer component of ``name`` (``None`` if none).
        layout: how the fan shape's axes are ordered.
        groups: the layer's groups.
        fan_shape: the shape the fans are read from (the layer's weight for a bias).
        fans_note: why initlab's fans differ from torch's array rule, if they do.
        tied_to: other names of the same tensor (shared parameters).
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


def block_depth(name: str) -> int | None:
    """The first integer path component of a qualified name: ``blocks.3.attn.w`` -> 3."""
    match = _DEPTH.search(name)
    return int(match.group(1)) if match else None


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, _NORM_TYPES) or "norm" in type(module).__name__.lower()


def _is_hf_conv1d(module: nn.Module) -> bool:
    # Hugging Face's GPT-2 Conv1D: weight (nx, nf) applied as x @ W, i.e. (in, out).
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def _role(module: nn.Module, attribute: str, tensor: torch.Tensor) -> Role:
    if _is_norm(module):
        return "norm_weight" if attribute == "weight" else "norm_bias"
    if isinstance(module, nn.Embedding | nn.EmbeddingBag) and attribute == "weight":
        return "embedding"
    if attribute.startswith("bias") or attribute.endswith("_bias"):
        return "bias"
    if tensor.dim() >= 2 and (attribute.startswith("weight") or attribute.endswith("weight")):
        return "weight"
    return "other"


def _weight_layout(module: nn.Module) -> tuple[Layout, int, str]:
    groups = int(getattr(module, "groups", 1)) if isinstance(module, _CONV) else 1
    if isinstance(module, _TRANSPOSED):
        return "torch_transposed", groups, "transposed conv: weight is (in, out/groups, *k)"
    if _is_hf_conv1d(module):
        return "keras", 1, "Conv1D stores (in, out)"
    if groups > 1:
        return "torch", groups, f"fan_out counted per group ({groups} groups)"
    return "torch", groups, ""


def _site(
    module_name: str, module: nn.Module, attribute: str, tensor: torch.Tensor
) -> ParameterSite:
    name = f"{module_name}.{attribute}" if module_name else attribute
    role = _role(module, attribute, tensor)
    layout: Layout = "torch"
    groups, fan_shape, notes = 1, tuple(tensor.shape), []
    if role == "weight":
        layout, groups, why = _weight_layout(module)
        notes += [why] if why else []
    elif role == "bias":
        sibling = getattr(module, attribute.replace("bias", "weight"), None)
        if isinstance(sibling, torch.Tensor) and sibling.dim() >= 2:
            layout, groups, _ = _weight_layout(module)
            fan_shape = tuple(sibling.shape)
            notes.append("fans of the layer's weight")
    if role in ("weight", "bias") and len(fan_shape) >= 2:
        ours = compute_fans(fan_shape, layout=layout, groups=groups)
        torch_in, torch_out = torch_fans(fan_shape)
        if (ours.fan_in, ours.fan_out) != (torch_in, torch_out):
            notes.append(f"torch's array rule would give fan_in {torch_in}, fan_out {torch_out}")
    return ParameterSite(
        name=name,
        shape=tuple(tensor.shape),
        module_name=module_name,
        module_type=type(module).__name__,
        attribute=attribute,
        role=role,
        depth=block_depth(name),
        layout=layout,
        groups=groups,
        fan_shape=fan_shape,
        fans_note="; ".join(notes),
    )


def parameter_sites(model: nn.Module) -> list[ParameterSite]:
    """Every distinct parameter of ``model`` in registration order, tied names folded in.

    A tensor registered under several names (e.g. an embedding tied to the output layer) is
    listed once, under its first name, with the others in ``tied_to``. Buffers are not listed.
    """
    first_name: dict[int, int] = {}
    sites: list[ParameterSite] = []
    aliases: dict[int, list[str]] = {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        for attribute, tensor in module.named_parameters(recurse=False, remove_duplicate=False):
            key = id(tensor)
            name = f"{module_name}.{attribute}" if module_name else attribute
            if key in first_name:
                aliases.setdefault(key, []).append(name)
                continue
            first_name[key] = len(sites)
            sites.append(_site(module_name, module, attribute, tensor))
    for key, names in aliases.items():
        index = first_name[key]
        site = sites[index]
        others = tuple(n for n in dict.fromkeys(names) if n != site.name)
        if others:
            sites[index] = replace(site, tied_to=others)
    return sites
