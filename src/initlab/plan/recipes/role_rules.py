"""What the role-based LLM presets share: a law per layer role, turned into rules.

A recipe says which law the weights of some roles get (:class:`RoleLaw`); :func:`role_rules`
writes one rule per recognized layer when it has the model, or one rule per role (and block
index) without it. The option checks every LLM preset makes, the count of blocks
(:func:`count_layers`) and the warning for a model none of whose layers was recognized
(:func:`warn_unrecognized`) live here too.
"""

from __future__ import annotations

import glob
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from initlab.errors import ConfigError
from initlab.plan.recipes.transformer_layers import (
    RESIDUAL_OUTPUTS,
    LayerRole,
    RoleLayer,
    find_layers,
    known_names,
    role_regex,
)
from initlab.plan.rules import Rule, rule
from initlab.schemes import Scheme

__all__ = [
    "RoleLaw",
    "check_flag",
    "check_std",
    "count_layers",
    "layer_width",
    "norm_and_bias_rules",
    "role_rules",
    "warn_unrecognized",
]


@dataclass(frozen=True)
class RoleLaw:
    """The law a recipe gives the weights of the layers of some roles.

    Attributes:
        roles: the layer roles (:mod:`initlab.plan.recipes.transformer_layers`).
        law: the scheme of one layer's weight, from what is known of it (its block index and
            input width; both ``None`` when planned without a model and not by block).
        by_layer: the law depends on the block index (then, without a model, one rule per
            block index up to ``n_layers``).
    """

    roles: tuple[LayerRole, ...]
    law: Callable[[RoleLayer], Scheme]
    by_layer: bool = False


def role_rules(
    model: nn.Module | None, laws: Sequence[RoleLaw], n_layers: int | None
) -> list[Rule]:
    """Rules for the weights of the layers of ``laws``' roles (the first law of a role wins).

    With a model: one rule per recognized layer, by its exact name. Without: one rule per role
    group (per block index ``0 .. n_layers - 1`` for a law ``by_layer``).
    """
    if model is not None:
        roles = tuple(role for entry in laws for role in entry.roles)
        rules = []
        for layer in find_layers(model, *roles):
            entry = next(e for e in laws if layer.role in e.roles)
            rules.append(rule(f"{glob.escape(layer.name)}.weight", entry.law(layer)))
        return rules
    rules = []
    for entry in laws:
        regex = role_regex(*entry.roles)
        if not entry.by_layer:
            rules.append(
                rule(regex=regex, scheme=entry.law(RoleLayer("", entry.roles[0], None, None)))
            )
            continue
        if n_layers is None:
            raise ConfigError("a depth-scaled law needs n_layers=... or the model.")
        for index in range(n_layers):
            scheme = entry.law(RoleLayer("", entry.roles[0], index, None))
            rules.append(rule(regex=regex, depth=index, scheme=scheme))
    return rules


def norm_and_bias_rules() -> list[Rule]:
    return [
        rule(role="bias", scheme="zeros"),
        rule(role="norm_weight", scheme="ones"),
        rule(role="norm_bias", scheme="zeros"),
    ]


def check_flag(preset: str, option: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{preset} preset: {option} must be true or false, got {value!r}.")
    return value


def check_std(preset: str, option: str, value: Any, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{preset} preset: {option} must be a number > 0, got {value!r}.")
    if not math.isfinite(value):
        raise ConfigError(f"{preset} preset: {option} must be finite, got {value!r}.")
    return float(value)


def layer_width(layer: RoleLayer, given: int | None, preset: str, option: str) -> int:
    """A layer's input width: the model's, else the option's."""
    width = layer.in_features if layer.in_features is not None else given
    if width is None:
        raise ConfigError(f"{preset} preset: pass {option}=... or the model to read it from.")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ConfigError(f"{preset} preset: {option} must be an integer >= 1, got {width!r}.")
    return width


# --- torchtitan --------------------------------------------------------------------------------


_CONFIG_DEPTHS = ("num_hidden_layers", "n_layer", "n_layers", "num_layers")


def count_layers(model: nn.Module | None, given: int | None, *, preset: str, option: str) -> int:
    """The number of blocks :math:`L`: ``given``, else the model's config, else counted.

    Read in order: ``given``; ``model.config.<num_hidden_layers | n_layer | n_layers |
    num_layers>`` (Hugging Face, OLMo, Megatron); the number of distinct block indices of the
    model's residual output projections.

    Raises:
        ConfigError: ``given`` below 1 or not an integer, or no way to count (names ``option``).
    """
    if given is not None:
        if isinstance(given, bool) or not isinstance(given, int) or given < 1:
            raise ConfigError(f"{preset} preset: {option} must be an integer >= 1, got {given!r}.")
        return given
    if model is None:
        raise ConfigError(f"{preset} preset: pass {option}=... or the model to count its blocks.")
    for owner in (getattr(model, "config", None), model):
        for attribute in _CONFIG_DEPTHS:
            value = getattr(owner, attribute, None)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
                return value
    layers = {layer.layer for layer in find_layers(model, *RESIDUAL_OUTPUTS)}
    layers.discard(None)
    if not layers:
        raise ConfigError(
            f"{preset} preset: found no blocks in {type(model).__name__} (no residual output "
            f"projection among the names initlab.plan.recipes.transformer_layers knows); pass "
            f"{option}=..."
        )
    return len(layers)


def warn_unrecognized(
    model: nn.Module | None, preset: str, roles: tuple[LayerRole, ...], consequence: str
) -> None:
    """Warn when ``model`` has no layer of ``roles``: the recipe did not recognize it.

    Args:
        model: the model (nothing is checked without one).
        preset: the preset's name, for the message.
        roles: the roles the recipe needs to find.
        consequence: what happens to those layers then, e.g. "they get the plain std".
    """
    if model is None or find_layers(model, *roles):
        return
    warnings.warn(
        f"{preset} preset: no {' or '.join(r.replace('_', ' ') for r in roles)} layer "
        f"recognized in {type(model).__name__} (known names: {known_names(roles)}), so "
        f"{consequence}. The dry-run table's source column shows the rule each parameter got.",
        stacklevel=4,
    )
