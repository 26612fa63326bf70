r"""``initlab.doctor(model, batch)``: one forward and backward at init, measured and judged.

.. code-block:: python

    report = initlab.doctor(model, batch, loss_fn=None, target=None)
    report.findings     # plain-language problems: severity, layers, evidence, fix
    report.layers       # tidy per-layer table (pandas)
    report.fix          # a Plan addressing the findings (apply it, or print it)
    report.save("doctor.html")

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

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
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
from initlab.doctor.finding import Finding, Thresholds, merged_plan
from initlab.doctor.findings import find
from initlab.doctor.metrics import (
    JacobianSpectrum,
    WeightRecord,
    jacobian_spectrum,
    weight_records,
)
from initlab.doctor.probe import LayerRecord, Probe, probed_modules
from initlab.errors import ConfigError, InitlabError
from initlab.plan.activations import ActivationMap, detect_activations
from initlab.plan.buffers import buffers_restored
from initlab.plan.plan import Plan

__all__ = ["DoctorReport", "doctor"]

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_T = TypeVar("_T")


@dataclass(frozen=True)
class DoctorReport:
    """What :func:`doctor` measured and concluded.

    Attributes:
        findings: problems, most severe first.
        records: per-module forward/backward statistics in call order.
        weights: per-weight measurements.
        jacobian: the input-output Jacobian's spectrum (``None`` if not computed).
        activations: the activation found after each layer.
        thresholds: the thresholds the findings used.
        skipped: what could not be measured or judged, one plain line each (the Jacobian's
            reason is :attr:`JacobianSpectrum.skipped`).
    """

    findings: tuple[Finding, ...]
    records: tuple[LayerRecord, ...]
    weights: tuple[WeightRecord, ...]
    jacobian: JacobianSpectrum | None
    activations: ActivationMap | None
    thresholds: Thresholds = field(default_factory=Thresholds)
    skipped: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        """No warning or critical finding."""
        return not any(f.severity in ("warning", "critical") for f in self.findings)

    @property
    def exit_code(self) -> int:
        """0 when healthy, 1 when problems were found (for CI gates)."""
        return 0 if self.healthy else 1

    @property
    def fix(self) -> Plan | None:
        """The findings' own plans as one Plan (the rest kept); ``None`` when none has one.

        Each finding's plan targets what fixes it (for a saturated tanh, the layer before it),
        so applying this is applying every finding's fix.
        """
        return merged_plan(self.findings)

    def rows(self) -> list[dict[str, Any]]:
        """Tidy per-call rows: forward and gradient statistics plus the weight's, if any.

        ``layer`` is the module's name and ``call`` which of its calls the row is (0 for the
        first); a module called several times has one row per call.
        """
        by_layer = {w.layer: w for w in self.weights}
        rows = []
        for record in self.records:
            row: dict[str, Any] = {
                "layer": record.name,
                "call": record.call,
                "kind": record.kind,
                "index": record.index,
            }
            row.update(record.forward)
            row["grad_std"] = record.grad_std
            weight = by_layer.get(record.name)
            row["weight_std"] = weight.std if weight else None
            row["weight_gain_sq"] = weight.gain_sq if weight else None
            row["weight_grad_to_weight"] = weight.grad_to_weight if weight else None
            activation = self.activations.get(record.name) if self.activations else None
            row["activation_after"] = activation.name if activation else None
            rows.append(row)
        return rows

    @property
    def layers(self) -> Any:
        """The per-module table as a pandas DataFrame."""
        from initlab.optional import require

        return require("pandas", "DoctorReport.layers").DataFrame(self.rows())

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-friendly data (NaN becomes ``None``)."""
        data: dict[str, Any] = _finite(
            {
                "healthy": self.healthy,
                "findings": [
                    {k: v for k, v in asdict(f).items() if k != "plan"} for f in self.findings
                ],
                "layers": self.rows(),
                "weights": [asdict(w) for w in self.weights],
                "jacobian": asdict(self.jacobian) if self.jacobian else None,
                "activation_method": self.activations.method if self.activations else "",
                "skipped": list(self.skipped),
            }
        )
        return data

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    def plot(self) -> Any:
        """A matplotlib Figure of the per-layer statistics (needs matplotlib)."""
        from initlab.report.doctor_plots import doctor_figure

        return doctor_figure(self)

    def to_tensorboard(
        self,
        writer: Any,
        step: int = 0,
        prefix: str = "doctor",
        *,
        model: nn.Module | None = None,
    ) -> dict[str, float]:
        """Write the per-layer statistics to TensorBoard (needs tensorboard).

        ``writer`` is a ``torch.utils.tensorboard.SummaryWriter`` or a log directory; scalars go
        to ``{prefix}/{layer}/{statistic}``. See :func:`initlab.report.tensorboard.write_doctor`.
        """
        from initlab.report.tensorboard import write_doctor

        return write_doctor(self, writer, step, prefix, model=model)

    def save(self, path: str | Path) -> Path:
        """Write ``.html`` (self-contained, plots embedded) or ``.json``, by suffix."""
        target = Path(path)
        if target.suffix.lower() == ".json":
            target.write_text(self.to_json())
            return target
        if target.suffix.lower() in (".html", ".htm"):
            from initlab.report.doctor_html import doctor_html

            target.write_text(doctor_html(self), encoding="utf-8")
            return target
        raise InitlabError(
            f"DoctorReport.save: unknown format {target.suffix!r} for {target}; "
            "use a .html or .json path."
        )


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


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

    Raises:
        InitlabError: a batch that is not a tensor/tuple/mapping of tensors, holds NaN/inf or no
            example; a model on the meta device; a loss_fn without target; a model that fails
            on the batch or returns no floating-point tensor (its error message is quoted).

    Example:
        >>> report = doctor(model, torch.randn(64, 784))
        >>> report = doctor(bert, {"input_ids": ids, "attention_mask": mask})
    """
    check_module("doctor", model)
    check_batch(batch)
    seed = check_seed("doctor", seed)
    if any(parameter.is_meta for parameter in model.parameters()):
        raise ConfigError(
            "doctor: the model's parameters are on the meta device (they hold no values); "
            "materialize it first, e.g. initlab.scale.materialize(...)."
        )
    if loss_fn is not None and target is None:
        raise ConfigError("doctor: loss_fn needs target=...; or drop loss_fn for a random one.")
    if target is not None and loss_fn is None:
        raise ConfigError(
            "doctor: target is given but loss_fn is not, so the target would be ignored; pass "
            "loss_fn=... too (e.g. torch.nn.functional.cross_entropy), or drop target."
        )
    if output_fn is not None and not callable(output_fn):
        raise ConfigError(
            f"doctor: output_fn must be a function of the model's output, got "
            f"{describe(output_fn)}."
        )
    if thresholds is not None and not isinstance(thresholds, Thresholds):
        raise ConfigError(
            f"doctor: thresholds must be an initlab.Thresholds, got {describe(thresholds)}; "
            "e.g. thresholds=initlab.Thresholds(dead=0.5)."
        )
    limits = thresholds or Thresholds()
    skipped: list[str] = []
    saved_grads = {n: p.grad for n, p in model.named_parameters()}
    try:
        with buffers_restored(model):
            for parameter in model.parameters():
                parameter.grad = None
            records = _measure(model, batch, loss_fn, target, seed, output_fn, skipped)
            weights: list[WeightRecord] = _advisory(
                lambda: weight_records(model),
                [],
                "weight statistics skipped: the model's weights could not be read as matrices",
                skipped,
            )
    finally:
        for name, parameter in model.named_parameters():
            parameter.grad = saved_grads.get(name)
    spectrum: JacobianSpectrum | None = None
    if jacobian:  # jacobian_spectrum reports its own failures; this catches the unforeseen
        spectrum = _advisory(
            lambda: jacobian_spectrum(model, batch, seed=seed, output_fn=output_fn),
            None,
            "Jacobian skipped: it could not be computed",
            skipped,
        )
    activations: ActivationMap | None = _advisory(
        lambda: detect_activations(model, example=batch),
        None,
        "activation detection skipped: the model could not be read (the init-mismatch "
        "findings need it)",
        skipped,
    )
    findings: list[Finding] = _advisory(
        lambda: find(records, weights, activations, limits, model=model),
        [],
        "findings skipped: the measurements could not be judged (a bug in initlab: please "
        "report it)",
        skipped,
    )
    return DoctorReport(
        tuple(findings),
        tuple(records),
        tuple(weights),
        spectrum,
        activations,
        limits,
        tuple(skipped),
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


def _measure(
    model: nn.Module,
    batch: Batch,
    loss_fn: LossFunction | None,
    target: torch.Tensor | None,
    seed: int,
    output_fn: OutputFunction | None,
    skipped: list[str],
) -> list[LayerRecord]:
    # A model with no probed submodule (a bare nn.LSTM) is measured as one module, by its output.
    # enable_grad: a doctor called inside a torch.no_grad() block still measures gradients.
    with Probe(model, probed_modules(model) or [""]) as probe, torch.enable_grad():
        try:
            output = call_model(model, batch)
        except Exception as error:
            raise InitlabError(
                f"doctor: the model failed on {_batch_text(batch)}: "
                f"{type(error).__name__}: {error}"
            ) from None
        tensor = output_tensor(output, output_fn)
        if tensor.requires_grad:
            if loss_fn is not None and target is not None:
                _check_target(tensor, target)
                try:
                    loss = loss_fn(tensor, target)
                except Exception as error:
                    raise InitlabError(
                        f"doctor: loss_fn failed on the output ({describe(tensor)}) and the "
                        f"target ({describe(target)}): {type(error).__name__}: {error}"
                    ) from None
            else:
                generator = torch.Generator(device=tensor.device).manual_seed(seed)
                cotangent = torch.randn(
                    tensor.shape, generator=generator, device=tensor.device, dtype=tensor.dtype
                )
                loss = (tensor * cotangent).sum()
            try:
                loss.backward()  # type: ignore[no-untyped-call]
            except Exception as error:
                skipped.append(
                    f"gradients skipped: the backward pass failed ({short_reason(error)})."
                )
        elif torch.is_inference_mode_enabled():
            skipped.append("gradients skipped: autograd is off inside torch.inference_mode().")
        else:
            frozen = not any(p.requires_grad for p in model.parameters())
            skipped.append(
                "gradients skipped: every parameter has requires_grad=False (a frozen model), "
                "so no gradient can be measured; call model.requires_grad_(True) first."
                if frozen
                else "gradients skipped: the output does not require grad (no parameter on its "
                "path has requires_grad=True)."
            )
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
