"""Initialization schemes: frozen, serializable descriptions, found by name.

``variance_scaling`` is the general case; Xavier/Glorot, He/Kaiming and LeCun are presets of it.
"""

from __future__ import annotations

from initlab.schemes.base import (
    ElementwiseLaw,
    Scheme,
    ValueStats,
    Weight,
    from_config,
    get,
    register,
    scheme_aliases,
    scheme_class,
    scheme_names,
)
from initlab.schemes.checkpoint import Checkpoint
from initlab.schemes.elementwise import Constant, Normal, Ones, TruncatedNormal, Uniform, Zeros
from initlab.schemes.hadamard import PartialHadamard
from initlab.schemes.state_space import MambaDtBias, S4DRealLog
from initlab.schemes.structured import DeltaOrthogonal, Dirac, Identity, Orthogonal, Sparse
from initlab.schemes.truncation import TRUNCATION_STD_2
from initlab.schemes.variance import (
    DISTRIBUTIONS,
    Distribution,
    HeNormal,
    HeUniform,
    LeCunNormal,
    LeCunUniform,
    VarianceScaling,
    XavierNormal,
    XavierUniform,
)

__all__ = [
    "DISTRIBUTIONS",
    "TRUNCATION_STD_2",
    "Checkpoint",
    "Constant",
    "DeltaOrthogonal",
    "Dirac",
    "Distribution",
    "ElementwiseLaw",
    "HeNormal",
    "HeUniform",
    "Identity",
    "LeCunNormal",
    "LeCunUniform",
    "MambaDtBias",
    "Normal",
    "Ones",
    "Orthogonal",
    "PartialHadamard",
    "S4DRealLog",
    "Scheme",
    "Sparse",
    "TruncatedNormal",
    "Uniform",
    "ValueStats",
    "VarianceScaling",
    "Weight",
    "XavierNormal",
    "XavierUniform",
    "Zeros",
    "from_config",
    "get",
    "register",
    "scheme_aliases",
    "scheme_class",
    "scheme_names",
]
