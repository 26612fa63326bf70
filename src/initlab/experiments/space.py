"""The search space of a sweep: init x regularization x schedule x clipping x augmentation.

A space is a YAML file (or a dict) whose every option is either a list of choices or a range:

.. code-block:: yaml

    init: [kaiming, xavier, lsuv, torch-default, "normal:0.01"]
    lr: {low: 0.001, high: 0.1, log: true}
    optimizer: [sgd, adamw]
    l2: [0.0, 0.0001]
    weight_decay: [0.0]
    dropout: [0.0, 0.2]
    schedule: [constant, cosine]
    clip: [null, 1.0]
    augment: [false]
    depth: [10]
    width: [128]
    activation: [relu, tanh]
    norm: [null, batch]
    epochs: 15
    seeds: 3
    sampler: tpe            # grid | random | tpe
    pruner: none            # none | median

Grid search needs every option to be a list. Every trial of a configuration is repeated for
``seeds`` seeds (the seed is part of the trial's parameters), so results carry their spread.

Everything is checked when the space is built, before any storage or trial exists: every init
spec (``normal:STD`` with a finite STD >= 0, or a known name), every numeric choice and range
bound (``lr`` > 0, ``dropout`` in [0, 1), ``momentum`` in [0, 1], penalties >= 0, ``clip`` > 0
or null, ``depth``/``width`` integers >= 1), ranges (``low <= high``, ``low > 0`` on a log
scale; only numeric options take one), names of activations and schedules, and the plain values
(``epochs``, ``seeds``, ``batch_size`` integers >= 1). A :class:`ConfigError` names the file,
the field (and choice), the value received and what is accepted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from initlab.errors import ConfigError, InitlabError
from initlab.experiments.inits import check_init
from initlab.experiments.trial import check_activation, check_schedule

__all__ = ["SEARCHED", "Range", "SearchSpace"]

Sampler = Literal["grid", "random", "tpe"]
Pruner = Literal["none", "median"]


class Range(BaseModel):
    """A continuous range ``[low, high]``, optionally on a log scale (then ``low > 0``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"low and high must be finite numbers, got {self.low}..{self.high}")
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low}); swap them")
        if self.log and self.low <= 0:
            raise ValueError(
                f"a log range needs low > 0, got low={self.low}; raise low or drop log: true"
            )
        return self


Option = list[Any] | Range

SEARCHED = ("init", "lr", "optimizer", "momentum", "l1", "l2", "weight_decay", "dropout",
            "schedule", "clip", "augment", "depth", "width", "activation", "norm")  # fmt: skip


def _number(low: float, high: float, *, low_open: bool = False, high_open: bool = False,
            nullable: bool = False) -> Callable[[Any], None]:  # fmt: skip
    """A check of one numeric choice (or range bound) whose message says what it accepts."""
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    accepted = f"a number in {left}{low:g}, {'inf)' if math.isinf(high) else f'{high:g}{right}'}"
    if nullable:
        accepted += " or null"

    def check(value: Any) -> None:
        if value is None and nullable:
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected {accepted}, got {value!r}")
        inside = (low < value if low_open else low <= value) and (
            value < high if high_open else value <= high
        )
        if not (math.isfinite(value) and inside):
            raise ValueError(f"expected {accepted}, got {value!r}")

    return check


