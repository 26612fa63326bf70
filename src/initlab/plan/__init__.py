"""Whole-model initialization: rules -> a Plan -> a table of Assignments -> applied."""

from __future__ import annotations

from initlab.plan.activations import Activation, ActivationMap, detect_activations
from initlab.plan.apply import apply_table
from initlab.plan.assignments import Assignment, Assignments
from initlab.plan.checkpoint import Checkpoint
from initlab.plan.factory import load_factory
from initlab.plan.plan import Plan, auto_scheme
from initlab.plan.rules import Rule, rule
from initlab.plan.sites import ParameterSite, parameter_sites

__all__ = [
    "Activation",
    "ActivationMap",
    "Assignment",
    "Assignments",
    "Checkpoint",
    "ParameterSite",
    "Plan",
    "Rule",
    "apply_table",
    "auto_scheme",
    "detect_activations",
    "load_factory",
    "parameter_sites",
    "rule",
]
