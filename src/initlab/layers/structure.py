r"""What a parameter is inside its layer: role, fans, and the blocks a stacked weight holds.

A weight's fans depend on the layer, not only on the array. :func:`parameter_structure` reads
them from the module type:

===========================  ==================================================================
layer                        fans (:math:`c` channels, :math:`g` groups, kernel :math:`k`)
===========================  ==================================================================
``Linear``                   (in, out), as torch
``ConvNd``                   :math:`(c_{in}/g \cdot \prod k,\ c_{out}/g \cdot \prod k)`; torch
                             does not divide fan_out by the groups (pytorch/pytorch#23854)
``ConvTransposeNd``          weight ``(in, out/g, *k)``; each output position receives
                             :math:`c_{in}/g \cdot \prod_i k_i/s_i` products (stride :math:`s`),
                             so that is its fan_in (variance-preserving for the forward signal);
                             torch's array rule reads the axes the other way round and ignores the
                             stride
``Bilinear``                 weight ``(out, in1, in2)``: :math:`y_k = x_1^\top W_k x_2`, so
                             fan_in :math:`= in_1 \cdot in_2` and fan_out = out (torch: out * in2)
HF ``Conv1D`` (GPT-2)        weight ``(in, out)``; GPT-2's ``c_attn`` ``(d, 3d)`` holds three
                             ``(d, d)`` projections q, k, v side by side (its columns, as
                             ``GPT2Attention`` splits its output): fans (d, d) each (k, v for
                             a cross-attention ``c_attn`` ``(d, 2d)``)
``MultiheadAttention``       ``in_proj_weight`` ``(3d, d)`` holds three ``(d, d)`` projections
                             q, k, v: each is a layer with fans (d, d)
``RNN`` / ``LSTM`` / ``GRU``  ``weight_ih`` ``(G h, in)`` and ``weight_hh`` ``(G h, h)`` hold
                             one block per gate (LSTM i, f, g, o; GRU r, z, n): fans (in, h)
                             and (h, h) per gate, each with its gate's activation
===========================  ==================================================================

A bias takes its layer's weight fans (so PyTorch's :math:`U(\pm 1/\sqrt{fan_{in}})` bias rule
is expressible) and its blocks. Weights reparametrized by ``torch.nn.utils.parametrizations``
(or the older ``weight_norm`` hook) are initialized through their original parameters: the
direction ``v`` of a weight norm is a weight of its layer; its magnitude ``g`` is *derived*
(:math:`g = \lVert v\rVert` per output, so that :math:`W = v` as ``weight_norm`` itself sets it
up); a spectral norm's ``original`` is the weight before its division by
:math:`\sigma_{max}`.

Roles: ``weight`` (Linear/Conv/RNN/attention matrices), ``bias``, ``embedding``,
``norm_weight``, ``norm_bias`` (affine parameters of normalization layers), ``other``.

An embedding's ``padding_idx`` row (``nn.Embedding``, ``nn.EmbeddingBag``, and so every Hugging
Face embedding) is a row the layer keeps at 0: ``reset_parameters`` and HF's ``_init_weights``
zero it after the draw, and its gradient is 0, so training leaves it so. The structure lists it
(:attr:`Structure.zero_rows`, :func:`padding_rows`); a plan sets it to 0 after drawing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal, get_args

import torch
from torch import nn
from torch.nn.utils import parametrize

from initlab.fans import Fans, Layout, compute_fans
from initlab.layers.kinds import is_norm

__all__ = [
    "LAYER_TYPES",
    "ROLES",
    "Block",
    "LayerFans",
    "Role",
    "Structure",
    "equal_blocks",
    "gate_blocks",
    "is_hf_conv1d",
    "is_layer",
    "packed_projections",
    "padding_rows",
    "parameter_structure",
]

Role = Literal["weight", "bias", "embedding", "norm_weight", "norm_bias", "other"]
ROLES: tuple[str, ...] = get_args(Role)

_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, *_TRANSPOSED)
#: torch.nn's weight-bearing layer types (besides attention and recurrent layers).
LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Bilinear, *_CONV)

# Gates of the recurrent layers, in torch's stacking order, with the activation each feeds.
_GATES: dict[str, tuple[tuple[str, str], ...]] = {
    "LSTM": (("i", "sigmoid"), ("f", "sigmoid"), ("g", "tanh"), ("o", "sigmoid")),
    "GRU": (("r", "sigmoid"), ("z", "sigmoid"), ("n", "tanh")),
}


@dataclass(frozen=True)
class Block:
    """Indices ``start:stop`` along ``axis`` of a stacked weight (or bias) that form one layer
    of their own: rows of a torch weight, columns of GPT-2's ``(in, out)`` ``c_attn``.

    Attributes:
        label: ``q``/``k``/``v`` for attention, the gate letter for recurrent layers.
        start: first index.
        stop: one past the last index.
        activation: the gate's activation (``sigmoid``/``tanh``/``relu``); ``None`` for the
            attention projections, which feed no elementwise activation.
        recurrent: a hidden-to-hidden block (``weight_hh``).
        axis: the axis the blocks are stacked along (0 unless the weight stores (in, out)).
    """

    label: str
    start: int
    stop: int
    activation: str | None = None
    recurrent: bool = False
    axis: int = 0


@dataclass(frozen=True)
class Structure:
    """A parameter as its layer uses it.

    Attributes:
        role: see the module docstring.
        layout: how the axes of ``fan_shape`` are ordered (see :mod:`initlab.fans`).
        groups: the layer's groups.
        fan_shape: the layer's weight shape (also for its bias): what torch's array rule reads.
        fans: the fans initlab uses (a block's for a stacked weight; ``None`` for roles
            without fans).
        torch_fans: the fans torch's array rule reads from ``fan_shape`` (what a
            ``fans="torch"`` rule uses); ``None`` for roles without fans.
        blocks: the stacked layers the tensor holds along its first axis (empty if one).
        note: how these fans differ from torch's array rule, and why.
        magnitude_of: for a weight norm's magnitude ``g``, the attribute of its direction ``v``.
        zero_rows: the rows (first axis) the layer keeps at 0: an embedding's ``padding_idx``
            (:func:`padding_rows`).
    """

    role: Role
    layout: Layout = "torch"
    groups: int = 1
    fan_shape: tuple[int, ...] = ()
    fans: Fans | None = None
    torch_fans: Fans | None = None
    blocks: tuple[Block, ...] = ()
    note: str = ""
    magnitude_of: str = ""
    zero_rows: tuple[int, ...] = ()


@dataclass(frozen=True)
class LayerFans:
    """How a layer reads its (whole) weight: the part of a :class:`Structure` a bias shares.

    Attributes:
        layout: how the weight's axes are ordered.
        groups: the layer's groups.
        fans: the fans initlab uses.
        torch_fans: the fans of torch's array rule for the same shape.
        note: how ``fans`` differ from ``torch_fans``, and why.
    """

    layout: Layout
    groups: int
    fans: Fans
    torch_fans: Fans
    note: str


@dataclass(frozen=True)
class _Reparametrized:
    """The original of a reparametrized weight.

    Attributes:
        weight: the attribute of the weight it makes (``weight``).
        kind: ``weight norm``, ``spectral norm`` or the parametrizations' names.
        part: ``magnitude``, ``direction`` (weight norm) or ``original``.
    """

    weight: str
    kind: str
    part: str


def is_hf_conv1d(module: nn.Module) -> bool:
    """Hugging Face's GPT-2 ``Conv1D``: weight ``(nx, nf)`` used as ``x @ W``, i.e. (in, out)."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def packed_projections(module: nn.Module, name: str, parent: nn.Module | None) -> str:
    """The projections GPT-2's packed ``c_attn`` holds side by side: ``"qkv"`` (``"kv"`` in
    cross-attention), or ``""`` for any other module.

    Read from the structure ``transformers`` builds, nothing guessed: a ``Conv1D`` named
    ``c_attn`` of a ``GPT2Attention`` whose output width ``nf`` is 3 (2) times its input width,
    the attention's ``split_size``, by which ``GPT2Attention.forward`` splits its output.
    """
    if name != "c_attn" or parent is None or not is_hf_conv1d(module):
        return ""
    if "GPT2Attention" not in (cls.__name__ for cls in type(parent).__mro__):
        return ""
    weight = getattr(module, "weight", None)
    width = getattr(parent, "split_size", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.shape[0] != width:
        return ""
    labels = "kv" if getattr(parent, "is_cross_attention", False) else "qkv"
    return labels if int(getattr(module, "nf", 0)) == len(labels) * width else ""


def is_layer(module: nn.Module) -> bool:
    """A module that owns a weight matrix or kernel (embeddings excluded), directly or
    through a parametrization (weight norm, spectral norm)."""
    if isinstance(module, nn.Embedding | nn.EmbeddingBag):
        return False
    if any(p.dim() >= 2 for p in module.parameters(recurse=False)):
        return True
    listing = getattr(module, "parametrizations", None)
    return isinstance(listing, nn.ModuleDict) and any(p.dim() >= 2 for p in listing.parameters())


def padding_rows(module: nn.Module, attribute: str) -> tuple[int, ...]:
    """The rows of ``module``'s parameter ``attribute`` that the layer keeps at 0: the
    ``padding_idx`` row of an ``nn.Embedding`` / ``nn.EmbeddingBag`` weight (torch stores it
    non-negative), or none.

    Example:
        >>> padding_rows(nn.Embedding(10, 4, padding_idx=-1), "weight")
        (9,)
    """
    if attribute != "weight" or not isinstance(module, nn.Embedding | nn.EmbeddingBag):
        return ()
    padding = module.padding_idx
    return () if padding is None else (int(padding),)


def gate_blocks(module: nn.Module, rows: int, *, recurrent: bool) -> tuple[Block, ...]:
    """The gate blocks of a recurrent layer's ``rows``-row weight or bias (LSTM, GRU, RNN)."""
    kind = type(module).__name__.removesuffix("Cell")
    plain = (("h", str(getattr(module, "nonlinearity", "tanh"))),)  # RNN: one block
    gates = _GATES.get(kind, plain)
    size = rows // len(gates)
    return tuple(
        Block(label, i * size, (i + 1) * size, activation, recurrent)
        for i, (label, activation) in enumerate(gates)
    )


def equal_blocks(size: int, count: int, *, axis: int = 0) -> tuple[Block, ...]:
    """``count`` equal blocks over ``size`` indices along ``axis``, labelled ``0``, ``1``...:
    the blocks a rule's ``split=count`` declares on a weight initlab does not know as stacked
    (timm's fused ``attn.qkv`` ``(3d, d)``: ``equal_blocks(3 * d, 3)``)."""
    step = size // count
    return tuple(Block(str(i), i * step, (i + 1) * step, axis=axis) for i in range(count))


def _layout(module: nn.Module) -> Layout:
    """How ``module`` orders its weight's axes."""
    if isinstance(module, _TRANSPOSED):
        return "torch_transposed"
    return "keras" if is_hf_conv1d(module) else "torch"


def _groups(module: nn.Module) -> int:
    """A convolution's groups; 1 for every other layer."""
    return int(getattr(module, "groups", 1)) if isinstance(module, _CONV) else 1


def _layer_fans(module: nn.Module, shape: tuple[int, ...]) -> LayerFans:
    """How ``module`` reads its (full) weight of ``shape``: fans computed once, both ways."""
    layout, groups = _layout(module), _groups(module)
    array_fans = compute_fans(shape, layout="torch")
    notes = []
    if isinstance(module, nn.Bilinear) and len(shape) == 3:
        fans = Fans(shape[1] * shape[2], shape[0], 1)
        notes.append("Bilinear: fan_in in1*in2, fan_out out")
    elif layout == "torch" and groups == 1:
        fans = array_fans
    else:
        fans = compute_fans(shape, layout=layout, groups=groups)
    if isinstance(module, _TRANSPOSED):
        strides = math.prod(int(s) for s in module.stride)
        notes.append("transposed conv: weight is (in, out/groups, *k)")
        if strides > 1:
            effective = fans.fan_in / strides
            fan_in = int(effective) if effective.is_integer() else effective
            fans = Fans(fan_in, fans.fan_out, fans.receptive_field)
            notes.append(f"fan_in counts the stride {tuple(module.stride)} (taps per output)")
    elif is_hf_conv1d(module):
        notes.append("Conv1D stores (in, out)")
    elif groups > 1:
        notes.append(f"fan_out counted per group ({groups} groups)")
    torch_in, torch_out = int(array_fans.fan_in), int(array_fans.fan_out)
    if len(shape) >= 2 and (fans.fan_in, fans.fan_out) != (torch_in, torch_out):
        notes.append(f"torch's array rule would give fan_in {torch_in}, fan_out {torch_out}")
    return LayerFans(layout, groups, fans, array_fans, "; ".join(notes))


def _blocks(module: nn.Module, attribute: str, rows: int) -> tuple[Block, ...]:
    if isinstance(module, nn.MultiheadAttention) and attribute.startswith("in_proj_"):
        size = rows // 3
        return tuple(Block(label, i * size, (i + 1) * size) for i, label in enumerate("qkv"))
    if isinstance(module, nn.RNNBase | nn.RNNCellBase) and attribute.split("_")[1] in (
        "ih",
        "hh",
    ):
        return gate_blocks(module, rows, recurrent=attribute.startswith(("weight_hh", "bias_hh")))
    return ()


def _read_weight(known: Mapping[str, Structure], attribute: str) -> Structure | None:
    """The structure already read for the layer's weight ``attribute``, when it has fans."""
    shared = known.get(attribute)
    if shared is None or shared.fans is None or shared.torch_fans is None:
        return None
    return shared


def _packed(
    module: nn.Module, attribute: str, labels: str, known: Mapping[str, Structure]
) -> Structure | None:
    """GPT-2's ``c_attn`` weight ``(d, n d)`` and bias ``(n d,)``: one block per projection in
    ``labels``, along the weight's columns and the bias's only axis; fans ``(d, d)`` each."""
    weight = getattr(module, "weight", None)
    if attribute not in ("weight", "bias") or not isinstance(weight, torch.Tensor):
        return None
    width = int(weight.shape[0])
    role: Role = "weight" if attribute == "weight" else "bias"
    axis = 1 if role == "weight" else 0
    blocks = tuple(
        Block(label, i * width, (i + 1) * width, axis=axis) for i, label in enumerate(labels)
    )
    note = f"Conv1D stores (in, out); fans per {', '.join(labels)} block ({width}, {width})"
    shared = _read_weight(known, "weight") if role == "bias" else None
    if shared is not None:
        fans, array_fans = shared.fans, shared.torch_fans
    else:
        fans = compute_fans((width, width), layout="keras")
        array_fans = compute_fans(tuple(weight.shape), layout="torch")
    return Structure(role, "keras", 1, tuple(weight.shape), fans, array_fans, blocks, note)


def _stacked(
    module: nn.Module, attribute: str, tensor: torch.Tensor, known: Mapping[str, Structure]
) -> Structure | None:
    """Attention in_proj and recurrent weights/biases: per-block fans (a bias shares its
    weight's, read from ``known`` when that weight's structure is there)."""
    blocks = _blocks(module, attribute, int(tensor.shape[0]) if tensor.dim() else 0)
    if not blocks:
        return None
    size = blocks[0].stop - blocks[0].start
    weight = attribute.replace("bias", "weight") if attribute.startswith("bias") else attribute
    matrix = getattr(module, weight, None)
    if not isinstance(matrix, torch.Tensor) or matrix.dim() != 2:
        return None
    block_shape = (size, int(matrix.shape[1]))
    what = "q, k, v" if isinstance(module, nn.MultiheadAttention) else "gate"
    note = f"fans per {what} block {block_shape}"
    role: Role = "bias" if attribute.startswith("bias") else "weight"
    shared = _read_weight(known, weight) if role == "bias" else None
    if shared is not None:
        fans, array_fans = shared.fans, shared.torch_fans
    else:
        fans, array_fans = compute_fans(block_shape), compute_fans(tuple(matrix.shape))
    return Structure(role, "torch", 1, tuple(matrix.shape), fans, array_fans, blocks, note)


def _role(module: nn.Module, attribute: str, tensor: torch.Tensor) -> Role:
    if is_norm(module):
        return "norm_weight" if attribute == "weight" else "norm_bias"
    if isinstance(module, nn.Embedding | nn.EmbeddingBag) and attribute == "weight":
        return "embedding"
    if attribute.startswith("bias") or attribute.endswith("_bias"):
        return "bias"
    if tensor.dim() >= 2 and (attribute.startswith("weight") or attribute.endswith("weight")):
        return "weight"
    return "other"


def _reparametrized(module: nn.Module, attribute: str) -> _Reparametrized | None:
    """What the original ``attribute`` of a reparametrized weight is, if it is one."""
    if attribute.startswith("parametrizations."):
        _, weight, original = attribute.split(".", 2)
        if not parametrize.is_parametrized(module, weight):
            return None
        kinds = [type(p).__name__ for p in _parametrizations(module, weight)]
        if kinds == ["_WeightNorm"]:
            part = "magnitude" if original == "original0" else "direction"
            return _Reparametrized(weight, "weight norm", part)
        return _Reparametrized(weight, ", ".join(k.lstrip("_") for k in kinds), "original")
    stem = attribute[:-2]
    if (
        attribute.endswith(("_g", "_v"))
        and hasattr(module, f"{stem}_v")
        and hasattr(module, f"{stem}_g")
    ):  # torch.nn.utils.weight_norm, the older hook-based form
        part = "magnitude" if attribute.endswith("_g") else "direction"
        return _Reparametrized(stem, "weight norm", part)
    return None


def _reparametrized_structure(
    module: nn.Module, attribute: str, tensor: torch.Tensor, original: _Reparametrized
) -> Structure:
    """A weight norm's magnitude is derived; any other original is initialized as the weight."""
    if original.part == "magnitude":
        direction = (
            f"parametrizations.{original.weight}.original1"
            if "." in attribute
            else f"{original.weight}_v"
        )
        note = f"{original.kind}: set to ||v|| per output so that the weight equals v"
        return Structure("other", note=note, magnitude_of=direction)
    inner = parameter_structure(module, original.weight, tensor)
    note = f"{original.kind} ({original.part}): initialized as the layer's weight"
    if "spectral" in original.kind.lower():
        note += "; the layer divides it by its largest singular value"
    # The layer zeroes the rows of the weight it computes, not of its original (a weight norm
    # of a zero row would divide 0 by 0).
    note = "; ".join(filter(None, [note, inner.note]))
    return replace(inner, role="weight", note=note, zero_rows=())


def parameter_structure(
    module: nn.Module,
    attribute: str,
    tensor: torch.Tensor,
    *,
    known: Mapping[str, Structure] | None = None,
    packed: str = "",
) -> Structure:
    """The :class:`Structure` of ``module``'s parameter ``attribute`` (its path under the
    module, e.g. ``weight``, ``in_proj_weight``, ``parametrizations.weight.original1``).

    Args:
        module: the layer that owns the parameter.
        attribute: the parameter's path under ``module``.
        tensor: the parameter.
        known: structures already read for other parameters of ``module``, by attribute: a
            bias takes its weight's fans from there instead of computing them again.
        packed: the projections ``module`` holds side by side (:func:`packed_projections`).
    """
    known = known or {}
    original = _reparametrized(module, attribute)
    if original is not None:
        return _reparametrized_structure(module, attribute, tensor, original)
    stacked = (
        _packed(module, attribute, packed, known)
        if packed
        else _stacked(module, attribute, tensor, known)
    )
    if stacked is not None:
        return stacked
    role = _role(module, attribute, tensor)
    if role == "weight":
        layer = _layer_fans(module, tuple(tensor.shape))
        return Structure(role, layer.layout, layer.groups, tuple(tensor.shape), layer.fans,
                         layer.torch_fans, (), layer.note)  # fmt: skip
    if role == "bias":
        return _bias_structure(module, attribute, known)
    return Structure(role, zero_rows=padding_rows(module, attribute))


def _bias_structure(
    module: nn.Module, attribute: str, known: Mapping[str, Structure]
) -> Structure:
    """A bias takes the fans of its layer's weight (``known``'s when read already)."""
    sibling = _weight_of(module, attribute)
    if sibling is None:
        return Structure("bias")
    note = "fans of the layer's weight"
    shared = _read_weight(known, attribute.replace("bias", "weight"))
    if shared is not None and shared.fan_shape == sibling.shape:
        return Structure("bias", shared.layout, shared.groups, shared.fan_shape, shared.fans,
                         shared.torch_fans, (), note)  # fmt: skip
    layer = _layer_fans(module, tuple(sibling.shape))
    return Structure("bias", layer.layout, layer.groups, tuple(sibling.shape), layer.fans,
                     layer.torch_fans, (), note)  # fmt: skip


def _parametrizations(module: nn.Module, weight: str) -> nn.ModuleList:
    listing = getattr(module.parametrizations, weight)
    assert isinstance(listing, nn.ModuleList)  # torch's ParametrizationList
    return listing


def _weight_of(module: nn.Module, bias_attribute: str) -> torch.Tensor | None:
    """The weight a bias belongs to (through a parametrization if the weight has one)."""
    weight_name = bias_attribute.replace("bias", "weight")
    if parametrize.is_parametrized(module, weight_name):
        original = _parametrizations(module, weight_name)
        tensor = getattr(original, "original", getattr(original, "original1", None))
    else:
        tensor = module._parameters.get(weight_name, getattr(module, weight_name + "_v", None))
    return tensor if isinstance(tensor, torch.Tensor) and tensor.dim() >= 2 else None
