"""`Plan`: rules that initialize a whole model, resolved to a table, then applied.

.. code-block:: python

    plan = initlab.Plan([
        initlab.rule("*.attn.c_proj.weight", "normal", std=0.02 / math.sqrt(2 * n_layer)),
        initlab.rule(types=nn.Conv2d, role="weight", scheme="he_normal", mode="fan_out"),
        initlab.rule(role="bias", scheme="zeros"),
    ], default="auto")
    table = plan.resolve(model)     # dry run: every parameter -> scheme, fans, std, why
    plan.apply(model, seed=0)       # the same table, applied

The first matching rule wins. Parameters no rule matches follow ``default``: ``"keep"`` leaves
them, ``"auto"`` picks by role and, for weights, by the activation that follows the layer:

================================  ============================================================
role / activation after           scheme
================================  ============================================================
weight, rectifier or smooth       ``he_normal(nonlinearity=..., a=slope)``: relu, leaky_relu /
(relu, leaky_relu, prelu, gelu,   prelu (their slope), second-moment gain for the smooth ones
silu, elu...)
weight, SELU                      ``lecun_normal`` (self-normalizing fixed point)
weight, tanh/sigmoid/linear       ``xavier_normal(gain=gain(activation))``
stacked weight (attention q/k/v,  per block: ``xavier_normal`` input-side, ``orthogonal``
recurrent gates)                  hidden-to-hidden, LSTM forget-gate bias 1
                                  (:mod:`initlab.plan.blocks`)
weight norm magnitude ``g``       derived: ``||v||`` of the drawn direction, so the weight is v
bias / norm_bias                  ``zeros``
norm_weight                       ``ones``
embedding                         ``normal(0, 1)`` (PyTorch's embedding default)
other                             kept
================================  ============================================================

Fans come from the layer (:mod:`initlab.layers.structure`): a transposed convolution counts its
stride, a stacked weight's blocks have their own, a Bilinear's fan_in is ``in1 * in2``.

Each parameter is drawn from its own stream (:mod:`initlab.rng`): its values depend only on the
seed, its name, its scheme and its shape. Tied parameters are initialized once, under their
first name. Buffers are never touched.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from initlab.arguments import check_module, check_seed, describe_value
from initlab.counter import elementwise_law
from initlab.errors import ConfigError, InitlabError
from initlab.fans import Fans, Layout, compute_fans
from initlab.layers import activation_kind
from initlab.plan.activations import Activation, ActivationMap, detect_activations
from initlab.plan.apply import apply_table, derive_magnitudes, fill_parameter
from initlab.plan.assignments import Assignment, Assignments, Part
from initlab.plan.blocks import block_schemes
from initlab.plan.checkpoint import Checkpoint, CheckpointFiles
from initlab.plan.rules import Rule
from initlab.plan.sites import ParameterSite, parameter_sites
from initlab.rng import Stream, check_stream
from initlab.schemes import (
    HeNormal,
    LeCunNormal,
    Normal,
    Ones,
    Scheme,
    ValueStats,
    XavierNormal,
    Zeros,
    get,
)

__all__ = ["Plan", "auto_scheme", "derive_magnitudes", "fill_parameter"]


def auto_scheme(site: ParameterSite, activation: Activation | None) -> Scheme | None:
    """The scheme ``default="auto"`` gives a parameter (see the module docstring)."""
    if site.role in ("bias", "norm_bias"):
        return Zeros()
    if site.role == "norm_weight":
        return Ones()
    if site.role == "embedding":
        return Normal(0.0, 1.0)
    if site.role != "weight":
        return None
    kind = activation_kind(activation.name if activation is not None else "linear")
    param = activation.param if activation is not None else None
    if kind.family in ("rectifier", "leaky_rectifier", "smooth"):
        if kind.name == "leaky_relu":
            return HeNormal(a=0.01 if param is None else param, nonlinearity="leaky_relu")
        return HeNormal(nonlinearity=kind.name)
    if kind.family == "self_normalizing":
        return LeCunNormal()
    return XavierNormal(gain=kind.gain(param))


class Plan:
    """Rules plus a default, resolvable against any model.

    Args:
        rules: :class:`Rule` objects (see :func:`initlab.rule`); the first match wins.
        default: ``"auto"``, ``"keep"``, or a scheme (name or Scheme) for unmatched parameters.
        name: a label for tables and reports.
        warn_unused: warn about rules that match no parameter (presets, whose generic rules
            need not all apply to every model, turn it off; the table lists them either way).
    """

    def __init__(
        self,
        rules: Sequence[Rule] = (),
        default: str | Scheme = "auto",
        *,
        name: str = "plan",
        warn_unused: bool = True,
    ) -> None:
        if isinstance(rules, Rule) or not isinstance(rules, Sequence | Iterable):
            raise ConfigError(
                f"Plan: rules must be a list of rules, got {describe_value(rules)}; "
                "e.g. Plan([initlab.rule(role='bias', scheme='zeros')])."
            )
        self.rules: tuple[Rule, ...] = tuple(rules)
        for index, item in enumerate(self.rules):
            if not isinstance(item, Rule):
                raise ConfigError(
                    f"Plan rule {index} is a {type(item).__name__}, not a Rule; "
                    "build rules with initlab.rule(...)."
                )
        if not isinstance(default, str | Scheme):
            raise ConfigError(
                f"Plan: default must be 'auto', 'keep', a scheme name or a Scheme, got "
                f"{describe_value(default)}."
            )
        self.default: str | Scheme = (
            default if isinstance(default, Scheme) or default in ("auto", "keep") else get(default)
        )
        self.name = name
        self.warn_unused = warn_unused

    def __repr__(self) -> str:
        return f"Plan(name={self.name!r}, rules={len(self.rules)}, default={self.default!s})"

    # --- as data and files (pydantic and yaml load only when used) ----------------------------
    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, source: str = "plan config") -> Plan:
        """A plan from its dict form; errors name ``source`` and the field: ``rules[2].scheme``."""
        from initlab.plan.config import plan_from_config

        return plan_from_config(config, source=source)

    def to_config(self) -> dict[str, Any]:
        """The plan as plain data; :meth:`from_config` reads it back with equal rules."""
        from initlab.plan.config import plan_to_config

        return plan_to_config(self)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Plan:
        """A plan from a ``.yaml``/``.yml``, ``.toml`` or ``.json`` file (nothing is executed)."""
        from initlab.plan.plan_files import read_plan_file

        return read_plan_file(path)

    def to_file(self, path: str | os.PathLike[str]) -> Path:
        """Write the plan to ``path`` in the format its suffix names; returns the path."""
        from initlab.plan.plan_files import write_plan_file

        return write_plan_file(self, path)

    # --- resolution --------------------------------------------------------------------------
    def _needs_activations(self) -> bool:
        return self.default == "auto" or any(r.scheme == "auto" for r in self.rules)

    def resolve(self, model: nn.Module, *, example: Any = None) -> Assignments:
        """Every parameter of ``model`` -> scheme, fans, std and why, without changing it.

        Args:
            model: the model (left unchanged).
            example: an input batch (a tensor, a tuple of positional inputs or a dict of
                keyword inputs). Where ``torch.fx`` cannot trace the model, ``auto`` then finds
                each layer's activation by running the model once on it, functional calls
                included (see :func:`initlab.plan.detect_activations`).
        """
        check_module("Plan.resolve", model)
        modules = dict(model.named_modules(remove_duplicate=False))
        needed = self._needs_activations()
        activations = detect_activations(model, example=example) if needed else None
        used: set[int] = set()
        rows = []
        files = CheckpointFiles()  # a checkpoint rule matches only the parameters its file holds
        missing: dict[int, list[str]] = {}  # checkpoint rule -> selected names its file lacks
        names: list[str] = []
        for site in parameter_sites(model):
            module = modules[site.module_name]
            names.append(site.name)
            matched = []
            for i, r in enumerate(self.rules):
                if not r.matches(site, module):
                    continue
                if files.provides(r.scheme, site):
                    matched.append(i)
                elif isinstance(r.scheme, Checkpoint) and r.scheme.key_of(site.name) is not None:
                    missing.setdefault(i, []).append(site.name)
            used.update(matched)
            rows.append(self._assign(site, matched, activations, files))
        unused = tuple(
            (index, item.describe()) for index, item in enumerate(self.rules) if index not in used
        )
        for index, description in unused if self.warn_unused else ():
            scheme = self.rules[index].scheme
            hint = (
                " " + files.mapping_hint(scheme, names) if isinstance(scheme, Checkpoint) else ""
            )
            warnings.warn(
                f"Plan {self.name!r}: rule {index} ({description}) matched no parameter.{hint}",
                stacklevel=2,
            )
        kept = [row.name for row in rows if "(not in checkpoint" in row.source]
        for index, lacking in missing.items():
            if index in used:
                _warn_not_in_checkpoint(f"rule {index}", self.rules[index].scheme, lacking)
        if kept and isinstance(self.default, Checkpoint):
            _warn_not_in_checkpoint("the default", self.default, kept)
        return Assignments(
            rows=tuple(rows),
            unused_rules=unused,
            activation_method=activations.method if activations else "",
            activation_fallback=activations.fallback_reason if activations else "",
        )

    def _assign(
        self,
        site: ParameterSite,
        matched: list[int],
        activations: ActivationMap | None,
        files: CheckpointFiles,
    ) -> Assignment:
        activation = activations.get(site.module_name) if activations else None
        if site.role != "weight":
            activation = None
        if matched:
            winner = self.rules[matched[0]]
            source = f"rule {matched[0]} ({winner.describe()})"
            choice, multiplier, fans_from = winner.scheme, winner.multiplier, winner.fans
        else:
            source = f"default {self.default!s}"
            choice, multiplier, fans_from = self.default, 1.0, "module"
        if site.magnitude_of and not matched:
            scheme, source = None, f"derived: ||v|| of {site.magnitude_of} (weight norm)"
        elif choice == "keep":
            scheme = None
        elif choice == "auto":
            scheme = auto_scheme(site, activation)
            source += " -> auto" if matched else ""
        else:
            assert isinstance(choice, Scheme)
            scheme = choice
            if isinstance(choice, Checkpoint):
                scheme, source = files.resolve(choice, site, source)
        parts: tuple[Part, ...] = ()
        if scheme is not None and fans_from == "module" and not isinstance(scheme, Checkpoint):
            blocks = block_schemes(site, scheme, auto=choice == "auto")
            parts = tuple(Part(b.label, b.start, b.stop, s) for b, s in blocks)
        return _with_statistics(
            Assignment(
                site=site,
                scheme=scheme,
                multiplier=multiplier,
                source=source,
                rule_index=matched[0] if matched else None,
                also_matched=tuple(matched[1:]),
                activation=activation if choice == "auto" else None,
                parts=parts,
            ),
            fans_from,
        )

    # --- application -------------------------------------------------------------------------
    def apply(
        self, model: nn.Module, seed: int = 0, *, stream: Stream = "counter", example: Any = None
    ) -> Assignments:
        """Initialize ``model`` in place; returns the table it applied.

        ``stream`` is how values are drawn (see :func:`fill_parameter`): ``"counter"`` (any
        shard alone, parallel on the CPU) or ``"generator"`` (a ``torch.Generator`` each).
        ``example`` is an input batch for activation detection (see :meth:`resolve`).

        Raises:
            InitlabError: a scheme that does not fit a parameter (the message names both).
        """
        check_module("Plan.apply", model)
        seed = check_seed("Plan.apply", seed)
        check_stream(stream)
        _check_not_meta(model)
        return apply_table(model, self.resolve(model, example=example), seed, stream=stream)


def _warn_not_in_checkpoint(what: str, scheme: Scheme | str, names: list[str]) -> None:
    """The parameters a checkpoint was meant to provide but its file does not hold."""
    shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
    path = scheme.path if isinstance(scheme, Checkpoint) else scheme
    fallback = "kept as they are" if what == "the default" else "initialized by later rules"
    warnings.warn(
        f"{what} (checkpoint {path}): {len(names)} parameter(s) it selects are not in "
        f"checkpoint {path}, so they are {fallback} or the default: {shown}. Narrow the rule "
        "(pattern=..., add_prefix=...) if that is intended, or check the file.",
        stacklevel=3,
    )


def _check_not_meta(model: nn.Module) -> None:
    """A model on the meta device holds no storage to fill: say so instead of doing nothing."""
    meta = [name for name, p in model.named_parameters() if p.is_meta]
    if meta:
        shown = ", ".join(meta[:3]) + (", ..." if len(meta) > 3 else "")
        raise ConfigError(
            f"Plan.apply: {len(meta)} parameter(s) of {type(model).__name__} are on the meta "
            f"device ({shown}) and hold no values to fill. Build and initialize it with "
            "initlab.scale.materialize(Model, plan), or allocate it first with "
            "model.to_empty(device='cpu') and then apply the plan."
        )


def _with_statistics(row: Assignment, fans_from: str) -> Assignment:
    scheme, site = row.scheme, row.site
    if scheme is None:
        return row
    layout: Layout = "torch" if fans_from == "torch" else site.layout
    groups = 1 if fans_from == "torch" else site.groups
    fans: Fans | None = None
    try:
        if scheme.uses_fans or any(part.scheme.uses_fans for part in row.parts):
            fans = site.fans if fans_from == "module" else None
            fans = fans or compute_fans(site.fan_shape, layout=layout, groups=groups)
        part_stats = [_stats(part.scheme, fans, part, site) for part in row.parts]
        stats = part_stats[0] if part_stats else _stats(scheme, fans, None, site, layout, groups)
    except InitlabError as error:
        raise type(error)(
            f"Parameter {site.name!r} (shape {site.shape}) cannot take {scheme} "
            f"({row.source}): {error}"
        ) from None
    factor = abs(row.multiplier)
    std, bound = stats.std, stats.bound
    if part_stats:  # the pooled std: the square root of the blocks' mean variance
        sizes = [part.stop - part.start for part in row.parts]
        weighted = sum(p.std**2 * n for p, n in zip(part_stats, sizes, strict=True))
        std = math.sqrt(weighted / site.shape[0])
        bounds = [p.bound for p in part_stats]
        bound = None if None in bounds else max(b for b in bounds if b is not None)
    parts = tuple(
        replace(part, std=p.std * factor) for part, p in zip(row.parts, part_stats, strict=True)
    )
    std *= factor
    bound = None if bound is None else bound * factor
    finite_std = std if math.isfinite(std) else None
    return replace(
        row, fans=fans, std=finite_std, bound=bound, layout=layout, groups=groups, parts=parts
    )


def _stats(
    scheme: Scheme,
    fans: Fans | None,
    part: Part | None,
    site: ParameterSite,
    layout: Layout = "torch",
    groups: int = 1,
) -> ValueStats:
    """Mean, std and bound of ``scheme``'s values on ``site`` (or one ``part`` of it)."""
    shape = site.shape if part is None else (part.stop - part.start, *site.shape[1:])
    law = elementwise_law(scheme, fans)
    if law is not None:
        return law.stats(shape)
    return scheme.stats(shape if not scheme.uses_fans else site.fan_shape, layout=layout,
                        groups=groups)  # fmt: skip
