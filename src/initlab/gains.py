r"""Gains: the factor by which an initializer's std is multiplied for a given activation.

Two kinds of gain, both available for every activation they are defined for:

``"torch"``
    ``torch.nn.init.calculate_gain``'s table, value for value (including its Python ``int`` 1
    for linear, convolutions and sigmoid): tanh 5/3, relu :math:`\sqrt 2`, leaky_relu
    :math:`\sqrt{2 / (1 + \text{slope}^2)}`, selu 3/4. torch has no gain for GELU, SiLU, ELU...
``"second_moment"``
    The gain that keeps the second moment of the pre-activations constant through a layer,
    assuming Gaussian pre-activations (He et al., 2015, generalized):

    .. math::

        g_f = \frac{1}{\sqrt{\mathbb{E}_{z \sim \mathcal N(0,1)}[f(z)^2]}}

    computed by adaptive quadrature (``scipy.integrate.quad``). It equals torch's gain for
    linear (1), relu (:math:`\sqrt 2`) and leaky_relu, and gives 1 for SELU (the
    self-normalizing fixed point); for tanh it is 1.5925 (torch's 5/3 is a heuristic), for
    sigmoid 1.8463 (torch says 1, questioned in pytorch/pytorch#24991).
``"auto"`` (default)
    torch's value where torch defines one, else the second-moment gain.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Literal

from initlab.errors import ConfigError, UnknownNameError, did_you_mean

__all__ = [
    "ACTIVATIONS",
    "TORCH_NONLINEARITIES",
    "GainKind",
    "calculate_gain",
    "canonical_activation",
    "find_activation",
    "gain",
    "second_moment_gain",
]

GainKind = Literal["auto", "torch", "second_moment"]

_LINEAR_LIKE = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
)
TORCH_NONLINEARITIES: tuple[str, ...] = (
    *_LINEAR_LIKE,
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "selu",
)

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946

Activation = Callable[[float, float], float]


def _softplus(z: float, beta: float) -> float:
    import numpy as np  # its overflow-safe log(1 + e^x); the gain table itself needs no NumPy

    return float(np.logaddexp(0.0, beta * z)) / beta


def _elu(z: float, alpha: float) -> float:
    return z if z > 0 else alpha * math.expm1(z)


def _logistic(z: float) -> float:
    """1 / (1 + e^-z), written so that neither branch overflows."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _relu6(z: float) -> float:
    return min(max(z, 0.0), 6.0)


# name -> (f(z, param), default param). The parameter is the one torch's functional takes:
# leaky_relu's negative_slope, elu/celu's alpha, softplus's beta.
ACTIVATIONS: dict[str, tuple[Activation, float]] = {
    "linear": (lambda z, _: z, 0.0),
    "relu": (lambda z, _: max(z, 0.0), 0.0),
    "leaky_relu": (lambda z, s: z if z > 0 else s * z, 0.01),
    "relu6": (lambda z, _: _relu6(z), 0.0),
    "elu": (_elu, 1.0),
    "celu": (lambda z, a: max(z, 0.0) + min(0.0, a * math.expm1(min(z, 0.0) / a)), 1.0),
    "selu": (lambda z, _: _SELU_SCALE * _elu(z, _SELU_ALPHA), 0.0),
    "gelu": (lambda z, _: 0.5 * z * (1.0 + math.erf(z / math.sqrt(2.0))), 0.0),
    "gelu_tanh": (
        lambda z, _: 0.5 * z * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z**3))),
        0.0,
    ),
    "silu": (lambda z, _: z * _logistic(z), 0.0),
    "mish": (lambda z, _: z * math.tanh(_softplus(z, 1.0)), 0.0),
    "softplus": (_softplus, 1.0),
    "hardswish": (lambda z, _: z * _relu6(z + 3.0) / 6.0, 0.0),
    "hardsigmoid": (lambda z, _: _relu6(z + 3.0) / 6.0, 0.0),
    "hardtanh": (lambda z, _: min(max(z, -1.0), 1.0), 0.0),
    "sigmoid": (lambda z, _: _logistic(z), 0.0),
    "tanh": (lambda z, _: math.tanh(z), 0.0),
    "softsign": (lambda z, _: z / (1.0 + abs(z)), 0.0),
}

_ALIASES = {
    "identity": "linear",
    "swish": "silu",
    "leakyrelu": "leaky_relu",
    "prelu": "leaky_relu",
    "rrelu": "leaky_relu",
    "hardswish": "hardswish",
    "hard_swish": "hardswish",
    "hard_sigmoid": "hardsigmoid",
    "hard_tanh": "hardtanh",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    # Hugging Face transformers' activation modules (transformers.activations), by class name:
    # the exact ones only (QuickGELU's x*sigmoid(1.702x) is another function, so not here).
    "geluactivation": "gelu",
    "newgeluactivation": "gelu_tanh",
    "gelutanh": "gelu_tanh",
    "pytorchgelutanh": "gelu_tanh",
    "fastgeluactivation": "gelu_tanh",
    "accurategeluactivation": "gelu_tanh",
    "siluactivation": "silu",
    "mishactivation": "mish",
    "linearactivation": "linear",
    **{name: "linear" for name in _LINEAR_LIKE if name != "linear"},
}


