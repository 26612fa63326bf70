"""What initlab knows about module types and activations: the one home of that knowledge.

Plans, presets, the doctor, LSUV and the regularization rules read it; no other module keeps its
own table of layer or activation types.

* :mod:`initlab.layers.kinds`: activation families, gains, what "dead" and "saturated" mean,
  and normalization layers (by type, else by behaviour).
"""

from __future__ import annotations

from initlab.layers.kinds import (
    ACTIVATION_FAMILIES,
    NORM_TYPES,
    ActivationFamily,
    ActivationKind,
    activation_kind,
    is_norm,
    module_activation,
)

__all__ = [
    "ACTIVATION_FAMILIES",
    "NORM_TYPES",
    "ActivationFamily",
    "ActivationKind",
    "activation_kind",
    "is_norm",
    "module_activation",
]
