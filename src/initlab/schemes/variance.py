r"""Variance scaling, the general case, and its presets Xavier/Glorot, He/Kaiming and LeCun.

Every scheme here draws i.i.d. values of zero mean and variance

.. math::

    v = \frac{g^2}{n}, \qquad n \in \{\text{fan\_in},\ \text{fan\_out},\
    \tfrac{\text{fan\_in} + \text{fan\_out}}{2},\ \sqrt{\text{fan\_in}\cdot\text{fan\_out}}\}

from one of three laws:

* ``uniform``: :math:`U(-\sqrt{3v}, \sqrt{3v})`;
* ``normal``: :math:`\mathcal N(0, v)`, untruncated (what torch's ``xavier_normal_`` /
  ``kaiming_normal_`` do);
* ``truncated_normal``: :math:`\mathcal N(0, \sigma^2)` restricted to :math:`\pm 2\sigma` with
  :math:`\sigma = \sqrt v / 0.87962566103423978`, so that the samples' std is exactly
  :math:`\sqrt v` (what Keras 3 and JAX do for their ``*_normal`` initializers).

======================  ==================================  =======================
scheme                  g^2 (``scale``)                     n
======================  ==================================  =======================
``variance_scaling``    ``scale``                           ``mode``
``xavier_*`` (Glorot)   ``gain^2``                          fan_avg
``he_*`` (Kaiming)      ``gain(nonlinearity, a)^2`` (2)     ``mode`` (fan_in)
``lecun_*``             1                                   ``mode`` (fan_in)
======================  ==================================  =======================

The std is computed in the same floating-point order as ``torch.nn.init``
(``g * sqrt(2 / (fi + fo))`` for fan_avg, ``g / sqrt(n)`` otherwise), so torch-compatible calls
are bitwise identical. References: Glorot & Bengio (2010), He et al. (2015), LeCun et al.
(1998), Klambauer et al. (2017).
"""

from __future__ import annotations

import dataclasses
import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from initlab.errors import ConfigError, ShapeError, UnknownNameError
from initlab.fans import FAN_MODES, FanMode, Fans, Layout, compute_fans
from initlab.gains import canonical_activation, gain
from initlab.schemes.base import (
    Scheme,
    ValueStats,
    Weight,
    check_choice,
    check_finite,
    check_positive,
    register,
)
from initlab.schemes.elementwise import Normal, TruncatedNormal, Uniform
from initlab.schemes.truncation import TRUNCATION_STD_2

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "DISTRIBUTIONS",
    "Distribution",
    "HeNormal",
    "HeUniform",
    "LeCunNormal",
    "LeCunUniform",
    "Scaling",
    "VarianceScaling",
    "XavierNormal",
    "XavierUniform",
]

Distribution = Literal["normal", "truncated_normal", "uniform"]
DISTRIBUTIONS: tuple[str, ...] = ("normal", "truncated_normal", "uniform")
_NORMALS: tuple[str, ...] = ("normal", "truncated_normal")
_KERAS_NORMAL = "untruncated_normal"  # Keras' spelling of "normal"


@dataclasses.dataclass(frozen=True)
class Scaling:
    r"""What a variance-scaling scheme stands for: std :math:`g/\sqrt n`, drawn from a law.

    Attributes:
        gain: the gain ``g``.
        fan_mode: which fan ``n`` divides the variance.
        distribution: uniform, normal or truncated_normal.
    """

    gain: float
    fan_mode: FanMode
    distribution: Distribution


def _fans(weight: Weight) -> Fans:
    return compute_fans(weight.shape, layout=weight.layout, groups=weight.groups)


