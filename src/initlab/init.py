r"""Drop-in replacements for ``torch.nn.init``, built on :mod:`initlab.schemes`.

Same names, same arguments in the same order, same defaults, and for the same
``torch.Generator`` state *bitwise the same tensor* as ``torch.nn.init`` (float32, float64,
bfloat16, float16), so ``import initlab.init as init`` changes nothing but adds:

* the schemes torch lacks: :func:`lecun_uniform_`, :func:`lecun_normal_`,
  :func:`variance_scaling_`, :func:`delta_orthogonal_`;
* keyword-only extras: ``layout=`` / ``groups=`` (fans of transposed, grouped, Keras-layout
  weights), ``distribution="truncated_normal"`` on the normal presets (Keras/JAX convention);
* :func:`orthogonal_` on float16/bfloat16 tensors (QR in float32; torch raises);
* :func:`sparse_` that draws the zero positions from ``generator`` too.

Each function fills in place under ``no_grad`` and returns the tensor.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from initlab.arguments import check_generator, check_tensor, describe_value
from initlab.errors import ConfigError
from initlab.fans import FanMode, Layout
from initlab.gains import calculate_gain
from initlab.schemes import (
    Constant,
    DeltaOrthogonal,
    Dirac,
    Distribution,
    HeNormal,
    HeUniform,
    Identity,
    LeCunNormal,
    LeCunUniform,
    Normal,
    Orthogonal,
    Sparse,
    TruncatedNormal,
    Uniform,
    VarianceScaling,
    XavierNormal,
    XavierUniform,
)

__all__ = [
    "calculate_gain",
    "constant_",
    "delta_orthogonal_",
    "dirac_",
    "eye_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "lecun_normal_",
    "lecun_uniform_",
    "normal_",
    "ones_",
    "orthogonal_",
    "sparse_",
    "trunc_normal_",
    "uniform_",
    "variance_scaling_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]

_Generator = torch.Generator | None


def _check(where: str, tensor: Tensor, generator: _Generator, *, floating: bool = True) -> None:
    """The tensor and generator every function takes, checked before any draw."""
    check_tensor(where, tensor, floating=floating)
    check_generator(where, generator)


def uniform_(
    tensor: Tensor, a: float = 0.0, b: float = 1.0, generator: _Generator = None
) -> Tensor:
    r"""Fill with :math:`U(a, b)`."""
    _check("uniform_", tensor, generator)
    if torch.overrides.has_torch_function_variadic(tensor):
        return torch.overrides.handle_torch_function(
            uniform_, (tensor,), tensor=tensor, a=a, b=b, generator=generator
        )
    return Uniform(a, b).fill_(tensor, generator)


def normal_(
    tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator: _Generator = None
) -> Tensor:
    r"""Fill with :math:`\mathcal N(\text{mean}, \text{std}^2)`."""
    _check("normal_", tensor, generator)
    if torch.overrides.has_torch_function_variadic(tensor):
        return torch.overrides.handle_torch_function(
            normal_, (tensor,), tensor=tensor, mean=mean, std=std, generator=generator
        )
    return Normal(mean, std).fill_(tensor, generator)


def trunc_normal_(
    tensor: Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    generator: _Generator = None,
) -> Tensor:
    r"""Fill with :math:`\mathcal N(\text{mean}, \text{std}^2)` restricted to the *absolute*
    interval :math:`[a, b]` (torch's convention; Keras/JAX give bounds in std units: use
    ``initlab.schemes.TruncatedNormal(..., unit="std")``)."""
    _check("trunc_normal_", tensor, generator)
    return TruncatedNormal(mean, std, a, b).fill_(tensor, generator)


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill with ``val``."""
    _check("constant_", tensor, None, floating=False)
    if not isinstance(val, int | float | complex | Tensor):
        raise ConfigError(f"constant_: val must be a number, got {describe_value(val)}.")
    if torch.overrides.has_torch_function_variadic(tensor):
        return torch.overrides.handle_torch_function(constant_, (tensor,), tensor=tensor, val=val)
    with torch.no_grad():
        return tensor.fill_(val)


def ones_(tensor: Tensor) -> Tensor:
    """Fill with 1."""
    _check("ones_", tensor, None, floating=False)
    return Constant(1.0).fill_(tensor)


def zeros_(tensor: Tensor) -> Tensor:
    """Fill with 0."""
    _check("zeros_", tensor, None, floating=False)
    return Constant(0.0).fill_(tensor)


def eye_(tensor: Tensor) -> Tensor:
    """Fill a 2-D tensor with the identity matrix (ones on the main diagonal)."""
    _check("eye_", tensor, None, floating=False)
    return Identity().fill_(tensor)


def dirac_(tensor: Tensor, groups: int = 1) -> Tensor:
    """Fill a 3/4/5-D convolution weight with the identity convolution (per group)."""
    _check("dirac_", tensor, None, floating=False)
    return Dirac(groups).fill_(tensor)


def xavier_uniform_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: _Generator = None,
    *,
    layout: Layout = "torch",
    groups: int = 1,
) -> Tensor:
    r"""Glorot uniform: :math:`U(\pm g\sqrt{6/(\text{fan\_in}+\text{fan\_out})})`."""
    _check("xavier_uniform_", tensor, generator)
    return XavierUniform(gain).fill_(tensor, generator, layout=layout, groups=groups)


