"""A doctor report as ONE self-contained HTML page (``templates/doctor.html``).

The page states its question (does the signal keep its scale through the network at init?) and
its answer in one sentence each, then the findings (severity badge, layers, evidence, fix,
expected effect, the fix plan), the whole fix, the comparison after the fix, the plots, the
input-output Jacobian and the per-layer table. It shares the sweep report's stylesheet and, like
it, points nowhere outside itself (:mod:`initlab.report.page`). Text from the model or the
findings (layer names, evidence) is escaped by the template engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from initlab.doctor import DoctorReport, Finding
from initlab.optional import MissingDependencyError
from initlab.report import doctor_plots
from initlab.report.doctor import (
    LAYER_COLUMNS,
    jacobian_summary,
    layer_cells,
    network_input_std,
    verdict,
)
from initlab.report.numbers import number
from initlab.report.page import figure_data_uri, render_page
from initlab.report.verdicts import Verdict, report_verdict

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["QUESTION", "answer", "doctor_html"]

QUESTION = "Does the signal keep its scale through this network at init, forward and backward?"


def answer(report: DoctorReport) -> str:
    """The page's answer in one sentence: yes, or no with the problems' count and codes."""
    found = report_verdict(report)
    if not found.flagged:
        return "Yes: no warning or critical finding."
    return f"No: {verdict(report)}: {', '.join(found.codes)}."


def _finding(finding: Finding) -> dict[str, Any]:
    return {
        "severity": finding.severity,
        "title": finding.title,
        "code": finding.code,
        "layers": ", ".join(finding.layers) if finding.layers else "(the whole model)",
        "evidence": finding.evidence,
        "fix": finding.fix,
        "expected": finding.expected,
        "plan": "\n".join(finding.plan.lines()) if finding.plan is not None else "",
    }


def _jacobian(report: DoctorReport) -> dict[str, Any] | None:
    spectrum = report.jacobian
    if spectrum is None:
        return None
    if spectrum.skipped:
        return {"skipped": spectrum.skipped, "summary": "", "method": "", "rows": []}
    rows = [
        ("largest singular value", spectrum.largest),
        ("smallest singular value", spectrum.smallest),
        ("mean squared singular value", spectrum.mean_square),
        ("largest / smallest", spectrum.spread),
    ]
    return {
        "skipped": "",
        "summary": jacobian_summary(report),
        "method": spectrum.method,
        "rows": [(name, number(value)) for name, value in rows],
    }


def _layers(report: DoctorReport, heading: str) -> dict[str, Any]:
    reference = network_input_std(report)
    return {
        "heading": heading,
        "columns": LAYER_COLUMNS,
        "rows": layer_cells(report),
        "input_std": None if reference is None else number(reference),
        "skipped": report.skipped,
    }


def _figure(draw: Callable[[], Figure]) -> dict[str, str]:
    """``{"uri": ...}`` of a doctor plot, or ``{"missing": why}`` without matplotlib."""
    try:
        figure = draw()
    except MissingDependencyError as error:
        return {"missing": str(error), "uri": ""}
    return {"missing": "", "uri": figure_data_uri(figure)}


def _comparison(before: DoctorReport, after: DoctorReport) -> dict[str, Any]:
    return {
        "before": report_verdict(before),
        "before_text": verdict(before),
        "after": report_verdict(after),
        "after_text": verdict(after),
        "figure": _figure(lambda: doctor_plots.comparison_figure(before, after)),
        "remaining": [_finding(f) for f in after.findings if f.severity != "info"],
        "layers": _layers(after, "After the fix: per-layer statistics"),
    }


def doctor_html(
    report: DoctorReport,
    *,
    title: str = "initlab doctor",
    comparison: DoctorReport | None = None,
) -> str:
    """The report as a self-contained HTML document (a string; write it with UTF-8).

    Sections: the question and its answer; every finding (severity, title, layers, evidence,
    fix, expected effect, and the fix plan's rules); the whole fix as one plan; with
    ``comparison``, the same model after the fix beside ``report``; the plots (when matplotlib
    is installed); the input-output Jacobian's spectrum; and the per-layer table.

    Example:
        >>> Path("doctor.html").write_text(doctor_html(report), encoding="utf-8")

    Args:
        report: the diagnosis.
        title: the page's title and heading.
        comparison: the report of the same model after applying ``report.fix``.
    """
    found: Verdict = report_verdict(report)
    fix = report.fix
    return render_page(
        "doctor.html",
        title=title,
        note="",
        question=QUESTION,
        answer=answer(report),
        facts="Measured at initialization on one batch: one forward pass and one backward "
        "pass of a random cotangent (or the given loss).",
        verdict=found,
        findings=[_finding(f) for f in report.findings],
        fix="\n".join(fix.lines()) if fix.rules else "",
        comparison=_comparison(report, comparison) if comparison is not None else None,
        plots=_figure(lambda: doctor_plots.doctor_figure(report)),
        jacobian=_jacobian(report),
        layers=_layers(report, "Per-layer statistics"),
    )
