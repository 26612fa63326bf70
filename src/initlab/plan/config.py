"""A plan as data: the pydantic models of a plan file, and dict <-> Plan with named errors.

.. code-block:: yaml

    name: my-plan
    default: auto              # auto | keep | a scheme name | {scheme: he_normal, mode: fan_out}
    rules:
      - pattern: "*.attn.c_proj.weight"   # glob on the qualified name
        regex: null                        # regular expression searched in the name
        types: [Conv2d, Linear]            # module class names (subclasses match)
        role: weight                       # or a list of roles
        depth: [0, 5]                      # a block index or an inclusive [low, high]
        scheme: normal                     # auto | keep | a scheme name
        params: {std: 0.004}               # the scheme's parameters
        multiplier: 1.0
        fans: module                       # module | torch
        blocks: [v]                        # blocks of a stacked weight (q, k, v; gates)
        split: 3                           # or: N equal blocks along the output axis

Only ``scheme`` is required in a rule. The file is read in two steps: a pydantic model checks
the structure (field names, types, roles, depths, regexes, scheme names), then each scheme is
built from its parameters, for every rule that is well formed. All problems are reported at
once, each as ``plan.yaml: rules[2].scheme: <what is wrong, the value, what is allowed>``, in
one :class:`~initlab.errors.ConfigError`.

:func:`plan_to_config` inverts :func:`plan_from_config`: the rules read back have equal fields
(module classes are written by class name, and a class name matches the same modules). Both work
on :class:`PlanContents` (name, default, rules), so this module knows nothing of
:class:`~initlab.plan.plan.Plan`, which builds on it. Files (YAML, TOML, JSON) are read and
written by :mod:`initlab.plan.plan_files`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from initlab.errors import ConfigError, InitlabError, did_you_mean
from initlab.plan.rules import SPECIAL_SCHEMES, Rule, rule
from initlab.plan.sites import ROLES
from initlab.schemes.base import Scheme, scheme_class

__all__ = ["PlanConfig", "PlanContents", "RuleConfig", "plan_from_config", "plan_to_config"]


@dataclasses.dataclass(frozen=True)
class PlanContents:
    """What a plan file holds: the plan's name, its default and its rules in order.

    Attributes:
        name: the plan's label.
        default: ``"auto"``, ``"keep"`` or a Scheme, for the parameters no rule matches.
        rules: the rules; the first match wins.
    """

    name: str
    default: str | Scheme
    rules: tuple[Rule, ...]


# --- the file's structure ---------------------------------------------------------------------
class RuleConfig(BaseModel):
    """One rule as written in a plan file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    pattern: str | None = None
    regex: str | None = None
    types: list[str] = Field(default_factory=list)
    role: list[str] = Field(default_factory=list)
    depth: tuple[int, int] | None = None
    scheme: str
    params: dict[str, Any] = Field(default_factory=dict)
    multiplier: float = Field(default=1.0, strict=True)
    fans: Literal["module", "torch"] = "module"
    blocks: list[str] = Field(default_factory=list)
    split: int | None = Field(default=None, strict=True)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(f"regex {value!r} does not compile: {error}.") from None
        return value

    @field_validator("blocks")
    @classmethod
    def _block_labels(cls, value: list[str]) -> list[str]:
        if not all(value) or len(set(value)) != len(value):
            raise ValueError(
                f"blocks is a list of distinct block labels such as [v] or [q, k] (the names "
                f"the layer gives its blocks: q, k, v; LSTM i, f, g, o), got {value!r}."
            )
        return value

    @field_validator("split")
    @classmethod
    def _split_count(cls, value: int | None) -> int | None:
        if value is not None and value < 2:
            raise ValueError(f"split is the number of equal blocks, >= 2, got {value!r}.")
        return value

    @field_validator("types", "role", "blocks", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else [] if value is None else value

    @field_validator("types")
    @classmethod
    def _class_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name.isidentifier():
                raise ValueError(
                    f"{name!r} is not a class name; write the bare class name "
                    "(e.g. 'Linear', not 'nn.Linear')."
                )
        return value

    @field_validator("role")
    @classmethod
    def _known_roles(cls, value: list[str]) -> list[str]:
        for role in value:
            if role not in ROLES:
                raise ValueError(did_you_mean("role", role, ROLES))
        return value

    @field_validator("depth", mode="before")
    @classmethod
    def _depth_range(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return (value, value)
        pair = list(value) if isinstance(value, list | tuple) else None
        if (
            pair is None
            or len(pair) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
            or pair[0] > pair[1]
        ):
            raise ValueError(
                f"depth is a block index or an inclusive [low, high] with low <= high, "
                f"got {value!r}."
            )
        return tuple(pair)

    @field_validator("scheme")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if value not in SPECIAL_SCHEMES:
            try:
                scheme_class(value)
            except InitlabError as error:
                raise ValueError(f"{error} Or one of: {', '.join(SPECIAL_SCHEMES)}.") from None
        return value

    @field_validator("multiplier")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"multiplier must be a finite number, got {value!r}.")
        return value


class PlanConfig(BaseModel):
    """A plan file: a name, the default for unmatched parameters, and the rules in order."""

    model_config = ConfigDict(extra="forbid")

    name: str = "plan"
    default: str | dict[str, Any] = "auto"
    rules: list[RuleConfig] = Field(default_factory=list)

    @field_validator("default", mode="before")
    @classmethod
    def _scheme_or_table(cls, value: Any) -> Any:
        if isinstance(value, str | Mapping):
            return value
        raise ValueError(
            "default is 'auto', 'keep', a scheme name, or a table such as "
            f"{{scheme: he_normal, mode: fan_out}}, got {value!r}."
        )


# --- dict -> PlanContents ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong in a plan config.

    Attributes:
        where: the field, e.g. ``rules[2].scheme``.
        message: what is wrong, the value, what is allowed.
    """

    where: str
    message: str


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _pydantic_problems(error: ValidationError, at: tuple[int | str, ...]) -> list[Problem]:
    problems = []
    for item in error.errors():
        loc = at + tuple(item["loc"])
        kind = item["type"]
        if kind == "extra_forbidden":
            known = (RuleConfig if at else PlanConfig).model_fields
            message = did_you_mean("field", str(loc[-1]), known)
        elif kind == "value_error":
            message = str(item["ctx"]["error"])
        elif kind == "missing":
            hint = " (auto, keep or a scheme name)" if loc[-1] == "scheme" else ""
            message = f"missing: this field is required{hint}."
        elif kind == "model_type":
            message = (
                "a rule is a mapping such as {pattern: '*.weight', scheme: he_normal}, "
                f"got {item['input']!r}."
            )
        else:
            message = f"{item['msg']}, got {item['input']!r}."
        problems.append(Problem(_location(loc), message))
    return problems


def _build_scheme(name: str, params: Mapping[str, Any], where: str) -> Scheme | Problem:
    cls = scheme_class(name)
    accepted = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in params:
        if key not in accepted:
            if not accepted:
                return Problem(f"{where}.{key}", f"scheme {cls.name!r} takes no parameters.")
            return Problem(f"{where}.{key}", did_you_mean(f"{cls.name} parameter", key, accepted))
    try:
        return cls(**params)
    except (InitlabError, TypeError, ValueError) as error:
        return Problem(where, str(error))


def _build_default(value: str | dict[str, Any]) -> str | Scheme | Problem:
    if isinstance(value, str):
        if value in SPECIAL_SCHEMES:
            return value
        try:
            scheme_class(value)
        except InitlabError as error:
            return Problem("default", f"{error} Or one of: {', '.join(SPECIAL_SCHEMES)}.")
        return _build_scheme(value, {}, "default")
    if not isinstance(value.get("scheme"), str):
        return Problem(
            "default.scheme", "a default table needs scheme: NAME, e.g. {scheme: he_normal}."
        )
    name = value["scheme"]
    params = {k: v for k, v in value.items() if k != "scheme"}
    try:
        scheme_class(name)
    except InitlabError as error:
        return Problem("default.scheme", str(error))
    return _build_scheme(name, params, "default")


def _build_rule(item: RuleConfig, where: str) -> Rule | Problem:
    if item.scheme in SPECIAL_SCHEMES:
        if item.params:
            return Problem(f"{where}.params", f"scheme {item.scheme!r} takes no parameters.")
        scheme: Scheme | str = item.scheme
    else:
        built = _build_scheme(item.scheme, item.params, f"{where}.params")
        if isinstance(built, Problem):
            return built
        scheme = built
    try:
        return rule(
            item.pattern,
            scheme,
            types=tuple(item.types),
            role=tuple(item.role),
            depth=item.depth,
            regex=item.regex,
            multiplier=item.multiplier,
            fans=item.fans,
            blocks=tuple(item.blocks),
            split=item.split,
        )
    except InitlabError as error:  # already checked field by field; kept for a clear message
        return Problem(where, str(error))


def _build_rules(raw_rules: Any, problems: list[Problem]) -> tuple[Rule, ...]:
    """The rules that are well formed; a problem for each that is not (added to ``problems``)."""
    if not isinstance(raw_rules, list | tuple):
        problems.append(Problem("rules", f"rules is a list of rules, got {raw_rules!r}."))
        return ()
    rules: list[Rule] = []
    for index, raw in enumerate(raw_rules):
        try:
            parsed = RuleConfig.model_validate(raw)
        except ValidationError as error:
            problems += _pydantic_problems(error, ("rules", index))
            continue
        built = _build_rule(parsed, f"rules[{index}]")
        if isinstance(built, Problem):
            problems.append(built)
        else:
            rules.append(built)
    return tuple(rules)


def plan_from_config(config: Mapping[str, Any], *, source: str = "plan config") -> PlanContents:
    """A plan's :class:`PlanContents` from its dict form (a parsed plan file).

    The top level and each rule are checked on their own, so that one error does not hide
    the others: a rule's scheme is built whenever the rule is well formed.

    Args:
        config: ``{"name": ..., "default": ..., "rules": [...]}`` (see the module docstring).
        source: how errors name the config (the file name when read from a file).

    Raises:
        ConfigError: every problem found, each as ``source: rules[i].field: message``, joined
            by ``"; "``.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"{source}: a plan is a mapping with the keys name, default and rules, "
            f"got {type(config).__name__}."
        )
    problems: list[Problem] = []
    top: PlanConfig | None = None
    try:
        top = PlanConfig.model_validate({**config, "rules": []})
    except ValidationError as error:
        problems += _pydantic_problems(error, ())
    default = _build_default(top.default) if top is not None else "auto"
    if isinstance(default, Problem):
        problems.append(default)
    rules = _build_rules(config.get("rules", []), problems)
    if problems or top is None or isinstance(default, Problem):
        raise ConfigError(
            "; ".join(f"{source}: {problem.where}: {problem.message}" for problem in problems)
        )
    return PlanContents(name=top.name, default=default, rules=rules)


