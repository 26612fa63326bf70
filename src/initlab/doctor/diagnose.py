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
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from initlab.doctor.findings import Finding, Thresholds, find, merged_plan
from initlab.doctor.metrics import (
    JacobianSpectrum,
    WeightRecord,
    jacobian_spectrum,
    weight_records,
)
from initlab.doctor.probe import LayerRecord, Probe
from initlab.errors import InitlabError
from initlab.plan.activations import ActivationMap, detect_activations
from initlab.plan.plan import Plan

__all__ = ["DoctorReport", "doctor"]

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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
    """

    findings: tuple[Finding, ...]
    records: tuple[LayerRecord, ...]
    weights: tuple[WeightRecord, ...]
    jacobian: JacobianSpectrum | None
    activations: ActivationMap | None
    thresholds: Thresholds = field(default_factory=Thresholds)

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
        """Tidy per-module rows: forward and gradient statistics plus the weight's, if any."""
        by_layer = {w.layer: w for w in self.weights}
        rows = []
        for record in self.records:
            row: dict[str, Any] = {
                "layer": record.name,
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


def _check_batch(batch: Any) -> None:
    if not isinstance(batch, torch.Tensor):
        raise InitlabError(
            f"doctor: batch must be a torch.Tensor, got {type(batch).__name__}. "
            "Pass one input batch, e.g. next(iter(loader))[0]."
        )
    if batch.is_floating_point() and not bool(torch.isfinite(batch).all()):
        raise InitlabError(
            "doctor: the input batch contains NaN or inf; clean the data before diagnosing."
        )


def doctor(
    model: nn.Module,
    batch: torch.Tensor,
    loss_fn: LossFunction | None = None,
    target: torch.Tensor | None = None,
    *,
    jacobian: bool = True,
    thresholds: Thresholds | None = None,
    seed: int = 0,
) -> DoctorReport:
    """Measure signal propagation of ``model`` on ``batch`` and judge it.

    Args:
        model: the model, as initialized (it is left unchanged).
        batch: one input batch on the model's device.
        loss_fn: ``loss_fn(output, target)``; without it a random cotangent is backpropagated.
        target: the targets for ``loss_fn``.
        jacobian: also estimate the input-output Jacobian's spectrum.
        thresholds: where measurements become findings (see :class:`Thresholds`).
        seed: seed of the probes' own generator (cotangent, Jacobian directions).

    Raises:
        InitlabError: a batch that is not a tensor or holds NaN/inf, a loss_fn without target,
            or a model that fails on the batch (its error message is quoted).
    """
    _check_batch(batch)
    if loss_fn is not None and target is None:
        raise InitlabError("doctor: loss_fn needs target=...; or drop loss_fn for a random one.")
    limits = thresholds or Thresholds()
    saved_grads = {n: p.grad for n, p in model.named_parameters()}
    saved_buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    try:
        for parameter in model.parameters():
            parameter.grad = None
        records = _measure(model, batch, loss_fn, target, seed)
        weights = weight_records(model)
    finally:
        _restore(model, saved_grads, saved_buffers)
    spectrum = jacobian_spectrum(model, batch, seed=seed) if jacobian else None
    try:
        activations: ActivationMap | None = detect_activations(model)
    except Exception:  # activation detection is advisory; a model it cannot read has none
        activations = None
    findings = find(records, weights, activations, limits)
    return DoctorReport(
        tuple(findings), tuple(records), tuple(weights), spectrum, activations, limits
    )


def _measure(
    model: nn.Module,
    batch: torch.Tensor,
    loss_fn: LossFunction | None,
    target: torch.Tensor | None,
    seed: int,
) -> list[LayerRecord]:
    with Probe(model) as probe:
        try:
            output = model(batch)
        except Exception as error:
            raise InitlabError(
                f"doctor: the model failed on a batch of shape {tuple(batch.shape)}: "
                f"{type(error).__name__}: {error}"
            ) from None
        tensor = output if isinstance(output, torch.Tensor) else output[0]
        if tensor.requires_grad:
            if loss_fn is not None and target is not None:
                loss = loss_fn(tensor, target)
            else:
                generator = torch.Generator(device=tensor.device).manual_seed(seed)
                cotangent = torch.randn(
                    tensor.shape, generator=generator, device=tensor.device, dtype=tensor.dtype
                )
                loss = (tensor * cotangent).sum()
            loss.backward()  # type: ignore[no-untyped-call]
        return probe.collect()


def _restore(
    model: nn.Module,
    grads: dict[str, torch.Tensor | None],
    buffers: dict[str, torch.Tensor],
) -> None:
    for name, parameter in model.named_parameters():
        parameter.grad = grads.get(name)
    current = dict(model.named_buffers())
    with torch.no_grad():
        for name, value in buffers.items():
            current[name].copy_(value)
