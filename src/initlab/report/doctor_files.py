"""A doctor report written to a file, the format chosen by the path's suffix.

.. code-block:: python

    from initlab.report.doctor_files import save_doctor_report

    report = initlab.doctor(model, batch)
    save_doctor_report(report, "doctor.html")   # one self-contained page, plots embedded
    save_doctor_report(report, "doctor.json")   # the data (DoctorReport.to_dict)
    save_doctor_report(report, "doctor.png")    # the plots (also .svg, .pdf)

With ``comparison=`` (the report after applying ``report.fix``) the HTML page shows both side by
side, the JSON holds it as ``"after_fix"`` and the figure overlays the two.
"""

from __future__ import annotations

import json
from pathlib import Path

from initlab.doctor.report import DoctorReport
from initlab.errors import InitlabError
from initlab.progress import steps

__all__ = ["DOCTOR_REPORT_SUFFIXES", "save_doctor_report"]

_HTML = (".html", ".htm")
_FIGURES = (".png", ".svg", ".pdf")
DOCTOR_REPORT_SUFFIXES = (".json", *_HTML, *_FIGURES)


def save_doctor_report(
    report: DoctorReport,
    path: str | Path,
    *,
    title: str = "initlab doctor",
    comparison: DoctorReport | None = None,
    progress: bool | None = None,
) -> Path:
    """Write ``report`` to ``path`` as JSON, self-contained HTML or a figure, by suffix.

    Args:
        report: the diagnosis.
        path: where to write; the suffix picks the format (:data:`DOCTOR_REPORT_SUFFIXES`).
        title: the HTML page's title and heading.
        comparison: the report of the same model after its fix, shown with ``report``.
        progress: a bar while an HTML page or a figure is drawn, on standard error: ``None``
            when it is a terminal (see :func:`initlab.progress.set_default`), ``True``
            always, ``False`` never.

    Returns:
        The path written.

    Raises:
        InitlabError: a suffix that is none of the formats.
        MissingDependencyError: a figure without matplotlib (an HTML page is written
            without its plots, and says what to install).
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix == ".json":
        data = report.to_dict()
        if comparison is not None:
            data["after_fix"] = comparison.to_dict()
        target.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    elif suffix in _HTML:
        from initlab.report.doctor_html import doctor_html

        with steps(f"writing {target.name}", None, enabled=progress):
            page = doctor_html(report, title=title, comparison=comparison)
            target.write_text(page, encoding="utf-8")
    elif suffix in _FIGURES:
        with steps(f"writing {target.name}: drawing", 2, enabled=progress) as bar:
            from initlab.report.doctor_plots import comparison_figure, doctor_figure

            figure = (
                doctor_figure(report)
                if comparison is None
                else comparison_figure(report, comparison)
            )
            bar.advance()
            bar.describe(f"writing {target.name}: saving")
            figure.savefig(target, dpi=120)
            bar.advance()
    else:
        raise InitlabError(
            f"save_doctor_report: unknown format {target.suffix!r} for {target}; use a path "
            f"ending in one of {', '.join(DOCTOR_REPORT_SUFFIXES)}."
        )
    return target