# --- PlanContents -> dict ---------------------------------------------------------------------
def _scheme_table(scheme: Scheme) -> dict[str, Any]:
    return {"scheme": scheme.name, **scheme.params()}


def _rule_config(item: Rule) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if item.pattern is not None:
        config["pattern"] = item.pattern
    if item.regex is not None:
        config["regex"] = item.regex
    if item.types:
        config["types"] = [t if isinstance(t, str) else t.__name__ for t in item.types]
    if item.roles:
        config["role"] = item.roles[0] if len(item.roles) == 1 else list(item.roles)
    if item.depth is not None:
        low, high = item.depth
        config["depth"] = low if low == high else [low, high]
    if isinstance(item.scheme, Scheme):
        config["scheme"] = item.scheme.name
        if item.scheme.params():
            config["params"] = item.scheme.params()
    else:
        config["scheme"] = item.scheme
    if item.multiplier != 1.0:
        config["multiplier"] = item.multiplier
    if item.fans != "module":
        config["fans"] = item.fans
    if item.blocks:
        config["blocks"] = list(item.blocks)
    if item.split:
        config["split"] = item.split
    return config


def plan_to_config(contents: PlanContents) -> dict[str, Any]:
    """A plan's contents as plain data (strings, numbers, lists, dicts); no ``None`` values.

    Defaults are left out (an empty ``regex``, a multiplier of 1); a scheme's parameters are
    all written, so the file means the same under later defaults.
    """
    default = contents.default
    return {
        "name": contents.name,
        "default": _scheme_table(default) if isinstance(default, Scheme) else default,
        "rules": [_rule_config(item) for item in contents.rules],
    }
