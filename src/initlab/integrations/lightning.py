r"""PyTorch Lightning callbacks: initialize with a Plan, and run the doctor during training.

.. code-block:: python

    from initlab.integrations.lightning import DoctorCallback, InitCallback

    trainer = L.Trainer(callbacks=[InitCallback("kaiming", seed=0),
                                   DoctorCallback(every_n_steps=100, stop_on_critical=True)])

:class:`InitCallback` applies a plan at ``setup("fit")``: after the LightningModule is built,
before the optimizer exists and before a ``ckpt_path`` is restored (a resumed run gets its
checkpoint's values, not the plan's). It applies once per module: a second ``fit`` and every
``validate``/``test``/``predict`` leave the weights alone.

:class:`DoctorCallback` runs :func:`initlab.doctor` on the first training batch (and every
``every_n_steps`` optimizer steps if asked) and sends each layer's numeric statistics to every
logger of the trainer as ``doctor/<layer>/<statistic>`` at the current ``global_step``
(``logger.log_metrics``, so they arrive whatever ``log_every_n_steps`` is). It does not
disturb training:

* the doctor restores ``.grad`` fields and buffers (BatchNorm running statistics);
* it runs inside ``torch.random.fork_rng``: dropout inside the diagnostic forward draws from a
  copy of the global RNG state, so the training run's random stream is the same with and
  without the callback;
* the module stays in the mode the trainer has it in (``train``): the doctor sees what
  training sees (dropout on, BatchNorm on batch statistics).

``stop_on_critical=True`` does what ``EarlyStopping`` does: it sets ``trainer.should_stop``
(agreed across processes) and says why in a ``UserWarning`` and in
:attr:`DoctorCallback.stop_reason`; ``fit`` then returns normally after the step it is in
(the diagnosed batch is still trained on, as with any ``should_stop``). Check
``stop_reason`` after ``fit`` to fail a script or a CI job.

Needs ``pip install 'initlab[lightning]'``.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import torch

from initlab.doctor import DoctorReport, Thresholds, doctor
from initlab.doctor.finding import Finding
from initlab.errors import ConfigError, InitlabError
from initlab.optional import require
from initlab.plan import init_model
from initlab.plan.assignments import Assignments
from initlab.plan.plan import Plan

require("lightning", "initlab.integrations.lightning")

import lightning.pytorch as pl  # noqa: E402  (after the friendly missing-extra message)
from lightning.pytorch.utilities.model_helpers import is_overridden  # noqa: E402

__all__ = ["DoctorCallback", "InitCallback", "default_input"]

InputFunction = Callable[[Any], torch.Tensor]
LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_INPUT_KEYS = ("input_ids", "x", "input", "inputs", "pixel_values")


class InitCallback(pl.Callback):
    """Initialize the LightningModule with a plan when ``fit`` sets up.

    Args:
        plan_or_preset: a :class:`~initlab.Plan`, a preset name or ``"auto"``.
        seed: the seed of the parameters' streams (the same on every process, so every rank
            draws the same values).
        **options: preset options (e.g. ``n_layer`` for ``gpt2``).

    Attributes:
        assignments: the table applied (``None`` until applied).

    Layers a LightningModule builds in its own ``setup`` or in ``configure_model`` do not
    exist yet when callbacks set up; for those, call ``initlab.init_model(self, plan)`` at
    the end of ``configure_model`` (a warning says so when ``configure_model`` is defined).

    Example:
        >>> trainer = L.Trainer(callbacks=[InitCallback("kaiming", seed=0)])
    """

    def __init__(self, plan_or_preset: str | Plan = "auto", seed: int = 0, **options: Any) -> None:
        if not isinstance(plan_or_preset, str | Plan):
            raise ConfigError(
                f"InitCallback: plan_or_preset must be a Plan or a preset name, got "
                f"{type(plan_or_preset).__name__}. E.g. InitCallback('kaiming')."
            )
        if isinstance(plan_or_preset, Plan) and options:
            raise ConfigError(
                f"InitCallback: options {sorted(options)} are for a preset name; a Plan takes "
                "none."
            )
        self.plan_or_preset = plan_or_preset
        self.seed = seed
        self.options = options
        self.assignments: Assignments | None = None
        self._applied: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Apply the plan at the start of ``fit`` (once per module); other stages do nothing."""
        if stage != "fit" or pl_module in self._applied:
            return
        if is_overridden("configure_model", pl_module):
            warnings.warn(
                f"InitCallback: {type(pl_module).__name__} defines configure_model(); layers "
                "it creates are built after callbacks set up and are not initialized by the "
                "plan. Call initlab.init_model(self, plan) at the end of configure_model().",
                stacklevel=2,
            )
        self.assignments = init_model(pl_module, self.plan_or_preset, self.seed, **self.options)
        self._applied.add(pl_module)
        summary = _summary(self.assignments, self.plan_or_preset)
        for logger in trainer.loggers:
            logger.log_hyperparams(summary)


def _summary(table: Assignments, plan: str | Plan) -> dict[str, Any]:
    drawn = [row for row in table if row.scheme is not None]
    return {
        "initlab/plan": plan if isinstance(plan, str) else plan.name,
        "initlab/seed": table.seed,
        "initlab/initialized": len(drawn),
        "initlab/kept": len(table) - len(drawn),
    }


