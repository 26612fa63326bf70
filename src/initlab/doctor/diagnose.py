r"""``initlab.doctor(model, batch)``: one forward and backward at init, measured and judged.

.. code-block:: python

    report = initlab.doctor(model, batch, loss_fn=None, target=None)
    report.findings     # plain-language problems: severity, layers, evidence, fix
    report.layers       # tidy per-layer table (pandas)
    report.fix          # a Plan addressing the findings (empty when there is nothing to fix)
    print(report)       # the verdict, one line per finding, the fix
    save_doctor_report(report, "doctor.html")  # from initlab.report.doctor_files

Without ``loss_fn`` the backward pass propagates a random Gaussian cotangent
:math:`\varepsilon \sim \mathcal N(0, I)` from the output (the loss
:math:`L = \langle f(x), \varepsilon\rangle`), so gradient scales reflect the network alone,
not a loss's arbitrary normalization. The model is left as it was: its ``.grad`` fields and its
buffers (BatchNorm running statistics) are restored.

The batch is a tensor, a tuple/list of inputs (``model(*batch)``) or a mapping of keyword inputs
(``model(**batch)``, e.g. a Hugging Face tokenizer's output); the output may be a tensor, a
tuple, a dict or a ``ModelOutput`` (``logits`` is measured when present, else the first
floating-point tensor, or what ``output_fn`` picks). See :mod:`initlab.batches`.

A model that runs forward and backward is always diagnosed: what cannot be measured (the
Jacobian of token ids, the activations of a model that cannot be read...) is left out with its
reason in :attr:`DoctorReport.skipped` (the Jacobian's in :attr:`JacobianSpectrum.skipped`),
never raised.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from initlab.arguments import check_module, check_seed
from initlab.batches import (
    Batch,
    OutputFunction,
    call_model,
    check_batch,
    describe,
    output_tensor,
    short_reason,
)
from initlab.doctor.finding import Finding, Thresholds
from initlab.doctor.findings import find
from initlab.doctor.metrics import (
    JacobianSpectrum,
    WeightRecord,
    jacobian_spectrum,
    weight_records,
)
from initlab.doctor.probe import LayerRecord, Probe, probed_modules
from initlab.doctor.report import DoctorReport
from initlab.errors import ConfigError, InitlabError
from initlab.plan.activations import ActivationDetection, ActivationMap
from initlab.plan.buffers import buffers_restored
from initlab.progress import Steps, steps

__all__ = ["DoctorReport", "doctor"]

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_T = TypeVar("_T")


def doctor(
    model: nn.Module,
    batch: Batch,
    loss_fn: LossFunction | None = None,
    target: torch.Tensor | None = None,
    *,
    jacobian: bool = True,
    thresholds: Thresholds | None = None,
    seed: int = 0,
    output_fn: OutputFunction | None = None,
    activations: ActivationMap | None = None,
    progress: bool | None = None,
) -> DoctorReport:
    """Measure signal propagation of ``model`` on ``batch`` and judge it.

    Args:
        model: the model, as initialized (it is left unchanged).
        batch: one input batch on the model's device: a tensor, a tuple/list of inputs
            (``model(*batch)``) or a mapping of keyword inputs (``model(**batch)``).
        loss_fn: ``loss_fn(output, target)``; without it a random cotangent is backpropagated.
        target: the targets for ``loss_fn``.
        jacobian: also estimate the input-output Jacobian's spectrum.
        thresholds: where measurements become findings (see :class:`Thresholds`).
        seed: seed of the probes' own generator (cotangent, Jacobian directions).
        output_fn: the tensor to measure from the model's output (default: ``logits`` when
            present, else the first floating-point tensor), e.g. ``lambda out: out["hidden"]``.
        activations: the activation after each layer, when already known: an earlier report's
            :attr:`DoctorReport.activations` for the same architecture (a plan changes weights,
            not which activation follows a layer), so the model is not read again.
        progress: a bar of the steps (forward and backward, Jacobian, activations, findings)
            on standard error: ``None`` when it is a terminal (see
            :func:`initlab.progress.set_default`), ``True`` always, ``False`` never.

    Raises:
        InitlabError: a batch that is not a tensor/tuple/mapping of tensors, holds NaN/inf or no
            example; a model on the meta device; a loss_fn without target; a model that fails
            on the batch or returns no floating-point tensor (its error message is quoted).

    Example:
        >>> report = doctor(model, torch.randn(64, 784))
        >>> report = doctor(bert, {"input_ids": ids, "attention_mask": mask})
        >>> after = doctor(model, batch, activations=report.activations)  # after report.fix
    """
    check_module("doctor", model)
    check_batch(batch)
    run = _Run(batch, loss_fn, target, check_seed("doctor", seed), output_fn)
    _check_options(model, run, thresholds, activations)
    limits = thresholds or Thresholds()
    stages = 2 + int(jacobian) + int(activations is None)
    with steps("doctor: forward, backward, weights", stages, enabled=progress) as bar:
        return _diagnose(model, run, limits, activations, jacobian=jacobian, bar=bar)


def _diagnose(
    model: nn.Module,
    run: _Run,
    limits: Thresholds,
    activations: ActivationMap | None,
    *,
    jacobian: bool,
    bar: Steps,
) -> DoctorReport:
    """The measurements, each step counted on ``bar``, and the findings."""
    skipped: list[str] = []
    # Activation detection shares the measured pass: fx traces now; a model fx cannot trace
    # (Hugging Face's) is recorded during that pass instead of running once more.
    detection = (
        _advisory(lambda: ActivationDetection(model, run.batch), None, _UNREAD, skipped)
        if activations is None
        else None
    )
    records, weights = _measure(model, run, skipped, detection)
    bar.advance()
    spectrum: JacobianSpectrum | None = None
    if jacobian:  # jacobian_spectrum reports its own failures; this catches the unforeseen
        bar.describe("doctor: Jacobian")
        spectrum = _advisory(
            lambda: jacobian_spectrum(model, run.batch, seed=run.seed, output_fn=run.output_fn),
            None,
            "Jacobian skipped: it could not be computed",
            skipped,
        )
        bar.advance()
    if activations is None:
        bar.describe("doctor: activations")
        activations = (
            _advisory(detection.result, None, _UNREAD, skipped) if detection is not None else None
        )
        bar.advance()
    bar.describe("doctor: findings and fix")
    findings: list[Finding] = _advisory(
        lambda: find(records, weights, activations, limits, model=model),
        [],
        "findings skipped: the measurements could not be judged (a bug in initlab: please "
        "report it)",
        skipped,
    )
    bar.advance()
    return DoctorReport(
        findings=tuple(findings),
        records=tuple(records),
        weights=tuple(weights),
        jacobian=spectrum,
        activations=activations,
        thresholds=limits,
        skipped=tuple(skipped),
    )


@dataclass(frozen=True)
class _Run:
    """What one diagnostic pass runs: the batch, the loss (or the cotangent's seed), and which
    output tensor is measured."""

    batch: Batch
    loss_fn: LossFunction | None
    target: torch.Tensor | None
    seed: int
    output_fn: OutputFunction | None


def _check_options(
    model: nn.Module,
    run: _Run,
    thresholds: Thresholds | None,
    activations: ActivationMap | None,
) -> None:
    if any(parameter.is_meta for parameter in model.parameters()):
        raise ConfigError(
            "doctor: the model's parameters are on the meta device (they hold no values); "
            "materialize it first, e.g. initlab.scale.materialize(...)."
        )
    if run.loss_fn is not None and run.target is None:
        raise ConfigError("doctor: loss_fn needs target=...; or drop loss_fn for a random one.")
    if run.target is not None and run.loss_fn is None:
        raise ConfigError(
            "doctor: target is given but loss_fn is not, so the target would be ignored; pass "
            "loss_fn=... too (e.g. torch.nn.functional.cross_entropy), or drop target."
        )
    if run.output_fn is not None and not callable(run.output_fn):
        raise ConfigError(
            f"doctor: output_fn must be a function of the model's output, got "
            f"{describe(run.output_fn)}."
        )
    if thresholds is not None and not isinstance(thresholds, Thresholds):
        raise ConfigError(
            f"doctor: thresholds must be an initlab.Thresholds, got {describe(thresholds)}; "
            "e.g. thresholds=initlab.Thresholds(dead=0.5)."
        )
    if activations is not None and not isinstance(activations, ActivationMap):
        raise ConfigError(
            f"doctor: activations must be an ActivationMap (a report's .activations), got "
            f"{describe(activations)}."
        )


def _advisory(compute: Callable[[], _T], fallback: _T, what: str, skipped: list[str]) -> _T:
    """``compute()``, or ``fallback`` with a one-line note in ``skipped`` when it fails.

    The advisory parts of a diagnosis (weights, Jacobian, activations, findings) must not cost
    the user the measurements that did succeed.
    """
    try:
        return compute()
    except Exception as error:
        skipped.append(f"{what} ({short_reason(error)}).")
        return fallback


def _batch_text(batch: Batch) -> str:
    if isinstance(batch, torch.Tensor):
        return f"a batch of shape {tuple(batch.shape)}"
    return f"the batch ({describe(batch)})"


_UNREAD = (
    "activation detection skipped: the model could not be read (the init-mismatch findings "
    "need it)"
)


def _measure(
    model: nn.Module, run: _Run, skipped: list[str], detection: ActivationDetection | None
) -> tuple[list[LayerRecord], list[WeightRecord]]:
    """One forward and backward under the probe, then the weights (and their gradients); the
    model's ``.grad`` fields and buffers are restored."""
    saved_grads = {n: p.grad for n, p in model.named_parameters()}
    try:
        with buffers_restored(model):
            for parameter in model.parameters():
                parameter.grad = None
            records = _probed_pass(model, run, skipped, detection)
            weights: list[WeightRecord] = _advisory(
                lambda: weight_records(model),
                [],
                "weight statistics skipped: the model's weights could not be read as matrices",
                skipped,
            )
    finally:
        for name, parameter in model.named_parameters():
            parameter.grad = saved_grads.get(name)
    return records, weights


def _probed_pass(
    model: nn.Module, run: _Run, skipped: list[str], detection: ActivationDetection | None
) -> list[LayerRecord]:
    # A model with no probed submodule (a bare nn.LSTM) is measured as one module, by its output.
    # enable_grad: a doctor called inside a torch.no_grad() block still measures gradients.
    with Probe(model, probed_modules(model) or [""]) as probe, torch.enable_grad():
        recording = detection.recording() if detection is not None else nullcontext(None)
        try:
            with recording as recorder:  # the activations recorded on the way (if needed)
                output = call_model(model, run.batch)
                if recorder is not None:
                    recorder.leaving(output)
        except Exception as error:
            raise InitlabError(
                f"doctor: the model failed on {_batch_text(run.batch)}: "
                f"{type(error).__name__}: {error}"
            ) from None
        tensor = output_tensor(output, run.output_fn)
        if tensor.requires_grad:
            loss = _loss(tensor, run)
            try:
                loss.backward()  # type: ignore[no-untyped-call]
            except Exception as error:
                skipped.append(
                    f"gradients skipped: the backward pass failed ({short_reason(error)})."
                )
        else:
            skipped.append(_no_gradient_reason(model))
        records = probe.collect()
        if probe.unmeasured:
            names = ", ".join(probe.unmeasured[:4]) + (
                ", ..." if len(probe.unmeasured) > 4 else ""
            )
            skipped.append(
                f"{len(probe.unmeasured)} module(s) not measured: their outputs could not be "
                f"reduced to statistics ({names})."
            )
        return records


def _loss(output: torch.Tensor, run: _Run) -> torch.Tensor:
    r"""``loss_fn(output, target)``, or :math:`\langle f(x), \varepsilon\rangle` with a
    seeded Gaussian cotangent."""
    if run.loss_fn is not None and run.target is not None:
        _check_target(output, run.target)
        try:
            return run.loss_fn(output, run.target)
        except Exception as error:
            raise InitlabError(
                f"doctor: loss_fn failed on the output ({describe(output)}) and the target "
                f"({describe(run.target)}): {type(error).__name__}: {error}"
            ) from None
    generator = torch.Generator(device=output.device).manual_seed(run.seed)
    cotangent = torch.randn(
        output.shape, generator=generator, device=output.device, dtype=output.dtype
    )
    return (output * cotangent).sum()


def _no_gradient_reason(model: nn.Module) -> str:
    if torch.is_inference_mode_enabled():
        return "gradients skipped: autograd is off inside torch.inference_mode()."
    if not any(p.requires_grad for p in model.parameters()):
        return (
            "gradients skipped: every parameter has requires_grad=False (a frozen model), so "
            "no gradient can be measured; call model.requires_grad_(True) first."
        )
    return (
        "gradients skipped: the output does not require grad (no parameter on its path has "
        "requires_grad=True)."
    )


def _check_target(output: torch.Tensor, target: Any) -> None:
    """A target whose examples do not pair with the output's is an input error, not a loss's:
    some losses would broadcast it silently (mse_loss with a warning only)."""
    if not isinstance(target, torch.Tensor):
        raise ConfigError(f"doctor: target must be a torch.Tensor, got {describe(target)}.")
    # Same rank, other batch size: never a pairing (a flattened target has another rank).
    if output.dim() == target.dim() > 0 and target.shape[0] != output.shape[0]:
        raise ConfigError(
            f"doctor: target has shape {tuple(target.shape)} ({target.shape[0]} examples) but "
            f"the output has shape {tuple(output.shape)} ({output.shape[0]} examples); give "
            "the targets of this batch."
        )
