"""``initlab schemes``: the catalogue, or one scheme described for a shape."""

from __future__ import annotations

from typing import Annotated

import typer

from initlab.cli import application as cli


@cli.command("schemes", example="initlab schemes he_normal --shape 256,128,3,3 -p mode=fan_out")
@cli.user_errors
def schemes_command(
    name: Annotated[
        str | None, typer.Argument(metavar="SCHEME", help="A scheme to describe (e.g. he_normal).")
    ] = None,
    shape: Annotated[
        str | None,
        typer.Option(
            metavar="SHAPE", help="Weight shape, e.g. 256,128,3,3: prints fans, std, bound."
        ),
    ] = None,
    layout: Annotated[
        str,
        typer.Option(
            metavar="LAYOUT",
            help="How the shape is laid out: torch, torch_transposed, keras, keras_depthwise "
            "or jax.",
        ),
    ] = "torch",
    groups: Annotated[
        int, typer.Option(metavar="N", help="The layer's groups (grouped convolutions).")
    ] = 1,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", metavar="KEY=VALUE", help="A scheme parameter; repeat for more."
        ),
    ] = None,
) -> None:
    """List every scheme with its formula, or describe one for a given shape."""
    from initlab.cli.values import parse_key_values, parse_shape
    from initlab.report import schemes as render_schemes

    if name is None:
        cli.console.print(render_schemes.catalogue_table())
        return
    params = parse_key_values(param or [], option="--param")
    dims = parse_shape(shape) if shape is not None else None
    cli.console.print(
        render_schemes.describe(name, params, shape=dims, layout=layout, groups=groups)
    )
