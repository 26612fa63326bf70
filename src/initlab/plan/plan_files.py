"""Plan files: YAML, TOML or JSON in, the same out; syntax errors name the file and the line.

The format follows the suffix (``.yaml``/``.yml``, ``.toml``, ``.json``); the content is the
dict form of :mod:`initlab.plan.config`. Nothing in a file is evaluated: YAML goes through
``yaml.safe_load``, TOML through ``tomllib``. YAML is written in block style with lists and
parameter tables on one line; TOML by ``tomli-w`` (the standard library only reads TOML).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import tomli_w
import yaml

from initlab.errors import ConfigError
from initlab.plan.config import PlanContents, plan_from_config, plan_to_config

__all__ = ["PLAN_FORMATS", "read_plan_file", "toml_document", "write_plan_file", "yaml_document"]

PLAN_FORMATS: dict[str, str] = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json"}


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


def read_plan_file(path: str | os.PathLike[str]) -> PlanContents:
    """Read a plan's contents from a ``.yaml``/``.yml``, ``.toml`` or ``.json`` file.

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


def write_plan_file(contents: PlanContents, path: str | os.PathLike[str]) -> Path:
    """Write a plan's ``contents`` to ``path``, in the format its suffix names; returns the path.

    Raises:
        ConfigError: an unknown suffix, or a value the format cannot hold.
    """
    file = Path(path)
    kind = _format_of(file)
    config = plan_to_config(contents)
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


def toml_document(config: Mapping[str, Any]) -> str:
    """``config`` as TOML: plain keys first, then tables, each list of tables as ``[[key]]``.

    Raises:
        ConfigError: a value TOML cannot hold (``None``, an object).
    """
    try:
        return tomli_w.dumps(config)
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"TOML cannot hold a value of this plan ({error}); write the plan as YAML or JSON "
            "instead."
        ) from None
