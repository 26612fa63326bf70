"""A doctor report as ONE self-contained HTML file.

Nothing in the page points outside it: the CSS is inline, there is no script, no web font and no
remote image; the plots are PNGs embedded as ``data:`` URIs. The file can be attached to a CI
run, mailed, or opened offline years later. Every piece of text that comes from the model or the
findings (layer names, evidence) is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import base64
import io
from html import escape
from typing import TYPE_CHECKING

from initlab.doctor.diagnose import DoctorReport
from initlab.doctor.finding import Finding
from initlab.optional import MissingDependencyError
from initlab.report.doctor import (
    LAYER_COLUMNS,
    jacobian_summary,
    layer_cells,
    network_input_std,
    plan_lines,
    verdict,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["doctor_html", "figure_data_uri"]

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 78rem; padding: 0 1rem; color: #1f2328; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de;
     padding-bottom: .2rem; }
h3 { font-size: 1rem; margin: 0 0 .4rem 0; }
.verdict { font-size: 1.15rem; font-weight: 600; padding: .5rem .8rem; border-radius: 6px; }
.verdict.healthy { background: #dafbe1; color: #116329; }
.verdict.problems { background: #ffebe9; color: #a40e26; }
.finding { border: 1px solid #d0d7de; border-left-width: 6px; border-radius: 6px;
           padding: .7rem 1rem; margin: .8rem 0; }
.finding.critical { border-left-color: #cf222e; }
.finding.warning { border-left-color: #bf8700; }
.finding.info { border-left-color: #0969da; }
.badge { display: inline-block; font-size: .75rem; font-weight: 700; letter-spacing: .03em;
         padding: .1rem .45rem; border-radius: 4px; color: #fff; margin-right: .4rem;
         vertical-align: middle; }
.badge.critical { background: #cf222e; } .badge.warning { background: #9a6700; }
.badge.info { background: #0969da; }
.code { color: #656d76; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .8rem; }
dl { display: grid; grid-template-columns: 8rem 1fr; gap: .25rem .8rem; margin: 0; }
dt { color: #656d76; } dd { margin: 0; }
pre { background: #f6f8fa; padding: .5rem .7rem; border-radius: 4px; margin: 0;
      font-size: .8rem; white-space: pre-wrap; }
table { border-collapse: collapse; font-size: .85rem; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #eaeef2; }
th { text-align: left; background: #f6f8fa; position: sticky; top: 0; }
td.number { text-align: right; font-variant-numeric: tabular-nums;
            font-family: ui-monospace, Menlo, Consolas, monospace; }
img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
.muted { color: #656d76; }
"""


