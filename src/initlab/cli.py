"""The ``initlab`` command line (Typer). Rendering only: the work is done by the library."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from initlab.errors import ConfigError, InitlabError
from initlab.report import schemes as render_schemes

if TYPE_CHECKING:
    from torch import nn

    from initlab.plan import Plan

__all__ = ["app", "main"]

app = typer.Typer(
    name="initlab",
    help="Weight initialization, measured: schemes, plans, a signal-propagation doctor.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

console = Console()
error_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(command: F) -> F:
    """Print an :class:`InitlabError` as one line (no traceback) and exit with code 2."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except InitlabError as error:
            error_console.print(Text.assemble(("error: ", "bold red"), str(error)), soft_wrap=True)
            raise typer.Exit(code=2) from None

    return run  # type: ignore[return-value]


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    from initlab.report.values import parse_key_values

    return parse_key_values(pairs, option="--param")


@app.command("schemes")
@user_errors
def schemes_command(
    name: Annotated[
        str | None, typer.Argument(help="A scheme to describe (e.g. he_normal).")
    ] = None,
    shape: Annotated[
        str | None, typer.Option(help="Weight shape, e.g. 256,128,3,3: prints fans, std, bound.")
    ] = None,
    layout: Annotated[
        str, typer.Option(help="torch, torch_transposed, keras, keras_depthwise or jax.")
    ] = "torch",
    groups: Annotated[int, typer.Option(help="The layer's groups (grouped convolutions).")] = 1,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Scheme parameter KEY=VALUE.")
    ] = None,
) -> None:
    """List every scheme with its formula, or describe one for a given shape."""
    if name is None:
        console.print(render_schemes.catalogue_table())
        return
    params = _parse_params(param or [])
    console.print(render_schemes.describe(name, params, shape, layout, groups))


@app.command("demo")
@user_errors
def demo_command(
    out: Annotated[Path, typer.Option(help="Folder of the demo's study and report.")] = Path(
        "runs/demo"
    ),
    seeds: Annotated[int, typer.Option(help="Seeds per configuration.")] = 2,
    epochs: Annotated[int, typer.Option(help="Training epochs per run.")] = 12,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 2,
) -> None:
    """The main job: the folklore of initialization, measured on scikit-learn's digits."""
    from initlab.experiments.demo import demo_configurations, run_demo
    from initlab.report.experiments import demo_table, trial_progress
    from initlab.report.schemes import propagation_table

    console.print(propagation_table(depth=30, width=256, seed=0))
    runs = len(demo_configurations(seeds))
    console.print(
        f"Training {runs} runs (deep 16x128 MLPs on digits, doctor at init, then SGD) "
        f"with {workers} workers..."
    )
    with trial_progress(console, "demo runs") as update:
        result = run_demo(out, seeds=seeds, epochs=epochs, workers=workers, on_progress=update)
    console.print(demo_table(result.table))
    console.print(f"Report: {result.report}")


@app.command("sweep")
@user_errors
def sweep_command(
    space: Annotated[Path, typer.Argument(help="Search space YAML file.")],
    task: Annotated[str, typer.Option(help="digits-mlp, digits-cnn, wine-mlp, ...")] = (
        "digits-mlp"
    ),
    trials: Annotated[int, typer.Option(help="Finished trials the study should hold.")] = 20,
    workers: Annotated[int, typer.Option(help="Worker processes on this machine.")] = 1,
    storage: Annotated[
        str | None, typer.Option(help="Storage URL (default: sqlite file under runs/).")
    ] = None,
    study: Annotated[str | None, typer.Option(help="Study name (default: the file's stem).")] = (
        None
    ),
) -> None:
    """Run (or resume) a sweep over init x regularization x schedule x clipping x augmentation."""
    from initlab.experiments.results import summary, trials_table
    from initlab.experiments.space import SearchSpace
    from initlab.experiments.storage import default_url, redact
    from initlab.experiments.sweep import run_sweep
    from initlab.report.experiments import summary_table, trial_progress

    search = SearchSpace.from_file(space)
    name = study or space.stem
    url = storage or default_url(name)
    console.print(f"study {name!r} in {redact(url)}: {trials} trials, {workers} worker(s)")
    with trial_progress(console, "trials") as update:
        handle = run_sweep(search, task, trials=trials, storage=url, study=name,
                           workers=workers, on_progress=update)  # fmt: skip
    console.print(summary_table(summary(trials_table(handle)), f"study {name}"))
    console.print(
        f"Report: initlab report {name}" + (f" --storage {redact(url)}" if storage else "")
    )


