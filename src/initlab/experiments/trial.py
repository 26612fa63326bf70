"""One configuration, one seed: build, initialize, diagnose at init, train, record.

This is the unit of work of every sweep and of the demo. It knows nothing of Optuna: it takes
the configuration as a dict and returns a :class:`TrialOutcome` of plain values.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from initlab.doctor import DoctorReport, doctor
from initlab.doctor.finding import trend
from initlab.errors import ConfigError, UnknownNameError, did_you_mean
from initlab.experiments.inits import init_by_name
from initlab.gains import ACTIVATIONS, find_activation
from initlab.progress import quiet
from initlab.train import (
    MLP,
    Augment,
    Dataset,
    EpochRecord,
    Penalty,
    SmallCNN,
    TrainConfig,
    fit,
    load_dataset,
    schedule,
)
from initlab.train.models import activation
from initlab.train.schedule import SCHEDULES

__all__ = [
    "OUTCOME_ATTRIBUTE",
    "SWEEP_SCHEDULES",
    "SWEEP_TASKS",
    "SweepTask",
    "TrialOutcome",
    "check_activation",
    "check_schedule",
    "run_configuration",
]

OUTCOME_ATTRIBUTE = "outcome"  # the Optuna user attribute holding a trial's TrialOutcome


@dataclass(frozen=True)
class SweepTask:
    """A dataset and a model family: ``digits-mlp``, ``digits-cnn``, ``wine-mlp``...

    Attributes:
        name: the task's name.
        dataset: a built-in dataset (:func:`initlab.train.load_dataset`).
        model: ``mlp`` or ``cnn``.
    """

    name: str
    dataset: str
    model: str

    def load(self) -> Dataset:
        """The dataset, split with a fixed seed so every trial sees the same split."""
        return load_dataset(self.dataset, seed=0)

    def build(self, config: dict[str, Any], data: Dataset) -> nn.Module:
        """The model for ``config`` (depth, width, activation, dropout, norm)."""
        if self.model == "cnn":
            if not data.is_image:
                raise ConfigError(f"Task {self.name!r}: a CNN needs image data.")
            channels, height, _ = data.input_shape
            return SmallCNN(channels, data.output_size, image_size=height,
                            activation=str(config["activation"]),
                            norm=config.get("norm"),
                            dropout=float(config["dropout"]))  # fmt: skip
        return MLP(
            data.in_features,
            data.output_size,
            depth=int(config["depth"]),
            width=int(config["width"]),
            activation=str(config["activation"]),
            dropout=float(config["dropout"]),
            norm=config.get("norm"),
        )


SWEEP_TASKS: dict[str, SweepTask] = {
    task.name: task
    for task in (
        SweepTask("digits-mlp", "digits", "mlp"),
        SweepTask("digits-cnn", "digits", "cnn"),
        SweepTask("breast-cancer-mlp", "breast_cancer", "mlp"),
        SweepTask("wine-mlp", "wine", "mlp"),
    )
}


def sweep_task(name: str) -> SweepTask:
    """The task called ``name``."""
    if name not in SWEEP_TASKS:
        raise UnknownNameError(did_you_mean("task", name, SWEEP_TASKS))
    return SWEEP_TASKS[name]


@dataclass(frozen=True)
class TrialOutcome:
    """What one run produced, as plain values (stored as one user attribute of the trial,
    :data:`OUTCOME_ATTRIBUTE`)."""

    doctor_healthy: bool
    doctor_findings: str
    doctor_severity: str
    doctor_forward_trend: float | None
    doctor_gradient_trend: float | None
    doctor_jacobian_mean_square: float | None
    best_val_accuracy: float
    final_val_accuracy: float
    test_accuracy: float | None
    final_train_loss: float | None
    diverged: bool
    epochs_run: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)

    def attributes(self) -> dict[str, Any]:
        """The outcome as JSON-friendly user attributes."""
        return dict(self.__dict__)


def _schedule(name: str, epochs: int) -> Any:
    if name == "step":
        return schedule("step_decay", rate=0.5, step=max(1, epochs // 3))
    if name == "cosine":
        return schedule("warmup_cosine", warmup_epochs=min(1.0, epochs / 10))
    if name == "exponential":
        return schedule("exponential", gamma=0.9)
    return schedule(name)


SWEEP_SCHEDULES = ("constant", "step", "cosine", "exponential", *SCHEDULES)


def check_schedule(name: str) -> None:
    """Raise if ``name`` is not a schedule a sweep can run (the short names or any of
    :data:`initlab.train.schedule.SCHEDULES`)."""
    if name not in SWEEP_SCHEDULES:
        raise UnknownNameError(did_you_mean("schedule", name, SWEEP_SCHEDULES))
    _schedule(name, epochs=10)


def check_activation(name: str) -> None:
    """Raise if ``name`` is not an activation the sweep's models can use."""
    if find_activation(name) is None:
        raise UnknownNameError(did_you_mean("activation", name, ACTIVATIONS))
    activation(name)


