"""``initlab plan``: what a plan does to every parameter of a model; apply and save it."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from initlab.cli import application as cli
from initlab.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from initlab.plan import Plan


def _choose_plan(
    *, preset: str | None, options: list[str], config: Path | None, model: nn.Module | None
) -> Plan:
    from initlab.plan import Plan
    from initlab.plan.presets import as_plan

    if preset is not None and config is not None:
        raise ConfigError("--preset and --config are alternatives: give one of them.")
    if options and preset is None:
        raise ConfigError("--option sets a preset's option: add --preset NAME.")
    if preset is not None:
        from initlab.cli.values import parse_key_values

        return as_plan(preset, model, **parse_key_values(options, option="--option"))
    if config is not None:
        return Plan.from_file(config)
    return as_plan("auto")


@cli.command(
    "plan",
    example="initlab plan mypackage.models:make --preset kaiming --apply --save w.safetensors",
)
@cli.user_errors
def plan_command(
    factory: Annotated[
        str | None,
        typer.Argument(
            metavar="MODULE:FACTORY",
            help=cli.FACTORY_HELP,
            show_default=False,
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            metavar="PRESET",
            help="A named plan, e.g. auto, torch-default, kaiming, xavier, gpt2, hf-gpt2 "
            "(a wrong name lists them all).",
        ),
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            metavar="KEY=VALUE",
            help="A preset's option (gpt2: n_layer, std); repeat for more.",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="A plan file: .yaml, .yml, .toml or .json."),
    ] = None,
    seed: Annotated[
        int, typer.Option(metavar="N", help="Seed of the initialization (with --apply).")
    ] = 0,
    kwargs: cli.KwargsOption = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="Initialize the model (without it: a dry run).")
    ] = False,
    save: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="With --apply: write the model's state dict to this .safetensors file.",
        ),
    ] = None,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", metavar="FILE", help="Also write the table to this JSON file."),
    ] = None,
    show: Annotated[
        bool, typer.Option("--show", help="Print the plan's rules; no model needed.")
    ] = False,
) -> None:
    """What a plan does to every parameter of a model (the default plan is "auto")."""
    from initlab.report.plan import assignments_view, rules_view

    _check_outputs(show=show, apply=apply, save=save, json_path=json_path)
    model = cli.load_model(factory, kwargs) if factory is not None else None
    plan = _choose_plan(preset=preset, options=option or [], config=config, model=model)
    if show:
        cli.console.print(rules_view(plan))
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
    cli.console.print(assignments_view(table, title=title, show_unused=plan.warn_unused))
    cli.print_warnings(caught, unless="matched no parameter")  # the table lists those
    if json_path is not None:
        json_path.write_text(table.to_json() + "\n", encoding="utf-8")
        cli.console.print(Text(f"table written to {json_path}", "dim"))
    if save is not None:
        cli.save_weights(model, save)


def _check_outputs(*, show: bool, apply: bool, save: Path | None, json_path: Path | None) -> None:
    """Refuse options that would do nothing, and unwritable output paths, before the work."""
    if show:
        ignored = [name for name, given in (("--apply", apply), ("--save", save is not None),
                   ("--json", json_path is not None)) if given]  # fmt: skip
        if ignored:
            raise ConfigError(
                f"--show prints the plan's rules only, so {', '.join(ignored)} would do nothing: "
                "drop --show to plan for the model, or drop them."
            )
    if save is not None and not apply:
        raise ConfigError("--save writes the initialized weights: add --apply.")
    cli.check_output_path(json_path, "--json", (".json",))
    cli.check_output_path(save, "--save", (".safetensors",))
