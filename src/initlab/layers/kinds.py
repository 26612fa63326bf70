r"""Activation kinds and normalization layers, as the rest of initlab judges them.

**Activations.** :func:`activation_kind` gives an activation's *family*, which decides the
init it needs and what its failure looks like:

=====================  ==========================================  =============================
family                 members                                     dead / saturated means
=====================  ==========================================  =============================
``linear``             identity                                    --
``rectifier``          relu, relu6 (hard zero below 0)             dead: 0 for the whole batch
``leaky_rectifier``    leaky_relu, prelu, rrelu                    never dead (a slope below 0)
``smooth``             gelu, silu, mish, elu, celu, softplus,      never dead, not saturating
                       hardswish
``saturating``         tanh, sigmoid, hardtanh, softsign,          saturated: the output within
                       hardsigmoid                                 1% of its bound
``self_normalizing``   selu                                        --
=====================  ==========================================  =============================

Its gain is :func:`initlab.gains.gain` (torch's where torch has one, else the second-moment
gain :math:`1/\sqrt{\mathbb E[f(z)^2]}`). :func:`module_activation` reads the activation of an
activation *module*, with its parameter (LeakyReLU's slope, PReLU's learned slope, ELU's alpha).

**Normalization layers** are recognised by type (BatchNorm, LayerNorm, GroupNorm, RMSNorm...)
and otherwise by behaviour (:func:`is_norm`): a leaf module whose only parameters are vectors and
whose output does not change when its input is scaled (LLaMA's and T5's RMSNorm classes).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

import torch
from torch import nn

from initlab.gains import canonical_activation, find_activation, gain

__all__ = [
    "ACTIVATION_FAMILIES",
    "ACTIVATION_PARAMETERS",
    "NORM_TYPES",
    "ActivationFamily",
    "ActivationKind",
    "ModuleActivation",
    "activation_kind",
    "activation_module",
    "has_children",
    "is_norm",
    "module_activation",
]

ActivationFamily = Literal[
    "linear", "rectifier", "leaky_rectifier", "smooth", "saturating", "self_normalizing"
]
ACTIVATION_FAMILIES: tuple[str, ...] = get_args(ActivationFamily)

_FAMILY: dict[str, ActivationFamily] = {
    "linear": "linear",
    "relu": "rectifier",
    "relu6": "rectifier",
    "leaky_relu": "leaky_rectifier",
    "elu": "smooth",
    "celu": "smooth",
    "gelu": "smooth",
    "gelu_tanh": "smooth",
    "silu": "smooth",
    "mish": "smooth",
    "softplus": "smooth",
    "hardswish": "smooth",
    "tanh": "saturating",
    "sigmoid": "saturating",
    "hardtanh": "saturating",
    "softsign": "saturating",
    "hardsigmoid": "saturating",
    "selu": "self_normalizing",
}

# (low, high): outputs at or beyond these are saturated; the bounds of the function's range
# shrunk by 1% of its width (tanh: |y| > 0.99; sigmoid: y < 0.01 or y > 0.99).
_SATURATION: dict[str, tuple[float, float]] = {
    "tanh": (-0.99, 0.99),
    "hardtanh": (-0.99, 0.99),
    "softsign": (-0.99, 0.99),
    "sigmoid": (0.01, 0.99),
    "hardsigmoid": (0.01, 0.99),
}

#: The name of an activation's parameter, as its module attribute and its functional keyword.
ACTIVATION_PARAMETERS: dict[str, str] = {
    "leaky_relu": "negative_slope",
    "elu": "alpha",
    "celu": "alpha",
    "softplus": "beta",
}


@dataclass(frozen=True)
class ActivationKind:
    """An activation as initlab judges and initializes for it.

    Attributes:
        name: canonical name (see :func:`initlab.gains.canonical_activation`).
        family: see the module docstring.
        saturation: ``(low, high)``: outputs ``<= low`` or ``>= high`` are saturated
            (``None`` for activations that do not saturate).
    """

    name: str
    family: ActivationFamily
    saturation: tuple[float, float] | None

    @property
    def can_die(self) -> bool:
        """Whether a unit can output exactly 0 for every input of a batch (hard rectifiers)."""
        return self.family == "rectifier"

    @property
    def is_rectifier(self) -> bool:
        """ReLU-like (hard or leaky): the He et al. (2015) derivation applies."""
        return self.family in ("rectifier", "leaky_rectifier")

    def gain(self, param: float | None = None) -> float:
        """The init gain for this activation (see :func:`initlab.gains.gain`)."""
        return float(gain(self.name, param))


@functools.lru_cache(maxsize=128)
def activation_kind(name: str) -> ActivationKind:
    """The :class:`ActivationKind` of an activation name, alias or module class name.

    Raises:
        UnknownNameError: an activation initlab does not know.

    Example:
        >>> activation_kind("GELU").family
        'smooth'
    """
    canonical = canonical_activation(name)
    return ActivationKind(canonical, _FAMILY[canonical], _SATURATION.get(canonical))


class ModuleActivation(NamedTuple):
    """The activation a module (or a call) applies.

    Attributes:
        name: its canonical name (see :func:`initlab.gains.canonical_activation`).
        param: its parameter (leaky slope, ELU alpha, softplus beta), ``None`` if it has none.
    """

    name: str
    param: float | None


def module_activation(module: nn.Module) -> ModuleActivation | None:
    """The activation of an activation module, ``None`` for other modules.

    The parameter is LeakyReLU's slope, ELU/CELU's alpha, Softplus's beta, PReLU's learned
    slope (its mean over channels; torch's initial 0.25 on the meta device) or RReLU's mean
    slope ``(lower + upper) / 2``.

    Example:
        >>> module_activation(nn.LeakyReLU(0.2))
        ModuleActivation(name='leaky_relu', param=0.2)
    """
    if isinstance(module, nn.PReLU):
        weight = module.weight.detach()
        return ModuleActivation(
            "leaky_relu", 0.25 if weight.is_meta else float(weight.float().mean())
        )
    if isinstance(module, nn.RReLU):
        return ModuleActivation("leaky_relu", (module.lower + module.upper) / 2.0)
    type_name = type(module).__name__
    if type_name == "GELU" and getattr(module, "approximate", "none") == "tanh":
        return ModuleActivation("gelu_tanh", None)
    name = find_activation(type_name)
    if name is None:
        return None
    attribute = ACTIVATION_PARAMETERS.get(name)
    param = getattr(module, attribute, None) if attribute else None
    return ModuleActivation(name, None if param is None else float(param))


_MODULES: dict[str, Callable[[], nn.Module]] = {
    "linear": nn.Identity,
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "celu": nn.CELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "silu": nn.SiLU,
    "mish": nn.Mish,
    "softplus": nn.Softplus,
    "hardswish": nn.Hardswish,
    "hardsigmoid": nn.Hardsigmoid,
    "hardtanh": nn.Hardtanh,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "softsign": nn.Softsign,
}


def activation_module(name: str) -> nn.Module:
    """A fresh torch module computing activation ``name`` (any alias; default parameters).

    Example:
        >>> activation_module("swish")
        SiLU()
    """
    return _MODULES[canonical_activation(name)]()


NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.RMSNorm,
)


def has_children(module: nn.Module) -> bool:
    """Whether ``module`` holds a submodule (as ``module.children()`` would yield one), read
    from its own dict: the doctor and the plans ask of every module on every call."""
    return any(child is not None for child in module._modules.values())


def is_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a normalization layer: by type, else by behaviour.

    A leaf module of an unknown class counts when its parameters are all vectors of one size
    ``n`` and its output on a ``(2, 3, n)`` probe is unchanged (to 1e-3) when the probe is
    scaled by 10: a scale-invariant map is a norm, whatever its class is called. The probe runs
    in eval mode under ``no_grad``, on the parameters' device and dtype, once per module (the
    answer is kept while the module lives: plans, the doctor and LSUV all ask).
    """
    if isinstance(module, NORM_TYPES):
        return True
    if has_children(module):
        return False
    parameters = list(module.parameters(recurse=False))
    if not parameters or any(p.dim() != 1 for p in parameters):
        return False
    sizes = {p.numel() for p in parameters}
    if len(sizes) != 1:
        return False
    known = _BEHAVES_AS_NORM.get(module)
    if known is None:
        known = _BEHAVES_AS_NORM[module] = _scale_invariant(module, sizes.pop())
    return known


_BEHAVES_AS_NORM: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def _scale_invariant(module: nn.Module, size: int) -> bool:
    parameter = next(module.parameters())
    probe = torch.linspace(-1.0, 1.0, 6 * size, dtype=parameter.dtype, device=parameter.device)
    probe = probe.reshape(2, 3, size) + 0.1
    if parameter.is_meta:
        return "norm" in type(module).__name__.lower()
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            small, large = module(probe), module(probe * 10.0)
    except Exception:  # an unknown module may reject the probe's shape: then it is no norm
        return False
    finally:
        module.train(was_training)
    if not (isinstance(small, torch.Tensor) and isinstance(large, torch.Tensor)):
        return False
    if small.shape != large.shape or not bool(torch.isfinite(small).all()):
        return False
    scale = float(small.abs().max()) or 1.0
    return bool(((small - large).abs().max() <= 1e-3 * scale).item()) and scale > 0
