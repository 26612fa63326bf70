"""`fit`: one small, fast, deterministic training loop that applies a :class:`TrainConfig`.

What makes it fast on small models (where Python overhead, not arithmetic, sets the pace):
the data live on the device as tensors and batches are ``index_select`` s of one permutation
per epoch (no DataLoader); every per-step number (loss, outputs for accuracy, gradient norms,
clipping flags) stays on the device in a list, and one ``tolist()`` per epoch brings the
epoch's summary to the host (the per-step global gradient norm is one ``_foreach_norm``,
as in ``clip_grad_norm_``); the optimizer uses torch's multi-tensor (``foreach``) kernels;
gradients are reset by setting them to ``None`` directly (what ``zero_grad`` does, without its
wrapping).

What makes it deterministic: the data order, dropout and augmentation draw from streams
derived from ``config.seed`` (``numpy.random.SeedSequence``); the global RNG state is saved
before and restored after the run; on CUDA, cuDNN runs in deterministic mode during the run.
Two runs with the same model weights, data and config give identical histories (on the same
device and thread count).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional

from initlab.errors import ConfigError, ShapeError
from initlab.progress import Steps, steps
from initlab.train.config import EarlyStopping, TrainConfig
from initlab.train.data import Dataset, Split
from initlab.train.history import EpochRecord, History, Status
from initlab.train.regularize import PenaltyTerm
from initlab.train.runtime import autocast_factory, resolve_device, seed_streams, seeded
from initlab.train.schedule import ReduceOnPlateau, base_rate

if TYPE_CHECKING:
    from initlab.parametrize import Parametrization

__all__ = ["evaluate", "fit"]

EpochCallback = Callable[[EpochRecord], None]


def _loss_function(data: Dataset) -> Callable[..., torch.Tensor]:
    return functional.cross_entropy if data.task == "classification" else functional.mse_loss


def evaluate(
    model: nn.Module,
    data: Dataset,
    split: Split,
    *,
    batch_size: int = 1024,
    autocast: Callable[[], Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss and number of correct predictions on ``split``, as device tensors.

    Runs in eval mode without gradients; divide by ``len(split)`` for means.
    """
    context = autocast or contextlib.nullcontext
    loss_fn = _loss_function(data)
    loss_sum = torch.zeros((), device=split.x.device, dtype=torch.float64)
    correct = torch.zeros((), device=split.x.device, dtype=torch.int64)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(split), batch_size):
            x, y = split.x[start : start + batch_size], split.y[start : start + batch_size]
            with context():
                out = model(x)
                loss = loss_fn(out, y, reduction="sum")
            if data.task != "classification":
                loss = loss / y.shape[1]  # mean over targets, summed over examples
            loss_sum += loss
            if data.task == "classification":
                correct += out.argmax(1).eq(y).sum()
    return loss_sum, correct


def _check_fit(model: nn.Module, data: Dataset, config: TrainConfig) -> None:
    if len(data.val) == 0 and any(m.startswith("val_") for m in config.monitors):
        raise ConfigError(
            f"TrainConfig monitors {config.monitors} but dataset {data.name!r} has no val "
            f"split; give it val_fraction > 0 or monitor 'train_loss'."
        )
    if data.task != "classification" and any(m.endswith("accuracy") for m in config.monitors):
        raise ConfigError(
            f"TrainConfig monitors accuracy but {data.name!r} is a regression; monitor a loss."
        )
    if config.augment is not None and config.augment.active and not data.is_image:
        raise ConfigError(
            f"TrainConfig.augment transforms images, but {data.name!r} has inputs of shape "
            f"{data.input_shape}; drop augment= or use image data (n, c, h, w)."
        )
    with torch.no_grad():
        was_training = model.training
        out = model.eval()(data.train.x[:2])
        model.train(was_training)
    expected = (min(2, len(data.train)), data.output_size)
    if tuple(out.shape) != expected:
        raise ShapeError(
            f"The model maps {data.name!r} inputs {tuple(data.train.x[:2].shape)} to "
            f"{tuple(out.shape)}, but the task needs {expected} ({data.output_size} "
            f"{'classes' if data.task == 'classification' else 'targets'}); set the last "
            f"layer's outputs to {data.output_size}."
        )