@dataclasses.dataclass(frozen=True)
class _ScaledByFans(Scheme):
    """Shared machinery: gain, fan mode and distribution -> the elementwise law for the fans."""

    uses_fans = True

    @abstractmethod
    def scaling(self) -> Scaling:
        """The gain, the fan and the distribution this scheme's parameters stand for."""

    @property
    def fan_mode(self) -> FanMode:
        """Which fan ``n`` divides the variance."""
        return self.scaling().fan_mode

    @property
    def family(self) -> Distribution:
        """The distribution the values are drawn from: uniform, normal or truncated_normal."""
        return self.scaling().distribution

    def gain_factor(self) -> float:
        """The gain ``g`` (so the variance is ``g^2 / n``)."""
        return self.scaling().gain

    def law(
        self,
        fans: Fans | Sequence[int] | None = None,
        *,
        layout: Layout = "torch",
        groups: int = 1,
    ) -> Uniform | Normal | TruncatedNormal | None:
        r"""The law of std :math:`\sigma = g/\sqrt n` for ``fans`` (a shape or
        :class:`~initlab.fans.Fans`): :math:`U(\pm\sqrt3\,\sigma)`,
        :math:`\mathcal N(0, \sigma^2)`, or :math:`\mathcal N(0, (\sigma/0.8796)^2)` cut at
        :math:`\pm 2` of its sigma; ``None`` without fans.

        Raises:
            ShapeError: the fan ``n`` is 0 (the shape is named when one was given).
        """
        if fans is None:
            return None
        if isinstance(fans, Fans):
            return self._law_of(fans, shape=None)
        return self._law_of(compute_fans(fans, layout=layout, groups=groups), shape=fans)

    def _std(self, fans: Fans, shape: Sequence[int] | None, scaling: Scaling) -> float:
        r"""The std :math:`g/\sqrt n` for ``fans`` (of ``shape``, named when a fan is 0)."""
        n = fans.fan(scaling.fan_mode)
        if n <= 0:
            what = f"shape {tuple(shape)}" if shape is not None else f"a weight with {fans}"
            raise ShapeError(
                f"{self.name}: {what} has {scaling.fan_mode} = 0, so the variance g^2/n is "
                "undefined. Give the tensor non-zero sizes or pick another mode."
            )
        g = scaling.gain
        if scaling.fan_mode == "fan_avg":
            return g * math.sqrt(2.0 / float(fans.fan_in + fans.fan_out))
        return g / math.sqrt(n)

    def _law_of(
        self, fans: Fans, shape: Sequence[int] | None
    ) -> Uniform | Normal | TruncatedNormal:
        scaling = self.scaling()
        std = self._std(fans, shape, scaling)
        if scaling.distribution == "uniform":
            bound = math.sqrt(3.0) * std
            return Uniform(-bound, bound)
        if scaling.distribution == "normal":
            return Normal(0.0, std)
        return TruncatedNormal(0.0, std / TRUNCATION_STD_2, -2.0, 2.0, unit="std")

    def _weight_law(self, weight: Weight) -> Uniform | Normal | TruncatedNormal:
        return self._law_of(_fans(weight), shape=weight.shape)

    def target_std(
        self, shape: Sequence[int], *, layout: Layout = "torch", groups: int = 1
    ) -> float:
        r"""The std :math:`g/\sqrt n` of the values for ``shape``."""
        fans = compute_fans(shape, layout=layout, groups=groups)
        return self._std(fans, shape, self.scaling())

    def _stats(self, weight: Weight) -> ValueStats:
        bound = self._weight_law(weight).stats(weight.shape).bound
        return ValueStats(0.0, self._std(_fans(weight), weight.shape, self.scaling()), bound)

    def _fill(
        self, tensor: torch.Tensor, generator: torch.Generator | None, weight: Weight
    ) -> torch.Tensor:
        if tensor.numel() == 0:
            return tensor
        return self._weight_law(weight)._fill(tensor, generator, weight)  # under no_grad already

    def _array(self, weight: Weight, rng: np.random.Generator, dtype: Any) -> np.ndarray[Any, Any]:
        return self._weight_law(weight).array(weight.shape, rng, dtype=dtype)

    @classmethod
    def canonical_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """Keras' spelling ``distribution="untruncated_normal"`` read as ``"normal"``."""
        if params.get("distribution") == _KERAS_NORMAL:
            return {**params, "distribution": "normal"}
        return dict(params)


def _check_distribution(scheme: str, value: str, allowed: Sequence[str]) -> None:
    if value == _KERAS_NORMAL:
        raise ConfigError(
            f"{scheme}: distribution {value!r} is Keras' name for 'normal'; pass "
            "distribution='normal' (get() and from_config() translate it)."
        )
    check_choice(scheme, "distribution", value, allowed)


@register("vs")
@dataclasses.dataclass(frozen=True)
class VarianceScaling(_ScaledByFans):
    r"""The general case: variance ``scale / n``, as Keras' and JAX's ``VarianceScaling``.

    ``distribution`` defaults to ``truncated_normal`` as in Keras and JAX; ``mode`` may be
    ``fan_in``, ``fan_out``, ``fan_avg`` or ``fan_geo_avg`` (JAX).
    """

    name = "variance_scaling"
    formula = "v = scale / n(mode); uniform | normal | truncated_normal (std-corrected)"
    scale: float = 1.0
    mode: FanMode = "fan_in"
    distribution: Distribution = "truncated_normal"

    def __post_init__(self) -> None:
        check_positive(self.name, "scale", self.scale)
        check_choice(self.name, "mode", self.mode, FAN_MODES)
        _check_distribution(self.name, self.distribution, DISTRIBUTIONS)

    def scaling(self) -> Scaling:
        return Scaling(math.sqrt(self.scale), self.mode, self.distribution)


