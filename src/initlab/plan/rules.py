"""`Rule`: which parameters get which scheme.

A rule matches a parameter by any combination of its qualified name (glob or regex), the type
of the module that owns it (class or class name, subclasses included), its role and its block
depth; all given conditions must hold. In a :class:`~initlab.plan.plan.Plan` the first matching
rule wins.

Besides a :class:`~initlab.schemes.Scheme`, a rule's scheme may be ``"auto"`` (pick by the
activation that follows the layer) or ``"keep"`` (leave the parameter as it is). ``multiplier``
scales the drawn values (Fixup's :math:`L^{-1/(2m-2)}`, GPT-2's :math:`1/\\sqrt{2 n_{layer}}`).
``fans="torch"`` reads fans with torch's array rule instead of the module's layout, which is
what reproducing torch's own ``reset_parameters`` needs.

A stacked weight (``nn.MultiheadAttention.in_proj_weight``'s q/k/v, GPT-2's ``c_attn``, the
gates of an LSTM or GRU; :mod:`initlab.plan.blocks`) is drawn block by block. ``blocks=("v",)``
makes a rule apply to those blocks only: each block of the parameter takes the first matching
rule that names it (or names no blocks), so the other blocks fall through to the next matching
rule or the default. Such a rule applies only to parameters that hold a block it names; a name
that is a block of none of the stacked parameters it selects is an error at
:meth:`~initlab.plan.Plan.resolve`. ``split=N`` declares a weight initlab does not know as
stacked (timm's fused ``attn.qkv``) as ``N`` equal blocks along its output axis, each drawn with
its own fans (:math:`(in, out/N)`): ``rule("*.attn.qkv.weight", "xavier_uniform", split=3)``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import re
from collections.abc import Sequence
from typing import Any, Literal

from torch import nn

from initlab.errors import ConfigError
from initlab.plan.sites import ROLES, ParameterSite
from initlab.schemes import Scheme, get
from initlab.schemes.base import check_choice

__all__ = ["SPECIAL_SCHEMES", "FanSource", "Rule", "rule"]

FanSource = Literal["module", "torch"]
SPECIAL_SCHEMES = ("auto", "keep")
TypeSpec = type | str


@dataclasses.dataclass(frozen=True)
class Rule:
    """One rule of a plan (build it with :func:`rule`).

    Attributes:
        scheme: a Scheme, ``"auto"`` or ``"keep"``.
        pattern: glob on the qualified parameter name (``*`` crosses dots).
        regex: regular expression searched in the qualified name.
        types: module classes or class names (subclasses match).
        roles: parameter roles (see :mod:`initlab.plan.sites`).
        depth: inclusive range of block indices.
        multiplier: factor applied to the drawn values.
        fans: ``"module"`` (layer-aware) or ``"torch"`` (torch's array rule).
        blocks: the labels of the blocks of a stacked weight it applies to (``q``, ``k``,
            ``v``, gate letters); empty: the whole parameter.
        split: draw the parameter as this many equal blocks along its output axis, each with
            its own fans (0: as the layer says).
    """

    scheme: Scheme | str
    pattern: str | None = None
    regex: str | None = None
    types: tuple[TypeSpec, ...] = ()
    roles: tuple[str, ...] = ()
    depth: tuple[int, int] | None = None
    multiplier: float = 1.0
    fans: FanSource = "module"
    blocks: tuple[str, ...] = ()
    split: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.scheme, str):
            check_choice("rule", "scheme", self.scheme, SPECIAL_SCHEMES)
        for role in self.roles:
            check_choice("rule", "role", role, ROLES)
        check_choice("rule", "fans", self.fans, ("module", "torch"))
        if not math.isfinite(self.multiplier):
            raise ConfigError(f"rule: multiplier must be finite, got {self.multiplier!r}.")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as error:
                raise ConfigError(
                    f"rule: regex {self.regex!r} does not compile: {error}."
                ) from None
        _check_blocks(self.blocks, self.split, self.fans)

    def matches(self, site: ParameterSite, module: nn.Module) -> bool:
        """Whether this rule applies to the parameter at ``site`` owned by ``module``."""
        # A tied tensor is matched under its first name only, so one rule decides it.
        if self.pattern is not None and not fnmatch.fnmatchcase(site.name, self.pattern):
            return False
        if self.regex is not None and not re.search(self.regex, site.name):
            return False
        if self.types and not any(_is_type(module, spec) for spec in self.types):
            return False
        if self.roles and site.role not in self.roles:
            return False
        if self.depth is not None:
            low, high = self.depth
            if site.depth is None or not low <= site.depth <= high:
                return False
        return True

    def describe(self) -> str:
        """The rule's conditions in one line, e.g. ``types=Conv2d role=weight``."""
        parts = []
        if self.pattern is not None:
            parts.append(repr(self.pattern))
        if self.regex is not None:
            parts.append(f"regex={self.regex!r}")
        if self.types:
            parts.append("types=" + ",".join(_type_name(t) for t in self.types))
        if self.roles:
            parts.append("role=" + ",".join(self.roles))
        if self.depth is not None:
            low, high = self.depth
            parts.append(f"depth={low}" if low == high else f"depth={low}..{high}")
        if self.blocks:
            parts.append("blocks=" + ",".join(self.blocks))
        if self.split:
            parts.append(f"split={self.split}")
        return " ".join(parts) or "every parameter"

    @property
    def scheme_label(self) -> str:
        """The scheme with its multiplier, as tables show it (as :attr:`Assignment.scheme_label
        <initlab.plan.assignments.Assignment.scheme_label>`)."""
        label = str(self.scheme)
        return label if self.multiplier == 1.0 else f"{label} x {self.multiplier:.6g}"


def _check_blocks(blocks: Any, split: Any, fans: str) -> None:
    """``blocks``: distinct non-empty labels; ``split``: 0 or an integer >= 2; not both."""
    if (
        isinstance(blocks, str)
        or not isinstance(blocks, tuple)
        or not all(isinstance(label, str) and label for label in blocks)
    ):
        raise ConfigError(
            f"rule: blocks must be block labels such as ('v',) or ('q', 'k'), got {blocks!r}."
        )
    if len(set(blocks)) != len(blocks):
        raise ConfigError(f"rule: blocks names a block twice, got {blocks!r}.")
    if isinstance(split, bool) or not isinstance(split, int) or split == 1 or split < 0:
        raise ConfigError(
            f"rule: split must be an integer >= 2 (the number of equal blocks), got {split!r}."
        )
    if split and fans != "module":
        raise ConfigError(
            f"rule: split={split} reads each block's fans from its layer; it takes "
            f"fans='module', got fans={fans!r}."
        )
    if blocks and split:
        raise ConfigError(
            f"rule: give blocks= or split=, not both (got blocks={blocks!r}, split={split}): "
            "split draws every block of its parameter with the rule's scheme."
        )


def _type_name(spec: TypeSpec) -> str:
    return spec if isinstance(spec, str) else spec.__name__


def _is_type(module: nn.Module, spec: TypeSpec) -> bool:
    if isinstance(spec, str):
        return any(cls.__name__ == spec for cls in type(module).__mro__)
    return isinstance(module, spec)


def _depth_range(depth: int | Sequence[int] | range | None) -> tuple[int, int] | None:
    if depth is None:
        return None
    if isinstance(depth, bool) or not isinstance(depth, int | range | Sequence):
        raise ConfigError(
            f"rule: depth must be an int, a range or [low, high], got {depth!r} "
            f"({type(depth).__name__})."
        )
    if isinstance(depth, int):
        low, high = depth, depth
    elif isinstance(depth, range):
        if depth.step != 1 or len(depth) == 0:
            raise ConfigError(f"rule: depth range must be non-empty with step 1, got {depth!r}.")
        low, high = depth.start, depth.stop - 1
    else:
        values = list(depth)
        integers = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        if len(values) != 2 or not integers or values[0] > values[1]:
            raise ConfigError(
                "rule: depth as a pair must be [low, high] (inclusive, low <= high), "
                f"got {depth!r}."
            )
        low, high = values
    if low < 0:
        # Block indices count from 0; a negative one would silently match nothing.
        raise ConfigError(f"rule: depth must be >= 0 (block indices count from 0), got {depth!r}.")
    return low, high


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, str | type):
        return (value,)
    return tuple(value)


