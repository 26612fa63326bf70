"""``initlab coord-check`` and the learning-rate transfer demo: width, measured.

:func:`register` adds ``coord-check`` to the app and ``transfer`` to the ``initlab demo`` group
(``initlab demo transfer``).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.text import Text

from initlab.cli import application as cli
from initlab.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from initlab.experiments.transfer import TransferSettings
    from initlab.train.data import Dataset
    from initlab.width.check import Optimizer
    from initlab.width.coordinates import CoordCheck

__all__ = ["coord_check_command", "register", "transfer_command"]

COORD_CHECK_PNG = "coord_check.png"
COORD_CHECK_JSON = "coord_check.json"
TRANSFER_PNG = "width_transfer.png"
TRANSFER_MARKDOWN = "best_lr.md"


def parse_widths(text: str, option: str = "--widths") -> list[int]:
    """``"64,128,256"`` -> ``[64, 128, 256]``.

    Raises:
        ConfigError: a part that is not a whole number >= 1.
    """
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() and int(part) >= 1 for part in parts):
        raise ConfigError(
            f"{option} takes whole numbers >= 1 separated by commas, e.g. 64,128,256; "
            f"got {text!r}."
        )
    return [int(part) for part in parts]


def _dataset(name: str) -> Dataset:
    """A built-in dataset by name, or an ``.npz`` file of ``x`` and ``y``."""
    from initlab.train.datasets import DATASETS, load_dataset
    from initlab.train.files import from_npz

    if name in DATASETS or not name.lower().endswith(".npz"):
        return load_dataset(name)
    return from_npz(name)


def _width_factory(spec: str, kwargs: dict[str, Any]) -> Callable[[int], nn.Module]:
    """``width -> FACTORY(width=width, **kwargs)`` for the user's ``MODULE:FACTORY``."""
    from initlab.plan.factory import load_factory

    if "width" in kwargs:
        raise ConfigError(
            "--kwargs sets 'width', which coord-check sets from --widths; remove it from --kwargs."
        )

    def build(width: int) -> nn.Module:
        try:
            with cli.current_directory_importable():
                return load_factory(spec, {**kwargs, "width": width})
        except ConfigError as error:
            if "unexpected keyword argument 'width'" not in str(error):
                raise
            raise ConfigError(
                f"{spec}: the factory has no 'width' parameter. coord-check builds the model "
                "as FACTORY(width=N, **kwargs) for each of --widths; give a factory such as "
                "'def make(width): return MLP(64, 10, width=width)'."
            ) from None

    return build


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by ``None`` (strict JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _save_check(check: CoordCheck, out: Path) -> list[Path]:
    from initlab.report.coord_check import coord_check_figure

    out.mkdir(parents=True, exist_ok=True)
    png, data = out / COORD_CHECK_PNG, out / COORD_CHECK_JSON
    coord_check_figure(check).savefig(png, dpi=110, bbox_inches="tight")
    data.write_text(json.dumps(_finite(check.to_dict()), indent=2) + "\n")
    return [png, data]


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; give a folder (it is created).")


def coord_check_command(
    factory: cli.FactoryArgument,
    widths: Annotated[
        str,
        typer.Option(
            metavar="N,N,...", help="Widths to build, comma-separated; the smallest is the base."
        ),
    ] = "64,128,256,512",
    data: Annotated[
        str,
        typer.Option(
            metavar="NAME|FILE",
            help="A built-in dataset (digits, wine...) or an .npz of x and y.",
        ),
    ] = "digits",
    steps: Annotated[int, typer.Option(metavar="N", help="Optimizer steps per width.")] = 5,
    optimizer: Annotated[str, typer.Option(metavar="adam|sgd", help="The optimizer.")] = "adam",
    lr: Annotated[
        float | None,
        typer.Option(metavar="LR", help="Learning rate (default: 1e-2 Adam, 0.2 SGD)."),
    ] = None,
    parametrization: Annotated[
        str,
        typer.Option(metavar="NAME", help="sp (one learning rate), mup, spectral or depth-mup."),
    ] = "sp",
    kwargs: cli.KwargsOption = None,
    seed: Annotated[
        int, typer.Option(metavar="N", help="Seed of the builds, the init and the batches.")
    ] = 0,
    out: Annotated[
        Path, typer.Option(metavar="FOLDER", help="Folder of the plot and the JSON.")
    ] = Path("runs/coord-check"),
) -> None:
    """Coordinate check: every layer's output scale across widths for the first steps.

    The factory is called as FACTORY(width=N, **kwargs). Exit code 0 when no layer's scale
    grows with width, 1 when one does (a CI gate).
    """
    from initlab.report.coord_check import slopes_table
    from initlab.width import coord_check

    chosen = parse_widths(widths)
    _check_out(out)
    build = _width_factory(factory, cli.parse_kwargs(kwargs))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check = coord_check(build, chosen, _dataset(data), steps=steps, lr=lr, seed=seed,
                            optimizer=cast("Optimizer", optimizer),  # checked there
                            parametrization=parametrization)  # fmt: skip
    cli.console.print(slopes_table(check))
    for line in str(check).splitlines()[1:]:
        cli.console.print(Text(line.strip(), "red" if " grows " in line else ""))
    for warning in caught:
        cli.console.print(Text(f"warning: {warning.message}", "yellow"))
    for path in _save_check(check, out):
        # soft_wrap: a long path stays on one line, whole when copied.
        cli.console.print(Text(f"written {path}", "dim"), soft_wrap=True)
    raise typer.Exit(code=cli.EXIT_PROBLEMS if check.grows else cli.EXIT_OK)


def transfer_command(
    out: Annotated[
        Path, typer.Option(metavar="FOLDER", help="Folder of the study and the plots.")
    ] = Path("runs/transfer"),
    widths: Annotated[
        str, typer.Option(metavar="N,N,...", help="Hidden widths, comma-separated.")
    ] = "64,128,256,512,1024",
    epochs: Annotated[int, typer.Option(metavar="N", help="Training epochs per run.")] = 2,
    workers: Annotated[int, typer.Option(metavar="N", help="Worker processes.")] = 2,
) -> None:
    """Learning-rate transfer across width on digits, under SP and muP.

    Adam learning-rate sweeps of MLPs at each width, stored as an Optuna study; the plot of
    final loss vs learning rate per width, the best learning rate per width, and the
    coordinate check of the same MLPs.
    """
    from initlab.experiments.transfer import TransferSettings, run_transfer
    from initlab.report.coord_check import (
        best_rates_markdown,
        best_rates_table,
        comparison_figure,
        slopes_table,
        transfer_figure,
    )
    from initlab.report.experiments import trial_progress

    _check_out(out)
    settings = TransferSettings(widths=tuple(sorted(parse_widths(widths))), epochs=epochs)
    runs = len(settings.widths) * len(settings.learning_rates) * len(settings.parametrizations)
    cli.console.print(
        f"Training {runs} MLPs ({settings.depth} hidden layers) on digits with Adam, "
        f"{epochs} epochs each, {workers} worker(s)..."
    )
    started = time.perf_counter()
    with trial_progress("transfer runs") as update:
        result = run_transfer(out, settings, workers=workers, on_progress=update)
    seconds = time.perf_counter() - started
    cli.console.print(best_rates_table(result))
    cli.console.print(Text(f"{runs} runs in {seconds:.0f} s; study: {result.storage}", "dim"))
    transfer_figure(result).savefig(out / TRANSFER_PNG, dpi=110, bbox_inches="tight")
    (out / TRANSFER_MARKDOWN).write_text(best_rates_markdown(result) + "\n")
    checks = _transfer_coord_checks(settings)
    for check in checks:
        cli.console.print(slopes_table(check))
    comparison_figure(checks).savefig(out / COORD_CHECK_PNG, dpi=100, bbox_inches="tight")
    for name in (TRANSFER_PNG, COORD_CHECK_PNG, TRANSFER_MARKDOWN):
        cli.console.print(Text(f"written {out / name}", "dim"), soft_wrap=True)


def _transfer_coord_checks(settings: TransferSettings) -> list[CoordCheck]:
    """The coordinate check of the transfer sweep's MLPs, under each parametrization."""
    from initlab.train.models import MLP
    from initlab.width import coord_check

    def build(width: int) -> nn.Module:
        return MLP(64, 10, depth=settings.depth, width=width)

    widths, seed = settings.widths, settings.seed
    return [
        coord_check(build, widths, "digits", steps=4, parametrization=name, seed=seed)
        for name in settings.parametrizations
    ]


COORD_CHECK_EXAMPLE = (
    "initlab coord-check initlab.train.models:MLP --kwargs "
    '\'{"in_features": 64, "out_features": 10}\' --widths 64,128,256,512 --parametrization mup'
)
TRANSFER_EXAMPLE = "initlab demo transfer --out runs/transfer --workers 2"


def _epilog(example: str) -> str:
    return f"Example: {example}\n\n{cli.EXIT_CODES}"


def register(app: typer.Typer, *, demo: typer.Typer | None = None) -> None:
    """Add ``coord-check`` to ``app`` and ``transfer`` to ``demo`` (the ``initlab demo``
    group; ``app`` when not given), as the app's other commands: an
    :class:`~initlab.cli.application.InitlabCommand` whose help ends with an example and the
    exit codes, printing user errors as one line with exit code 2."""
    app.command("coord-check", cls=cli.InitlabCommand, epilog=_epilog(COORD_CHECK_EXAMPLE))(
        cli.user_errors(coord_check_command)
    )
    (demo or app).command("transfer", cls=cli.InitlabCommand, epilog=_epilog(TRANSFER_EXAMPLE))(
        cli.user_errors(transfer_command)
    )