def find_activation(name: str) -> str | None:
    """The canonical name of an activation, ``None`` for a name that is none (no error built:
    for scanning module classes and function names, most of which are not activations)."""
    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    return key if key in ACTIVATIONS else None


def canonical_activation(name: str) -> str:
    """The canonical name of an activation: case-insensitive, module names and aliases too.

    ``"ReLU"`` -> ``"relu"``, ``"LeakyReLU"`` -> ``"leaky_relu"``, ``"swish"`` -> ``"silu"``,
    ``"Identity"`` / ``"conv2d"`` -> ``"linear"``.

    Raises:
        UnknownNameError: the name is not an activation initlab knows.
    """
    key = find_activation(name)
    if key is None:
        raise UnknownNameError(did_you_mean("activation", str(name), [*ACTIVATIONS, *_ALIASES]))
    return key


def _check_param(name: str, param: float | None) -> float | None:
    if param is None:
        return None
    if isinstance(param, bool) or not isinstance(param, int | float):
        raise ConfigError(f"The parameter of activation {name!r} must be a number, got {param!r}.")
    return float(param)


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """``torch.nn.init.calculate_gain``, value for value and type for type.

    Args:
        nonlinearity: one of :data:`TORCH_NONLINEARITIES`.
        param: leaky_relu's negative slope (default 0.01).

    Raises:
        UnknownNameError: a name torch's table does not have (a ``ValueError``, as torch's);
            :func:`gain` covers GELU, SiLU and the rest.
    """
    if nonlinearity in _LINEAR_LIKE or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, bool) or not isinstance(param, int | float):
            raise ConfigError(f"negative_slope {param} not a valid number")
        else:
            slope = param
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise UnknownNameError(
        did_you_mean("nonlinearity", str(nonlinearity), TORCH_NONLINEARITIES)
        + " For other activations use initlab.gain(name), which computes a second-moment gain."
    )


@functools.lru_cache(maxsize=256)
def _second_moment(name: str, param: float) -> float:
    from scipy import integrate  # loaded on first use: ``import initlab`` stays light

    function, _ = ACTIVATIONS[name]

    def weighted(z: float) -> float:
        return function(z, param) ** 2 * math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)

    # Split at 0, where most activations have their kink, so quad's error estimate is sound.
    negative, _ = integrate.quad(weighted, -math.inf, 0.0, epsabs=1e-13, epsrel=1e-12)
    positive, _ = integrate.quad(weighted, 0.0, math.inf, epsabs=1e-13, epsrel=1e-12)
    return float(negative + positive)


def second_moment_gain(name: str, param: float | None = None) -> float:
    r"""The gain :math:`1/\sqrt{\mathbb{E}[f(z)^2]}`, :math:`z \sim \mathcal N(0, 1)`.

    Args:
        name: an activation of :data:`ACTIVATIONS` or an alias (see :func:`canonical_activation`).
        param: the activation's parameter (leaky slope, ELU alpha, softplus beta); its default
            otherwise.

    Example:
        >>> round(second_moment_gain("relu"), 6)
        1.414214
    """
    key = canonical_activation(name)
    value = _check_param(key, param)
    default = ACTIVATIONS[key][1]
    return 1.0 / math.sqrt(_second_moment(key, default if value is None else value))


def gain(name: str, param: float | None = None, *, kind: GainKind = "auto") -> float:
    """The gain for activation ``name`` (see the module docstring for the kinds).

    Args:
        name: activation name, case-insensitive (``"relu"``, ``"LeakyReLU"``, ``"gelu"``...).
        param: the activation's parameter, e.g. leaky_relu's slope.
        kind: ``"auto"``, ``"torch"`` or ``"second_moment"``.

    Raises:
        UnknownNameError: unknown activation, or ``kind="torch"`` for one torch has no gain for.
    """
    if param is not None and (
        isinstance(param, bool) or not isinstance(param, int | float) or not math.isfinite(param)
    ):
        raise ConfigError(
            f"gain({name!r}): param must be a number (finite) or None, got {param!r}."
        )
    if kind == "second_moment":
        return second_moment_gain(name, param)
    if kind not in ("auto", "torch"):
        raise UnknownNameError(
            did_you_mean("gain kind", str(kind), ("auto", "torch", "second_moment"))
        )
    key = canonical_activation(name)
    torch_name = str(name).strip().lower()
    if torch_name not in TORCH_NONLINEARITIES:
        torch_name = key
    if torch_name in TORCH_NONLINEARITIES:
        return calculate_gain(torch_name, param)
    if kind == "torch":
        raise UnknownNameError(
            f"torch.nn.init.calculate_gain has no gain for {name!r}. "
            "Use kind='second_moment' (or 'auto'). "
            f"torch knows: {', '.join(TORCH_NONLINEARITIES)}."
        )
    return second_moment_gain(key, param)
