"""The one error hierarchy of initlab.

Every error a user can cause is an :class:`InitlabError`. Its message names the thing that was
wrong (a parameter, a shape, a file, a config field), the value received, what is allowed, and
the way out. The subclasses also derive from the built-in exception a caller of
``torch.nn.init`` would catch (``ValueError``), so initlab stays a drop-in replacement.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ConfigError",
    "InitlabError",
    "ShapeError",
    "UnknownNameError",
    "did_you_mean",
]


class InitlabError(Exception):
    """Base class of every error initlab raises on purpose."""


class ShapeError(InitlabError, ValueError):
    """A tensor's shape does not fit what a scheme or layout needs."""


class UnknownNameError(InitlabError, ValueError):
    """A name (scheme, activation, preset, layout) that initlab does not know."""


class ConfigError(InitlabError, ValueError):
    """A value given to a scheme or a configuration is out of its allowed range."""


def did_you_mean(kind: str, received: str, known: Iterable[str]) -> str:
    """Message for an unknown name, with the closest known names and the full list.

    Example:
        >>> did_you_mean("scheme", "he_normall", ["he_normal", "zeros"])
        "Unknown scheme 'he_normall'. Did you mean 'he_normal'? Known: he_normal, zeros."
    """
    names = sorted(set(known))
    close = difflib.get_close_matches(received, names, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"Unknown {kind} {received!r}.{hint} Known: {', '.join(names)}."
