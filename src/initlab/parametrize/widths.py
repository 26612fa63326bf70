r"""Which dimensions of each parameter are *width*: compared with a base model, or a base width.

A parametrization (muP, spectral) says how a parameter's init and learning rate scale as the
dimensions that grow with the model's width grow. As in the ``mup`` package's ``infshape``, a
dimension is a width dimension when it differs from the same parameter's dimension in a smaller
*base* model of the same family; the ratio is its *width multiplier*.

Every parameter gets a fan-in :math:`n_{in}` and a fan-out :math:`n_{out}` (the layer's, from
:mod:`initlab.layers.structure`: a convolution's include its kernel, a stacked q/k/v or gate
weight's are one block's), and the same for the base, so that

.. math::

    m_{in} = n_{in} / n_{in}^{base}, \qquad m_{out} = n_{out} / n_{out}^{base} .

=====================  ===================================  =================================
parameter              fans                                 role by width dimensions
=====================  ===================================  =================================
layer weight           the layer's (per block if stacked)   ``input`` (only fan_out is width),
                                                            ``hidden`` (both), ``output``
                                                            (only fan_in), ``fixed`` (none)
embedding ``(V, d)``   (V, d): a one-hot input of size V    as a layer weight (usually
                                                            ``input``)
bias                   (1, numel)                           ``bias``
norm weight / bias     (1, numel)                           ``norm``
other tensor           (1, numel) if at most one dimension  ``vector``; a tensor with two or
                       differs from the base                more width dimensions is read
                                                            with torch's array fans
=====================  ===================================  =================================

Without a base model, ``base_width`` says which dimensions are width: a layer's channel count
(fan / receptive field) or a vector's length that is a multiple :math:`k \cdot w` of the model's
width :math:`w` has the base value :math:`k \cdot w_{base}` (so an MLP's :math:`4d` expansion
scales with :math:`d`). A fixed dimension that happens to be a multiple of the width (64 input
features at width 64) is then read as width too: pass ``base=`` (a smaller instance of the same
factory) to avoid the ambiguity.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from initlab.errors import ConfigError
from initlab.plan.sites import ParameterSite, block_depth

__all__ = [
    "WIDTH_ROLES",
    "ParameterWidths",
    "WidthRole",
    "counterpart",
    "detect_width",
    "widths_from_base",
    "widths_from_base_width",
]

WidthRole = Literal["input", "hidden", "output", "fixed", "bias", "norm", "vector"]
WIDTH_ROLES: tuple[str, ...] = get_args(WidthRole)

_BLOCK_INDEX = re.compile(r"(?:^|\.)(\d+)(?:\.|$)")


@dataclass(frozen=True)
class _Fans:
    """A parameter's fans as a parametrization reads them.

    Attributes:
        fan_in: inputs per output (1 for vector-like parameters).
        fan_out: outputs per input (the length of a vector-like parameter).
        matrix: whether the parameter is read as a matrix (layer weight, embedding).
    """

    fan_in: float
    fan_out: float
    matrix: bool


class WidthMultipliers:
    """The width multipliers of a record that holds a parameter's fans and its base's fans
    (:class:`ParameterWidths`, :class:`~initlab.parametrize.ParameterRow`)."""

    fan_in: float
    fan_out: float
    base_fan_in: float
    base_fan_out: float

    @property
    def width_multiplier_in(self) -> float:
        """:math:`m_{in} = n_{in} / n_{in}^{base}`."""
        return self.fan_in / self.base_fan_in

    @property
    def width_multiplier_out(self) -> float:
        """:math:`m_{out} = n_{out} / n_{out}^{base}`."""
        return self.fan_out / self.base_fan_out


@dataclass(frozen=True)
class ParameterWidths(WidthMultipliers):
    """One parameter's fans in the model and in the base, and its role by width.

    Attributes:
        site: the parameter (:func:`initlab.plan.parameter_sites`).
        role: see the module docstring.
        fan_in: its fan-in in the model.
        fan_out: its fan-out in the model.
        base_fan_in: the fan-in of the same parameter in the base model.
        base_fan_out: the fan-out of the same parameter in the base model.
    """

    site: ParameterSite
    role: WidthRole
    fan_in: float
    fan_out: float
    base_fan_in: float
    base_fan_out: float


def _fans(site: ParameterSite) -> _Fans:
    """The fans a parametrization reads for ``site`` (see the module docstring)."""
    if site.role == "weight" and site.fans is not None:
        return _Fans(float(site.fans.fan_in), float(site.fans.fan_out), matrix=True)
    if site.role == "embedding" and len(site.shape) == 2:
        return _Fans(float(site.shape[0]), float(site.shape[1]), matrix=True)
    return _Fans(1.0, float(math.prod(site.shape)), matrix=False)


def _array_fans(shape: tuple[int, ...]) -> _Fans:
    """torch's array rule ``(out, in, *kernel)``, for an "other" tensor with two width axes."""
    field = math.prod(shape[2:])
    return _Fans(float(shape[1] * field), float(shape[0] * field), matrix=True)


def _role(site: ParameterSite, fans: _Fans, base: _Fans) -> WidthRole:
    if site.role == "bias":
        return "bias"
    if site.role in ("norm_weight", "norm_bias"):
        return "norm"
    if not fans.matrix:
        return "vector"
    wide_in, wide_out = fans.fan_in != base.fan_in, fans.fan_out != base.fan_out
    if wide_in and wide_out:
        return "hidden"
    if wide_out:
        return "input"
    return "output" if wide_in else "fixed"


