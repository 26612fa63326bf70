"""Optional dependencies, imported inside the features that need them."""

from __future__ import annotations

import importlib
from types import ModuleType

from initlab.errors import InitlabError

__all__ = ["MissingDependencyError", "require"]

_EXTRAS = {
    "pandas": "pandas",
    "optuna": "sweep",
    "matplotlib": "report",
    "kornia": "train",
    "safetensors": "checkpoint",
    "sklearn": "train",
    "keras": "keras",
    "lightning": "lightning",
    "transformers": "hf",
    "tensorboard": "tensorboard",
}


class MissingDependencyError(InitlabError, ImportError):
    """A feature needs a package that is not installed."""


def require(package: str, feature: str) -> ModuleType:
    """Import ``package`` for ``feature``, or say which extra to install."""
    try:
        return importlib.import_module(package)
    except ImportError:
        extra = _EXTRAS.get(package.split(".")[0], package)
        raise MissingDependencyError(
            f"{feature} needs {package!r}, which is not installed. "
            f"Install it with: pip install 'initlab[{extra}]'"
        ) from None