def default_input(batch: Any) -> torch.Tensor:
    """The model input in a batch: the batch itself, the first item of ``(x, y, ...)``, or
    ``batch[key]`` for the first of ``input_ids``, ``x``, ``input``, ``inputs``,
    ``pixel_values`` in a mapping.

    Raises:
        InitlabError: a batch of another form (pass ``input_fn=`` to the callback).
    """
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, list | tuple) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    if isinstance(batch, Mapping):
        for key in _INPUT_KEYS:
            value = batch.get(key)
            if isinstance(value, torch.Tensor):
                return value
    described = (
        f"a mapping with keys {sorted(map(str, batch))}"
        if isinstance(batch, Mapping)
        else f"a {type(batch).__name__}"
    )
    raise InitlabError(
        f"DoctorCallback: cannot find the model input in a batch that is {described}; "
        "pass input_fn=lambda batch: ... returning the tensor to call the module on."
    )


class DoctorCallback(pl.Callback):
    """Run :func:`initlab.doctor` on training batches and log what it measures.

    Args:
        every_n_steps: run again whenever ``global_step`` is a multiple of this (``None``:
            the first batch only).
        stop_on_critical: stop the run (``trainer.should_stop``) on a critical finding.
        input_fn: ``input_fn(batch) -> tensor`` the module is called on; default
            :func:`default_input`.
        loss_fn: ``loss_fn(output, target)``; without it a random cotangent is propagated
            (gradient scales of the network alone).
        target_fn: ``target_fn(batch) -> tensor`` for ``loss_fn`` (default: ``batch[1]``).
        jacobian: also estimate the input-output Jacobian (off: it costs a backward per
            output or probe, and no finding depends on it).
        thresholds: the doctor's thresholds.
        seed: seed of the doctor's own probes.
        prefix: the metric name prefix.

    Attributes:
        reports: ``{global_step: DoctorReport}`` for every run.
        stop_reason: why the run was stopped, ``None`` if it was not.

    Raises:
        ConfigError: ``every_n_steps`` below 1, or ``target_fn`` without ``loss_fn``.
    """

    def __init__(
        self,
        every_n_steps: int | None = None,
        stop_on_critical: bool = False,
        *,
        input_fn: InputFunction | None = None,
        loss_fn: LossFunction | None = None,
        target_fn: InputFunction | None = None,
        jacobian: bool = False,
        thresholds: Thresholds | None = None,
        seed: int = 0,
        prefix: str = "doctor",
    ) -> None:
        if every_n_steps is not None and (isinstance(every_n_steps, bool) or every_n_steps < 1):
            raise ConfigError(
                f"DoctorCallback: every_n_steps must be a positive int or None (first batch "
                f"only), got {every_n_steps!r}."
            )
        if target_fn is not None and loss_fn is None:
            raise ConfigError("DoctorCallback: target_fn needs loss_fn=...; or drop target_fn.")
        self.every_n_steps = every_n_steps
        self.stop_on_critical = stop_on_critical
        self.input_fn = input_fn or default_input
        self.loss_fn = loss_fn
        self.target_fn = target_fn or _second_item
        self.jacobian = jacobian
        self.thresholds = thresholds
        self.seed = seed
        self.prefix = prefix
        self.reports: dict[int, DoctorReport] = {}
        self.stop_reason: str | None = None

    @property
    def report(self) -> DoctorReport | None:
        """The first report (on the first training batch), if the doctor has run."""
        return self.reports[min(self.reports)] if self.reports else None

    def _due(self, step: int) -> bool:
        if step in self.reports:  # gradient accumulation repeats a global_step
            return False
        if not self.reports:
            return True
        return self.every_n_steps is not None and step % self.every_n_steps == 0

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Diagnose the module on this batch when due; log; stop on a critical finding."""
        step = trainer.global_step
        if not self._due(step):
            return
        report = self._diagnose(pl_module, batch)
        self.reports[step] = report
        metrics = report.scalars(self.prefix)  # the tags write_doctor writes too
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        critical = [f for f in report.findings if f.severity == "critical"]
        if not self.stop_on_critical:
            return
        stop = trainer.strategy.reduce_boolean_decision(bool(critical), all=False)
        if stop:
            self.stop_reason = _stop_message(step, critical)
            trainer.should_stop = True
            warnings.warn(self.stop_reason, stacklevel=2)

    def _diagnose(self, pl_module: pl.LightningModule, batch: Any) -> DoctorReport:
        inputs = self.input_fn(batch)
        target = self.target_fn(batch) if self.loss_fn is not None else None
        device = inputs.device
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            return doctor(
                pl_module,
                inputs,
                self.loss_fn,
                target,
                jacobian=self.jacobian,
                thresholds=self.thresholds,
                seed=self.seed,
                progress=False,
            )


def _second_item(batch: Any) -> torch.Tensor:
    if isinstance(batch, list | tuple) and len(batch) >= 2 and isinstance(batch[1], torch.Tensor):
        return batch[1]
    raise InitlabError(
        f"DoctorCallback: loss_fn needs a target, and the batch ({type(batch).__name__}) is "
        "not (x, y, ...); pass target_fn=lambda batch: ... returning the targets."
    )


def _stop_message(step: int, critical: list[Finding]) -> str:
    if not critical:
        return (
            f"DoctorCallback: stopping at step {step}: another process found a critical problem."
        )
    first = critical[0]
    layers = ", ".join(first.layers[:3]) + (" ..." if len(first.layers) > 3 else "")
    more = f" (and {len(critical) - 1} more critical finding(s))" if len(critical) > 1 else ""
    return (
        f"DoctorCallback: stopping at step {step}: critical finding {first.code!r}: "
        f"{first.title} [{layers}]{more}. Fix the initialization (report.fix is a Plan), or "
        "pass stop_on_critical=False to train anyway."
    )
