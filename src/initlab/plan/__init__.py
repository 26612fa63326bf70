"""Whole-model initialization: rules -> a Plan -> a table of Assignments -> applied."""

from __future__ import annotations

from initlab.plan.activations import Activation, ActivationMap, detect_activations
from initlab.plan.apply import apply_table
from initlab.plan.assignments import Assignment, Assignments
from initlab.plan.audit import Audit, Contest, audit
from initlab.plan.checkpoint import Checkpoint
from initlab.plan.factory import load_factory
from initlab.plan.initialize import init_model
from initlab.plan.plan import Plan, auto_scheme
from initlab.plan.presets import PRESET_NAMES, as_plan, preset
from initlab.plan.rules import Rule, rule
from initlab.plan.sites import ParameterSite, parameter_sites

__all__ = [
    "PRESET_NAMES",
    "Activation",
    "ActivationMap",
    "Assignment",
    "Assignments",
    "Audit",
    "Checkpoint",
    "Contest",
    "ParameterSite",
    "Plan",
    "Rule",
    "apply_table",
    "as_plan",
    "audit",
    "auto_scheme",
    "detect_activations",
    "init_model",
    "load_factory",
    "parameter_sites",
    "preset",
    "rule",
]