def fit(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig | None = None,
    *,
    parametrization: Parametrization | None = None,
    on_epoch: EpochCallback | None = None,
    progress: bool | None = None,
) -> History:
    """Train ``model`` on ``data.train`` with every practice ``config`` names.

    Per step: a batch from this epoch's permutation, augmentation (images), forward and loss
    (autocast in bfloat16 if asked), plus the penalty :math:`\\Omega(w)`, backward, the global
    gradient norm :math:`\\lVert g \\rVert_2` (recorded before clipping), clipping by value
    and/or norm, the optimizer step and per-step schedules. Per epoch: the val split in eval
    mode, weight norms, epoch schedules, early stopping. A NaN or infinite loss or gradient
    norm ends the run with ``status="diverged"``; nothing is raised.

    The model is moved to the config's device and trained in place; it is left in eval mode.
    Its initialization is not touched (use :func:`initlab.init_model` first, or a
    parametrization's ``plan.apply(model, seed=...)``).

    With a ``parametrization`` (:func:`initlab.parametrize.parametrize` of this very model, for
    the config's optimizer family) parameter :math:`p` trains at :math:`\\eta_0 m_p^{lr}` with
    weight decay :math:`\\lambda m_p^{wd}` if ``decay_rules`` select it, else 0
    (:meth:`TrainConfig.build_optimizer`); schedules scale every group's rate alike and the
    History's ``lr`` is the base rate :math:`\\eta_0` (times the schedule's factor).

    Example:
        >>> data = load_digits(seed=0)
        >>> model = MLP(64, 10, depth=2, width=256)
        >>> history = fit(model, data, TrainConfig(epochs=10, lr=0.05))
        >>> history.final.val_accuracy
        >>> wide, base = MLP(64, 10, width=1024), MLP(64, 10, width=64)
        >>> mup = parametrize(wide, "mup", base=base, optimizer="adam")
        >>> mup.plan.apply(wide, seed=0)
        >>> fit(wide, data, TrainConfig(optimizer="adam", lr=1e-3), parametrization=mup)

    Args:
        model: any module mapping ``data`` inputs to ``data.output_size`` outputs.
        data: the dataset (moved to the device for the run).
        config: how to train; default ``TrainConfig()``.
        parametrization: per-parameter learning-rate and weight-decay multipliers.
        on_epoch: called with each :class:`EpochRecord` as soon as it is complete.
        progress: a bar of epochs on standard error: ``None`` when it is a terminal (see
            :func:`initlab.progress.set_default`), ``True`` always, ``False`` never.

    Returns:
        the :class:`History`.

    Raises:
        ConfigError: the config does not fit the data (e.g. augmentation on tabular data), or
            the parametrization does not fit the model or the optimizer.
        ShapeError: the model's outputs do not fit the task.
    """
    config = config or TrainConfig()
    device = resolve_device(config.device)
    model.to(device)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    data = data.to(device, dtype)
    _check_fit(model, data, config)
    if parametrization is not None:
        config.check_parametrization(model, parametrization)
    seeds = seed_streams(config.seed)
    with seeded(device, seeds), steps("training", config.epochs, enabled=progress) as bar:
        run = _Run(model, data, config, device, seeds, parametrization)
        return run.run(_counted(on_epoch, bar))


def _counted(on_epoch: EpochCallback | None, bar: Steps) -> EpochCallback | None:
    """``on_epoch``, then the bar advanced and showing the epoch's training loss."""
    if not bar.shown:
        return on_epoch

    def counted(record: EpochRecord) -> None:
        if on_epoch is not None:
            on_epoch(record)
        bar.describe(f"training (loss {record.train_loss:.4g})")
        bar.advance()

    return counted


