"""Plan files: YAML, TOML or JSON in, the same out; syntax errors name the file and the line.

The format follows the suffix (``.yaml``/``.yml``, ``.toml``, ``.json``); the content is the
dict form of :mod:`initlab.plan.config`. Nothing in a file is evaluated: YAML goes through
``yaml.safe_load``, TOML through ``tomllib``. YAML is written in block style with lists and
parameter tables on one line; TOML by a small serializer for this plain structure (strings,
numbers, booleans, lists, tables), since the standard library only reads TOML.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import yaml

from initlab.errors import ConfigError
from initlab.plan.config import plan_from_config, plan_to_config

if TYPE_CHECKING:
    from initlab.plan.plan import Plan

__all__ = ["PLAN_FORMATS", "read_plan_file", "toml_document", "write_plan_file", "yaml_document"]

PLAN_FORMATS: dict[str, str] = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json"}
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


# --- files ------------------------------------------------------------------------------------
def _format_of(path: Path) -> str:
    kind = PLAN_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(
            f"plan file {str(path)!r}: unknown format {path.suffix or '(no suffix)'!r}. "
            f"Known: {', '.join(PLAN_FORMATS)}."
        )
    return kind


def _toml_reader() -> ModuleType:
    # tomllib is in the standard library from Python 3.11; tomli is its backport for 3.10.
    for name in ("tomllib", "tomli"):
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError:
            continue
    raise ConfigError("Reading TOML needs Python 3.11 or later, or: pip install tomli.")


def _parse(text: str, kind: str, label: str) -> Any:
    if kind == "yaml":
        try:
            return yaml.safe_load(text)
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
            raise ConfigError(
                f"{label}: {where}: invalid YAML: {error.problem or error.context}."
            ) from None
        except yaml.YAMLError as error:
            raise ConfigError(f"{label}: invalid YAML: {error}.") from None
    if kind == "toml":
        reader = _toml_reader()
        try:
            return reader.loads(text)
        except reader.TOMLDecodeError as error:
            raise ConfigError(f"{label}: invalid TOML: {error}.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"{label}: line {error.lineno}, column {error.colno}: invalid JSON: {error.msg}."
        ) from None


def read_plan_file(path: str | os.PathLike[str]) -> Plan:
    """Read a plan from a ``.yaml``/``.yml``, ``.toml`` or ``.json`` file.

    Raises:
        ConfigError: a missing or unreadable file, a syntax error (with its line), or a plan
            error (with its field, see :func:`plan_from_config`).
    """
    file = Path(path)
    label = str(path)
    kind = _format_of(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"plan file {label!r} does not exist (looked for {file.resolve()})."
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"plan file {label!r} cannot be read as UTF-8 text: {error}.") from None
    document = _parse(text, kind, label)
    if document is None:
        raise ConfigError(f"{label}: the file is empty; a plan needs at least rules or default.")
    return plan_from_config(document, source=label)


def write_plan_file(plan: Plan, path: str | os.PathLike[str]) -> Path:
    """Write ``plan`` to ``path``, in the format its suffix names; returns the path."""
    file = Path(path)
    kind = _format_of(file)
    config = plan_to_config(plan)
    if kind == "yaml":
        text = yaml_document(config)
    elif kind == "toml":
        text = toml_document(config)
    else:
        text = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
    file.write_text(text, encoding="utf-8")
    return file


# --- YAML and TOML writers for plain data ------------------------------------------------------
class _InlineTable(dict[str, Any]):
    """A mapping written on one line (a scheme's parameters)."""


class _InlineList(list[Any]):
    """A list written on one line (types, roles, a depth range)."""


class _PlanDumper(yaml.SafeDumper):
    """``safe_dump`` with rules as blocks, and lists and parameter tables on one line."""


def _inline_mapping(dumper: yaml.SafeDumper, value: _InlineTable) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", value, flow_style=True)


def _inline_list(dumper: yaml.SafeDumper, value: _InlineList) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True)


_PlanDumper.add_representer(_InlineTable, _inline_mapping)
_PlanDumper.add_representer(_InlineList, _inline_list)


def yaml_document(config: Mapping[str, Any]) -> str:
    """``config`` as block-style YAML whose innermost lists and tables sit on one line."""

    def inline(value: Any) -> Any:
        if isinstance(value, Mapping):
            return _InlineTable(value)
        return _InlineList(value) if isinstance(value, list) else value

    document = {
        key: [{k: inline(v) for k, v in item.items()} for item in value]
        if isinstance(value, list) and all(isinstance(v, Mapping) for v in value)
        else inline(value)
        for key, value in config.items()
    }
    return yaml.dump(
        document, Dumper=_PlanDumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )


# --- a TOML writer -------------------------------------------------------------
def _toml_string(text: str) -> str:
    escapes = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
               "\r": "\\r"}  # fmt: skip
    out = []
    for char in text:
        if char in escapes:
            out.append(escapes[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v, f"{where}[]") for v in value) + "]"
    if isinstance(value, Mapping):
        items = [
            f"{_toml_key(str(k))} = {_toml_value(v, f'{where}.{k}')}" for k, v in value.items()
        ]
        return "{" + ", ".join(items) + "}"
    raise ConfigError(
        f"{where}: TOML cannot hold {value!r} ({type(value).__name__}); "
        "write the plan as YAML or JSON instead."
    )


def toml_document(config: Mapping[str, Any]) -> str:
    """``config`` as TOML: plain keys first, then each list of tables as ``[[key]]`` blocks."""
    lines: list[str] = []
    blocks: list[str] = []
    for key, value in config.items():
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for table in value:
                blocks += ["", f"[[{_toml_key(key)}]]"]
                blocks += [
                    f"{_toml_key(str(k))} = {_toml_value(v, f'{key}.{k}')}"
                    for k, v in table.items()
                ]
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value, key)}")
    return "\n".join(lines + blocks) + "\n"
