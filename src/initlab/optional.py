"""Optional dependencies, imported inside the features that need them."""

from __future__ import annotations

import importlib
import threading
from types import ModuleType

from initlab.errors import InitlabError

__all__ = ["MissingDependencyError", "compiled_kernels", "require"]

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


_kernels_lock = threading.Lock()
_kernels: dict[str, ModuleType | None] = {}


def compiled_kernels(module: str) -> ModuleType | None:
    """The numba kernels module ``module`` (``initlab.counter_kernels``...), imported on the
    first call (numba with it, and the kernels compiled or loaded from numba's cache), or
    ``None`` where it cannot be imported (numba missing or not built for this platform): the
    caller then takes its torch path. Imported by name, once per process, thread-safe.
    """
    if module in _kernels:  # looked up already: no lock on the hot path
        return _kernels[module]
    with _kernels_lock:
        if module not in _kernels:
            try:
                _kernels[module] = importlib.import_module(module)
            except ImportError:
                _kernels[module] = None
        return _kernels[module]
