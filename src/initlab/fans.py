r"""Fan-in and fan-out of a weight tensor, for every layout the frameworks use.

A weight's *fan-in* is the number of inputs that feed one output unit; its *fan-out* is the
number of outputs one input unit feeds. For a layer with ``c_in`` input and ``c_out`` output
channels and a kernel of ``k_1 x ... x k_d`` taps (the *receptive field* ``rf = prod k_i``)

.. math::

    \text{fan\_in} = \frac{c_{in}}{\text{groups}} \cdot rf, \qquad
    \text{fan\_out} = \frac{c_{out}}{\text{groups}} \cdot rf .

Layouts (``layout=``):

``"torch"``
    ``(out, in / groups, *kernel)``: ``nn.Linear``, ``nn.ConvNd``, ``nn.Bilinear``. With
    ``groups=1`` this is exactly ``torch.nn.init._calculate_fan_in_and_fan_out``. With groups,
    initlab divides fan_out by ``groups`` (each input channel feeds only its group's outputs);
    torch does not (pytorch/pytorch#23854).
``"torch_transposed"``
    ``(in, out / groups, *kernel)``: ``nn.ConvTransposeNd``. torch's array rule reads this
    layout's axes the wrong way round (its "fan_in" counts the op's output channels); initlab
    reads them as they are.
``"keras"``
    ``(*kernel, in, out)``: Keras 3 ``compute_fans``, also NumPy tutorials' ``(fan_in, fan_out)``
    matrices and the ``(in, out)`` layout of Hugging Face's GPT-2 ``Conv1D``. As in Keras, a
    rank-0 shape has fans (1, 1) and a rank-1 shape ``(n,)`` has fans (n, n).
``"keras_depthwise"``
    ``(*kernel, channels, multiplier)``: a depthwise kernel. Each output sees one input channel,
    so fan_in is ``rf`` and fan_out is ``multiplier * rf`` (Keras' generic rule would give
    ``channels * rf``; keras-team/keras#11773).
``"jax"``
    ``in_axis`` / ``out_axis`` / ``batch_axis`` as in ``jax.nn.initializers``: the receptive
    field is every remaining axis, ``rf = numel / (in * out * batch)``.

Strides are ignored, as in every framework: the counts are those of a stride-1 layer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Literal, get_args

from initlab.errors import ShapeError, UnknownNameError, did_you_mean

__all__ = [
    "FanMode",
    "Fans",
    "Layout",
    "compute_fans",
    "fan_in",
    "fan_out",
    "shape_tuple",
    "torch_fans",
]

Layout = Literal["torch", "torch_transposed", "keras", "keras_depthwise", "jax"]
FanMode = Literal["fan_in", "fan_out", "fan_avg", "fan_geo_avg"]
Axes = int | Sequence[int]

LAYOUTS: tuple[str, ...] = get_args(Layout)
FAN_MODES: tuple[str, ...] = get_args(FanMode)


@dataclass(frozen=True)
class Fans:
    """Fan-in, fan-out and receptive field of one weight tensor.

    Attributes:
        fan_in: inputs feeding one output unit (an average, so possibly fractional, for a
            strided transposed convolution; an ``int`` otherwise).
        fan_out: outputs fed by one input unit.
        receptive_field: product of the kernel's spatial sizes (1 for a dense layer).
    """

    fan_in: float
    fan_out: float
    receptive_field: int = 1

    def fan(self, mode: FanMode) -> float:
        """The denominator ``n`` of a variance-scaling scheme for ``mode``.

        ``fan_in``, ``fan_out``, ``fan_avg`` = (fan_in + fan_out) / 2 (Glorot & Bengio, 2010)
        or ``fan_geo_avg`` = sqrt(fan_in * fan_out) (JAX).
        """
        if mode == "fan_in":
            return float(self.fan_in)
        if mode == "fan_out":
            return float(self.fan_out)
        if mode == "fan_avg":
            return (self.fan_in + self.fan_out) / 2.0
        if mode == "fan_geo_avg":
            return math.sqrt(self.fan_in * self.fan_out)
        raise UnknownNameError(did_you_mean("fan mode", str(mode), FAN_MODES))


def shape_tuple(shape: Sequence[int]) -> tuple[int, ...]:
    """``shape`` as a tuple of ints >= 0; anything else raises :class:`ShapeError`."""
    if isinstance(shape, str | bytes) or not isinstance(shape, Iterable):
        raise ShapeError(
            f"A shape must be a sequence of integer sizes such as (64, 32), got {shape!r} "
            f"({type(shape).__name__})."
        )
    sizes = tuple(shape)
    if not all(isinstance(s, Integral) and not isinstance(s, bool) for s in sizes):
        raise ShapeError(
            f"A shape's sizes must be integers, got {sizes!r} in shape {shape!r}; "
            "give whole numbers, e.g. (64, 32)."
        )
    dims = tuple(int(s) for s in sizes)
    if any(s < 0 for s in dims):
        raise ShapeError(f"Shape {dims} has a negative dimension; sizes must be >= 0.")
    return dims


def _rank_error(dims: tuple[int, ...], layout: str) -> ShapeError:
    return ShapeError(
        f"Fans need a weight of at least 2 dimensions, got shape {dims} (layout {layout!r}). "
        "A 1-D tensor is usually a bias or a norm scale: initialize it with 'zeros', 'ones' "
        "or 'uniform' with an explicit bound (PyTorch's bias rule is U(-1/sqrt(fan_in), "
        "1/sqrt(fan_in)) with the fan_in of the layer's weight)."
    )


def _per_group(channels: int, groups: int, dims: tuple[int, ...], axis: str) -> int:
    if isinstance(groups, bool) or not isinstance(groups, Integral) or groups < 1:
        raise ShapeError(f"groups must be a positive integer, got {groups}.")
    if channels % groups:
        raise ShapeError(
            f"The {axis} axis of shape {dims} has {channels} channels, which {groups} groups "
            "do not divide. Pass the layer's own 'groups'."
        )
    return channels // groups


def _normalize_axes(axes: Axes, rank: int, name: str, dims: tuple[int, ...]) -> tuple[int, ...]:
    listed = (axes,) if isinstance(axes, int) else tuple(axes)
    out = []
    for axis in listed:
        if not -rank <= axis < rank:
            raise ShapeError(
                f"{name}={axis} is out of range for shape {dims} of rank {rank}; "
                f"use an axis in [-{rank}, {rank - 1}]."
            )
        out.append(axis % rank)
    return tuple(out)


def _jax_fans(dims: tuple[int, ...], in_axis: Axes, out_axis: Axes, batch_axis: Axes) -> Fans:
    rank = len(dims)
    if rank < 2 and isinstance(in_axis, int) and in_axis == -2:
        raise _rank_error(dims, "jax")
    ins = _normalize_axes(in_axis, rank, "in_axis", dims)
    outs = _normalize_axes(out_axis, rank, "out_axis", dims)
    batch = _normalize_axes(batch_axis, rank, "batch_axis", dims)
    in_size = math.prod(dims[a] for a in ins)
    out_size = math.prod(dims[a] for a in outs)
    rest = [a for a in range(rank) if a not in set(ins) | set(outs) | set(batch)]
    receptive_field = math.prod(dims[a] for a in rest)
    return Fans(in_size * receptive_field, out_size * receptive_field, receptive_field)


def compute_fans(
    shape: Sequence[int],
    *,
    layout: Layout = "torch",
    groups: int = 1,
    in_axis: Axes = -2,
    out_axis: Axes = -1,
    batch_axis: Axes = (),
) -> Fans:
    """Fans of a weight of ``shape`` stored in ``layout``.

    Args:
        shape: the weight's shape.
        layout: how the axes are ordered (see the module docstring).
        groups: the layer's ``groups`` (``torch``, ``torch_transposed``, ``keras`` layouts).
        in_axis: input axes, ``jax`` layout only.
        out_axis: output axes, ``jax`` layout only.
        batch_axis: axes of independent weights (e.g. stacked layers), ``jax`` layout only.

    Returns:
        The :class:`Fans`.

    Raises:
        ShapeError: fewer than 2 dimensions where the layout needs 2, or ``groups`` that do not
            divide the channel axis.
        UnknownNameError: an unknown ``layout``.

    Example:
        >>> compute_fans((32, 16, 3, 3))
        Fans(fan_in=144, fan_out=288, receptive_field=9)
        >>> compute_fans((3, 3, 16, 32), layout="keras")
        Fans(fan_in=144, fan_out=288, receptive_field=9)
    """
    dims = shape_tuple(shape)
    if layout == "jax":
        return _jax_fans(dims, in_axis, out_axis, batch_axis)
    if layout in ("keras", "keras_depthwise"):
        return _keras_fans(dims, groups, depthwise=layout == "keras_depthwise")
    if layout in ("torch", "torch_transposed"):
        return _torch_fans(dims, groups, transposed=layout == "torch_transposed")
    raise UnknownNameError(did_you_mean("layout", str(layout), LAYOUTS))


def _keras_fans(dims: tuple[int, ...], groups: int, *, depthwise: bool) -> Fans:
    """``(*kernel, in, out)``; a depthwise kernel's ``out`` is the channel multiplier."""
    if len(dims) == 0:
        return Fans(1, 1, 1)
    if len(dims) == 1:
        return Fans(dims[0], dims[0], 1)
    receptive_field = math.prod(dims[:-2])
    n_in, n_out = dims[-2], dims[-1]
    if depthwise:
        return Fans(receptive_field, n_out * receptive_field, receptive_field)
    n_out = _per_group(n_out, groups, dims, "output")
    return Fans(n_in * receptive_field, n_out * receptive_field, receptive_field)


