"""Learning-rate schedules as frozen descriptions, built on ``torch.optim.lr_scheduler``.

A schedule is a value (it can be compared, printed, swept); :meth:`Schedule.build` makes the
torch scheduler for one optimizer once the run's length is known. ``interval`` says when
:func:`~initlab.train.fit` steps it: after every optimizer step or after every epoch.

With :math:`\\eta_0` the configured learning rate, :math:`e` the epoch (from 0) and :math:`t`
the optimizer step (from 0) out of :math:`T`:

================  =============================================================  ========
schedule          learning rate                                                  interval
================  =============================================================  ========
ConstantRate      :math:`\\eta_0`                                                 --
StepDecay         :math:`\\eta_0 \\cdot r^{\\lfloor (1 + e) / s \\rfloor}`           epoch
Exponential       :math:`\\eta_0 \\cdot \\gamma^{e}`                                 epoch
WarmupCosine      linear from :math:`f \\eta_0` to :math:`\\eta_0` over :math:`W` steps,   step
                  then :math:`\\eta_{min} + (\\eta_0 - \\eta_{min})(1 + \\cos(\\pi
                  (t - W)/(T - W)))/2`
OneCycle          torch's ``OneCycleLR`` (Smith & Topin, 2019)                   step
ReduceOnPlateau   :math:`\\eta \\leftarrow \\eta \\cdot` factor after ``patience``     epoch
                  epochs without improvement of the monitored metric
================  =============================================================  ========

StepDecay is the classic Keras-tutorial form: with :math:`s = 10` the first drop comes after
epoch index 8 (the 9th epoch), one epoch earlier than ``torch.optim.lr_scheduler.StepLR``.

Per-parameter learning rates (:func:`initlab.parametrize.parametrize`): a group that carries an
``lr_multiplier`` :math:`m_g` starts at :math:`m_g \\eta_0` and every schedule keeps that ratio,
so the table holds with :math:`\\eta_0` and every absolute rate in it (``min_lr``, OneCycle's
``max_lr``) multiplied by :math:`m_g`: the multiplicative schedules (StepDecay, Exponential,
warmup, plateau factors) keep it by construction, and ``min_lr``/``max_lr`` are scaled per group.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from torch.optim import Optimizer, lr_scheduler

from initlab.errors import ConfigError, UnknownNameError, did_you_mean

__all__ = [
    "SCHEDULES",
    "ConstantRate",
    "Exponential",
    "Interval",
    "Monitor",
    "OneCycle",
    "ReduceOnPlateau",
    "Schedule",
    "Scheduler",
    "StepDecay",
    "WarmupCosine",
    "base_rate",
    "rate_multiplier",
    "schedule",
]

Interval = Literal["step", "epoch", "none"]
Monitor = Literal["val_loss", "val_accuracy", "train_loss", "train_accuracy"]
MONITORS: tuple[str, ...] = ("val_loss", "val_accuracy", "train_loss", "train_accuracy")
Scheduler = lr_scheduler.LRScheduler | lr_scheduler.ReduceLROnPlateau


def _check(name: str, field: str, value: float, low: float, high: float = math.inf) -> None:
    if isinstance(value, bool) or not (low <= value <= high) or math.isnan(value):
        bounds = f"in [{low}, {high}]" if math.isfinite(high) else f">= {low}"
        raise ConfigError(f"{name}: {field} must be {bounds}, got {value!r}.")


def rate_multiplier(group: Mapping[str, Any]) -> float:
    """A parameter group's learning-rate multiplier :math:`m_g` (1 when it carries none)."""
    return float(group.get("lr_multiplier", 1.0))


def base_rate(group: Mapping[str, Any]) -> float:
    """The base learning rate a group's rate stands for: :math:`\\eta_g / m_g`."""
    return float(group["lr"]) / rate_multiplier(group)


def check_monitor(owner: str, monitor: str) -> None:
    """Raise unless ``monitor`` is a metric the loop records every epoch."""
    if monitor not in MONITORS:
        raise UnknownNameError(f"{owner}: " + did_you_mean("monitor", monitor, MONITORS))


class Schedule(ABC):
    """Base of the schedules: a frozen description with a ``build`` method."""

    name: ClassVar[str]
    interval: ClassVar[Interval]

    @abstractmethod
    def build(
        self, optimizer: Optimizer, *, epochs: int, steps_per_epoch: int
    ) -> Scheduler | None:
        """The torch scheduler for ``optimizer`` in a run of ``epochs`` x ``steps_per_epoch``."""


@dataclass(frozen=True)
class ConstantRate(Schedule):
    """The learning rate stays :math:`\\eta_0`."""

    name: ClassVar[str] = "constant"
    interval: ClassVar[Interval] = "none"

    def build(self, optimizer: Optimizer, *, epochs: int, steps_per_epoch: int) -> None:
        return None


