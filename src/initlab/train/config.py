"""`TrainConfig`: every practice of one training run, as one frozen, validated value."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from initlab.errors import ConfigError, UnknownNameError, did_you_mean
from initlab.plan.rules import Rule
from initlab.train.augment import Augment
from initlab.train.regularize import (
    DECAY_RULES,
    Penalty,
    as_rules,
    decay_split,
    parameter_groups,
    refuse_block_rules,
)
from initlab.train.schedule import ConstantRate, Monitor, Schedule, check_monitor

if TYPE_CHECKING:
    from initlab.parametrize import Parametrization

__all__ = ["OPTIMIZERS", "EarlyStopping", "OptimizerName", "Precision", "TrainConfig"]

OptimizerName = Literal["sgd", "adam", "adamw"]
Precision = Literal["float32", "bfloat16"]
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "adamw")
# The optimizer family a parametrization's learning rates are derived for
# (:func:`initlab.parametrize.parametrize`'s ``optimizer``).
_FAMILIES: dict[str, str] = {"sgd": "sgd", "adam": "adam", "adamw": "adam"}


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    Losses must go down, accuracies up. With ``restore_best`` the model ends with the weights
    of its best epoch (a copy is kept on the device at every improvement).
    """

    monitor: Monitor = "val_loss"
    patience: int = 10
    min_delta: float = 0.0
    restore_best: bool = True

    def __post_init__(self) -> None:
        check_monitor("EarlyStopping", self.monitor)
        if isinstance(self.patience, bool) or self.patience < 1:
            raise ConfigError(f"EarlyStopping: patience must be >= 1, got {self.patience!r}.")
        if not self.min_delta >= 0:
            raise ConfigError(f"EarlyStopping: min_delta must be >= 0, got {self.min_delta!r}.")


def _positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"TrainConfig: {name} must be an int >= 1, got {value!r}.")