def xavier_normal_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: _Generator = None,
    *,
    distribution: Distribution = "normal",
    layout: Layout = "torch",
    groups: int = 1,
) -> Tensor:
    r"""Glorot normal: std :math:`g\sqrt{2/(\text{fan\_in}+\text{fan\_out})}`, untruncated
    unless ``distribution="truncated_normal"`` (Keras/JAX)."""
    _check("xavier_normal_", tensor, generator)
    scheme = XavierNormal(gain, distribution)
    return scheme.fill_(tensor, generator, layout=layout, groups=groups)


def _warn_if_empty(tensor: Tensor) -> bool:
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=3)
        return True
    return False


def kaiming_uniform_(
    tensor: Tensor,
    a: float = 0,
    mode: FanMode = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: _Generator = None,
    *,
    layout: Layout = "torch",
    groups: int = 1,
) -> Tensor:
    r"""He uniform: :math:`U(\pm g\sqrt{3/\text{fan}})` with ``g = gain(nonlinearity, a)``.

    Beyond torch, ``nonlinearity`` may be any activation of :mod:`initlab.gains` (gelu, silu...)
    and ``mode`` may be ``fan_avg`` / ``fan_geo_avg``.
    """
    _check("kaiming_uniform_", tensor, generator)
    if torch.overrides.has_torch_function_variadic(tensor):
        return torch.overrides.handle_torch_function(
            kaiming_uniform_,
            (tensor,),
            tensor=tensor,
            a=a,
            mode=mode,
            nonlinearity=nonlinearity,
            generator=generator,
        )
    if _warn_if_empty(tensor):
        return tensor
    scheme = HeUniform(a, mode, nonlinearity)
    return scheme.fill_(tensor, generator, layout=layout, groups=groups)


def kaiming_normal_(
    tensor: Tensor,
    a: float = 0,
    mode: FanMode = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: _Generator = None,
    *,
    distribution: Distribution = "normal",
    layout: Layout = "torch",
    groups: int = 1,
) -> Tensor:
    r"""He normal: std :math:`g/\sqrt{\text{fan}}`, untruncated unless
    ``distribution="truncated_normal"``."""
    _check("kaiming_normal_", tensor, generator)
    if _warn_if_empty(tensor):
        return tensor
    scheme = HeNormal(a, mode, nonlinearity, distribution)
    return scheme.fill_(tensor, generator, layout=layout, groups=groups)


def lecun_uniform_(
    tensor: Tensor,
    generator: _Generator = None,
    *,
    mode: FanMode = "fan_in",
    layout: Layout = "torch",
    groups: int = 1,
) -> Tensor:
    r"""LeCun uniform: :math:`U(\pm\sqrt{3/\text{fan\_in}})`."""
    _check("lecun_uniform_", tensor, generator)
    return LeCunUniform(mode).fill_(tensor, generator, layout=layout, groups=groups)


def lecun_normal_(
    tensor: Tensor,
    generator: _Generator = None,
    *,
    mode: FanMode = "fan_in",
    distribution: Distribution = "normal",
    layout: Layout = "torch",
    groups: int = 1,
) -> Tensor:
    r"""LeCun normal: std :math:`1/\sqrt{\text{fan\_in}}` (the init for SELU networks)."""
    _check("lecun_normal_", tensor, generator)
    scheme = LeCunNormal(mode, distribution)
    return scheme.fill_(tensor, generator, layout=layout, groups=groups)


def variance_scaling_(
    tensor: Tensor,
    scale: float = 1.0,
    mode: FanMode = "fan_in",
    distribution: Distribution = "truncated_normal",
    generator: _Generator = None,
    *,
    layout: Layout = "torch",
    groups: int = 1,
) -> Tensor:
    r"""Variance :math:`\text{scale}/n`, as Keras' / JAX's ``VarianceScaling``."""
    _check("variance_scaling_", tensor, generator)
    scheme = VarianceScaling(scale, mode, distribution)
    return scheme.fill_(tensor, generator, layout=layout, groups=groups)


def orthogonal_(tensor: Tensor, gain: float = 1, generator: _Generator = None) -> Tensor:
    r"""A (semi-)orthogonal matrix times ``gain`` (trailing dimensions flattened)."""
    _check("orthogonal_", tensor, generator)
    return Orthogonal(gain).fill_(tensor, generator)


def delta_orthogonal_(
    tensor: Tensor, gain: float = 1.0, generator: _Generator = None, *, layout: Layout = "torch"
) -> Tensor:
    r"""Delta-orthogonal convolution kernel (Xiao et al., 2018); needs in <= out channels."""
    _check("delta_orthogonal_", tensor, generator)
    return DeltaOrthogonal(gain).fill_(tensor, generator, layout=layout)


def sparse_(
    tensor: Tensor, sparsity: float, std: float = 0.01, generator: _Generator = None
) -> Tensor:
    r"""N(0, std^2) with ``ceil(sparsity * rows)`` zeros per column (Martens, 2010)."""
    _check("sparse_", tensor, generator)
    return Sparse(sparsity, std).fill_(tensor, generator)
