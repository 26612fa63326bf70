"""The ``initlab`` Typer app, its consoles, and what every command shares.

Rendering only: the work is done by the library. A user error (:class:`InitlabError`) is
printed as one line, no traceback, exit code 2.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from initlab.errors import ConfigError, InitlabError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "FACTORY_HELP",
    "DataOption",
    "FactoryArgument",
    "InputShapeOption",
    "KwargsOption",
    "app",
    "console",
    "current_directory_importable",
    "error_console",
    "model_and_batch",
    "parse_kwargs",
    "user_errors",
]

app = typer.Typer(
    name="initlab",
    help="Weight initialization, measured: schemes, plans, a signal-propagation doctor, LSUV, "
    "training sweeps.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

console = Console()
error_console = Console(stderr=True)

FACTORY_HELP = (
    "Import path of a function or class that returns the model, "
    "e.g. mypackage.models:make_model (only that module is imported)."
)
# The options of every command that builds the user's model and feeds it a batch.
FactoryArgument = Annotated[
    str, typer.Argument(metavar="MODULE:FACTORY", help=FACTORY_HELP, show_default=False)
]
InputShapeOption = Annotated[
    str | None,
    typer.Option(
        "--input-shape",
        help="The batch's shape, batch size first: 64,3,32,32 (CNN) or 64,64 (MLP).",
    ),
]
DataOption = Annotated[
    str | None,
    typer.Option(
        help="'digits' (scikit-learn's, standardized; 64,64 or 64,1,8,8) or a .npy/.npz "
        "file (its 'x' array); default: a Gaussian batch of --input-shape."
    ),
]
KwargsOption = Annotated[
    str | None,
    typer.Option("--kwargs", help="Keyword arguments of the factory, as a JSON object."),
]

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


def parse_kwargs(text: str | None) -> dict[str, Any]:
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
def current_directory_importable() -> Iterator[None]:
    # A console script's sys.path starts at its bin/ folder; users expect `initlab plan
    # models:make` to find ./models.py, as `python -m` would.
    saved = list(sys.path)
    sys.path.insert(0, os.getcwd())
    try:
        yield
    finally:
        sys.path[:] = saved


def model_and_batch(
    factory: str, kwargs: str | None, data: str | None, input_shape: str | None, seed: int
) -> tuple[nn.Module, torch.Tensor]:
    """The user's model, built under ``seed``, and the batch ``--data``/``--input-shape`` name."""
    import torch

    from initlab.doctor.inputs import input_batch
    from initlab.plan.factory import load_factory
    from initlab.report.values import parse_shape

    shape = parse_shape(input_shape, option="--input-shape") if input_shape else None
    batch = input_batch(data, shape, seed)
    with current_directory_importable(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the factory's own init draws from torch's global stream
        model = load_factory(factory, parse_kwargs(kwargs))
    return model, batch
