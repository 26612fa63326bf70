"""``initlab lsuv``: data-driven init of the user's model on a real batch, and its log."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer

from initlab.cli import application as cli


@cli.command(
    "lsuv",
    example="initlab lsuv initlab.train.models:SmallCNN --data digits --input-shape "
    '256,1,8,8 --kwargs \'{"in_channels": 1, "num_classes": 10}\'',
)
@cli.user_errors
def lsuv_command(
    factory: cli.FactoryArgument,
    input_shape: cli.InputShapeOption = None,
    data: cli.DataOption = None,
    kwargs: cli.KwargsOption = None,
    tol: Annotated[
        float, typer.Option(metavar="X", help="Tolerance on each layer's output variance.")
    ] = 0.1,
    max_iter: Annotated[
        int, typer.Option(metavar="N", help="The most rescalings per layer.")
    ] = 10,
    center_bias: Annotated[
        bool, typer.Option("--center-bias", help="Also shift biases so outputs have mean 0.")
    ] = False,
    seed: Annotated[
        int, typer.Option(metavar="N", help="Seed of the model's build, batch and pre-init.")
    ] = 0,
    save: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Write the initialized model's state dict to this .safetensors file.",
        ),
    ] = None,
) -> None:
    """LSUV (Mishkin & Matas, 2016): orthonormal pre-init, then unit output variance per layer.

    Layers LSUV cannot fit (recurrent, tied or parametrized weights, layers that never run)
    are listed with the reason. Exit code 0 when every fitted layer converged, 1 when one did
    not (each is named) or when no layer could be fitted.
    """
    from initlab.lsuv import lsuv
    from initlab.report.lsuv import fitted_table, skipped_table

    cli.check_output_path(save, "--save", (".safetensors",))
    model, batch = cli.model_and_batch(
        factory, kwargs=kwargs, data=data, input_shape=input_shape, seed=seed
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log = lsuv(model, batch, tol=tol, max_iter=max_iter, center_bias=center_bias, seed=seed)
    if log.rows:
        cli.console.print(fitted_table(log, f"LSUV on {type(model).__name__} ({factory})"))
    if log.skipped:
        cli.console.print(skipped_table(log))
    cli.print_warnings(caught, unless="LsuvLog.skipped")  # the skipped table says it all
    cli.console.print(f"{log.summary} (max_iter {log.max_iter}); cost: {log.cost}")
    if save is not None:
        cli.save_weights(model, save)
    raise typer.Exit(code=0 if log.converged else 1)
