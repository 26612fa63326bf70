"""`Plan`: rules that initialize a whole model, resolved to a table, then applied.

.. code-block:: python

    plan = initlab.Plan([
        initlab.rule("*.attn.c_proj.weight", "normal", std=0.02 / math.sqrt(2 * n_layer)),
        initlab.rule(types=nn.Conv2d, role="weight", scheme="he_normal", mode="fan_out"),
        initlab.rule(role="bias", scheme="zeros"),
    ], default="auto")
    table = plan.resolve(model)     # dry run: every parameter -> scheme, fans, std, why
    plan.apply(model, seed=0)       # the same table, applied

The first matching rule wins; a rule with ``blocks=("v",)`` wins only those blocks of a stacked
weight, whose other blocks take the next matching rule (the table's notes name the rule of each
block). Parameters no rule matches follow ``default``: ``"keep"`` leaves
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
GPT-2 c_attn, recurrent gates)    hidden-to-hidden, LSTM forget-gate bias 1
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from initlab.arguments import check_module, check_seed, describe_value
from initlab.errors import ConfigError, InitlabError
from initlab.fans import Fans, Layout, compute_fans
from initlab.layers import activation_kind
from initlab.layers.structure import Block
from initlab.plan.activations import Activation, ActivationMap, detect_activations
from initlab.plan.apply import apply_table
from initlab.plan.assignments import Assignment, Assignments, Part, UnusedRule
from initlab.plan.blocks import block_parts, block_scheme, scaled_law, split_site
from initlab.plan.checkpoint import Checkpoint, CheckpointFiles, open_checkpoints
from initlab.plan.rules import FanSource, Rule
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
from initlab.schemes.elementwise import ElementwiseLaw

if TYPE_CHECKING:
    from initlab.plan.config import PlanContents

__all__ = ["Plan", "auto_scheme"]


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

    def lines(self) -> list[str]:
        """The rules as lines of text, ``'0.*' -> auto``, then the default's line."""
        lines = [f"{item.describe()} -> {item.scheme_label}" for item in self.rules]
        lines.append(f"everything else -> {self.default!s}")
        return lines

    def __str__(self) -> str:
        """``plan 'doctor-fix': 2 rules`` and then :meth:`lines`, one per line, indented."""
        count = len(self.rules)
        header = f"plan {self.name!r}: {count} rule{'' if count == 1 else 's'}"
        return "\n".join([header, *(f"  {line}" for line in self.lines())])

    # --- as data and files (pydantic, yaml and tomli-w load only when used) ---------------------
    @property
    def contents(self) -> PlanContents:
        """The plan's name, default and rules: what its config and files hold."""
        from initlab.plan.config import PlanContents

        return PlanContents(name=self.name, default=self.default, rules=self.rules)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, source: str = "plan config") -> Plan:
        """A plan from its dict form; errors name ``source`` and the field: ``rules[2].scheme``."""
        from initlab.plan.config import plan_from_config

        contents = plan_from_config(config, source=source)
        return cls(contents.rules, contents.default, name=contents.name)

    def to_config(self) -> dict[str, Any]:
        """The plan as plain data; :meth:`from_config` reads it back with equal rules."""
        from initlab.plan.config import plan_to_config

        return plan_to_config(self.contents)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Plan:
        """A plan from a ``.yaml``/``.yml``, ``.toml`` or ``.json`` file (nothing is executed)."""
        from initlab.plan.plan_files import read_plan_file

        contents = read_plan_file(path)
        return cls(contents.rules, contents.default, name=contents.name)

    def to_file(self, path: str | os.PathLike[str]) -> Path:
        """Write the plan to ``path`` in the format its suffix names; returns the path."""
        from initlab.plan.plan_files import write_plan_file

        return write_plan_file(self.contents, path)

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
        needed = self._needs_activations()
        activations = detect_activations(model, example=example) if needed else None
        modules = dict(model.named_modules(remove_duplicate=False))
        with open_checkpoints() as files:
            matches = [self._match(site, modules[site.module_name], files)
                       for site in parameter_sites(model)]  # fmt: skip
            self._check_block_rules(matches)
            rows = tuple(self._assign(match, activations, files) for match in matches)
            used = {index for match in matches for index in match.rules}
            unused = tuple(
                UnusedRule(index, item.describe())
                for index, item in enumerate(self.rules)
                if index not in used
            )
            if self.warn_unused:
                self._warn_unused(unused, [match.site.name for match in matches], files)
        self._warn_not_in_checkpoints(matches, used, rows)
        return Assignments(
            rows=rows,
            unused_rules=unused,
            activation_method=activations.method if activations else "",
            activation_fallback=activations.fallback_reason if activations else "",
        )

    def _match(self, site: ParameterSite, module: nn.Module, files: CheckpointFiles) -> _Match:
        """The rules that match ``site``; a checkpoint rule only if its file holds it, a block
        rule only if ``site`` holds a block it names."""
        serving: list[int] = []
        not_in_file: list[int] = []
        selecting: list[int] = []
        labels = {block.label for block in site.blocks}
        for index, item in enumerate(self.rules):
            if not item.matches(site, module):
                continue
            if item.blocks:
                selecting.append(index)
                if labels.isdisjoint(item.blocks):
                    continue
            if files.provides(item.scheme, site):
                serving.append(index)
            elif isinstance(item.scheme, Checkpoint) and item.scheme.key_of(site.name) is not None:
                not_in_file.append(index)
        return _Match(site, tuple(serving), tuple(not_in_file), tuple(selecting))

    def _choice(self, index: int | None) -> _Choice:
        """Rule ``index``'s scheme, or the default's for ``None``."""
        if index is None:
            source = f"default {self.default!s}"
            return _Choice(self.default, 1.0, "module", source, rule_index=None)
        winner = self.rules[index]
        source = f"rule {index} ({winner.describe()})"
        return _Choice(winner.scheme, winner.multiplier, winner.fans, source, rule_index=index,
                       split=winner.split)  # fmt: skip

    def _block_winners(self, match: _Match) -> tuple[int | None, ...]:
        """The rule each block of ``match.site`` takes: the first matching rule that names the
        block or no block (``None``: the default)."""
        return tuple(
            next((i for i in match.rules if _takes(self.rules[i], block)), None)
            for block in match.site.blocks
        )

    def _assign(
        self, match: _Match, activations: ActivationMap | None, files: CheckpointFiles
    ) -> Assignment:
        site = match.site
        winners = self._block_winners(match) if match.selecting else ()
        if len(set(winners)) > 1:
            return _with_statistics(self._per_block_row(match, winners), "module")
        choice = self._choice(winners[0] if winners else (match.rules or [None])[0])
        after = activations.get(site.module_name) if activations else None
        activation = after if site.role == "weight" and choice.scheme == "auto" else None
        row = Assignment(
            site=site,
            scheme=None,
            multiplier=choice.multiplier,
            source=choice.source,
            rule_index=choice.rule_index,
            also_matched=tuple(i for i in match.rules if i != choice.rule_index),
            activation=activation,
        )
        return _with_statistics(_with_scheme(row, choice, activation, files), choice.fans_from)

    def _per_block_row(self, match: _Match, winners: tuple[int | None, ...]) -> Assignment:
        """A stacked parameter whose blocks take different rules: one :class:`Part` each."""
        site = match.site
        choices = [self._choice(index) for index in winners]
        parts = tuple(
            Part(block.label, block.start, block.stop, _part_scheme(site, block, choice),
                 axis=block.axis, multiplier=choice.multiplier, source=choice.source)
            for block, choice in zip(site.blocks, choices, strict=True)
        )  # fmt: skip
        common = {part.multiplier for part in parts}
        if len(common) == 1:  # one factor for all: the row's, as a whole-parameter rule's
            parts = tuple(replace(part, multiplier=1.0) for part in parts)
        used = [index for index in winners if index is not None]
        sources = dict.fromkeys(choice.source for choice in choices)
        return Assignment(
            site=site,
            scheme=parts[0].scheme,
            multiplier=common.pop() if len(common) == 1 else 1.0,
            source="; ".join(sources),
            rule_index=min(used) if used else None,
            also_matched=tuple(i for i in match.rules if i not in used),
            parts=parts,
        )

    def _check_block_rules(self, matches: Sequence[_Match]) -> None:
        """Every block a rule names is a block of some stacked parameter it selects."""
        for index, item in enumerate(self.rules):
            selected = [m.site for m in matches if index in m.selecting]
            labels = {block.label for site in selected for block in site.blocks}
            missing = [label for label in item.blocks if label not in labels]
            if not selected or not missing:
                continue
            stacked = [site for site in selected if site.blocks]
            held = "; ".join(
                f"{site.name}: {', '.join(b.label for b in site.blocks)}" for site in stacked[:4]
            )
            plain = ", ".join(site.name for site in selected[:3])
            raise ConfigError(
                f"Plan {self.name!r}: rule {index} ({item.describe()}) names block(s) "
                f"{', '.join(map(repr, missing))}, which no parameter it selects holds. "
                + (f"Accepted block names: {held}." if stacked else
                   f"The parameters it selects ({plain}) are not stacked weights; initlab knows "
                   "the blocks of nn.MultiheadAttention's in_proj, GPT-2's c_attn (q, k, v) and "
                   "RNN/LSTM/GRU gates. Declare equal blocks with split=N instead.")
            )  # fmt: skip

    def _warn_unused(
        self, unused: tuple[UnusedRule, ...], names: list[str], files: CheckpointFiles
    ) -> None:
        for item in unused:
            scheme = self.rules[item.rule_index].scheme
            hint = (
                " " + files.mapping_hint(scheme, names) if isinstance(scheme, Checkpoint) else ""
            )
            warnings.warn(
                f"Plan {self.name!r}: rule {item.rule_index} ({item.description}) matched no "
                f"parameter.{hint}",
                stacklevel=3,
            )

    def _warn_not_in_checkpoints(
        self, matches: list[_Match], used: set[int], rows: tuple[Assignment, ...]
    ) -> None:
        lacking: dict[int, list[str]] = {}  # checkpoint rule -> selected names its file lacks
        for match in matches:
            for index in match.not_in_file:
                lacking.setdefault(index, []).append(match.site.name)
        for index, names in lacking.items():
            if index in used:
                _warn_not_in_checkpoint(f"rule {index}", self.rules[index].scheme, names)
        if isinstance(self.default, Checkpoint):
            kept = [
                row.name
                for row in rows
                if row.rule_index is None and row.scheme is None and not row.site.magnitude_of
            ]
            if kept:
                _warn_not_in_checkpoint("the default", self.default, kept)

    # --- application -------------------------------------------------------------------------
    def apply(
        self, model: nn.Module, seed: int = 0, *, stream: Stream = "counter", example: Any = None
    ) -> Assignments:
        """Initialize ``model`` in place; returns the table it applied.

        ``stream`` is how values are drawn (see :func:`initlab.plan.apply.fill_parameter`):
        ``"counter"`` (any shard alone, parallel on the CPU) or ``"generator"`` (a
        ``torch.Generator`` each). ``example`` is an input batch for activation detection (see
        :meth:`resolve`). Each checkpoint file is opened once, for the resolution and the
        copies.

        Raises:
            InitlabError: a scheme that does not fit a parameter (the message names both).
        """
        check_module("Plan.apply", model)
        seed = check_seed("Plan.apply", seed)
        check_stream(stream)
        _check_not_meta(model)
        with open_checkpoints():
            return apply_table(model, self.resolve(model, example=example), seed, stream=stream)


