r"""The state-space schemes of Mamba (Gu & Dao, 2023): the step bias and the S4D-real ``A_log``.

Two of Mamba's parameters are not drawn from a law any other init uses, so they get schemes of
their own (registered by name, so a plan that uses them is saved and read back like any other;
the ``mamba`` preset, :mod:`initlab.plan.recipes.state_space`, assigns them):

* ``mamba_dt_bias``: the bias of ``dt_proj``, which ``softplus`` turns into the step
  :math:`\Delta`. Mamba wants :math:`\Delta` log-uniform in :math:`[\Delta_{min}, \Delta_{max}]`:

  .. math::

      \Delta = \max\!\big(e^{\,\log\Delta_{min} + u\,(\log\Delta_{max} - \log\Delta_{min})},\
      \Delta_{floor}\big),\quad u \sim U(0, 1),\qquad
      b = \operatorname{softplus}^{-1}(\Delta) = \Delta + \log(-\operatorname{expm1}(-\Delta)).

* ``s4d_real_log``: ``A_log`` of shape ``(d_inner, d_state)``, the "S4D-real" init
  (Gu et al., 2022): :math:`A_{log}[c, n] = \log(n + 1)`, so :math:`A = -e^{A_{log}} =
  -(1, 2, \dots, d_{state})` on every channel. Deterministic.

Reference: state-spaces/mamba ``mamba_ssm/modules/mamba_simple.py`` (``Mamba.__init__``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

from initlab.errors import ConfigError, ShapeError
from initlab.schemes.base import Scheme, ValueStats, Weight, check_positive, register

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["MambaDtBias", "S4DRealLog"]

_QUADRATURE_POINTS = 4096  # midpoint rule over u: the moments to ~1e-8, far below any test's


def _inverse_softplus(step: float) -> float:
    return step + math.log(-math.expm1(-step))


@register()
@dataclasses.dataclass(frozen=True)
class MambaDtBias(Scheme):
    r"""Gu & Dao (2023): Mamba's ``dt_proj.bias``, :math:`\operatorname{softplus}^{-1}` of a
    log-uniform step, so that :math:`\operatorname{softplus}(b) = \Delta`:

    .. math::

        b = \Delta + \log(-\operatorname{expm1}(-\Delta)),\quad
        \Delta = \max(e^{U(\log\Delta_{min}, \log\Delta_{max})}, \Delta_{floor}).

    Drawn in float32 on the tensor's device, as Mamba does.

    Args:
        dt_min: the smallest step :math:`\Delta_{min}` (Mamba: 0.001).
        dt_max: the largest step :math:`\Delta_{max}` (Mamba: 0.1).
        dt_init_floor: the floor :math:`\Delta` is clamped to (Mamba: 1e-4).

    Example:
        >>> MambaDtBias().sample((4,))  # softplus of it lies in [0.001, 0.1]

    Reference: state-spaces/mamba ``mamba_ssm/modules/mamba_simple.py`` (``Mamba.__init__``).
    """

    name = "mamba_dt_bias"
    formula = "w = softplus^-1(max(exp(U(log dt_min, log dt_max)), dt_init_floor))"
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4

    def __post_init__(self) -> None:
        check_positive(self.name, "dt_min", self.dt_min)
        check_positive(self.name, "dt_max", self.dt_max)
        check_positive(self.name, "dt_init_floor", self.dt_init_floor, allow_zero=True)
        if self.dt_min > self.dt_max:
            raise ConfigError(
                f"{self.name}: needs dt_min <= dt_max, got dt_min={self.dt_min!r}, "
                f"dt_max={self.dt_max!r}."
            )

    def _stats(self, weight: Weight) -> ValueStats:
        low, high = math.log(self.dt_min), math.log(self.dt_max)
        values = [
            _inverse_softplus(
                max(math.exp(low + (i + 0.5) / _QUADRATURE_POINTS * (high - low)),
                    self.dt_init_floor)
            )
            for i in range(_QUADRATURE_POINTS)
        ]  # fmt: skip
        mean = math.fsum(values) / len(values)
        variance = math.fsum((v - mean) ** 2 for v in values) / len(values)
        ends = [_inverse_softplus(max(self.dt_min, self.dt_init_floor)),
                _inverse_softplus(max(self.dt_max, self.dt_init_floor))]  # fmt: skip
        return ValueStats(mean, math.sqrt(variance), max(abs(end) for end in ends))

    def _fill(
        self, tensor: torch.Tensor, generator: torch.Generator | None, weight: Weight
    ) -> torch.Tensor:
        import torch

        # As Mamba: drawn in float32 on the tensor's device, then copied in.
        u = torch.rand(weight.shape, generator=generator, device=tensor.device)
        low, high = math.log(self.dt_min), math.log(self.dt_max)
        step = torch.exp(u * (high - low) + low).clamp(min=self.dt_init_floor)
        return tensor.copy_(step + torch.log(-torch.expm1(-step)))

    def _array(self, weight: Weight, rng: np.random.Generator, dtype: Any) -> np.ndarray[Any, Any]:
        import numpy as np

        low, high = math.log(self.dt_min), math.log(self.dt_max)
        step = np.maximum(np.exp(rng.uniform(size=weight.shape) * (high - low) + low),
                          self.dt_init_floor)  # fmt: skip
        return (step + np.log(-np.expm1(-step))).astype(dtype, copy=False)


@register()
@dataclasses.dataclass(frozen=True)
class S4DRealLog(Scheme):
    r"""Gu, Gupta, Goel & Ré (2022): the S4D-real ``A_log`` of a ``(channels, d_state)`` tensor,

    .. math::

        A_{log}[c, n] = \log(n + 1),

    so :math:`A = -\exp(A_{log})` is :math:`-(1, \dots, d_{state})` on every channel.
    Deterministic (no draw). Mamba's ``A_log`` (Gu & Dao, 2023).

    Reference: "On the Parameterization and Initialization of Diagonal State Space Models";
    state-spaces/mamba ``mamba_ssm/modules/mamba_simple.py``.

    Raises:
        ShapeError: a tensor that is not 2-D (Mamba-2's per-head ``A_log`` is 1-D and drawn
            as :math:`\log U(1, 16)`: a different law).
    """

    name = "s4d_real_log"
    formula = "w[c, n] = log(n + 1)"

    def _check(self, weight: Weight) -> None:
        if len(weight.shape) != 2:
            raise ShapeError(
                f"{self.name} fills a (channels, d_state) A_log, got shape {weight.shape}. "
                "Mamba-2's 1-D per-head A_log is log U(1, 16): use a rule of its own."
            )

    def _stats(self, weight: Weight) -> ValueStats:
        states = weight.shape[1]
        logs = [math.log(n) for n in range(1, states + 1)]
        mean = math.fsum(logs) / states if states else 0.0
        variance = math.fsum((v - mean) ** 2 for v in logs) / states if states else 0.0
        return ValueStats(mean, math.sqrt(variance), logs[-1] if logs else 0.0)

    def _fill(
        self, tensor: torch.Tensor, generator: torch.Generator | None, weight: Weight
    ) -> torch.Tensor:
        import torch

        states = torch.arange(1, weight.shape[1] + 1, dtype=torch.float32, device=tensor.device)
        return tensor.copy_(torch.log(states).expand(weight.shape))

    def _array(self, weight: Weight, rng: np.random.Generator, dtype: Any) -> np.ndarray[Any, Any]:
        import numpy as np

        logs = np.log(np.arange(1, weight.shape[1] + 1, dtype="float64"))
        return np.broadcast_to(logs, weight.shape).astype(dtype)