@dataclass(frozen=True)
class _StepDecayFactor:
    # A picklable lambda for LambdaLR (its state_dict keeps callable objects).
    rate: float
    step: int

    def __call__(self, epoch: int) -> float:
        return float(self.rate ** math.floor((1 + epoch) / self.step))


@dataclass(frozen=True)
class _CosineFactor:
    # LambdaLR's factor for a cosine from 1 to ``floor`` over ``steps`` (picklable).
    floor: float
    steps: int

    def __call__(self, step: int) -> float:
        return self.floor + (1.0 - self.floor) * (1.0 + math.cos(math.pi * step / self.steps)) / 2


@dataclass(frozen=True)
class StepDecay(Schedule):
    """:math:`\\eta_e = \\eta_0 \\cdot \\text{rate}^{\\lfloor (1 + e) / \\text{step} \\rfloor}`.

    Example:
        >>> StepDecay(rate=0.5, step=10)   # halve every 10 epochs (first after epoch 8)
    """

    rate: float = 0.5
    step: int = 10
    name: ClassVar[str] = "step_decay"
    interval: ClassVar[Interval] = "epoch"

    def __post_init__(self) -> None:
        _check("StepDecay", "rate", self.rate, 0.0, 1.0)
        if isinstance(self.step, bool) or not isinstance(self.step, int) or self.step < 1:
            raise ConfigError(f"StepDecay: step must be an int >= 1, got {self.step!r}.")

    def build(
        self, optimizer: Optimizer, *, epochs: int, steps_per_epoch: int
    ) -> lr_scheduler.LambdaLR:
        return lr_scheduler.LambdaLR(optimizer, _StepDecayFactor(self.rate, self.step))


@dataclass(frozen=True)
class Exponential(Schedule):
    """:math:`\\eta_e = \\eta_0 \\cdot \\gamma^e` (``ExponentialLR``)."""

    gamma: float = 0.95
    name: ClassVar[str] = "exponential"
    interval: ClassVar[Interval] = "epoch"

    def __post_init__(self) -> None:
        _check("Exponential", "gamma", self.gamma, 0.0, 1.0)

    def build(
        self, optimizer: Optimizer, *, epochs: int, steps_per_epoch: int
    ) -> lr_scheduler.ExponentialLR:
        return lr_scheduler.ExponentialLR(optimizer, self.gamma)


@dataclass(frozen=True)
class WarmupCosine(Schedule):
    """Linear warmup over ``warmup_epochs`` (counted in steps), then cosine decay to ``min_lr``.

    Built as ``SequentialLR(LinearLR(start_factor), CosineAnnealingLR(T - W, min_lr))`` with
    :math:`W` = round(``warmup_epochs`` x steps per epoch); without warmup, cosine alone. A group
    with learning-rate multiplier :math:`m_g` decays to :math:`m_g \\cdot` ``min_lr``; when
    that differs between groups (torch's cosine takes one ``eta_min``), the cosine is the closed
    form :math:`\\eta_g(t) = m_g(\\eta_{min} + (\\eta_0 - \\eta_{min})(1 + \\cos(\\pi t /
    (T - W)))/2)` as a ``LambdaLR``.

    Example:
        >>> WarmupCosine(warmup_epochs=2, min_lr=1e-4)
    """

    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    start_factor: float = 0.01
    name: ClassVar[str] = "warmup_cosine"
    interval: ClassVar[Interval] = "step"

    def __post_init__(self) -> None:
        _check("WarmupCosine", "warmup_epochs", self.warmup_epochs, 0.0)
        _check("WarmupCosine", "min_lr", self.min_lr, 0.0)
        _check("WarmupCosine", "start_factor", self.start_factor, 1e-12, 1.0)

    def build(self, optimizer: Optimizer, *, epochs: int, steps_per_epoch: int) -> Scheduler:
        total = epochs * steps_per_epoch
        warmup = round(self.warmup_epochs * steps_per_epoch)
        if warmup >= total:
            raise ConfigError(
                f"WarmupCosine: warmup_epochs={self.warmup_epochs} covers the whole run of "
                f"{epochs} epochs; make it shorter than the run."
            )
        cosine = self._cosine(optimizer, total - warmup)
        if warmup == 0:
            return cosine
        linear = lr_scheduler.LinearLR(
            optimizer, start_factor=self.start_factor, end_factor=1.0, total_iters=warmup
        )
        return lr_scheduler.SequentialLR(optimizer, [linear, cosine], milestones=[warmup])

    def _cosine(self, optimizer: Optimizer, steps: int) -> lr_scheduler.LRScheduler:
        """The cosine part over ``steps``, to ``min_lr`` times each group's multiplier."""
        multipliers = {rate_multiplier(group) for group in optimizer.param_groups}
        if self.min_lr == 0 or multipliers == {1.0}:
            return lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=self.min_lr)
        base = base_rate(optimizer.param_groups[0])
        return lr_scheduler.LambdaLR(optimizer, _CosineFactor(self.min_lr / base, steps))


