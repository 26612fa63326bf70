"""initlab: neural-network weight initialization, measured.

``import initlab`` loads torch and NumPy only; heavier features load their dependencies when used.
"""

from __future__ import annotations

from initlab import init
from initlab.doctor import DoctorReport, Thresholds, doctor
from initlab.errors import ConfigError, InitlabError, ShapeError, UnknownNameError
from initlab.fans import Fans, compute_fans, fan_in, fan_out
from initlab.gains import calculate_gain, gain, second_moment_gain
from initlab.lsuv import LsuvLog, lsuv
from initlab.plan import Assignments, Plan, Rule, rule
from initlab.plan.audit import Audit, audit, init_model
from initlab.plan.presets import PRESET_NAMES, as_plan, preset
from initlab.schemes import Scheme, ValueStats, from_config, get, scheme_names

__version__ = "0.1.0"

__all__ = [
    "PRESET_NAMES",
    "Assignments",
    "Audit",
    "ConfigError",
    "DoctorReport",
    "Fans",
    "InitlabError",
    "LsuvLog",
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
    "doctor",
    "fan_in",
    "fan_out",
    "from_config",
    "gain",
    "get",
    "init",
    "init_model",
    "lsuv",
    "preset",
    "rule",
    "scheme_names",
    "second_moment_gain",
]
