"""What initlab knows about module types and activations: the one home of that knowledge.

Plans, presets, the doctor, LSUV and the regularization rules read it; no other module keeps its
own table of layer or activation types.

* :mod:`initlab.layers.kinds`: activation families, gains, what "dead" and "saturated" mean,
  and normalization layers (by type, else by behaviour).
* :mod:`initlab.layers.structure`: which modules are layers, each parameter's role and fans
  (transposed-conv stride, Bilinear, HF Conv1D), the blocks of stacked weights (attention
  q/k/v, recurrent gates) and reparametrized weights (weight norm, spectral norm).
"""

from __future__ import annotations

from initlab.layers.kinds import (
    ACTIVATION_FAMILIES,
    ACTIVATION_PARAMETERS,
    NORM_TYPES,
    ActivationFamily,
    ActivationKind,
    ModuleActivation,
    activation_kind,
    activation_module,
    has_children,
    is_norm,
    module_activation,
)
from initlab.layers.structure import (
    LAYER_TYPES,
    ROLES,
    Block,
    Role,
    Structure,
    gate_blocks,
    is_hf_conv1d,
    is_layer,
    packed_projections,
    parameter_structure,
)

__all__ = [
    "ACTIVATION_FAMILIES",
    "ACTIVATION_PARAMETERS",
    "LAYER_TYPES",
    "NORM_TYPES",
    "ROLES",
    "ActivationFamily",
    "ActivationKind",
    "Block",
    "ModuleActivation",
    "Role",
    "Structure",
    "activation_kind",
    "activation_module",
    "gate_blocks",
    "has_children",
    "is_hf_conv1d",
    "is_layer",
    "is_norm",
    "module_activation",
    "packed_projections",
    "parameter_structure",
]
