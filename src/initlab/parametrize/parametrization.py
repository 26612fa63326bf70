"""`Parametrization`: a width/depth parametrization resolved against a model, as plain data.

A :class:`Parametrization` (built by :func:`initlab.parametrize.parametrize`) holds a
:class:`~initlab.Plan` (one rule per parameter: its init), one :class:`ParameterRow` per
parameter (role by width, width multipliers, init std, learning-rate and weight-decay
multipliers, the rule and its source), the notes (forward changes it needs that initlab does not
make) and the model's parameters, which :meth:`Parametrization.param_groups` hands to a torch
optimizer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from initlab.errors import ConfigError, UnknownNameError, did_you_mean
from initlab.parametrize.rules import Init, Optimizer
from initlab.parametrize.widths import WidthMultipliers, WidthRole
from initlab.plan.plan import Plan
from initlab.plan.sites import Role

__all__ = ["ParameterRow", "Parametrization"]


@dataclass(frozen=True)
class ParameterRow(WidthMultipliers):
    """What a parametrization does to one parameter.

    Attributes:
        name: the parameter's qualified name.
        shape: its shape.
        layer_role: its role in its layer (``weight``, ``bias``, ``embedding``, ``norm_weight``
            ...).
        role: its role by width (``input``, ``hidden``, ``output``, ``fixed``, ``bias``,
            ``norm``, ``vector``; :mod:`initlab.parametrize.widths`).
        fan_in: its fan-in.
        fan_out: its fan-out.
        base_fan_in: its fan-in in the base model.
        base_fan_out: its fan-out in the base model.
        init: ``normal``, ``zeros``, ``ones`` or ``keep``.
        init_std: the std it is drawn with (0 for zeros/ones, ``None`` when kept).
        lr_multiplier: the factor on the learning rate.
        source: the rule and its reference.
    """

    name: str
    shape: tuple[int, ...]
    layer_role: Role
    role: WidthRole
    fan_in: float
    fan_out: float
    base_fan_in: float
    base_fan_out: float
    init: Init
    init_std: float | None
    lr_multiplier: float
    source: str

    @property
    def weight_decay_multiplier(self) -> float:
        """``1 / lr_multiplier``: ``lr * weight_decay`` stays as at the base (``mup``'s
        ``MuAdam``/``MuSGD``)."""
        return 1.0 / self.lr_multiplier


def _check_rate(label: str, value: object, *, allow_zero: bool) -> None:
    """``value`` is a finite number, > 0 (or >= 0 with ``allow_zero``)."""
    allowed = ">= 0" if allow_zero else "> 0"
    message = f"param_groups: {label} must be a finite number {allowed}, got {value!r}."
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(message)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(message)


@dataclass(frozen=True)
class Parametrization:
    """A parametrization resolved against a model: init plan, per-parameter multipliers, notes.

    Attributes:
        name: ``sp``, ``mup``, ``spectral`` or ``depth-mup``.
        optimizer: the optimizer family the learning rates are for (``adam`` or ``sgd``).
        plan: the init, one rule per parameter (``plan.apply(model, seed=...)``).
        rows: one :class:`ParameterRow` per parameter, in the model's order.
        notes: forward changes the parametrization needs that initlab does not make, and
            what was assumed (width detected, tied weights).
        parameters: the model's parameters by name (what :meth:`param_groups` hands out).
    """

    name: str
    optimizer: Optimizer
    plan: Plan
    rows: tuple[ParameterRow, ...]
    notes: tuple[str, ...] = ()
    parameters: Mapping[str, nn.Parameter] = field(default_factory=dict, repr=False, compare=False)

    def row(self, name: str) -> ParameterRow:
        """The row of parameter ``name``.

        Raises:
            UnknownNameError: no parameter of that name.
        """
        for item in self.rows:
            if item.name == name:
                return item
        raise UnknownNameError(did_you_mean("parameter", name, [r.name for r in self.rows]))

    def param_groups(self, lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        """Parameter groups for a torch optimizer: ``torch.optim.Adam(p.param_groups(1e-3))``.

        One group per distinct (learning rate, weight decay) multiplier, in the order the
        parameters first appear; each group holds ``params``, ``param_names``, ``lr`` =
        ``lr * lr_multiplier``, ``weight_decay`` = ``weight_decay * weight_decay_multiplier``
        and ``lr_multiplier`` (a scheduler's factors apply on top, per group).

        Raises:
            ConfigError: ``lr`` not positive or ``weight_decay`` negative.
        """
        _check_rate("lr", lr, allow_zero=False)
        _check_rate("weight_decay", weight_decay, allow_zero=True)
        groups: dict[tuple[float, float], dict[str, Any]] = {}
        for item in self.rows:
            key = (item.lr_multiplier, item.weight_decay_multiplier)
            group = groups.setdefault(key, {
                "params": [], "param_names": [], "lr": lr * key[0],
                "weight_decay": weight_decay * key[1], "lr_multiplier": key[0],
            })  # fmt: skip
            group["params"].append(self.parameters[item.name])
            group["param_names"].append(item.name)
        return list(groups.values())

    def lines(self) -> list[str]:
        """The table as lines of text: parameter, role, width multipliers, init, lr."""
        header = ("parameter", "role", "m_in", "m_out", "init", "std", "lr x")
        table = [header] + [
            (
                item.name,
                item.role,
                f"{item.width_multiplier_in:.4g}",
                f"{item.width_multiplier_out:.4g}",
                item.init,
                "-" if item.init_std is None else f"{item.init_std:.4g}",
                f"{item.lr_multiplier:.4g}",
            )
            for item in self.rows
        ]
        sizes = [max(len(line[i]) for line in table) for i in range(len(header))]
        return ["  ".join(cell.ljust(size) for cell, size in zip(line, sizes, strict=True))
                .rstrip() for line in table]  # fmt: skip

    def __str__(self) -> str:
        """``parametrization 'mup' (adam): N parameters``, the table, then the notes."""
        title = f"parametrization {self.name!r} ({self.optimizer}): {len(self.rows)} parameters"
        notes = [f"note: {note}" for note in self.notes]
        return "\n".join([title, *self.lines(), *notes])
