"""``initlab demo``, ``initlab sweep`` and ``initlab report``: experiments and their reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from initlab.cli import application as cli
from initlab.errors import ConfigError

demo = cli.group(
    "demo",
    example="initlab demo --workers 2 > demo.log",
    help="The main job: the folklore of initialization, measured on scikit-learn's digits. "
    "`initlab demo transfer`: learning-rate transfer across widths under SP and muP.",
)


@demo.callback()
@cli.user_errors
def demo_command(
    context: typer.Context,
    out: Annotated[
        Path, typer.Option(metavar="FOLDER", help="Folder of the demo's study and report.")
    ] = Path("runs/demo"),
    seeds: Annotated[int, typer.Option(metavar="N", help="Seeds per configuration.")] = 2,
    epochs: Annotated[int, typer.Option(metavar="N", help="Training epochs per run.")] = 12,
    workers: Annotated[int, typer.Option(metavar="N", help="Worker processes.")] = 2,
) -> None:
    """The main job: the folklore of initialization, measured on scikit-learn's digits."""
    if context.invoked_subcommand is not None:  # ``initlab demo transfer``: its own options
        return
    from initlab.experiments.demo import DEMO_NOTE, demo_configurations, run_demo
    from initlab.report.experiments import demo_table, trial_progress
    from initlab.report.schemes import propagation_table
    from initlab.report.sweep import sweep_html, write_report

    cli.console.print(propagation_table(depth=30, width=256, seed=0))
    runs = len(demo_configurations(seeds))
    cli.console.print(
        f"Training {runs} runs (deep 16x128 MLPs on digits, doctor at init, then SGD) "
        f"with {workers} workers..."
    )
    with trial_progress("demo runs") as update:
        result = run_demo(out, seeds=seeds, epochs=epochs, workers=workers, on_progress=update)
    document = sweep_html("demo", result.table, result.curves, note=DEMO_NOTE,
                          png_folder=result.folder)  # fmt: skip
    report = write_report(result.folder / "report.html", document)
    cli.console.print(demo_table(result.table))
    cli.console.print(f"Report: {report}")


@cli.command("sweep", example="initlab sweep space.yaml --task digits-mlp --trials 40 --workers 2")
@cli.user_errors
def sweep_command(
    space: Annotated[Path, typer.Argument(metavar="SPACE.yaml", help="The search space file.")],
    task: Annotated[
        str,
        typer.Option(
            metavar="TASK", help="digits-mlp, digits-cnn, breast-cancer-mlp or wine-mlp."
        ),
    ] = "digits-mlp",
    trials: Annotated[
        int, typer.Option(metavar="N", help="Finished trials the study should hold.")
    ] = 20,
    workers: Annotated[
        int, typer.Option(metavar="N", help="Worker processes on this machine.")
    ] = 1,
    storage: Annotated[
        str | None,
        typer.Option(metavar="URL", help="Storage URL (default: a SQLite file under runs/)."),
    ] = None,
    study: Annotated[
        str | None, typer.Option(metavar="NAME", help="Study name (default: the file's stem).")
    ] = None,
) -> None:
    """Run (or resume) a sweep over init x regularization x schedule x clipping x augmentation."""
    from initlab.experiments.results import summary, trials_table
    from initlab.experiments.space import SearchSpace
    from initlab.experiments.storage import default_url, redact
    from initlab.experiments.sweep import planned_trials, run_sweep
    from initlab.report.experiments import failures_lines, summary_table, trial_progress

    search = SearchSpace.from_file(space)
    name = study or space.stem
    url = storage or default_url(name)
    planned = planned_trials(search, trials)
    cli.console.print(f"study {name!r} in {redact(url)}: {planned} trials, {workers} worker(s)")
    with trial_progress("trials") as update:
        handle = run_sweep(search, task, trials=trials, storage=url, study=name,
                           workers=workers, on_progress=update)  # fmt: skip
    table = trials_table(handle)
    cli.console.print(summary_table(summary(table), f"study {name}"))
    for line in failures_lines(table):
        cli.console.print(line)
    cli.console.print(
        f"Report: initlab report {name}" + (f" --storage {redact(url)}" if storage else "")
    )


@cli.command("report", example="initlab report space --csv trials.csv")
@cli.user_errors
def report_command(
    study: Annotated[str, typer.Argument(metavar="NAME", help="The study's name.")],
    storage: Annotated[
        str | None, typer.Option(metavar="URL", help="Storage URL (default: runs/NAME.db).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(metavar="FILE", help="HTML file (default: runs/NAME.html).")
    ] = None,
    csv: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Also export the trials table as CSV.")
    ] = None,
    parquet: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Also export the trials as Parquet.")
    ] = None,
) -> None:
    """Tidy table, per-configuration summary and a self-contained HTML report of a study."""
    from initlab.experiments.results import curves_table, export, summary, trials_table
    from initlab.experiments.storage import default_url, open_storage, redact
    from initlab.optional import require
    from initlab.report.experiments import failures_lines, summary_table
    from initlab.report.sweep import sweep_html, write_report

    cli.check_output_path(out, "--out", (".html", ".htm"))
    cli.check_output_path(csv, "--csv", (".csv",))
    cli.check_output_path(parquet, "--parquet", (".parquet", ".pq"))
    optuna = require("optuna", "initlab report")
    url = storage or default_url(study)
    opened = open_storage(url)
    try:
        handle = optuna.load_study(study_name=study, storage=opened)
    except KeyError:
        known = ", ".join(optuna.get_all_study_names(opened)) or "none"
        raise ConfigError(
            f"No study named {study!r} in {redact(url)}; studies there: {known}. "
            "Check the name or --storage."
        ) from None
    table = trials_table(handle)
    cli.console.print(summary_table(summary(table), f"study {study}"))
    for line in failures_lines(table):
        cli.console.print(line)
    target = out or Path("runs") / f"{study}.html"
    write_report(target, sweep_html(study, table, curves_table(handle)))
    for path in (csv, parquet):
        if path is not None:
            cli.console.print(f"exported {export(table, path)}")
    cli.console.print(f"Report: {target}")
