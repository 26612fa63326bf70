"""The ``initlab`` command line (Typer). Rendering only: the work is done by the library."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from initlab.errors import InitlabError
from initlab.report import schemes as render_schemes

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
            error_console.print(Text.assemble(("error: ", "bold red"), str(error)))
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
    depth: Annotated[
        int, typer.Option(help="Layers of the MLP the showcase propagates through.")
    ] = 30,
    width: Annotated[int, typer.Option(help="Width of each layer.")] = 256,
    seed: Annotated[int, typer.Option(help="Seed of the weights and the batch.")] = 0,
) -> None:
    """The showcase: the scheme catalogue, then signal scale through a deep MLP per scheme."""
    from initlab.report.schemes import propagation_table

    console.print(render_schemes.catalogue_table())
    console.print(propagation_table(depth=depth, width=width, seed=seed))


def main() -> None:
    """Entry point of the ``initlab`` console script."""
    app()