def train_config(
    config: dict[str, Any], *, epochs: int, batch_size: int, seed: int
) -> TrainConfig:
    """The :class:`TrainConfig` of a sweep configuration."""
    penalties: tuple[Penalty, ...] = ()
    if float(config.get("l1", 0.0)) or float(config.get("l2", 0.0)):
        penalties = (Penalty(l1=float(config.get("l1", 0.0)), l2=float(config.get("l2", 0.0))),)
    clip = config.get("clip")
    return TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        optimizer=str(config.get("optimizer", "sgd")),  # type: ignore[arg-type]
        lr=float(config["lr"]),
        momentum=float(config.get("momentum", 0.9)),
        weight_decay=float(config.get("weight_decay", 0.0)),
        penalties=penalties,
        schedule=_schedule(str(config.get("schedule", "constant")), epochs),
        clip_norm=None if clip is None else float(clip),
        augment=Augment(translate=0.1, rotate=10.0) if config.get("augment") else None,
        seed=seed,
        device="cpu",
    )


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _doctor_summary(model: nn.Module, data: Dataset, seed: int) -> dict[str, Any]:
    batch = data.train.x[:256]
    target = data.train.y[:256]
    loss = nn.functional.cross_entropy if data.task == "classification" else nn.functional.mse_loss
    report = doctor(model, batch, loss, target, seed=seed, progress=False)
    layers = {w.layer for w in report.weights}
    records = [r for r in report.records if r.name in layers]
    forward = trend([r.forward["std"] for r in records])[1] if records else None
    grads = [r.grad_std for r in records if r.grad_std is not None]
    backward = trend(list(reversed(grads)))[1] if len(grads) == len(records) and grads else None
    jacobian = report.jacobian.mean_square if report.jacobian else None
    return {
        "doctor_healthy": report.healthy,
        "doctor_findings": ",".join(f.code for f in report.findings if f.severity != "info"),
        "doctor_severity": _worst_severity(report),
        "doctor_forward_trend": _finite_or_none(forward),
        "doctor_gradient_trend": _finite_or_none(backward),
        "doctor_jacobian_mean_square": _finite_or_none(jacobian),
    }


def _worst_severity(report: DoctorReport) -> str:
    """``critical``, ``warning``, or ``healthy`` when the doctor found neither."""
    severities = {finding.severity for finding in report.findings}
    return next((s for s in ("critical", "warning") if s in severities), "healthy")


def _row(record: EpochRecord) -> dict[str, Any]:
    keep = ("epoch", "train_loss", "penalty", "train_accuracy", "val_loss", "val_accuracy", "lr",
            "grad_norm", "clip_fraction", "seconds")  # fmt: skip
    return {k: _finite_or_none(getattr(record, k)) if k != "epoch" else record.epoch for k in keep}


def run_configuration(
    config: dict[str, Any],
    task: SweepTask,
    data: Dataset,
    *,
    seed: int,
    epochs: int,
    batch_size: int,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrialOutcome:
    """Build, initialize (``config["init"]``), diagnose and train one configuration."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = task.build(config, data)
    with quiet():  # the caller shows a bar of trials; LSUV's own would garble it
        init_by_name(model, str(config["init"]), seed=seed, batch=data.train.x[:256])
    summary = _doctor_summary(model, data, seed)
    settings = train_config(config, epochs=epochs, batch_size=batch_size, seed=seed)
    history = fit(model, data, settings, on_epoch=on_epoch, progress=False)
    accuracies = [r.val_accuracy for r in history.epochs if r.val_accuracy is not None]
    return TrialOutcome(
        **summary,
        best_val_accuracy=max(accuracies, default=0.0),
        final_val_accuracy=accuracies[-1] if accuracies else 0.0,
        test_accuracy=history.test_accuracy,  # fit evaluates the test split once, at the end
        final_train_loss=_finite_or_none(history.final.train_loss) if history.epochs else None,
        diverged=history.diverged,
        epochs_run=len(history.epochs),
        seconds=time.perf_counter() - start,
        history=[_row(r) for r in history.epochs],
    )