def _torch_fans(dims: tuple[int, ...], groups: int, *, transposed: bool) -> Fans:
    """``(out, in / groups, *kernel)``, or ``(in, out / groups, *kernel)`` transposed."""
    if len(dims) < 2:
        raise _rank_error(dims, "torch_transposed" if transposed else "torch")
    receptive_field = math.prod(dims[2:])
    if not transposed:
        n_out = _per_group(dims[0], groups, dims, "output")
        return Fans(dims[1] * receptive_field, n_out * receptive_field, receptive_field)
    n_in = _per_group(dims[0], groups, dims, "input")
    return Fans(n_in * receptive_field, dims[1] * receptive_field, receptive_field)


def torch_fans(shape: Sequence[int]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` exactly as ``torch.nn.init._calculate_fan_in_and_fan_out``.

    ``fan_in = shape[1] * rf`` and ``fan_out = shape[0] * rf`` with ``rf = prod(shape[2:])``,
    whatever the layer; the torch-compatible functions of :mod:`initlab.init` use this rule.
    """
    fans = compute_fans(shape, layout="torch")
    return int(fans.fan_in), int(fans.fan_out)


def fan_in(shape: Sequence[int], *, layout: Layout = "torch", groups: int = 1) -> int:
    """Fan-in of a weight of ``shape`` (see :func:`compute_fans`)."""
    return int(compute_fans(shape, layout=layout, groups=groups).fan_in)


def fan_out(shape: Sequence[int], *, layout: Layout = "torch", groups: int = 1) -> int:
    """Fan-out of a weight of ``shape`` (see :func:`compute_fans`)."""
    return int(compute_fans(shape, layout=layout, groups=groups).fan_out)
