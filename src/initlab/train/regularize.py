"""Which parameters are regularized, and how: L1/L2 penalties and decay/no-decay groups.

Both use the plan's rules (:func:`initlab.plan.rule`), so "the layers' weights" means the same
thing to a Plan, a penalty and the optimizer. The default, :data:`DECAY_RULES`, selects the
role ``weight`` (:mod:`initlab.layers.structure`): the matrices and kernels of every layer
(Linear, Conv, ConvTranspose, Bilinear, attention projections, recurrent weights, Hugging Face's
``Conv1D``, weight-norm directions), never biases, normalization parameters, embeddings or
other vectors.

Penalties are added to the loss (Keras' convention, strength per :class:`Penalty`):

.. math::

    \\Omega(w) = \\lambda_1 \\sum_i |w_i| + \\lambda_2 \\sum_i w_i^2,\\qquad
    \\frac{\\partial \\Omega}{\\partial w_i} = \\lambda_1 \\operatorname{sign}(w_i)
    + 2 \\lambda_2 w_i

(the L1 subgradient at :math:`w_i = 0` is 0). ``torch.optim.SGD(weight_decay=wd)`` adds
:math:`wd \\cdot w` to the gradient, the same as an L2 penalty with :math:`\\lambda_2 = wd/2`;
``AdamW`` decays the weights directly, :math:`w \\leftarrow w - \\eta \\cdot wd \\cdot w`
(Loshchilov & Hutter, 2019), which no penalty reproduces under Adam's scaling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from initlab.errors import ConfigError
from initlab.plan.rules import Rule, rule
from initlab.plan.sites import parameter_sites

__all__ = [
    "DECAY_RULES",
    "Penalty",
    "PenaltyTerm",
    "as_rules",
    "decay_split",
    "parameter_groups",
    "refuse_block_rules",
]

DECAY_RULES: tuple[Rule, ...] = (rule(role="weight", scheme="keep"),)


def as_rules(rules: Rule | Sequence[Rule]) -> tuple[Rule, ...]:
    """One rule or several, as a tuple."""
    return (rules,) if isinstance(rules, Rule) else tuple(rules)


def refuse_block_rules(rules: Sequence[Rule], what: str) -> None:
    """Refuse a selecting rule with ``blocks=``: weight decay and penalties apply to whole
    parameters (an optimizer group holds whole tensors), so a rule naming some blocks of a
    stacked weight would silently select all of it.

    Raises:
        ConfigError: a rule has ``blocks=``, naming it and ``what`` selects with it.
    """
    for item in rules:
        if isinstance(item, Rule) and item.blocks:
            raise ConfigError(
                f"{what} rule ({item.describe()}) selects blocks ({', '.join(item.blocks)}) of a "
                "stacked weight, but weight decay and penalties apply to whole parameters; "
                "drop blocks= (the whole parameter is then selected) or leave it out."
            )


def _named_matches(
    model: nn.Module, rules: Sequence[Rule]
) -> list[tuple[str, nn.Parameter, bool]]:
    refuse_block_rules(rules, "weight decay")
    modules = dict(model.named_modules(remove_duplicate=False))
    parameters = dict(model.named_parameters())
    found = []
    for site in parameter_sites(model):
        module = modules[site.module_name]
        hit = any(r.matches(site, module) for r in rules)
        found.append((site.name, parameters[site.name], hit))
    return found


def decay_split(
    model: nn.Module, rules: Rule | Sequence[Rule] = DECAY_RULES
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Names of the parameters any of ``rules`` matches, and of the others.

    Example:
        >>> decay, no_decay = decay_split(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)))
        >>> decay, no_decay
        (('0.weight',), ('0.bias', '1.weight', '1.bias'))
    """
    found = _named_matches(model, as_rules(rules))
    return (
        tuple(name for name, _, hit in found if hit),
        tuple(name for name, _, hit in found if not hit),
    )