def _widths(site: ParameterSite, fans: _Fans, base: _Fans) -> ParameterWidths:
    return ParameterWidths(
        site=site,
        role=_role(site, fans, base),
        fan_in=fans.fan_in,
        fan_out=fans.fan_out,
        base_fan_in=base.fan_in,
        base_fan_out=base.fan_out,
    )


def counterpart(name: str, base_names: Collection[str], *, allow_blocks: bool) -> str | None:
    """The base's name for ``name``: the same name, or (``allow_blocks``: a base with fewer
    residual blocks) the same name in the deepest base block that has it; ``None`` if none."""
    if name in base_names:
        return name
    match = _BLOCK_INDEX.search(name) if allow_blocks else None
    if match is None:
        return None
    indices = {index for n in base_names if (index := block_depth(n)) is not None}
    for index in sorted(indices, reverse=True):
        candidate = f"{name[: match.start(1)]}{index}{name[match.end(1) :]}"
        if candidate in base_names:
            return candidate
    return None


def _base_site(site: ParameterSite, base: dict[str, ParameterSite], allow_blocks: bool) -> str:
    """The base parameter ``site`` compares with (see :func:`counterpart`)."""
    found = counterpart(site.name, base.keys(), allow_blocks=allow_blocks)
    if found is not None:
        return found
    known = ", ".join(list(base)[:6]) + (", ..." if len(base) > 6 else "")
    raise ConfigError(
        f"parametrize: parameter {site.name!r} of the model has no counterpart in the base "
        f"model (base parameters: {known}). The base must be a smaller instance of the same "
        "model (same parameter names, some dimensions smaller); or pass base_width= instead."
    )


def _check_narrower(site: ParameterSite, base: ParameterSite) -> None:
    """The base's dimensions are each at most the model's."""
    if len(site.shape) != len(base.shape) or site.role != base.role:
        raise ConfigError(
            f"parametrize: parameter {site.name!r} has shape {site.shape} ({site.role}) in the "
            f"model but {base.shape} ({base.role}) in the base model; the base must be a "
            "smaller instance of the same model."
        )
    if any(b > m for b, m in zip(base.shape, site.shape, strict=True)):
        raise ConfigError(
            f"parametrize: the base model is wider than the model at parameter {site.name!r}: "
            f"base shape {base.shape}, model shape {site.shape}. Pass the smaller model as "
            "base= (parametrize(big_model, base=small_model))."
        )


def widths_from_base(
    sites: Sequence[ParameterSite], base_sites: Sequence[ParameterSite], *, allow_blocks: bool
) -> list[ParameterWidths]:
    """Each parameter's fans against the same parameter of the base model.

    Args:
        sites: the model's parameters.
        base_sites: the base model's parameters.
        allow_blocks: a base with fewer residual blocks is allowed (depth scaling): a block
            the base lacks compares with the base's deepest block of the same name.

    Raises:
        ConfigError: a parameter with no counterpart in the base, of a different rank or
            role, or narrower in the model than in the base (the message names it).
    """
    by_name = {site.name: site for site in base_sites}
    found: list[ParameterWidths] = []
    for site in sites:
        base = by_name[_base_site(site, by_name, allow_blocks)]
        _check_narrower(site, base)
        fans, base_fans = _fans(site), _fans(base)
        width_axes = sum(m != b for m, b in zip(site.shape, base.shape, strict=True))
        if site.role == "other" and width_axes >= 2:
            fans, base_fans = _array_fans(site.shape), _array_fans(base.shape)
        found.append(_widths(site, fans, base_fans))
    return found


def _base_count(count: float, width: int, base_width: int) -> float:
    """``count`` at the base width: ``k * base_width`` when ``count = k * width``."""
    ratio = count / width
    return ratio * base_width if ratio >= 1 and float(ratio).is_integer() else count


def _base_fans_by_width(site: ParameterSite, fans: _Fans, width: int, base_width: int) -> _Fans:
    field = site.fans.receptive_field if site.role == "weight" and site.fans else 1
    return _Fans(
        _base_count(fans.fan_in / field, width, base_width) * field if fans.matrix else 1.0,
        _base_count(fans.fan_out / field, width, base_width) * field,
        fans.matrix,
    )


def detect_width(sites: Sequence[ParameterSite]) -> int:
    """The model's width: the channel count most layer weights have (fan / receptive field,
    in and out; ties go to the larger).

    Raises:
        ConfigError: the model has no layer weights to read a width from.
    """
    counts: Counter[int] = Counter()
    for site in sites:
        if site.role == "weight" and site.fans is not None:
            field = site.fans.receptive_field
            for fan in (site.fans.fan_in, site.fans.fan_out):
                if float(fan / field).is_integer():
                    counts[int(fan / field)] += 1
    if not counts:
        raise ConfigError(
            "parametrize: the model has no layer weights to read its width from; pass width= "
            "(the model's hidden size) with base_width=, or pass base= (a smaller instance)."
        )
    return max(counts, key=lambda size: (counts[size], size))


def widths_from_base_width(
    sites: Sequence[ParameterSite], *, width: int, base_width: int
) -> list[ParameterWidths]:
    """Each parameter's fans against the base width (see the module docstring).

    Raises:
        ConfigError: ``base_width`` is not a positive integer at most ``width``.
    """
    for label, value in (("width", width), ("base_width", base_width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"parametrize: {label} must be a positive int, got {value!r}.")
    if base_width > width:
        raise ConfigError(
            f"parametrize: base_width {base_width} is wider than the model's width {width}; "
            "the base is the smaller model (or pass width= if the detected width is wrong)."
        )
    found = []
    for site in sites:
        fans = _fans(site)
        found.append(_widths(site, fans, _base_fans_by_width(site, fans, width, base_width)))
    return found
