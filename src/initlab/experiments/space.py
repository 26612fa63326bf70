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
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from initlab.errors import ConfigError

__all__ = ["SEARCHED", "Range", "SearchSpace"]

Sampler = Literal["grid", "random", "tpe"]
Pruner = Literal["none", "median"]


class Range(BaseModel):
    """A continuous range ``[low, high]``, optionally on a log scale."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    low: float
    high: float
    log: bool = False

    @field_validator("high")
    @classmethod
    def _ordered(cls, high: float, info: Any) -> float:
        low = info.data.get("low")
        if low is not None and high < low:
            raise ValueError(f"high ({high}) must be >= low ({low})")
        return high


Option = list[Any] | Range

SEARCHED = ("init", "lr", "optimizer", "momentum", "l1", "l2", "weight_decay", "dropout",
            "schedule", "clip", "augment", "depth", "width", "activation", "norm")  # fmt: skip


class SearchSpace(BaseModel):
    """What a sweep varies (lists or ranges) and how it runs (plain values)."""

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
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=64, ge=1)
    seeds: int = Field(default=1, ge=1)
    sampler: Sampler = "tpe"
    pruner: Pruner = "none"

    @field_validator(*SEARCHED)
    @classmethod
    def _non_empty(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("needs at least one choice")
        return value

    @classmethod
    def from_file(cls, path: str | Path) -> SearchSpace:
        """Load and validate a YAML (or JSON) space file."""
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"Search space file {file} does not exist.")
        try:
            data = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{file}: not valid YAML: {error}") from None
        return cls.from_dict(data, source=str(file))

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
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ConfigError(
                f"{source}: {where}: {first['msg']} (got {first.get('input')!r}). "
                f"Options: {', '.join(cls.model_fields)}."
            ) from None

    def choices(self) -> dict[str, list[Any]]:
        """The list options, for a grid (raises if a range is present)."""
        grid: dict[str, list[Any]] = {}
        for name in SEARCHED:
            value = getattr(self, name)
            if isinstance(value, Range):
                raise ConfigError(
                    f"Grid search needs lists, but {name} is a range {value.low}..{value.high}; "
                    "give a list of values or use sampler: random / tpe."
                )
            grid[name] = list(value)
        grid["seed"] = list(range(self.seeds))
        return grid

    def grid_size(self) -> int:
        """Number of trials a full grid has (configurations x seeds)."""
        return math.prod(len(v) for v in self.choices().values())