def parameter_groups(
    model: nn.Module, weight_decay: float, rules: Rule | Sequence[Rule] = DECAY_RULES
) -> list[dict[str, Any]]:
    """Optimizer parameter groups: ``weight_decay`` for what ``rules`` match, 0 for the rest.

    Parameters are given as ``(name, tensor)`` pairs, so the optimizer's groups carry
    ``param_names``. Empty groups are left out; a tied parameter appears once.

    Example:
        >>> torch.optim.AdamW(parameter_groups(model, 0.05), lr=1e-3)
    """
    if not math.isfinite(weight_decay) or weight_decay < 0:
        raise ConfigError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}.")
    found = _named_matches(model, as_rules(rules))
    groups = [
        {"params": [(n, p) for n, p, hit in found if hit], "weight_decay": weight_decay},
        {"params": [(n, p) for n, p, hit in found if not hit], "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


def _check_strength(field: str, value: float) -> None:
    if isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"Penalty: {field} must be a finite number >= 0, got {value!r}.")


@dataclass(frozen=True)
class Penalty:
    """An L1 and/or L2 penalty on the parameters its rules select.

    .. math:: \\Omega = l1 \\sum |w| + l2 \\sum w^2

    Several penalties may be given to :class:`~initlab.train.TrainConfig`; each parameter
    takes the strengths of the first penalty whose rules match it (like a Plan's rules).

    Example:
        >>> Penalty(l2=1e-4)                                    # Linear/Conv weights
        >>> Penalty(l1=1e-5, where=rule("head.weight", "keep"))

    Attributes:
        l1: strength of :math:`\\sum |w|`.
        l2: strength of :math:`\\sum w^2`.
        where: the rules that select parameters (any match), default :data:`DECAY_RULES`.
    """

    l1: float = 0.0
    l2: float = 0.0
    where: Rule | tuple[Rule, ...] = DECAY_RULES

    def __post_init__(self) -> None:
        _check_strength("l1", self.l1)
        _check_strength("l2", self.l2)
        if not self.rules:
            raise ConfigError("Penalty: where= needs at least one rule.")
        for item in self.rules:
            if not isinstance(item, Rule):
                raise ConfigError(
                    f"Penalty: where= takes Rule values (initlab.rule(...)), got {item!r}."
                )
        refuse_block_rules(self.rules, "Penalty: where=")

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The selecting rules as a tuple (``where`` keeps what was given: one or several)."""
        return as_rules(self.where)


class PenaltyTerm:
    """The penalty of a model as a callable: ``term()`` is the scalar to add to the loss.

    Built once per model (the matching runs once); every call reads the current values.

    Attributes:
        assignments: parameter name -> ``(l1, l2)`` for every penalized parameter.
    """

    def __init__(self, model: nn.Module, penalties: Sequence[Penalty]) -> None:
        modules = dict(model.named_modules(remove_duplicate=False))
        parameters = dict(model.named_parameters())
        self.assignments: dict[str, tuple[float, float]] = {}
        l1: dict[float, list[nn.Parameter]] = {}
        l2: dict[float, list[nn.Parameter]] = {}
        for site in parameter_sites(model):
            module = modules[site.module_name]
            chosen = next(
                (p for p in penalties if any(r.matches(site, module) for r in p.rules)), None
            )
            if chosen is None or not (chosen.l1 or chosen.l2):
                continue
            self.assignments[site.name] = (chosen.l1, chosen.l2)
            if chosen.l1:
                l1.setdefault(chosen.l1, []).append(parameters[site.name])
            if chosen.l2:
                l2.setdefault(chosen.l2, []).append(parameters[site.name])
        self._l1 = list(l1.items())
        self._l2 = list(l2.items())

    def __bool__(self) -> bool:
        return bool(self._l1 or self._l2)

    def __call__(self) -> torch.Tensor:
        """:math:`\\sum_g l1_g \\sum |w| + l2_g \\sum w^2` over the strength groups ``g``."""
        terms = [
            torch.stack([p.abs().sum() for p in params]).sum() * strength
            for strength, params in self._l1
        ]
        terms += [
            torch.stack([p.square().sum() for p in params]).sum() * strength
            for strength, params in self._l2
        ]
        if not terms:
            raise ConfigError("PenaltyTerm: no parameter is penalized; check the rules.")
        return terms[0] if len(terms) == 1 else torch.stack(terms).sum()
