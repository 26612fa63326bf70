r"""What :func:`initlab.doctor` returns: :class:`DoctorReport`, plain data.

The report holds measurements and findings, and turns them into other plain data: tidy rows
(:meth:`DoctorReport.rows`), a pandas table, a JSON-friendly dict, the flat scalars a
metrics logger takes (:meth:`DoctorReport.scalars`), and plain text: ``print(report)`` gives the
verdict in the CLI's words (:func:`verdict`), one line per finding and the fix. Rendering
and files (plots, HTML, TensorBoard event files) live in :mod:`initlab.report`:
``save_doctor_report(report, path)``, ``doctor_figure(report)``, ``write_doctor(report, writer)``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from initlab.doctor.finding import Finding, Thresholds, merged_plan
from initlab.doctor.metrics import JacobianSpectrum, WeightRecord
from initlab.doctor.probe import LayerRecord
from initlab.plan.activations import ActivationMap
from initlab.plan.plan import Plan

if TYPE_CHECKING:
    from rich.text import Text

__all__ = ["DoctorReport", "Scalar", "problem_count", "short_layers", "tag", "verdict"]

_NOT_STATISTICS = ("layer", "call", "kind", "index", "activation_after")
_INVALID_TAG = re.compile(r"[^-/\w.]")


@dataclass(frozen=True)
class Scalar:
    """One number of a layer's row, where a logger files it.

    Attributes:
        layer: the tag part of the module's call: its name (``model`` for the model probed as
            one module), then ``/call2``, ``/call3``... for its later calls.
        statistic: the row's column (``std``, ``grad_std``, ``weight_gain_sq``...).
        value: the finite value.
    """

    layer: str
    statistic: str
    value: float


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
    def fix(self) -> Plan:
        """The findings' own plans as one Plan, every other parameter kept.

        Each finding's plan targets what fixes it (for a saturated tanh, the layer before it),
        so applying this is applying every finding's fix. When no finding has one (a healthy
        model) it is the empty plan (``fix.rules == ()``, default ``"keep"``): applying it
        leaves every parameter as it is. Test ``report.fix.rules`` for "is there a fix".
        """
        return merged_plan(self.findings)

    def __str__(self) -> str:
        """The verdict (the CLI's words), one line per finding, notes, and the fix.

        Example:
            >>> print(report)  # doctest: +SKIP
            initlab doctor: 1 problem (1 critical)
              CRITICAL torch_default_relu: ... [layers: 0, 2, 4]
            fix (report.fix): plan 'doctor-fix': 3 rules
            ...
        """
        lines = [f"initlab doctor: {verdict(self)}"]
        lines.extend(
            f"  {f.severity.upper()} {f.code}: {f.title} [layers: {short_layers(f.layers)}]"
            for f in self.findings
        )
        lines.extend(f"  note: {note}" for note in self.skipped)
        if self.jacobian is not None and self.jacobian.skipped:
            lines.append(f"  note: input-output Jacobian not computed ({self.jacobian.skipped})")
        fix = self.fix
        if fix.rules:
            lines.append(f"fix (report.fix): {fix}")
        elif not self.healthy:
            lines.append("fix (report.fix): none; no finding has an initialization fix")
        return "\n".join(lines)

    def __rich__(self) -> Text:
        """What a Rich console prints: :meth:`__str__`'s summary (not the dataclass's fields)."""
        from rich.text import Text

        return Text(str(self))

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

    def layer_scalars(self) -> Iterator[Scalar]:
        """Every finite number of :meth:`rows` (a statistic that does not apply to a layer is
        NaN or ``None`` there and is left out), in call order."""
        for row in self.rows():
            call = int(row["call"])
            layer = row["layer"] or "model"  # a model probed as one module has the empty name
            part = f"{layer}/call{call + 1}" if call else layer
            for key, raw in row.items():
                value = _finite_number(raw)
                if key not in _NOT_STATISTICS and value is not None:
                    yield Scalar(part, key, value)

    def summary_scalars(self) -> dict[str, float]:
        """``healthy`` (1 or 0), ``findings/critical`` and ``findings/warning`` (counts), and
        the Jacobian's ``jacobian/largest``, ``smallest``, ``mean_square``, ``spread`` when
        known."""
        summary = {"healthy": float(self.healthy)}
        for severity in ("critical", "warning"):
            count = sum(1 for finding in self.findings if finding.severity == severity)
            summary[f"findings/{severity}"] = float(count)
        spectrum = self.jacobian
        if spectrum is not None:
            known = {
                "largest": spectrum.largest,
                "smallest": spectrum.smallest,
                "mean_square": spectrum.mean_square,
                "spread": spectrum.spread,
            }
            for name, raw in known.items():
                value = _finite_number(raw)
                if value is not None:
                    summary[f"jacobian/{name}"] = value
        return summary

    def scalars(self, prefix: str = "doctor") -> dict[str, float]:
        r"""The report as flat metrics, ``{tag: value}``, for a metrics logger.

        Tags are ``{prefix}/{layer}/{statistic}`` for :meth:`layer_scalars` (layers in call
        order) and ``{prefix}/{name}`` for :meth:`summary_scalars`. Characters TensorBoard
        does not accept in a tag (outside ``[-/\w.]``) become ``_``.

        Example:
            >>> report.scalars()["doctor/layers.0.linear/std"]  # doctest: +SKIP
            0.58992...
        """
        scalars = {
            tag(prefix, scalar.layer, scalar.statistic): scalar.value
            for scalar in self.layer_scalars()
        }
        for name, value in self.summary_scalars().items():
            scalars[tag(prefix, name)] = value
        return scalars


def problem_count(report: DoctorReport) -> int:
    """Warning and critical findings (info findings are notes, not problems)."""
    return sum(f.severity in ("warning", "critical") for f in report.findings)


def verdict(report: DoctorReport) -> str:
    """One line: ``healthy`` or ``3 problems (2 critical, 1 warning)``, plus any notes.

    The CLI's panel, the HTML page, the plots and ``print(report)`` all say this.
    """
    counts = {s: sum(f.severity == s for f in report.findings) for s in ("critical", "warning")}
    notes = sum(f.severity == "info" for f in report.findings)
    note_text = f"; {notes} note{'s' if notes != 1 else ''}" if notes else ""
    problems = problem_count(report)
    if not problems:
        return f"healthy: no problem found{note_text}"
    parts = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return f"{problems} problem{'s' if problems != 1 else ''} ({parts}){note_text}"


def short_layers(layers: Sequence[str], limit: int = 6) -> str:
    """``0, 2, 4, ... and 5 more`` (a finding can name every layer of a deep net)."""
    shown = ", ".join(layers[:limit]) if layers else "(the whole model)"
    return shown if len(layers) <= limit else f"{shown} and {len(layers) - limit} more"


def tag(*parts: str) -> str:
    """``parts`` joined by ``/``, with characters a TensorBoard tag refuses replaced by ``_``."""
    return "/".join(_INVALID_TAG.sub("_", part) for part in parts)


def _finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