def figure_data_uri(figure: Figure, *, dpi: int = 100) -> str:
    """A matplotlib Figure as a ``data:image/png;base64,...`` URI (for an ``<img src>``)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _verdict_block(report: DoctorReport, label: str = "") -> str:
    kind = "healthy" if report.healthy else "problems"
    prefix = f"{escape(label)}: " if label else ""
    return f'<p class="verdict {kind}">{prefix}{escape(verdict(report))}</p>'


def _finding(finding: Finding) -> str:
    severity = escape(finding.severity)
    layers = ", ".join(finding.layers) if finding.layers else "(the whole model)"
    parts = [
        f'<section class="finding {severity}">',
        f'<h3><span class="badge {severity}">{severity.upper()}</span>{escape(finding.title)} '
        f'<span class="code">{escape(finding.code)}</span></h3>',
        "<dl>",
        f"<dt>layers</dt><dd>{escape(layers)}</dd>",
        f"<dt>evidence</dt><dd>{escape(finding.evidence)}</dd>",
        f"<dt>fix</dt><dd>{escape(finding.fix)}</dd>",
        f"<dt>expected</dt><dd>{escape(finding.expected)}</dd>",
    ]
    if finding.plan is not None:
        rules = "\n".join(plan_lines(finding.plan))
        parts.append(
            f"<dt>fix plan</dt><dd><pre>{escape(rules)}</pre>"
            '<span class="muted">auto: He / Xavier / LeCun chosen by the activation that '
            "follows each layer; biases zero.</span></dd>"
        )
    parts.extend(["</dl>", "</section>"])
    return "\n".join(parts)


def _findings(report: DoctorReport) -> str:
    if not report.findings:
        return '<p class="muted">No finding: the signal keeps its scale forward and backward.</p>'
    return "\n".join(_finding(finding) for finding in report.findings)


def _fix_plan(report: DoctorReport) -> str:
    plan = report.fix
    if plan is None:
        return ""
    rules = "\n".join(plan_lines(plan))
    return (
        "<h2>The whole fix, as one plan</h2>"
        '<p class="muted">Apply it with <code>report.fix.apply(model, seed=0)</code> or '
        "<code>initlab doctor ... --fix</code> to see its effect.</p>"
        f"<pre>{escape(rules)}</pre>"
    )


def _jacobian(report: DoctorReport) -> str:
    spectrum = report.jacobian
    if spectrum is None:
        return ""
    if spectrum.skipped:
        return f'<h2>Input-output Jacobian</h2><p class="muted">{escape(spectrum.skipped)}</p>'
    rows = [
        ("largest singular value", spectrum.largest),
        ("smallest singular value", spectrum.smallest),
        ("mean squared singular value", spectrum.mean_square),
        ("largest / smallest", spectrum.spread),
    ]
    cells = "".join(
        f'<tr><td>{escape(name)}</td><td class="number">{_number(value)}</td></tr>'
        for name, value in rows
    )
    return (
        "<h2>Input-output Jacobian</h2>"
        f'<p class="muted">{escape(jacobian_summary(report))} (Pennington et al., 2017). '
        f"Method: {escape(spectrum.method)}.</p>"
        f"<table><tbody>{cells}</tbody></table>"
    )


def _number(value: float | None) -> str:
    return "-" if value is None else escape(f"{value:.4g}")


def _layers_table(report: DoctorReport, heading: str = "Per-layer statistics") -> str:
    head = "".join(
        f'<th title="{escape(meaning)}">{escape(name)}</th>' for name, meaning in LAYER_COLUMNS
    )
    body = []
    for cells in layer_cells(report):
        tds = [f"<td>{escape(cells[0])}</td>", f'<td class="muted">{escape(cells[1])}</td>']
        tds.extend(f'<td class="number">{escape(cell)}</td>' for cell in cells[2:])
        body.append(f"<tr>{''.join(tds)}</tr>")
    reference = network_input_std(report)
    caption = (
        f'<p class="muted">Network input std {reference:.3g}. Hover a column name for its '
        "meaning.</p>"
        if reference is not None
        else ""
    )
    caption += "".join(f'<p class="muted">{escape(note)}</p>' for note in report.skipped)
    return (
        f"<h2>{escape(heading)}</h2>"
        f"{caption}<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _image(uri: str, alt: str) -> str:
    return f'<p><img src="{uri}" alt="{escape(alt)}"></p>'


def _plots(report: DoctorReport) -> str:
    try:
        from initlab.report.doctor_plots import doctor_figure

        uri = figure_data_uri(doctor_figure(report))
    except MissingDependencyError as error:
        return f'<h2>Plots</h2><p class="muted">{escape(str(error))}</p>'
    alt = (
        "per layer: forward output std, backward gradient std, dead and saturated units, "
        "signal propagation, weight gain"
    )
    return "<h2>Plots</h2>" + _image(uri, alt)


def _comparison(before: DoctorReport, after: DoctorReport) -> str:
    parts = [
        "<h2>Before and after the fix</h2>",
        _verdict_block(before, "before"),
        _verdict_block(after, "after"),
    ]
    try:
        from initlab.report.doctor_plots import comparison_figure

        parts.append(
            _image(
                figure_data_uri(comparison_figure(before, after)),
                "output std and gradient std per layer, before and after the fix",
            )
        )
    except MissingDependencyError as error:
        parts.append(f'<p class="muted">{escape(str(error))}</p>')
    remaining = [f for f in after.findings if f.severity != "info"]
    if remaining:
        parts.append("<h3>Still found after the fix</h3>")
        parts.extend(_finding(finding) for finding in remaining)
    parts.append(_layers_table(after, "After the fix: per-layer statistics"))
    return "\n".join(parts)


def doctor_html(
    report: DoctorReport,
    *,
    title: str = "initlab doctor",
    comparison: DoctorReport | None = None,
) -> str:
    """The report as a self-contained HTML document (a string; write it with UTF-8).

    Sections: the verdict; every finding (severity, title, layers, evidence, fix, expected
    effect, and the fix plan's rules); the whole fix as one plan; the plots (when matplotlib is
    installed); the input-output Jacobian's spectrum; the per-layer table; and, with
    ``comparison``, the same model after the fix side by side with ``report``.

    Example:
        >>> Path("doctor.html").write_text(doctor_html(report), encoding="utf-8")

    Args:
        report: the diagnosis.
        title: the page's title and heading.
        comparison: the report of the same model after applying ``report.fix``.
    """
    sections = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{escape(title)}</h1>",
        _verdict_block(report),
        "<h2>Findings</h2>",
        _findings(report),
        _fix_plan(report),
        _comparison(report, comparison) if comparison is not None else "",
        _plots(report),
        _jacobian(report),
        _layers_table(report),
        '<p class="muted">Measured at initialization on one batch: one forward pass and one '
        "backward pass of a random cotangent (or the given loss). Written by initlab.</p>",
        "</body>",
        "</html>",
    ]
    return "\n".join(part for part in sections if part) + "\n"
