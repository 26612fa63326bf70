r"""Schemes whose elements are independent draws from a fixed law (no fans involved).

``constant`` / ``zeros`` / ``ones``, ``uniform`` :math:`U(a, b)`, ``normal``
:math:`\mathcal N(\mu, \sigma^2)` and ``truncated_normal``. They are also the laws into which
the variance-scaling family resolves once the fans are known (:meth:`Scheme.law`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Literal

from initlab.errors import ConfigError
from initlab.schemes.base import (
    ElementwiseLaw,
    ValueStats,
    Weight,
    check_choice,
    check_finite,
    check_positive,
    register,
)
from initlab.schemes.truncation import (
    truncated_normal_array,
    truncated_normal_moments,
    truncated_normal_torch_,
)

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "Constant",
    "ElementwiseLaw",
    "Normal",
    "Ones",
    "TruncatedNormal",
    "TruncationUnit",
    "Uniform",
    "Zeros",
]

TruncationUnit = Literal["absolute", "std"]


@register("const")
@dataclasses.dataclass(frozen=True)
class Constant(ElementwiseLaw):
    """Every element equals ``value``. Breaks no symmetry: units stay identical in training."""

    name = "constant"
    formula = "w = value"
    value: float = 0.0

    def __post_init__(self) -> None:
        check_finite(self.name, "value", self.value)

    def _stats(self, weight: Weight) -> ValueStats:
        return ValueStats(float(self.value), 0.0, abs(float(self.value)))

    def _fill(
        self, tensor: torch.Tensor, generator: torch.Generator | None, weight: Weight
    ) -> torch.Tensor:
        if self.value == 0:
            return tensor.zero_()
        return tensor.fill_(self.value)

    def _array(self, weight: Weight, rng: np.random.Generator, dtype: Any) -> np.ndarray[Any, Any]:
        import numpy as np

        return np.full(weight.shape, self.value, dtype=dtype)


@register("zero")
@dataclasses.dataclass(frozen=True)
class Zeros(Constant):
    """Every element is 0 (the usual bias init; for weights it leaves every unit identical)."""

    name = "zeros"
    formula = "w = 0"
    value: float = dataclasses.field(default=0.0, init=False)


@register("one")
@dataclasses.dataclass(frozen=True)
class Ones(Constant):
    """Every element is 1 (the usual scale of a normalization layer)."""

    name = "ones"
    formula = "w = 1"
    value: float = dataclasses.field(default=1.0, init=False)


@register()
@dataclasses.dataclass(frozen=True)
class Uniform(ElementwiseLaw):
    r"""Uniform law :math:`U(a, b)`: mean :math:`(a+b)/2`, std :math:`(b-a)/\sqrt{12}`."""

    name = "uniform"
    formula = "w ~ U(a, b)"
    a: float = 0.0
    b: float = 1.0

    def __post_init__(self) -> None:
        check_finite(self.name, "a", self.a)
        check_finite(self.name, "b", self.b)
        if self.a > self.b:
            raise ConfigError(f"uniform: needs a <= b, got a={self.a!r}, b={self.b!r}.")

    def _stats(self, weight: Weight) -> ValueStats:
        spread = (self.b - self.a) / math.sqrt(12.0)
        return ValueStats((self.a + self.b) / 2.0, spread, max(abs(self.a), abs(self.b)))

    def _fill(
        self, tensor: torch.Tensor, generator: torch.Generator | None, weight: Weight
    ) -> torch.Tensor:
        return tensor.uniform_(self.a, self.b, generator=generator)

    def _array(self, weight: Weight, rng: np.random.Generator, dtype: Any) -> np.ndarray[Any, Any]:
        return rng.uniform(self.a, self.b, size=weight.shape).astype(dtype, copy=False)


@register("gaussian", "random_normal")
@dataclasses.dataclass(frozen=True)
class Normal(ElementwiseLaw):
    r"""Normal law :math:`\mathcal N(\text{mean}, \text{std}^2)`, untruncated."""

    name = "normal"
    formula = "w ~ N(mean, std^2)"
    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        check_finite(self.name, "mean", self.mean)
        check_positive(self.name, "std", self.std, allow_zero=True)

    def _stats(self, weight: Weight) -> ValueStats:
        return ValueStats(float(self.mean), float(self.std), None)

    def _fill(
        self, tensor: torch.Tensor, generator: torch.Generator | None, weight: Weight
    ) -> torch.Tensor:
        return tensor.normal_(self.mean, self.std, generator=generator)

    def _array(self, weight: Weight, rng: np.random.Generator, dtype: Any) -> np.ndarray[Any, Any]:
        values = rng.normal(self.mean, self.std, size=weight.shape)
        return values.astype(dtype, copy=False)


@register("trunc_normal", "truncnorm")
@dataclasses.dataclass(frozen=True)
class TruncatedNormal(ElementwiseLaw):
    r"""Normal law :math:`\mathcal N(\text{mean}, \text{std}^2)` restricted to :math:`[a, b]`.

    ``unit="absolute"`` (default, as ``torch.nn.init.trunc_normal_``): ``a`` and ``b`` are
    values. ``unit="std"`` (as Keras' and JAX's ``truncated_normal``): the interval is
    ``[mean + a*std, mean + b*std]``. ``std`` is the *pre-truncation* sigma; the std of the
    samples is smaller (0.8796 std for +-2 std), which :meth:`stats` reports. No sample lies
    outside the interval.
    """

    name = "truncated_normal"
    formula = "w ~ N(mean, std^2) restricted to [a, b]"
    mean: float = 0.0
    std: float = 1.0
    a: float = -2.0
    b: float = 2.0
    unit: TruncationUnit = "absolute"

    def __post_init__(self) -> None:
        check_finite(self.name, "mean", self.mean)
        check_positive(self.name, "std", self.std)
        check_finite(self.name, "a", self.a)
        check_finite(self.name, "b", self.b)
        check_choice(self.name, "unit", self.unit, ("absolute", "std"))
        if self.a >= self.b:
            raise ConfigError(f"truncated_normal: needs a < b, got a={self.a!r}, b={self.b!r}.")

    @property
    def interval(self) -> tuple[float, float]:
        """The absolute interval ``[low, high]`` the samples lie in."""
        if self.unit == "std":
            return self.mean + self.a * self.std, self.mean + self.b * self.std
        return float(self.a), float(self.b)

    def _stats(self, weight: Weight) -> ValueStats:
        low, high = self.interval
        mean, std = truncated_normal_moments(self.mean, self.std, low, high)
        return ValueStats(mean, std, max(abs(low), abs(high)))

    def _fill(
        self, tensor: torch.Tensor, generator: torch.Generator | None, weight: Weight
    ) -> torch.Tensor:
        low, high = self.interval
        return truncated_normal_torch_(tensor, self.mean, self.std, low, high, generator)

    def _array(self, weight: Weight, rng: np.random.Generator, dtype: Any) -> np.ndarray[Any, Any]:
        low, high = self.interval
        return truncated_normal_array(weight.shape, self.mean, self.std, low, high, rng, dtype)
