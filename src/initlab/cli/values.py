"""Parsing the small typed values people type on a command line: shapes and KEY=VALUE pairs."""

from __future__ import annotations

from typing import Any

from initlab.errors import ConfigError

__all__ = ["parse_key_values", "parse_shape"]


def parse_key_values(pairs: list[str], *, option: str) -> dict[str, Any]:
    """``["mode=fan_out", "gain=2"]`` -> ``{"mode": "fan_out", "gain": 2}`` (YAML scalars).

    Raises:
        ConfigError: a pair without ``=`` or without a key (naming ``option``).
    """
    import yaml  # a command's body needs it, not ``initlab --help``

    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} expects KEY=VALUE, got {pair!r} (e.g. mode=fan_out).")
        params[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    return params


def parse_shape(text: str, *, option: str = "--shape") -> tuple[int, ...]:
    """``"256,128,3,3"`` (or ``"256x128x3x3"``) -> ``(256, 128, 3, 3)``.

    Raises:
        ConfigError: a part that is not an integer, no parts, or a negative size.
    """
    try:
        dims = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise ConfigError(
            f"{option} expects comma-separated integers such as 256,128,3,3, got {text!r}."
        ) from None
    if not dims or any(d < 0 for d in dims):
        raise ConfigError(f"{option} needs non-negative integer sizes, got {text!r}.")
    return dims