def _type_specs(types: Any) -> tuple[TypeSpec, ...]:
    """``types`` as a tuple of classes or class names."""
    listed = (types,) if isinstance(types, str | type) else types
    if types is None:
        return ()
    if not isinstance(listed, Sequence | set | frozenset) or not all(
        isinstance(spec, str | type) for spec in listed
    ):
        raise ConfigError(
            f"rule: types must be module classes or class names, e.g. types=nn.Linear or "
            f"types=['Conv2d', nn.Linear], got {types!r} ({type(types).__name__})."
        )
    return tuple(listed)


def _multiplier(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            f"rule: multiplier must be a finite number, got {value!r} ({type(value).__name__})."
        )
    return float(value)


def rule(
    pattern: str | None = None,
    scheme: Scheme | str | None = None,
    *,
    types: TypeSpec | Sequence[TypeSpec] | None = None,
    role: str | Sequence[str] | None = None,
    depth: int | Sequence[int] | range | None = None,
    regex: str | None = None,
    multiplier: float = 1.0,
    fans: FanSource = "module",
    blocks: str | Sequence[str] | None = None,
    split: int | None = None,
    **params: Any,
) -> Rule:
    """Build a :class:`Rule`.

    Example:
        >>> rule("*.c_proj.weight", "normal", std=0.02 / (2 * 12) ** 0.5)
        >>> rule(types=nn.Conv2d, role="weight", scheme="he_normal", mode="fan_out")
        >>> rule(role="bias", scheme="zeros")
        >>> rule("*.in_proj_weight", "xavier_uniform", blocks="v", multiplier=0.5)
        >>> rule("*.attn.qkv.weight", "xavier_uniform", split=3)  # timm's fused q/k/v

    Args:
        pattern: glob on the parameter's qualified name.
        scheme: a scheme name (with ``params``), a Scheme, ``"auto"`` or ``"keep"``.
        types: module class(es) or class name(s).
        role: role(s): weight, bias, embedding, norm_weight, norm_bias, other.
        depth: a block index, a ``range`` or an inclusive ``[low, high]``.
        regex: a regular expression searched in the qualified name.
        multiplier: factor on the drawn values.
        fans: ``"module"`` (default) or ``"torch"`` (torch's array rule).
        blocks: the block label(s) of a stacked weight the rule applies to (``"v"``,
            ``("q", "k")``, LSTM gates ``i f g o``); the other blocks fall through to the next
            matching rule (see the module docstring).
        split: draw the parameter as ``split`` equal blocks along its output axis, each with
            its own fans.
        **params: the scheme's parameters.
    """
    for field, value in (("pattern", pattern), ("regex", regex)):
        if value is not None and not isinstance(value, str):
            raise ConfigError(
                f"rule: {field} must be a string such as '*.weight', got {value!r} "
                f"({type(value).__name__})."
            )
    if scheme is None:
        raise ConfigError(
            "rule: give a scheme, e.g. rule('*.weight', 'he_normal') or scheme='zeros'."
        )
    if isinstance(scheme, str) and scheme in SPECIAL_SCHEMES:
        if params:
            raise ConfigError(
                f"rule: scheme {scheme!r} takes no parameters, got {sorted(params)}."
            )
        resolved: Scheme | str = scheme
    else:
        resolved = get(scheme, **params)
    return Rule(
        scheme=resolved,
        pattern=pattern,
        regex=regex,
        types=_type_specs(types),
        roles=_as_tuple(role),
        depth=_depth_range(depth),
        multiplier=_multiplier(multiplier),
        fans=fans,
        blocks=_as_tuple(blocks) if isinstance(blocks, str | Sequence | None) else blocks,
        split=0 if split is None else split,
    )
