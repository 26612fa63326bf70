"""``initlab doctor``: signal propagation at init, the findings, the fix."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from initlab.cli import application as cli

if TYPE_CHECKING:
    from torch import nn

    from initlab.batches import Batch
    from initlab.doctor.report import DoctorReport
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


@cli.command(
    "doctor",
    example="initlab doctor initlab.train.models:MLP --data digits --kwargs "
    '\'{"in_features": 64, "out_features": 10, "depth": 8}\' --fix',
)
@cli.user_errors
def doctor_command(
    factory: cli.FactoryArgument,
    input_shape: cli.InputShapeOption = None,
    data: cli.DataOption = None,
    kwargs: cli.KwargsOption = None,
    plan: Annotated[
        str | None,
        typer.Option(
            "--plan",
            metavar="PRESET|FILE",
            help="Initialize first: a preset (kaiming, xavier, ...) or a plan file.",
        ),
    ] = None,
    seed: Annotated[
        int,
        typer.Option(
            metavar="N", help="Seed of the model's build, the plan, the batch and the probes."
        ),
    ] = 0,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", metavar="FILE", help="Write the report to this JSON file."),
    ] = None,
    html_path: Annotated[
        Path | None,
        typer.Option(
            "--html", metavar="FILE", help="Write a self-contained HTML report (plots embedded)."
        ),
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
    cli.check_output_path(json_path, "--json", (".json",))
    cli.check_output_path(html_path, "--html", (".html", ".htm"))
    model, batch = cli.model_and_batch(
        factory, kwargs=kwargs, data=data, input_shape=input_shape, seed=seed
    )
    diagnosis = _diagnose(model, batch, plan, seed=seed, fix=fix, jacobian=jacobian)
    title = f"initlab doctor: {type(model).__name__} ({factory})"
    _show(diagnosis, title, fix)
    for path in (json_path, html_path):
        if path is not None:
            _save(diagnosis, path, title)
    raise typer.Exit(code=diagnosis.before.exit_code)


@dataclass(frozen=True)
class _Diagnosis:
    """The report, the report after ``--fix`` applied its plan (if it did), and the warnings
    both raised."""

    before: DoctorReport
    after: DoctorReport | None
    warnings: tuple[warnings.WarningMessage, ...]


def _diagnose(
    model: nn.Module, batch: Batch, plan: str | None, *, seed: int, fix: bool, jacobian: bool
) -> _Diagnosis:
    """Initialize with ``plan`` if given, diagnose; with ``fix``, apply the fix and diagnose
    again, reusing what a plan cannot change (the activation after each layer)."""
    from initlab.doctor.diagnose import doctor

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if plan is not None:
            _doctor_plan(plan, model).apply(model, seed=seed)
        before = doctor(model, batch, jacobian=jacobian, seed=seed)
        after = None
        if fix and before.fix.rules:
            before.fix.apply(model, seed=seed)
            after = doctor(
                model, batch, jacobian=jacobian, seed=seed, activations=before.activations
            )
    return _Diagnosis(before, after, tuple(caught))


def _show(diagnosis: _Diagnosis, title: str, fix: bool) -> None:
    from initlab.report import doctor as render_doctor

    report = diagnosis.before
    cli.console.print(render_doctor.findings_panel(report, title=title))
    cli.console.print(render_doctor.layers_table(report))
    if diagnosis.after is not None:
        cli.console.print(render_doctor.before_after_table(report, diagnosis.after))
    elif fix:
        reason = "nothing to fix" if report.healthy else "no finding has an initialization fix"
        cli.console.print(Text(f"--fix: {reason}.", "yellow"))
    for warning in diagnosis.warnings:
        cli.console.print(Text(f"warning: {warning.message}", "yellow"))


def _save(diagnosis: _Diagnosis, path: Path, title: str) -> None:
    from initlab.report.doctor_files import save_doctor_report

    save_doctor_report(diagnosis.before, path, title=title, comparison=diagnosis.after)
    what = "report" if path.suffix.lower() == ".json" else "HTML report"
    cli.console.print(Text(f"{what} written to {path}", "dim"))