@dataclass(frozen=True)
class _Match:
    """The rules whose conditions hold for one parameter.

    Attributes:
        site: the parameter.
        rules: the indices of the rules that match and can serve it, in order (the first wins).
        not_in_file: the checkpoint rules that select it but whose file does not hold it.
        selecting: the block rules whose conditions hold for it (whether or not it holds a
            block they name).
    """

    site: ParameterSite
    rules: tuple[int, ...]
    not_in_file: tuple[int, ...]
    selecting: tuple[int, ...] = ()


@dataclass(frozen=True)
class _Choice:
    """What decides one parameter: its first matching rule, else the plan's default.

    Attributes:
        scheme: a Scheme, ``"auto"`` or ``"keep"``.
        multiplier: the rule's factor on the drawn values (1 for the default).
        fans_from: ``"module"`` or ``"torch"``.
        source: the table's ``source`` (``rule 2 (...)``, ``default auto``).
        rule_index: the rule, ``None`` for the default.
        split: the rule's ``split`` (0: none).
    """

    scheme: Scheme | str
    multiplier: float
    fans_from: FanSource
    source: str
    rule_index: int | None
    split: int = 0


def _with_scheme(
    row: Assignment, choice: _Choice, activation: Activation | None, files: CheckpointFiles
) -> Assignment:
    """``row`` with the scheme ``choice`` gives it (``None``: kept or derived) and its blocks."""
    site = row.site
    if site.magnitude_of and choice.rule_index is None:
        return replace(row, source=f"derived: ||v|| of {site.magnitude_of} (weight norm)")
    if isinstance(choice.scheme, Checkpoint):
        found = files.source(choice.scheme, site, row.source)
        kept = found.key is None
        return replace(row, scheme=None if kept else choice.scheme, source=found.source)
    if choice.scheme == "keep":
        return row
    if choice.scheme == "auto":
        source = row.source + (" -> auto" if choice.rule_index is not None else "")
        scheme = auto_scheme(site, activation)
        row = replace(row, scheme=scheme, source=source)
    else:
        assert isinstance(choice.scheme, Scheme)  # Rule and Plan allow no other string
        scheme = choice.scheme
        row = replace(row, scheme=scheme)
    if scheme is None or choice.fans_from != "module":
        return row
    if choice.split:
        try:
            site = split_site(site, choice.split)
        except ConfigError as error:
            raise ConfigError(f"{row.source}: {error}") from None
        row = replace(row, site=site)
    auto = choice.scheme == "auto" and not choice.split
    return replace(row, parts=block_parts(site, scheme, auto=auto))