def _integer(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected an integer >= 1, got {value!r}")


def _boolean(value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")


def _named(check: Callable[[str], Any], kind: str) -> Callable[[Any], None]:
    def named(value: Any) -> None:
        if not isinstance(value, str):
            raise ValueError(f"expected {kind} name (a string), got {value!r}")
        try:
            check(value)
        except InitlabError as error:
            raise ValueError(str(error).rstrip(".")) from None

    return named


_POSITIVE = _number(0.0, math.inf, low_open=True)
_NON_NEGATIVE = _number(0.0, math.inf)
# What one choice of each option may be; a range's bounds obey the same rule.
_CHOICE: dict[str, Callable[[Any], None]] = {
    "init": _named(check_init, "an init"),
    "lr": _POSITIVE,
    "momentum": _number(0.0, 1.0),
    "l1": _NON_NEGATIVE,
    "l2": _NON_NEGATIVE,
    "weight_decay": _NON_NEGATIVE,
    "dropout": _number(0.0, 1.0, high_open=True),
    "schedule": _named(check_schedule, "a schedule"),
    "clip": _number(0.0, math.inf, low_open=True, nullable=True),
    "depth": _integer,
    "width": _integer,
    "activation": _named(check_activation, "an activation"),
    "augment": _boolean,
}
_RANGED = ("lr", "momentum", "l1", "l2", "weight_decay", "dropout")


class SearchSpace(BaseModel):
    """What a sweep varies (lists or ranges) and how it runs (plain values).

    Every choice is checked here, at construction: init specs (``normal:-1`` is refused before
    any trial runs), numeric ranges, names of activations and schedules.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    init: list[str] = ["kaiming"]
    lr: Option = [0.05]
    optimizer: list[Literal["sgd", "adam", "adamw"]] = ["sgd"]
    momentum: Option = [0.9]
    l1: Option = [0.0]
    l2: Option = [0.0]
    weight_decay: Option = [0.0]
    dropout: Option = [0.0]
    schedule: list[str] = ["constant"]
    clip: list[float | None] = [None]
    augment: list[bool] = [False]
    depth: list[int] = [4]
    width: list[int] = [128]
    activation: list[str] = ["relu"]
    norm: list[Literal["batch", "layer"] | None] = [None]
    epochs: int = Field(default=10, ge=1, strict=True)
    batch_size: int = Field(default=64, ge=1, strict=True)
    seeds: int = Field(default=1, ge=1, strict=True)
    sampler: Sampler = "tpe"
    pruner: Pruner = "none"

    @field_validator(*SEARCHED, mode="before")
    @classmethod
    def _choices(cls, value: Any, info: Any) -> Any:
        name = info.field_name
        if isinstance(value, Range):
            value = value.model_dump()
        if isinstance(value, dict):
            if name not in _RANGED:
                raise ValueError(
                    f"expected a list of choices (a range is for {', '.join(_RANGED)})"
                )
            try:
                bounds = Range.model_validate(value)
            except ValidationError as error:
                raise ValueError(_first_message(error, "range key")) from None
            check = _CHOICE[name]
            for bound in (bounds.low, bounds.high):
                check(bound)
            return bounds
        if not isinstance(value, list | tuple):
            shape = "a list of choices" + (
                " or a range {low: ..., high: ..., log: ...}" if name in _RANGED else ""
            )
            raise ValueError(f"expected {shape}, e.g. [{value!r}]")
        if not value:
            raise ValueError("needs at least one choice")
        if name in _CHOICE:
            for index, choice in enumerate(value):
                try:
                    _CHOICE[name](choice)
                except ValueError as error:
                    raise ValueError(f"choice {index}: {error}") from None
        return list(value)

    @model_validator(mode="after")
    def _grid_needs_lists(self) -> SearchSpace:
        if self.sampler == "grid":
            for name in SEARCHED:
                value = getattr(self, name)
                if isinstance(value, Range):
                    raise ValueError(
                        f"grid search needs lists, but {name} is a range "
                        f"{value.low}..{value.high}; "
                        "give a list of values or use sampler: random / tpe"
                    )
        return self

    @classmethod
    def from_file(cls, path: str | Path) -> SearchSpace:
        """Load and validate a YAML (or JSON) space file."""
        file = Path(path)
        if not file.is_file():
            raise ConfigError(
                f"Search space file {file} does not exist (or is not a file); "
                "give the path of a YAML file."
            )
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            reason = " ".join(str(error).split())
            raise ConfigError(f"{file}: not valid YAML: {reason}") from None
        return cls.from_dict({} if data is None else data, source=str(file))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "search space") -> SearchSpace:
        """Validate a dict; errors name the source, the field and what is accepted."""
        if not isinstance(data, dict):
            raise ConfigError(
                f"{source}: expected a mapping of options, got {type(data).__name__}."
            )
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise ConfigError(f"{source}: {_first_message(error, 'option')}.") from None

    def choices(self) -> dict[str, list[Any]]:
        """The list options and the seeds, for a grid (a grid space holds no ranges)."""
        grid = {name: list(getattr(self, name)) for name in SEARCHED}
        grid["seed"] = list(range(self.seeds))
        return grid

    def grid_size(self) -> int:
        """Number of trials a full grid has (configurations x seeds)."""
        return math.prod(len(v) for v in self.choices().values())

    def configurations(self) -> int | None:
        """How many distinct configurations the space holds (``None`` with a range)."""
        if any(isinstance(getattr(self, name), Range) for name in SEARCHED):
            return None
        return math.prod(len(getattr(self, name)) for name in SEARCHED)


def _first_message(error: ValidationError, what: str) -> str:
    """The first problem of a pydantic error as one phrase: field, what was wrong, received."""
    first = error.errors()[0]
    where = ": ".join(
        f"choice {part}" if isinstance(part, int) else str(part) for part in first["loc"]
    )
    prefix = f"{where}: " if where else ""
    if first["type"] == "extra_forbidden":
        known = ", ".join(SearchSpace.model_fields if what == "option" else Range.model_fields)
        return f"{prefix}unknown {what} {str(first['loc'][-1])!r}; known: {known}"
    if first["type"] == "value_error":  # ours: the message already shows what was received
        return prefix + first["msg"].removeprefix("Value error, ")
    return f"{prefix}{first['msg']} (got {first.get('input')!r})"
