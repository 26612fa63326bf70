"""The errors of :mod:`initlab.scale`, in a module of their own so that every part of the
package can raise them without importing another part."""

from __future__ import annotations

from initlab.errors import InitlabError

__all__ = ["MaterializeError", "OwnInitError"]


class MaterializeError(InitlabError, RuntimeError):
    """A model cannot be built on the meta device, or a value it needs would be lost there."""


class OwnInitError(MaterializeError):
    """A parameter that the model's own initialization does not write."""
