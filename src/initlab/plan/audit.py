"""`audit`: what a plan reaches in a model, and what looks wrong (identical parameters)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from initlab.arguments import check_module
from initlab.plan.plan import Plan
from initlab.plan.presets import as_plan
from initlab.plan.sites import parameter_sites

__all__ = ["Audit", "Contest", "audit"]


class Contest(NamedTuple):
    """A parameter that more than one rule matches (the first one wins).

    Attributes:
        parameter: the parameter's qualified name.
        winner: the index of the rule that decides it.
        others: the indices of the later rules that match it too.
    """

    parameter: str
    winner: int
    others: tuple[int, ...]


@dataclass(frozen=True)
class Audit:
    """Findings of :func:`audit`.

    Attributes:
        unreached: parameters no rule matched and the default kept as they were.
        contested: parameters several rules match (:class:`Contest`).
        identical: groups of distinct, non-constant parameters holding identical values
            (copies no training will tell apart, e.g. a ``deepcopy``-ed layer).
    """

    unreached: tuple[str, ...]
    contested: tuple[Contest, ...]
    identical: tuple[tuple[str, ...], ...]

    @property
    def clean(self) -> bool:
        """Nothing to report."""
        return not (self.unreached or self.contested or self.identical)

    def __str__(self) -> str:
        lines = [f"unreached (kept as they were): {name}" for name in self.unreached]
        lines += [
            f"{name}: rule {winner} wins over rule(s) {', '.join(map(str, others))}"
            for name, winner, others in self.contested
        ]
        lines += ["identical values: " + ", ".join(group) for group in self.identical]
        return "\n".join(lines) or "audit: nothing to report"


def _fingerprint(tensor: torch.Tensor) -> str:
    data = tensor.detach().to("cpu", copy=True).contiguous().view(torch.uint8).numpy()
    return hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest()


def _deterministic(tensor: torch.Tensor) -> bool:
    """Values no random draw made: at most half of them distinct (a constant, a constant per
    gate block, Mamba's ``A_log = log(1..N)`` repeated per channel). Two layers holding such
    values are alike by design; a random draw has nearly as many distinct values as entries
    (float32 has 2^23 values per binade, so even a million draws repeat only a few percent)."""
    return bool(torch.unique(tensor.detach()).numel() * 2 <= tensor.numel())


def audit(model: nn.Module, plan: Plan | str | None = None) -> Audit:
    """What ``plan`` (if given) reaches in ``model``, and parameters with identical values.

    ``plan`` may be a :class:`Plan` or, as in :func:`init_model`, a preset name or ``"auto"``.

    Tied parameters (one tensor under two names) are not "identical": they are one parameter.
    A weight norm's magnitude is reached when its direction is (it is derived from it).
    """
    check_module("audit", model)
    unreached: list[str] = []
    contested: list[Contest] = []
    if plan is not None:
        plan = as_plan(plan, model)
        for row in plan.resolve(model):
            derived = bool(row.site.magnitude_of)  # set from its direction when applied
            if row.rule_index is None and row.scheme is None and not derived:
                unreached.append(row.name)
            if row.rule_index is not None and row.also_matched:
                contested.append(Contest(row.name, row.rule_index, row.also_matched))
    tensors = dict(model.named_parameters())
    groups: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    for site in parameter_sites(model):
        tensor = tensors[site.name]
        if tensor.is_meta or tensor.numel() < 2 or _deterministic(tensor):
            continue
        groups[(tuple(tensor.shape), tensor.dtype, _fingerprint(tensor))].append(site.name)
    identical = tuple(tuple(names) for names in groups.values() if len(names) > 1)
    return Audit(tuple(unreached), tuple(contested), identical)