def _global_norms(parts: list[torch.Tensor]) -> torch.Tensor:
    """Per step :math:`\\sqrt{\\sum_p \\lVert g_p \\rVert^2}` from the per-parameter norms."""
    if len({step.shape for step in parts}) == 1:
        return torch.stack(parts).double().square().sum(1).sqrt()
    return torch.stack([torch.linalg.vector_norm(step.double()) for step in parts])


class _BestEpoch:
    """Early stopping's memory: the best monitored value, its epoch and its weights."""

    def __init__(self, rule: EarlyStopping, model: nn.Module) -> None:
        self.rule, self.model = rule, model
        self.maximize = rule.monitor.endswith("accuracy")
        self.value: float | None = None
        self.epoch: int | None = None
        self.state: dict[str, Any] | None = None
        self.since = 0

    def stop_after(self, record: EpochRecord) -> bool:
        """Take in one epoch; whether patience has run out."""
        value = getattr(record, self.rule.monitor)
        delta = self.rule.min_delta
        if self.value is None or (
            value > self.value + delta if self.maximize else value < self.value - delta
        ):
            self.value, self.epoch, self.since = value, record.epoch, 0
            if self.rule.restore_best:
                self.state = copy.deepcopy(self.model.state_dict())
            return False
        self.since += 1
        return self.since >= self.rule.patience

    def restore(self) -> None:
        """Load the best epoch's weights (when ``restore_best``)."""
        if self.state is not None:
            self.model.load_state_dict(self.state)


@dataclass
class _StepLog:
    """One epoch's per-step tensors, kept on the device until the epoch's summary."""

    losses: list[torch.Tensor] = field(default_factory=list)
    outputs: list[torch.Tensor] = field(default_factory=list)  # logits, or predicted classes
    norms: list[torch.Tensor] = field(default_factory=list)  # global norms (clipping runs)
    norm_parts: list[torch.Tensor] = field(default_factory=list)  # per-parameter norms (others)
    fired: list[torch.Tensor] = field(default_factory=list)
    penalties: list[torch.Tensor] = field(default_factory=list)