@app.command("report")
@user_errors
def report_command(
    study: Annotated[str, typer.Argument(help="The study's name.")],
    storage: Annotated[str | None, typer.Option(help="Storage URL (default: runs/NAME.db).")] = (
        None
    ),
    out: Annotated[Path | None, typer.Option(help="HTML file (default runs/NAME.html).")] = None,
    csv: Annotated[Path | None, typer.Option(help="Also export the trials table as CSV.")] = None,
    parquet: Annotated[Path | None, typer.Option(help="Also export as Parquet.")] = None,
) -> None:
    """Tidy table, per-configuration summary and a self-contained HTML report of a study."""
    from initlab.experiments.results import curves_table, export, summary, trials_table
    from initlab.experiments.storage import default_url, open_storage
    from initlab.optional import require
    from initlab.report.experiments import summary_table
    from initlab.report.sweep import sweep_html, write_report

    optuna = require("optuna", "initlab report")
    url = storage or default_url(study)
    try:
        handle = optuna.load_study(study_name=study, storage=open_storage(url))
    except KeyError:
        raise ConfigError(f"No study named {study!r} in that storage; check --storage.") from None
    table = trials_table(handle)
    summarized = summary(table)
    console.print(summary_table(summarized, f"study {study}"))
    target = out or Path("runs") / f"{study}.html"
    write_report(target, sweep_html(study, table, summarized, curves_table(handle)))
    for path in (csv, parquet):
        if path is not None:
            console.print(f"exported {export(table, path)}")
    console.print(f"Report: {target}")


