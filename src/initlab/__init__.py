"""initlab: neural-network weight initialization, measured.

``import initlab`` is cheap: every public name below is loaded on first use (PEP 562), so the
command line answers ``initlab --help`` without torch, and ``initlab.Plan`` loads torch, NumPy
and the plan machinery when a program first asks for it. Heavier features (Optuna, matplotlib,
pandas, ...) load their dependencies only when used.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from initlab import init
    from initlab.doctor import DoctorReport, Thresholds, doctor
    from initlab.errors import ConfigError, InitlabError, ShapeError, UnknownNameError
    from initlab.fans import Fans, compute_fans, fan_in, fan_out
    from initlab.gains import calculate_gain, gain, second_moment_gain
    from initlab.lsuv import LsuvLog, lsuv
    from initlab.parametrize import Parametrization, parametrize
    from initlab.plan import (
        PRESET_NAMES,
        Assignments,
        Plan,
        Rule,
        as_plan,
        init_model,
        preset,
        rule,
    )
    from initlab.plan.audit import Audit, audit  # the package's ``audit`` is the function
    from initlab.schemes import Scheme, ValueStats, from_config, get, scheme_names
    from initlab.width import CoordCheck, coord_check

__version__ = "0.1.0"

# Where each public name lives: a package whose own ``__all__`` exports it, so that names may
# move between its modules freely.
_HOMES: dict[str, tuple[str, ...]] = {
    "initlab.doctor": ("DoctorReport", "Thresholds", "doctor"),
    "initlab.errors": ("ConfigError", "InitlabError", "ShapeError", "UnknownNameError"),
    "initlab.fans": ("Fans", "compute_fans", "fan_in", "fan_out"),
    "initlab.gains": ("calculate_gain", "gain", "second_moment_gain"),
    "initlab.lsuv": ("LsuvLog", "lsuv"),
    "initlab.plan": (
        "PRESET_NAMES",
        "Assignments",
        "Audit",
        "Plan",
        "Rule",
        "as_plan",
        "audit",
        "init_model",
        "preset",
        "rule",
    ),
    "initlab.parametrize": ("Parametrization", "parametrize"),
    "initlab.schemes": ("Scheme", "ValueStats", "from_config", "get", "scheme_names"),
    "initlab.width": ("CoordCheck", "coord_check"),
}
_HOME_OF: dict[str, str] = {name: home for home, names in _HOMES.items() for name in names}
_SUBMODULES = ("init",)
# Functions named like their subpackage: ``initlab.doctor``, ``initlab.lsuv`` and
# ``initlab.parametrize`` are the functions, whichever of their modules was imported first.
_FUNCTIONS_OVER_PACKAGES = ("doctor", "lsuv", "parametrize")

__all__ = [
    "PRESET_NAMES",
    "Assignments",
    "Audit",
    "ConfigError",
    "CoordCheck",
    "DoctorReport",
    "Fans",
    "InitlabError",
    "LsuvLog",
    "Parametrization",
    "Plan",
    "Rule",
    "Scheme",
    "ShapeError",
    "Thresholds",
    "UnknownNameError",
    "ValueStats",
    "__version__",
    "as_plan",
    "audit",
    "calculate_gain",
    "compute_fans",
    "coord_check",
    "doctor",
    "fan_in",
    "fan_out",
    "from_config",
    "gain",
    "get",
    "init",
    "init_model",
    "lsuv",
    "parametrize",
    "preset",
    "rule",
    "scheme_names",
    "second_moment_gain",
]


def __getattr__(name: str) -> Any:
    """Load the public ``name`` on first use and keep it (PEP 562)."""
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    home = _HOME_OF.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """``initlab`` itself: keeps ``doctor``, ``lsuv`` and ``parametrize`` naming the functions.

    Importing a submodule binds it on its package (``initlab.doctor = <module>``); with the
    names loaded lazily that binding would hide the function, so it is not made (the module
    stays in ``sys.modules``, where ``from initlab.doctor import ...`` finds it).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _FUNCTIONS_OVER_PACKAGES and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