@dataclass(frozen=True)
class OneCycle(Schedule):
    """torch's ``OneCycleLR`` over the whole run (Smith & Topin, 2019).

    The rate climbs from ``max_lr / div_factor`` to ``max_lr`` (default: the configured lr;
    a group with learning-rate multiplier :math:`m_g` peaks at :math:`m_g \\cdot` ``max_lr``)
    over ``pct_start`` of the steps, then anneals to ``max_lr / (div_factor *
    final_div_factor)``. Momentum is cycled only with ``cycle_momentum=True`` (torch's default
    would silently switch on momentum 0.85-0.95 for plain SGD).
    """

    max_lr: float | None = None
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    anneal_strategy: Literal["cos", "linear"] = "cos"
    cycle_momentum: bool = False
    name: ClassVar[str] = "one_cycle"
    interval: ClassVar[Interval] = "step"

    def __post_init__(self) -> None:
        if self.max_lr is not None:
            _check("OneCycle", "max_lr", self.max_lr, 0.0)
        _check("OneCycle", "pct_start", self.pct_start, 0.0, 1.0)
        _check("OneCycle", "div_factor", self.div_factor, 1.0)
        _check("OneCycle", "final_div_factor", self.final_div_factor, 1.0)
        if self.anneal_strategy not in ("cos", "linear"):
            raise UnknownNameError(
                "OneCycle: "
                + did_you_mean("anneal_strategy", self.anneal_strategy, ["cos", "linear"])
            )

    def build(
        self, optimizer: Optimizer, *, epochs: int, steps_per_epoch: int
    ) -> lr_scheduler.OneCycleLR:
        groups = optimizer.param_groups
        if self.max_lr is None:
            max_lr = [group["lr"] for group in groups]
        else:
            max_lr = [self.max_lr * rate_multiplier(group) for group in groups]
        return lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=max_lr,
            total_steps=epochs * steps_per_epoch,
            pct_start=self.pct_start,
            anneal_strategy=self.anneal_strategy,
            div_factor=self.div_factor,
            final_div_factor=self.final_div_factor,
            cycle_momentum=self.cycle_momentum,
        )


@dataclass(frozen=True)
class ReduceOnPlateau(Schedule):
    """Multiply the rate by ``factor`` when ``monitor`` stalls for ``patience`` epochs.

    ``ReduceLROnPlateau`` with its mode taken from the metric (min for losses, max for
    accuracies) and torch's relative ``threshold``; a group with learning-rate multiplier
    :math:`m_g` stops at :math:`m_g \\cdot` ``min_lr``.
    """

    monitor: Monitor = "val_loss"
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    cooldown: int = 0
    min_lr: float = 0.0
    name: ClassVar[str] = "reduce_on_plateau"
    interval: ClassVar[Interval] = "epoch"

    def __post_init__(self) -> None:
        check_monitor("ReduceOnPlateau", self.monitor)
        _check("ReduceOnPlateau", "factor", self.factor, 0.0, 1.0 - 1e-12)
        _check("ReduceOnPlateau", "patience", self.patience, 0)
        _check("ReduceOnPlateau", "threshold", self.threshold, 0.0)
        _check("ReduceOnPlateau", "cooldown", self.cooldown, 0)
        _check("ReduceOnPlateau", "min_lr", self.min_lr, 0.0)

    def build(
        self, optimizer: Optimizer, *, epochs: int, steps_per_epoch: int
    ) -> lr_scheduler.ReduceLROnPlateau:
        return lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="max" if self.monitor.endswith("accuracy") else "min",
            factor=self.factor,
            patience=self.patience,
            threshold=self.threshold,
            cooldown=self.cooldown,
            min_lr=[self.min_lr * rate_multiplier(group) for group in optimizer.param_groups],
        )


SCHEDULES: dict[str, type[Schedule]] = {
    cls.name: cls
    for cls in (ConstantRate, StepDecay, Exponential, WarmupCosine, OneCycle, ReduceOnPlateau)
}


def schedule(name: str, **params: Any) -> Schedule:
    """A schedule by name, e.g. ``schedule("step_decay", rate=0.5, step=10)``.

    Names: ``constant``, ``step_decay``, ``exponential``, ``warmup_cosine``, ``one_cycle``,
    ``reduce_on_plateau``.
    """
    if name not in SCHEDULES:
        raise UnknownNameError(did_you_mean("schedule", name, SCHEDULES))
    try:
        return SCHEDULES[name](**params)
    except TypeError as error:
        raise ConfigError(f"schedule {name!r}: {error}.") from None