def _parse_kwargs(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"--kwargs is a JSON object such as '{{\"depth\": 30}}'; {text!r} is not JSON "
            f"({error.msg} at column {error.colno})."
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(f"--kwargs is a JSON object such as '{{\"depth\": 30}}', got {text!r}.")
    return value


@contextlib.contextmanager
def _current_directory_importable() -> Iterator[None]:
    # A console script's sys.path starts at its bin/ folder; users expect `initlab plan
    # models:make` to find ./models.py, as `python -m` would.
    saved = list(sys.path)
    sys.path.insert(0, os.getcwd())
    try:
        yield
    finally:
        sys.path[:] = saved


def _choose_plan(
    preset: str | None, options: list[str], config: Path | None, model: nn.Module | None
) -> Plan:
    from initlab.plan import Plan

    if preset is not None and config is not None:
        raise ConfigError("--preset and --config are alternatives: give one of them.")
    if options and preset is None:
        raise ConfigError("--option sets a preset's option: add --preset NAME.")
    if preset is not None:
        from initlab.plan.presets import preset as build_preset
        from initlab.report.values import parse_key_values

        return build_preset(preset, model, **parse_key_values(options, option="--option"))
    if config is not None:
        return Plan.from_file(config)
    return Plan(default="auto", name="auto")


@app.command("plan")
@user_errors
def plan_command(
    factory: Annotated[
        str | None,
        typer.Argument(
            metavar="MODULE:FACTORY",
            help="Import path of a function or class that returns the model, "
            "e.g. mypackage.models:make_model (only that module is imported).",
            show_default=False,
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help="A named plan: torch-default, xavier, kaiming, lecun, orthogonal, "
            "gpt2, zero-init-residual, fixup."
        ),
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="A preset option KEY=VALUE (gpt2: n_layer, std)."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="A plan file: .yaml, .yml, .toml or .json.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the initialization (with --apply).")] = 0,
    kwargs: Annotated[
        str | None,
        typer.Option("--kwargs", help="Keyword arguments of the factory, as a JSON object."),
    ] = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="Initialize the model (without it: a dry run).")
    ] = False,
    save: Annotated[
        Path | None,
        typer.Option(help="With --apply: write the model's state dict to this .safetensors file."),
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the table to this JSON file.")
    ] = None,
    show: Annotated[
        bool, typer.Option("--show", help="Print the plan's rules; no model needed.")
    ] = False,
) -> None:
    """What a plan does to every parameter of a model (the default plan is "auto")."""
    from initlab.plan.factory import load_factory
    from initlab.report.plan import assignments_view, rules_view

    if save is not None and not apply:
        raise ConfigError("--save writes the initialized weights: add --apply.")
    model = None
    if factory is not None:
        with _current_directory_importable():
            model = load_factory(factory, _parse_kwargs(kwargs))
    plan = _choose_plan(preset, option or [], config, model)
    if show:
        console.print(rules_view(plan))
        return
    if model is None:
        raise ConfigError(
            "Give MODULE:FACTORY, the model to plan for (e.g. mypackage.models:make_model), "
            "or --show to print a plan's rules without a model."
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = plan.apply(model, seed=seed) if apply else plan.resolve(model)
    title = f"plan {plan.name!r} on {type(model).__name__} ({factory})"
    console.print(assignments_view(table, title=title, show_unused=plan.warn_unused))
    for warning in caught:
        if "matched no parameter" not in str(warning.message):  # the table lists those
            console.print(Text(f"warning: {warning.message}", "yellow"))
    if json_path is not None:
        json_path.write_text(table.to_json() + "\n", encoding="utf-8")
        console.print(Text(f"table written to {json_path}", "dim"))
    if save is not None:
        from initlab.optional import require

        safetensors_torch = require("safetensors.torch", "--save")
        safetensors_torch.save_model(model, str(save))
        console.print(Text(f"weights written to {save}", "dim"))


def _doctor_plan(spec: str, model: nn.Module) -> Plan:
    from initlab.errors import UnknownNameError
    from initlab.plan import Plan
    from initlab.plan.presets import preset as build_preset

    path = Path(spec)
    if path.suffix.lower() in (".yaml", ".yml", ".toml", ".json") or path.is_file():
        return Plan.from_file(path)
    try:
        return build_preset(spec, model)
    except UnknownNameError as error:
        raise UnknownNameError(
            f"--plan: {error} Or give a plan file (.yaml, .toml, .json)."
        ) from None


@app.command("doctor")
@user_errors
def doctor_command(
    factory: Annotated[
        str,
        typer.Argument(
            metavar="MODULE:FACTORY",
            help="Import path of a function or class that returns the model, "
            "e.g. mypackage.models:make_model (only that module is imported).",
            show_default=False,
        ),
    ],
    input_shape: Annotated[
        str | None,
        typer.Option(
            "--input-shape",
            help="The batch's shape, batch size first: 64,3,32,32 (CNN) or 64,64 (MLP).",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="'digits' (scikit-learn's, standardized; 64,64 or 64,1,8,8) or a .npy/.npz "
            "file (its 'x' array); default: a Gaussian batch of --input-shape."
        ),
    ] = None,
    kwargs: Annotated[
        str | None,
        typer.Option("--kwargs", help="Keyword arguments of the factory, as a JSON object."),
    ] = None,
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

    Exit code 0 when healthy, 1 when problems were found (a CI gate), for the model as built.
    """
    import torch

    from initlab.doctor.diagnose import doctor
    from initlab.doctor.inputs import input_batch
    from initlab.plan.factory import load_factory
    from initlab.report import doctor as render_doctor
    from initlab.report.values import parse_shape

    shape = parse_shape(input_shape, option="--input-shape") if input_shape else None
    batch = input_batch(data, shape, seed)
    with _current_directory_importable(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the factory's own init draws from torch's global stream
        model = load_factory(factory, _parse_kwargs(kwargs))
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
    console.print(render_doctor.findings_panel(report, title=title))
    console.print(render_doctor.layers_table(report))
    if after is not None:
        console.print(render_doctor.before_after_table(report, after))
    elif fix:
        reason = "nothing to fix" if report.healthy else "no finding has an initialization fix"
        console.print(Text(f"--fix: {reason}.", "yellow"))
    for warning in caught:
        console.print(Text(f"warning: {warning.message}", "yellow"))
    if json_path is not None:
        data_out = report.to_dict()
        if after is not None:
            data_out["after_fix"] = after.to_dict()
        json_path.write_text(json.dumps(data_out, indent=2) + "\n", encoding="utf-8")
        console.print(Text(f"report written to {json_path}", "dim"))
    if html_path is not None:
        from initlab.report.doctor_html import doctor_html

        html_path.write_text(doctor_html(report, title=title, comparison=after), encoding="utf-8")
        console.print(Text(f"HTML report written to {html_path}", "dim"))
    raise typer.Exit(code=report.exit_code)


def main() -> None:
    """Entry point of the ``initlab`` console script."""
    app()