def _takes(item: Rule, block: Block) -> bool:
    """Whether rule ``item`` (matching the parameter) applies to its ``block``."""
    return not item.blocks or block.label in item.blocks


def _part_scheme(site: ParameterSite, block: Block, choice: _Choice) -> Scheme:
    """The scheme ``block`` takes from its own rule (a parameter whose blocks differ)."""
    if isinstance(choice.scheme, Scheme) and not isinstance(choice.scheme, Checkpoint):
        if choice.fans_from == "module":
            return block_scheme(site, block, choice.scheme, auto=False)
    elif choice.scheme == "auto":
        return block_scheme(site, block, XavierNormal(), auto=True)
    if isinstance(choice.scheme, Checkpoint):
        what = "copies it from a checkpoint"
    elif isinstance(choice.scheme, Scheme):
        what = "reads torch's whole-array fans (fans='torch')"
    else:
        what = "keeps it"
    raise ConfigError(
        f"Parameter {site.name!r}: block {block.label} takes {choice.source}, which {what}, "
        "while other blocks take other rules; each block of a stacked parameter is drawn with "
        "its own fans. Add a rule for this block (blocks=...) or one for the whole parameter "
        "after the block rules."
    )


def _warn_not_in_checkpoint(what: str, scheme: Scheme | str, names: list[str]) -> None:
    """The parameters a checkpoint was meant to provide but its file does not hold."""
    shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
    path = scheme.path if isinstance(scheme, Checkpoint) else scheme
    fallback = "kept as they are" if what == "the default" else "initialized by later rules"
    warnings.warn(
        f"{what} (checkpoint {path}): {len(names)} parameter(s) it selects are not in "
        f"checkpoint {path}, so they are {fallback} or the default: {shown}. Narrow the rule "
        "(pattern=..., add_prefix=...) if that is intended, or check the file.",
        stacklevel=4,
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


@dataclass(frozen=True)
class _Drawn:
    """What a scheme gives a tensor: its law (if elementwise) and the values' statistics.

    Attributes:
        law: the i.i.d. law of each element, ``None`` for a whole-matrix scheme.
        stats: mean, std and bound of the values (before the row's multiplier).
    """

    law: ElementwiseLaw | None
    stats: ValueStats


def _drawn(
    scheme: Scheme,
    fans: Fans | None,
    shape: tuple[int, ...],
    site: ParameterSite,
    layout: Layout = "torch",
    groups: int = 1,
) -> _Drawn:
    """The law and statistics of ``scheme`` on ``site`` (``shape``: the site's, or a block's)."""
    law = scheme.law(fans)
    if law is not None:
        return _Drawn(law, law.stats(shape))
    stats = scheme.stats(site.fan_shape if scheme.uses_fans else shape, layout=layout,
                         groups=groups)  # fmt: skip
    return _Drawn(None, stats)


def _scaled(drawn: _Drawn, part: Part, shape: tuple[int, ...]) -> _Drawn:
    """``drawn`` with ``part``'s own multiplier drawn into its law (see
    :mod:`initlab.plan.blocks`)."""
    if part.multiplier == 1.0:
        return drawn
    if drawn.law is None:
        raise ConfigError(
            f"block {part.label}: a multiplier that differs from the other blocks' is drawn "
            f"into the block's law, and {part.scheme} builds the block as a whole; give the "
            "factor to the scheme (e.g. its gain) instead of multiplier=."
        )
    law = scaled_law(drawn.law, part.multiplier)
    return _Drawn(law, law.stats(shape))


def _row_fans(row: Assignment, fans_from: FanSource) -> Fans | None:
    """The fans ``row``'s scheme reads: the site's, computed once in :mod:`initlab.plan.sites`
    (computed here only for a role that has none, e.g. a rule drawing an embedding)."""
    assert row.scheme is not None
    if not (row.scheme.uses_fans or any(part.scheme.uses_fans for part in row.parts)):
        return None
    site = row.site
    fans = site.torch_fans if fans_from == "torch" else site.fans
    if fans is not None:
        return fans
    if fans_from == "torch":
        return compute_fans(site.fan_shape, layout="torch")
    return compute_fans(site.fan_shape, layout=site.layout, groups=site.groups)


def _with_statistics(row: Assignment, fans_from: FanSource) -> Assignment:
    """``row`` with its fans, law(s), std and bound."""
    scheme, site = row.scheme, row.site
    if scheme is None:
        return row
    layout: Layout = "torch" if fans_from == "torch" else site.layout
    groups = 1 if fans_from == "torch" else site.groups
    try:
        fans = _row_fans(row, fans_from)
        whole = None if row.parts else _drawn(scheme, fans, site.shape, site, layout, groups)
        blocks = [_scaled(_drawn(part.scheme, fans, part.shape(site.shape), site), part,
                          part.shape(site.shape)) for part in row.parts]  # fmt: skip
    except InitlabError as error:
        raise type(error)(
            f"Parameter {site.name!r} (shape {site.shape}) cannot take {scheme} "
            f"({row.source}): {error}"
        ) from None
    factor = abs(row.multiplier)
    if whole is not None:
        std, bound = whole.stats.std, whole.stats.bound
    else:  # the pooled std: the square root of the blocks' mean variance
        sizes = [part.stop - part.start for part in row.parts]
        weighted = sum(b.stats.std**2 * n for b, n in zip(blocks, sizes, strict=True))
        std = math.sqrt(weighted / site.shape[row.parts[0].axis])
        bounds = [b.stats.bound for b in blocks]
        bound = None if None in bounds else max(b for b in bounds if b is not None)
    parts = tuple(
        replace(part, std=b.stats.std * factor, law=b.law)
        for part, b in zip(row.parts, blocks, strict=True)
    )
    std *= factor
    return replace(
        row,
        fans=fans,
        std=std if math.isfinite(std) else None,
        bound=None if bound is None else bound * factor,
        layout=layout,
        groups=groups,
        parts=parts,
        law=None if whole is None else whole.law,
    )
