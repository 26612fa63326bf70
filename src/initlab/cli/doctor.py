"""``initlab doctor``: signal propagation at init, the findings, the fix."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from initlab.cli import application as cli

if TYPE_CHECKING:
    from torch import nn

    from initlab.plan import Plan


def _doctor_plan(spec: str, model: nn.Module) -> Plan:
    from initlab.errors import UnknownNameError
    from initlab.plan import Plan
    from initlab.plan.presets import as_plan

    path = Path(spec)
    if path.suffix.lower() in (".yaml", ".yml", ".toml", ".json") or path.is_file():
        return Plan.from_file(path)
    try:
        return as_plan(spec, model)
    except UnknownNameError as error:
        raise UnknownNameError(
            f"--plan: {error} Or give a plan file (.yaml, .toml, .json)."
        ) from None


@cli.app.command("doctor")
@cli.user_errors
def doctor_command(
    factory: cli.FactoryArgument,
    input_shape: cli.InputShapeOption = None,
    data: cli.DataOption = None,
    kwargs: cli.KwargsOption = None,
    plan: Annotated[
        str | None,
        typer.Option(
            "--plan", help="Initialize first: a preset (kaiming, xavier, ...) or a plan file."
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the model's build, the plan, the batch and the probes.")
    ] = 0,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the report to this JSON file.")
    ] = None,
    html_path: Annotated[
        Path | None,
        typer.Option("--html", help="Write a self-contained HTML report (plots embedded)."),
    ] = None,
    fix: Annotated[
        bool,
        typer.Option("--fix", help="Apply the proposed fix, diagnose again, show before/after."),
    ] = False,
    jacobian: Annotated[
        bool,
        typer.Option(
            "--jacobian/--no-jacobian", help="Estimate the input-output Jacobian's spectrum."
        ),
    ] = True,
) -> None:
    """Signal propagation at init: findings in plain words, the fix, a per-layer table.

    Exit code 0 when healthy, 1 when problems were found (a CI gate), for the model as built
    (or as --plan initialized it).
    """
    from initlab.doctor.diagnose import doctor
    from initlab.report import doctor as render_doctor

    cli.check_output_path(json_path, "--json", (".json",))
    cli.check_output_path(html_path, "--html", (".html", ".htm"))
    model, batch = cli.model_and_batch(factory, kwargs, data, input_shape, seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if plan is not None:
            _doctor_plan(plan, model).apply(model, seed=seed)
        report = doctor(model, batch, jacobian=jacobian, seed=seed)
        after = None
        if fix and report.fix is not None:
            report.fix.apply(model, seed=seed)
            after = doctor(model, batch, jacobian=jacobian, seed=seed)
    title = f"initlab doctor: {type(model).__name__} ({factory})"
    cli.console.print(render_doctor.findings_panel(report, title=title))
    cli.console.print(render_doctor.layers_table(report))
    if after is not None:
        cli.console.print(render_doctor.before_after_table(report, after))
    elif fix:
        reason = "nothing to fix" if report.healthy else "no finding has an initialization fix"
        cli.console.print(Text(f"--fix: {reason}.", "yellow"))
    for warning in caught:
        cli.console.print(Text(f"warning: {warning.message}", "yellow"))
    if json_path is not None:
        data_out = report.to_dict()
        if after is not None:
            data_out["after_fix"] = after.to_dict()
        json_path.write_text(json.dumps(data_out, indent=2) + "\n", encoding="utf-8")
        cli.console.print(Text(f"report written to {json_path}", "dim"))
    if html_path is not None:
        from initlab.report.doctor_html import doctor_html

        html_path.write_text(doctor_html(report, title=title, comparison=after), encoding="utf-8")
        cli.console.print(Text(f"HTML report written to {html_path}", "dim"))
    raise typer.Exit(code=report.exit_code)