def _optional_positive(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ConfigError(
            f"TrainConfig: {name} must be a finite number > 0 or None (off), got {value!r}."
        )


@dataclass(frozen=True)
class TrainConfig:
    """How :func:`~initlab.train.fit` trains.

    Example:
        >>> TrainConfig(epochs=30, optimizer="adamw", lr=1e-3, weight_decay=0.05,
        ...             schedule=WarmupCosine(warmup_epochs=2), clip_norm=1.0)

    Attributes:
        epochs: passes over the train split.
        batch_size: examples per optimizer step (the last batch may be smaller).
        optimizer: ``sgd`` (with ``momentum``/``nesterov``), ``adam`` or ``adamw``.
        lr: the base learning rate :math:`\\eta_0`.
        momentum: SGD momentum.
        nesterov: Nesterov momentum for SGD.
        betas: Adam/AdamW moment decay rates.
        weight_decay: the optimizer's ``weight_decay`` for the ``decay_rules`` group (decoupled
            for AdamW, coupled for SGD and Adam); the other parameters get 0.
        decay_rules: which parameters decay (default: Linear/Conv weights).
        penalties: L1/L2 penalties added to the loss (:class:`~initlab.train.Penalty`).
        schedule: the learning-rate schedule (:mod:`initlab.train.schedule`).
        clip_norm: clip the global L2 norm of the gradients to this (``clip_grad_norm_``).
        clip_value: clip every gradient element to ``±clip_value`` (``clip_grad_value_``);
            with both, values are clipped first.
        augment: image augmentation of training batches.
        early_stopping: stop on a stalled metric.
        seed: the one seed of the data order, dropout and augmentation.
        device: ``auto`` (CUDA if available), ``cpu``, ``cuda``, ``cuda:1``...
        precision: ``float32`` or ``bfloat16`` autocast for forward and loss.
        eval_batch_size: batch size of the evaluation passes.
        drop_last: drop the last, smaller batch of each epoch.
    """

    epochs: int = 20
    batch_size: int = 64
    optimizer: OptimizerName = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    decay_rules: Rule | tuple[Rule, ...] = DECAY_RULES
    penalties: Penalty | tuple[Penalty, ...] = ()
    schedule: Schedule = field(default_factory=ConstantRate)
    clip_norm: float | None = None
    clip_value: float | None = None
    augment: Augment | None = None
    early_stopping: EarlyStopping | None = None
    seed: int = 0
    device: str = "auto"
    precision: Precision = "float32"
    eval_batch_size: int = 1024
    drop_last: bool = False

    def __post_init__(self) -> None:
        _positive_int("epochs", self.epochs)
        _positive_int("batch_size", self.batch_size)
        _positive_int("eval_batch_size", self.eval_batch_size)
        if self.optimizer not in OPTIMIZERS:
            raise UnknownNameError(
                "TrainConfig: " + did_you_mean("optimizer", self.optimizer, OPTIMIZERS)
            )
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"TrainConfig: lr must be a finite number > 0, got {self.lr!r}.")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"TrainConfig: momentum must be in [0, 1), got {self.momentum!r}.")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ConfigError("TrainConfig: nesterov=True needs optimizer='sgd' and momentum > 0.")
        if not all(0.0 <= b < 1.0 for b in self.betas) or len(self.betas) != 2:
            raise ConfigError(
                f"TrainConfig: betas must be two numbers in [0, 1), got {self.betas!r}."
            )
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(
                f"TrainConfig: weight_decay must be a finite number >= 0, got "
                f"{self.weight_decay!r}."
            )
        for decay_rule in self.decay_rule_list:
            if not isinstance(decay_rule, Rule):
                raise ConfigError(
                    f"TrainConfig: decay_rules must be Rule values (initlab.rule(...)), got "
                    f"{decay_rule!r}."
                )
        refuse_block_rules(self.decay_rule_list, "TrainConfig: decay_rules")
        for penalty in self.penalty_list:
            if not isinstance(penalty, Penalty):
                raise ConfigError(
                    f"TrainConfig: penalties must be Penalty values, got {penalty!r}."
                )
        if not isinstance(self.schedule, Schedule):
            raise ConfigError(
                f"TrainConfig: schedule must be a Schedule (e.g. StepDecay(0.5, 10) or "
                f"schedule('warmup_cosine')), got {self.schedule!r}."
            )
        _optional_positive("clip_norm", self.clip_norm)
        _optional_positive("clip_value", self.clip_value)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"TrainConfig: seed must be an int >= 0, got {self.seed!r}.")
        if self.precision not in ("float32", "bfloat16"):
            raise UnknownNameError(
                "TrainConfig: "
                + did_you_mean("precision", self.precision, ["float32", "bfloat16"])
            )

    def build_optimizer(
        self, model: nn.Module, parametrization: Parametrization | None = None
    ) -> torch.optim.Optimizer:
        """The configured torch optimizer for ``model``'s parameters.

        With ``weight_decay > 0`` the parameters form two groups, decay (``decay_rules``) and
        no-decay; with 0, one group (each group costs a kernel launch per step). Groups carry
        ``param_names``. The multi-tensor (``foreach``) implementation is used on every device.

        With a ``parametrization`` (:func:`initlab.parametrize.parametrize`), its groups (one
        per learning-rate and weight-decay multiplier) are each split the same way, so that a
        parameter :math:`p` with multipliers :math:`m_p^{lr}, m_p^{wd}` gets

        .. math::

            \\eta_p = \\eta_0\\, m_p^{lr},\\qquad
            \\lambda_p = \\begin{cases} \\lambda\\, m_p^{wd} & p \\in \\text{decay\\_rules}
            \\\\ 0 & \\text{otherwise} \\end{cases}

        and each group carries its ``lr_multiplier`` (schedules scale each group's rate and
        the History logs :math:`\\eta_g / m_g`, the base rate).

        Raises:
            ConfigError: see :meth:`check_parametrization`.
        """
        if parametrization is not None:
            self.check_parametrization(model, parametrization)
            groups = self._parametrized_groups(model, parametrization)
        elif self.weight_decay == 0:
            groups = [{"params": list(model.named_parameters()), "weight_decay": 0.0}]
        else:
            groups = parameter_groups(model, self.weight_decay, self.decay_rule_list)
        if self.optimizer == "sgd":
            return torch.optim.SGD(
                groups, lr=self.lr, momentum=self.momentum, nesterov=self.nesterov, foreach=True
            )
        optimizer_class = torch.optim.Adam if self.optimizer == "adam" else torch.optim.AdamW
        return optimizer_class(groups, lr=self.lr, betas=self.betas, foreach=True)

    def check_parametrization(self, model: nn.Module, parametrization: Parametrization) -> None:
        """Raise unless ``parametrization`` was resolved for ``model`` and this optimizer.

        Raises:
            ConfigError: the optimizer's family (``adam`` for Adam/AdamW, ``sgd``) is not the
                one the parametrization's learning rates are for, or the parametrization holds
                other parameters than ``model`` (another model, or a copy of it).
        """
        family = _FAMILIES[self.optimizer]
        if parametrization.optimizer != family:
            fitting = " or ".join(
                repr(name)
                for name, value in _FAMILIES.items()
                if value == parametrization.optimizer
            )
            raise ConfigError(
                f"TrainConfig: optimizer={self.optimizer!r} does not match parametrization "
                f"{parametrization.name!r}, whose learning rates are for "
                f"optimizer={parametrization.optimizer!r}; train with optimizer={fitting} or "
                f"call parametrize(..., optimizer={family!r})."
            )
        own = dict(model.named_parameters())
        held = [row.name for row in parametrization.rows]
        missing = [name for name in own if name not in held]
        foreign = [name for name in held if name not in own]
        if missing or foreign:
            raise ConfigError(
                f"TrainConfig: parametrization {parametrization.name!r} was resolved for "
                f"another model: this model's parameters {missing[:5]} are not in it and its "
                f"{foreign[:5]} are not in this model; call parametrize() on the model you "
                f"train."
            )
        copies = [name for name in held if parametrization.parameters.get(name) is not own[name]]
        if copies:
            raise ConfigError(
                f"TrainConfig: parametrization {parametrization.name!r} holds other tensors "
                f"than this model for {copies[:5]} (it was resolved for another instance, a "
                f"copy for one); call parametrize() on the model you train."
            )

    def _parametrized_groups(
        self, model: nn.Module, parametrization: Parametrization
    ) -> list[dict[str, Any]]:
        """``parametrization``'s groups, each split into decay and no-decay parameters."""
        decay = set(decay_split(model, self.decay_rule_list)[0]) if self.weight_decay else set()
        groups = []
        for group in parametrization.param_groups(self.lr, self.weight_decay):
            named = list(zip(group["param_names"], group["params"], strict=True))
            for decays in (True, False):
                chosen = [(name, p) for name, p in named if (name in decay) == decays]
                if chosen:
                    groups.append({
                        "params": chosen,
                        "lr": group["lr"],
                        "lr_multiplier": group["lr_multiplier"],
                        "weight_decay": group["weight_decay"] if decays else 0.0,
                    })  # fmt: skip
        return groups

    @property
    def penalty_list(self) -> tuple[Penalty, ...]:
        """The penalties as a tuple (``penalties`` keeps what was given: one or several)."""
        return (self.penalties,) if isinstance(self.penalties, Penalty) else tuple(self.penalties)

    @property
    def decay_rule_list(self) -> tuple[Rule, ...]:
        """The decay rules as a tuple (``decay_rules`` keeps what was given: one or several)."""
        return as_rules(self.decay_rules)

    @property
    def monitors(self) -> tuple[str, ...]:
        """Metrics something in this config reads every epoch (early stopping, plateau)."""
        found: list[str] = []
        if self.early_stopping is not None:
            found.append(self.early_stopping.monitor)
        monitor = getattr(self.schedule, "monitor", None)
        if isinstance(monitor, str):
            found.append(monitor)
        return tuple(found)