@register("glorot_uniform")
@dataclasses.dataclass(frozen=True)
class XavierUniform(_ScaledByFans):
    r"""Glorot & Bengio (2010): :math:`U(\pm g\sqrt{6/(\text{fan\_in}+\text{fan\_out})})`."""

    name = "xavier_uniform"
    formula = "w ~ U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out))"
    gain: float = 1.0

    def __post_init__(self) -> None:
        check_finite(self.name, "gain", self.gain)

    def scaling(self) -> Scaling:
        return Scaling(float(self.gain), "fan_avg", "uniform")


@register("glorot_normal")
@dataclasses.dataclass(frozen=True)
class XavierNormal(_ScaledByFans):
    r"""Glorot & Bengio (2010): std :math:`g\sqrt{2/(\text{fan\_in}+\text{fan\_out})}`.

    ``distribution="normal"`` as torch; ``"truncated_normal"`` as Keras/JAX ``glorot_normal``.
    """

    name = "xavier_normal"
    formula = "w ~ N(0, gain^2 * 2 / (fan_in + fan_out))"
    gain: float = 1.0
    distribution: Distribution = "normal"

    def __post_init__(self) -> None:
        check_finite(self.name, "gain", self.gain)
        _check_distribution(self.name, self.distribution, _NORMALS)

    def scaling(self) -> Scaling:
        return Scaling(float(self.gain), "fan_avg", self.distribution)


@dataclasses.dataclass(frozen=True)
class _He(_ScaledByFans):
    a: float = 0.0
    mode: FanMode = "fan_in"
    nonlinearity: str = "leaky_relu"

    def __post_init__(self) -> None:
        check_finite(self.name, "a", self.a)
        check_choice(self.name, "mode", self.mode, FAN_MODES)
        try:
            canonical_activation(self.nonlinearity)
        except UnknownNameError as error:
            raise UnknownNameError(f"{self.name}: nonlinearity: {error}") from None

    def _gain(self) -> float:
        # torch passes `a` as the parameter of every nonlinearity; only leaky_relu reads it.
        leaky = canonical_activation(self.nonlinearity) == "leaky_relu"
        return float(gain(self.nonlinearity, self.a if leaky else None))


@register("kaiming_uniform")
@dataclasses.dataclass(frozen=True)
class HeUniform(_He):
    r"""He et al. (2015): :math:`U(\pm g\sqrt{3/n})`, g from ``nonlinearity`` and slope ``a``.

    Defaults as torch's ``kaiming_uniform_``: leaky_relu with a=0 (= relu, g = sqrt 2), fan_in.
    """

    name = "he_uniform"
    formula = "w ~ U(-b, b), b = gain * sqrt(3 / fan(mode))"

    def scaling(self) -> Scaling:
        return Scaling(self._gain(), self.mode, "uniform")


@register("kaiming_normal")
@dataclasses.dataclass(frozen=True)
class HeNormal(_He):
    r"""He et al. (2015): std :math:`g/\sqrt n`; ``distribution`` normal (torch) or truncated."""

    name = "he_normal"
    formula = "w ~ N(0, gain^2 / fan(mode))"
    distribution: Distribution = "normal"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_distribution(self.name, self.distribution, _NORMALS)

    def scaling(self) -> Scaling:
        return Scaling(self._gain(), self.mode, self.distribution)


@register()
@dataclasses.dataclass(frozen=True)
class LeCunUniform(_ScaledByFans):
    r"""LeCun et al. (1998): :math:`U(\pm\sqrt{3/\text{fan\_in}})` (gain 1)."""

    name = "lecun_uniform"
    formula = "w ~ U(-b, b), b = sqrt(3 / fan(mode))"
    mode: FanMode = "fan_in"

    def __post_init__(self) -> None:
        check_choice(self.name, "mode", self.mode, FAN_MODES)

    def scaling(self) -> Scaling:
        return Scaling(1.0, self.mode, "uniform")


@register()
@dataclasses.dataclass(frozen=True)
class LeCunNormal(_ScaledByFans):
    r"""LeCun et al. (1998): std :math:`1/\sqrt{\text{fan\_in}}`; the init SELU nets need.

    ``distribution="normal"`` (torch's ``kaiming_normal_(nonlinearity="linear")``) or
    ``"truncated_normal"`` (Keras/JAX ``lecun_normal``).
    """

    name = "lecun_normal"
    formula = "w ~ N(0, 1 / fan(mode))"
    mode: FanMode = "fan_in"
    distribution: Distribution = "normal"

    def __post_init__(self) -> None:
        check_choice(self.name, "mode", self.mode, FAN_MODES)
        _check_distribution(self.name, self.distribution, _NORMALS)

    def scaling(self) -> Scaling:
        return Scaling(1.0, self.mode, self.distribution)
