r"""The truncated normal law: its moments, and exact samplers for torch and NumPy.

A normal :math:`\mathcal N(\mu, \sigma^2)` restricted to :math:`[a, b]`, with
:math:`\alpha = (a-\mu)/\sigma`, :math:`\beta = (b-\mu)/\sigma` and
:math:`Z = \Phi(\beta)-\Phi(\alpha)` has

.. math::

    \operatorname{Var} = \sigma^2 \Big[1 + \frac{\alpha\varphi(\alpha) - \beta\varphi(\beta)}{Z}
    - \Big(\frac{\varphi(\alpha)-\varphi(\beta)}{Z}\Big)^2\Big].

For :math:`\alpha=-2, \beta=2` the std is :data:`TRUNCATION_STD_2` :math:`\cdot\,\sigma`
(0.87962566103423978), the constant by which Keras and JAX divide so that a truncated
variance-scaling sample has exactly the target std.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "TRUNCATION_STD_2",
    "truncated_normal_array",
    "truncated_normal_moments",
    "truncated_normal_torch_",
]

TRUNCATION_STD_2 = 0.87962566103423978


def _normal_cdf(x: float) -> float:
    return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0


def truncated_normal_moments(
    mean: float, std: float, low: float, high: float
) -> tuple[float, float]:
    """Mean and std of N(mean, std^2) restricted to the absolute interval [low, high]."""
    from scipy import stats  # loaded on first use: ``import initlab`` stays light

    law = stats.truncnorm((low - mean) / std, (high - mean) / std, loc=mean, scale=std)
    return float(law.mean()), float(law.std())


def truncated_normal_torch_(
    tensor: torch.Tensor,
    mean: float,
    std: float,
    low: float,
    high: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill ``tensor`` with N(mean, std^2) restricted to [low, high], in place.

    The same draws as ``torch.nn.init.trunc_normal_`` of torch 2.13 for the same generator
    state, so :func:`initlab.init.trunc_normal_` is bitwise compatible:

    * when the interval holds more than 30% of the mass, draw normals and redraw those outside
      ``[low, high]`` (bounds rounded to the tensor's dtype, so every kept value is inside them);
    * otherwise rejection-sample from a uniform proposal on ``[low, high]``, accepting a
      candidate ``x`` when ``log U < -((x - mean)/std)^2 / 2 - log_peak``.
    """
    import torch

    if tensor.is_meta:
        return tensor
    if mean < low - 2 * std or mean > high + 2 * std:
        warnings.warn(
            f"truncated normal: mean {mean} is more than 2 std from [{low}, {high}]; "
            "rejection sampling will be slow and the law is dominated by the nearest bound.",
            stacklevel=4,  # past TruncatedNormal._fill and Scheme.fill_: their caller
        )
    mass = _normal_cdf((high - mean) / std) - _normal_cdf((low - mean) / std)
    law = _TruncatedNormal(mean, std, low, high)
    with torch.no_grad():
        if mass > 0.3:
            return _redraw_outside(tensor, law, generator)
        return _uniform_rejection(tensor, law, generator)


@dataclasses.dataclass(frozen=True)
class _TruncatedNormal:
    """N(mean, std^2) restricted to the absolute interval [low, high]."""

    mean: float
    std: float
    low: float
    high: float


def _redraw_outside(
    tensor: torch.Tensor, law: _TruncatedNormal, generator: torch.Generator | None
) -> torch.Tensor:
    import torch

    low_in_dtype = tensor.new_tensor(law.low, device="cpu").item()
    high_in_dtype = tensor.new_tensor(law.high, device="cpu").item()
    result = tensor.normal_(law.mean, law.std, generator=generator)
    while True:
        outside = (result < low_in_dtype) | (result > high_in_dtype)
        if not outside.any():
            break
        redraw = torch.empty_like(result).normal_(law.mean, law.std, generator=generator)
        result = torch.where(outside, redraw, result)
    if result is not tensor:
        tensor.copy_(result)
    return tensor


def _uniform_rejection(
    tensor: torch.Tensor, law: _TruncatedNormal, generator: torch.Generator | None
) -> torch.Tensor:
    import torch

    mode = max(law.low, min(law.mean, law.high))
    log_peak = -0.5 * ((mode - law.mean) / law.std) ** 2
    candidates = torch.empty_like(tensor)
    accept_draws = torch.empty_like(tensor)

    def log_density_excess(values: torch.Tensor) -> torch.Tensor:
        return values.sub_(law.mean).div_(law.std).pow_(2).mul_(-0.5).sub_(log_peak)

    tensor.uniform_(law.low, law.high, generator=generator)
    candidates.copy_(tensor)
    pending = accept_draws.uniform_(generator=generator).log_().gt(log_density_excess(candidates))
    if not pending.any():
        return tensor
    result = tensor
    while True:
        candidates.uniform_(law.low, law.high, generator=generator)
        result = torch.where(pending, candidates, result)
        rejected = (
            accept_draws.uniform_(generator=generator).log_().gt(log_density_excess(candidates))
        )
        pending = torch.where(pending, rejected, pending)
        if not pending.any():
            break
    tensor.copy_(result)
    return tensor


def truncated_normal_array(
    shape: tuple[int, ...],
    mean: float,
    std: float,
    low: float,
    high: float,
    rng: np.random.Generator,
    dtype: Any,
) -> np.ndarray[Any, Any]:
    """N(mean, std^2) restricted to [low, high] as a NumPy array (inverse-CDF, scipy)."""
    import numpy as np
    from scipy import stats  # loaded on first use: ``import initlab`` stays light

    law = stats.truncnorm((low - mean) / std, (high - mean) / std, loc=mean, scale=std)
    values = np.asarray(law.rvs(size=shape, random_state=rng), dtype=np.float64)
    out = values.astype(dtype)
    # Rounding to a narrower dtype may step past a bound: clip onto the nearest representable
    # value inside [low, high].
    low_in, high_in = np.asarray(low, dtype=dtype), np.asarray(high, dtype=dtype)
    if float(low_in) < low:
        low_in = np.nextafter(low_in, np.asarray(np.inf, dtype=dtype))
    if float(high_in) > high:
        high_in = np.nextafter(high_in, np.asarray(-np.inf, dtype=dtype))
    clipped: np.ndarray[Any, Any] = np.clip(out, low_in, high_in)
    return clipped