@dataclass(frozen=True)
class _EpochTotals:
    """The epoch's numbers as 0-d device tensors (``None``: not measured in this run)."""

    train_loss: torch.Tensor
    penalty: torch.Tensor
    train_accuracy: torch.Tensor
    grad_norm: torch.Tensor
    grad_norm_max: torch.Tensor
    clip_fraction: torch.Tensor
    val_loss: torch.Tensor | None = None
    val_accuracy: torch.Tensor | None = None

    def measured(self) -> dict[str, torch.Tensor]:
        """The numbers that were measured, by name."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) is not None
        }


class _Run:
    """The state of one run; :meth:`step` is the hot loop."""

    def __init__(
        self,
        model: nn.Module,
        data: Dataset,
        config: TrainConfig,
        device: torch.device,
        seeds: dict[str, int],
        parametrization: Parametrization | None = None,
    ) -> None:
        self.model, self.data, self.config, self.device = model, data, config, device
        self.optimizer = config.build_optimizer(model, parametrization)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.names = tuple(n for g in self.optimizer.param_groups for n in g["param_names"])
        self.penalty = PenaltyTerm(model, config.penalty_list) or None
        n = len(data.train)
        self.size = min(config.batch_size, n)
        self.starts = list(range(0, n - self.size + 1 if config.drop_last else n, self.size))
        self.used = min(n, len(self.starts) * self.size)
        sizes = [min(self.size, n - s) for s in self.starts]
        self.batch_sizes = torch.tensor(sizes, dtype=torch.float64, device=device)
        self.scheduler = config.schedule.build(
            self.optimizer, epochs=config.epochs, steps_per_epoch=len(self.starts)
        )
        self.step_scheduler = self.scheduler if config.schedule.interval == "step" else None
        self.order = torch.Generator().manual_seed(seeds["order"])
        self.augment_generator = torch.Generator(device=device).manual_seed(seeds["augment"])
        active = config.augment is not None and config.augment.active
        self.augment = config.augment if active else None
        self.autocast = autocast_factory(config.precision, device)
        self.loss_fn = _loss_function(data)
        self.classify = data.task == "classification"
        self.clipping = config.clip_norm is not None or config.clip_value is not None
        # Keeping outputs for accuracy costs n x classes values; past that, argmax per step.
        self.keep_outputs = n * data.output_size <= 1 << 24
        self.step_index = 0
        self.zero = torch.zeros((), device=device)
        self.step_values: tuple[torch.Tensor, torch.Tensor] = (self.zero, self.zero)

    def epoch(self) -> _EpochTotals:
        """Train one epoch; return its numbers as device tensors."""
        perm = torch.randperm(len(self.data.train), generator=self.order).to(self.device)
        log = _StepLog()
        self.model.train()
        for start in self.starts:
            self.step(perm[start : start + self.size], log)
        with torch.no_grad():
            return self.summarize(log, perm)

    def step(self, index: torch.Tensor, log: _StepLog) -> None:
        """One optimizer step on the examples ``index``; its numbers go to ``log``."""
        train = self.data.train
        xb, yb = train.x.index_select(0, index), train.y.index_select(0, index)
        if self.augment is not None:
            xb = self.augment(xb, self.augment_generator)
        with self.autocast():
            out = self.model(xb)
            loss = self.loss_fn(out, yb)
        total = loss
        if self.penalty is not None:
            term = self.penalty()
            total = loss + term
            log.penalties.append(term)
        for parameter in self.params:  # zero_grad(set_to_none=True) without its ~15 us wrapping
            parameter.grad = None
        total.backward()  # type: ignore[no-untyped-call]
        grads = [p.grad for p in self.params if p.grad is not None]
        parts = torch.stack(torch._foreach_norm(grads))
        if self.clipping:
            norm = torch.linalg.vector_norm(parts)
            log.norms.append(norm)
            log.fired.append(self.clip(norm))
        else:  # the global norms are assembled once per epoch, in one go
            log.norm_parts.append(parts)
        self.optimizer.step()
        if self.step_scheduler is not None:
            self.step_scheduler.step()
        # Not detached: saves a dispatch per tensor; the summary runs under no_grad and
        # backward has already freed what these graphs saved.
        log.losses.append(loss)
        if self.classify:
            log.outputs.append(out if self.keep_outputs else out.detach().argmax(1))

    def summarize(self, log: _StepLog, perm: torch.Tensor) -> _EpochTotals:
        """The epoch's numbers from the per-step tensors, still on the device."""
        zero = self.zero
        correct = zero
        if self.classify:
            predicted = torch.cat(log.outputs)
            if self.keep_outputs:
                predicted = predicted.argmax(1)
            correct = predicted.eq(self.data.train.y.index_select(0, perm[: self.used])).sum()
        loss_vec = torch.stack(log.losses).double()
        norm_parts = log.norm_parts
        norm_vec = _global_norms(norm_parts) if norm_parts else torch.stack(log.norms).double()
        self.step_values = (loss_vec, norm_vec)
        return _EpochTotals(
            train_loss=(loss_vec * self.batch_sizes).sum() / self.used,
            penalty=torch.stack(log.penalties).double().mean() if log.penalties else zero,
            train_accuracy=correct / self.used,
            grad_norm=norm_vec.mean(),
            grad_norm_max=norm_vec.max(),
            clip_fraction=torch.stack(log.fired).double().mean() if log.fired else zero,
        )

    def clip(self, norm: torch.Tensor) -> torch.Tensor:
        """Clip the gradients (global norm ``norm``) as configured; whether anything changed."""
        clip_norm, clip_value = self.config.clip_norm, self.config.clip_value
        params = [p for p in self.params if p.grad is not None]
        grads = [p.grad for p in params if p.grad is not None]
        if clip_value is None and clip_norm is not None:
            torch.nn.utils.clip_grads_with_norm_(params, clip_norm, norm)
            return norm > clip_norm
        largest = torch.stack(torch._foreach_norm(grads, math.inf)).max()
        torch.nn.utils.clip_grad_value_(params, float(clip_value or math.inf))
        fired = largest > float(clip_value or math.inf)
        if clip_norm is not None:
            after = torch.nn.utils.clip_grad_norm_(params, clip_norm)
            fired = fired | (after > clip_norm)
        return fired

    def measured_epoch(self, epoch: int) -> tuple[EpochRecord, int | None]:
        """Train one epoch, evaluate, sync once; the record and the first bad step, if any."""
        data = self.data
        start = time.perf_counter()
        lr = base_rate(self.optimizer.param_groups[0])
        totals = self.epoch()
        if len(data.val):
            val_loss, val_correct = evaluate(
                self.model,
                data,
                data.val,
                batch_size=self.config.eval_batch_size,
                autocast=self.autocast,
            )
            totals = replace(
                totals, val_loss=val_loss / len(data.val), val_accuracy=val_correct / len(data.val)
            )
        measured = totals.measured()
        weights = torch.stack(torch._foreach_norm([p.detach() for p in self.params]))
        values = torch.cat([torch.stack(list(measured.values())).double(), weights.double()])
        numbers = values.tolist()  # the epoch's one host sync
        host = dict(zip(measured, numbers, strict=False))
        record = EpochRecord(
            epoch=epoch,
            train_loss=host["train_loss"],
            penalty=host["penalty"],
            train_accuracy=host["train_accuracy"] if self.classify else None,
            val_loss=host.get("val_loss"),
            val_accuracy=host.get("val_accuracy") if self.classify else None,
            lr=lr,
            grad_norm=host["grad_norm"],
            grad_norm_max=host["grad_norm_max"],
            clip_fraction=host["clip_fraction"],
            weight_norms=tuple(numbers[len(measured) :]),
            seconds=time.perf_counter() - start,
        )
        if record.finite:
            return record, None
        losses, norms = self.step_values  # a second sync, only for a diverged epoch
        bad = ~(torch.isfinite(losses) & torch.isfinite(norms))
        return record, int(bad.double().argmax())

    def run(self, on_epoch: EpochCallback | None) -> History:
        config, data, model = self.config, self.data, self.model
        stopping = config.early_stopping
        watch = _BestEpoch(stopping, model) if stopping is not None else None
        records: list[EpochRecord] = []
        status: Status = "completed"
        diverged_step = None
        started = time.perf_counter()
        for epoch in range(config.epochs):
            record, bad_step = self.measured_epoch(epoch)
            records.append(record)
            if on_epoch is not None:
                on_epoch(record)
            if bad_step is not None:
                status = "diverged"
                diverged_step = self.step_index + bad_step
                break
            self.step_index += len(self.starts)
            if config.schedule.interval == "epoch" and self.scheduler is not None:
                if isinstance(config.schedule, ReduceOnPlateau):
                    self.scheduler.step(getattr(record, config.schedule.monitor))
                else:
                    self.scheduler.step()
            if watch is not None and watch.stop_after(record):
                status = "early_stopped"
                break
        if watch is not None and status != "diverged":
            watch.restore()
        test_loss = test_accuracy = None
        if len(data.test) and status != "diverged":
            loss_sum, correct = evaluate(
                model, data, data.test, batch_size=config.eval_batch_size, autocast=self.autocast
            )
            test_loss = float(loss_sum) / len(data.test)
            test_accuracy = (
                float(correct) / len(data.test) if data.task == "classification" else None
            )
        model.eval()
        return History(
            epochs=tuple(records),
            parameter_names=self.names,
            status=status,
            diverged_step=diverged_step,
            best_epoch=watch.epoch if watch is not None else None,
            monitor=stopping.monitor if stopping is not None else None,
            test_loss=test_loss,
            test_accuracy=test_accuracy,
            device=str(self.device),
            seconds=time.perf_counter() - started,
        )
