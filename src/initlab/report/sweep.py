"""A sweep's report (the demo's too): one self-contained HTML page, PNG plots inlined.

The page states its question (which configurations train, and did the doctor's verdict at init
foretell it?) and its answer in one sentence each, then shows: the outcome per configuration
coloured by the doctor's verdict (:func:`~initlab.report.sweep_plots.outcome_figure`), the
summary per configuration, the learning curves, the settings every trial shared, and every
trial. Numbers keep the digits their spread over seeds supports; a missing value is a dash with
its reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from initlab.experiments.results import failures, varied_columns
from initlab.optional import MissingDependencyError
from initlab.progress import steps
from initlab.report.numbers import MISSING, mean_std, number
from initlab.report.page import figure_data_uri, render_page
from initlab.report.sweep_view import (
    TRAINED_FRACTION,
    Configuration,
    configuration_name,
    configurations,
    curve_panels,
    row_verdict,
    setting_text,
    shared_settings,
)
from initlab.report.verdicts import FINDING_MEANINGS

__all__ = ["QUESTION", "answer", "sweep_html", "write_report"]

QUESTION = "Which configurations train, and did the doctor's verdict at init foretell it?"


def answer(found: Sequence[Configuration]) -> str:
    """The page's answer in one sentence: how often the verdict at init foretold the outcome,
    and how it erred (the plot and the summary name the configurations)."""
    if not found:
        return "No trial completed, so nothing can be compared: see the failures below."
    right = sum(c.judgement == "right" for c in found)
    sentence = (
        f"The doctor's verdict at init foretold the outcome of {right} of {len(found)} "
        "configurations"
    )
    missed = sum(c.judgement == "missed" for c in found)
    alarms = sum(c.judgement == "false alarm" for c in found)
    wrong = []
    if missed:
        wrong.append(f"it passed {missed} that did not train")
    if alarms:
        wrong.append(f"flagged {alarms} that trained")
    return sentence + ("; " + " and ".join(wrong) if wrong else "") + "."


def _percent(values: Sequence[float | None]) -> str:
    return mean_std([None if v is None else 100 * v for v in values])


def _test_cell(configuration: Configuration) -> dict[str, str]:
    measured = [v for v in configuration.test if v is not None]
    if not measured:
        reason = "diverged" if configuration.diverged else "not measured"
        return {"text": MISSING, "reason": reason}
    reason = ""
    if len(measured) < len(configuration.test):
        reason = f"{len(measured)} of {len(configuration.test)} seeds; the rest diverged"
    return {"text": _percent(measured), "reason": reason}


def _summary_row(configuration: Configuration) -> dict[str, Any]:
    runs = len(configuration.best)
    return {
        "name": configuration.name,
        "group": configuration.group,
        "verdict": configuration.verdict,
        "best": _percent(configuration.best),
        "test": _test_cell(configuration),
        "diverged": f"{configuration.diverged} of {runs}" if configuration.diverged else "none",
        "trained": configuration.trained,
        "judgement": configuration.judgement,
    }


def _cell(value: Any, reason: str, *, scale: float = 1.0, digits: int = 3) -> dict[str, str]:
    if value is None or value != value:  # None or NaN: a dash and why
        return {"text": MISSING, "reason": reason}
    return {"text": number(scale * float(value), digits), "reason": ""}


def _missing_reason(row: Any) -> str:
    """Why a trial has no value: its state (failed, pruned), or that it diverged."""
    if row["state"] != "complete":
        return str(row["state"])
    diverged = row["diverged"]
    return "diverged" if diverged == diverged and bool(diverged) else "not measured"


def _trial_rows(table: Any, names: dict[int, str]) -> list[dict[str, Any]]:
    keys = varied_columns(table)
    rows = []
    for _, row in table.iterrows():
        reason = _missing_reason(row)
        rows.append({
            "trial": int(row["trial"]),
            "name": names.get(int(row["trial"])) or configuration_name(row, keys),
            "seed": setting_text(row["seed"]),
            "verdict": row_verdict(row) if row["state"] == "complete" else None,
            "best": _cell(row["best_val_accuracy"], reason, scale=100),
            "final": _cell(row["final_val_accuracy"], reason, scale=100),
            "test": _cell(row["test_accuracy"], reason, scale=100),
            "loss": _cell(row["final_train_loss"], reason),
            "epochs": _cell(row["epochs_run"], reason, digits=6),
            "seconds": _cell(row["seconds"], reason, digits=2),
            "state": str(row["state"]),
        })  # fmt: skip
    return rows


def _figures(
    found: Sequence[Configuration], curves: Any, png_folder: Path | None
) -> list[dict[str, str]]:
    from initlab.report.sweep_plots import curves_figure, outcome_figure

    panels = curve_panels(found, curves)
    drawn = [("outcome", outcome_figure(found), "best validation accuracy per configuration, "
              "coloured by the doctor's verdict at init")]  # fmt: skip
    if panels:
        drawn.append(("curves", curves_figure(panels), "validation accuracy per epoch"))
    return [
        {
            "id": key,
            "alt": alt,
            "uri": figure_data_uri(
                figure, dpi=100, save_as=None if png_folder is None else png_folder / f"{key}.png"
            ),
        }
        for key, figure, alt in drawn
    ]


def sweep_html(
    study_name: str,
    table: Any,
    curves: Any = None,
    *,
    note: str = "",
    png_folder: Path | None = None,
    progress: bool | None = None,
) -> str:
    """The whole report as one HTML document (plots also saved as PNGs in ``png_folder``).

    Args:
        study_name: the study's name (the page's title).
        table: :func:`~initlab.experiments.results.trials_table`, optionally with the caller's
            ``act`` and ``label`` columns (the demo's), which then group and name the
            configurations.
        curves: :func:`~initlab.experiments.results.curves_table` (no curves when ``None``).
        note: one line about the study (what ran, on what).
        png_folder: where to also save the plots as ``outcome.png`` and ``curves.png``.
        progress: a bar while the plots and the page are drawn, on standard error: ``None``
            when it is a terminal (see :func:`initlab.progress.set_default`), ``True``
            always, ``False`` never.
    """
    with steps("sweep report: plots", 2, enabled=progress) as bar:
        found = configurations(table)
        figures: list[dict[str, str]] = []
        plot_note = ""
        if found:  # plots of nothing would only hide that nothing completed
            try:
                figures = _figures(found, curves, png_folder)
            except MissingDependencyError as error:
                plot_note = str(error)
        bar.advance()
        bar.describe("sweep report: page")
        page = _page(study_name, table, found, figures, plot_note=plot_note, note=note)
        bar.advance()
    return page


def _page(
    study_name: str,
    table: Any,
    found: Sequence[Configuration],
    figures: list[dict[str, str]],
    *,
    plot_note: str,
    note: str,
) -> str:
    """The HTML document of :func:`sweep_html` around its plots."""
    codes = dict.fromkeys(code for c in found for code in c.verdict.codes)
    complete = int((table["state"] == "complete").sum())
    return render_page(
        "sweep.html",
        title=f"initlab sweep: {study_name}",
        question=QUESTION,
        answer=answer(found),
        note=note,
        facts=f"{complete} complete trials of {len(table)}, {len(found)} configurations",
        trained_fraction=f"{TRAINED_FRACTION:.0%}",
        failures=failures(table),
        complete=complete,
        summary=[_summary_row(c) for c in found],
        figures=figures,
        plot_note=plot_note,
        glossary=[(code, FINDING_MEANINGS.get(code, code)) for code in codes],
        shared=shared_settings(table),
        trials=_trial_rows(table, {t: c.name for c in found for t in c.trials}),
    )


def write_report(path: str | Path, document: str) -> Path:
    """Write the HTML document, creating the folder."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(document, encoding="utf-8")
    return target
