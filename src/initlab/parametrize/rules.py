r"""The width rules of each parametrization: init std and learning-rate multiplier per role.

Notation (:mod:`initlab.parametrize.widths`): :math:`n_{in}, n_{out}` a parameter's fans,
:math:`m_{in} = n_{in}/n_{in}^{base}` and :math:`m_{out} = n_{out}/n_{out}^{base}` its width
multipliers, :math:`\sigma_b` its std *at the base shapes*: ``std`` when given (e.g. GPT-2's
0.02), else :math:`g/\sqrt{n_{in}^{base}}` for a layer weight (:math:`g` the gain of the
activation after the layer, 1 if linear: He/LeCun fan-in init) and 1 for an embedding
(``nn.Embedding``'s N(0, 1)). At the base shapes every parametrization gives the base model's
init and learning rate; they differ in how both scale with width (the ``mup`` package's
convention, ``set_base_shapes``). The weight-decay multiplier is the inverse of the learning-rate
multiplier, so that ``lr * weight_decay`` does not change with width (as ``mup``'s ``MuAdam`` and
``MuSGD`` do).

**sp** (standard parametrization): std :math:`g/\sqrt{n_{in}}` (or the constant ``std``),
embeddings N(0, 1) (or ``std``), biases 0, norms 1/0, other tensors kept; every learning-rate
multiplier 1.

**mup** (maximal update parametrization; Yang et al., 2022, "Tensor Programs V", Table 3, written
relative to the base as in the ``mup`` package: ``MuReadout``, ``MuAdam``, ``MuSGD``):

====================  ====================================  =========  =====================
role                  init std                              Adam lr    SGD lr
====================  ====================================  =========  =====================
input (embedding)     :math:`\sigma_b`                      1          :math:`m_{out}`
hidden                :math:`\sigma_b/\sqrt{m_{in}}`        1/m_in     m_out/m_in
output (readout)      :math:`\sigma_b/m_{in}` (or 0)        1/m_in     1/m_in
bias, norm, vector    0 / 1 / kept                          1          :math:`m_{out}`
fixed (no width dim)  :math:`\sigma_b`                      1          1
====================  ====================================  =========  =====================

Table 3 states the output layer as init variance :math:`1/n_{in}^2` and Adam/SGD learning rate
:math:`1/n_{in}`; the ``mup`` package's ``MuReadout`` gets the same function with a forward
multiplier :math:`1/m_{in}` and constant-variance weights (Table 8, equivalent by Lemma J.1).
Folding the multiplier into the weight keeps the model unmodified, but a readout *tied* to the
input embedding cannot be both: that needs the forward multiplier (reported in the notes).
``readout="zero"`` zero-initializes the output weights (recommended in Tensor Programs V, D.2).

**spectral** (Yang, Simon & Bernstein, 2023, "A Spectral Condition for Feature Learning"):
:math:`\lVert W\rVert_* = \Theta(\sqrt{n_{out}/n_{in}})` at init and for each update, i.e. with
:math:`s(n_{in}, n_{out}) = \min(1, \sqrt{n_{out}/n_{in}})/\sqrt{n_{in}}`

==================  ========================================================  =======  ==========
role                init std                                                  Adam lr  SGD lr
==================  ========================================================  =======  ==========
layer weight        :math:`\sigma_b\, s(n_{in}, n_{out})` / (s at the base)   1/m_in   m_out/m_in
embedding           :math:`\sigma_b` (one-hot input: entries of order 1)         1        m_out
bias, norm, vector  0 / 1 / kept (a vector: a matrix with fan_in 1)           1        m_out
==================  ========================================================  =======  ==========

SGD's learning rate :math:`\propto n_{out}/n_{in}` is the paper's; Adam's update has entries of
size :math:`\eta`, so its spectral norm is about :math:`\eta\sqrt{n_{in} n_{out}}` and the
condition gives :math:`\eta \propto 1/n_{in}` (the same as muP's Adam column).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from initlab.errors import ConfigError
from initlab.parametrize.widths import ParameterWidths

__all__ = ["Init", "InitScale", "Optimizer", "Readout", "Scaling", "mup", "sp", "spectral"]

Optimizer = Literal["adam", "sgd"]
Readout = Literal["scaled", "zero"]
Init = Literal["normal", "zeros", "ones", "keep"]

_TP5 = "Yang et al. 2022, Tensor Programs V, Table 3"
_SPECTRAL = "Yang, Simon & Bernstein 2023, spectral condition"


@dataclass(frozen=True)
class InitScale:
    """What sets the size of a weight's std.

    Attributes:
        std: a constant std for weights and embeddings at the base shapes, or ``None``.
        gain: the gain of the activation after the layer (used when ``std`` is ``None``).
    """

    std: float | None
    gain: float = 1.0

    def at(self, widths: ParameterWidths, fan_in: float) -> float:
        """The std for a weight with fan-in ``fan_in``: ``std``, or :math:`g/\\sqrt{n_{in}}`
        (1 for an embedding)."""
        if self.std is not None:
            return self.std
        if widths.site.role == "embedding":
            return 1.0
        return self.gain / math.sqrt(fan_in)


@dataclass(frozen=True)
class Scaling:
    """A parameter's init and learning-rate multiplier under one parametrization.

    Attributes:
        init: ``normal`` (mean 0, ``std``), ``zeros``, ``ones`` or ``keep`` (left as it is).
        std: the std of the init (0 for zeros and ones; ``None`` when kept).
        lr_multiplier: factor on the optimizer's learning rate.
        source: the rule, in words, and its reference.
    """

    init: Init
    std: float | None
    lr_multiplier: float
    source: str


def _vector_like(widths: ParameterWidths, lr_multiplier: float, source: str) -> Scaling:
    """Biases 0, norm weights 1 and norm biases 0, other vector-like tensors kept."""
    if widths.role == "bias" or widths.site.role == "norm_bias":
        return Scaling("zeros", 0.0, lr_multiplier, source)
    if widths.site.role == "norm_weight":
        return Scaling("ones", 0.0, lr_multiplier, source)
    return Scaling("keep", None, lr_multiplier, source)


def _is_matrix(widths: ParameterWidths) -> bool:
    return widths.role in ("input", "hidden", "output", "fixed")


def sp(widths: ParameterWidths, init: InitScale, optimizer: Optimizer) -> Scaling:
    """Standard parametrization: the usual fan-in init, every learning rate as given."""
    del optimizer  # the same for every optimizer: that is what makes it "standard"
    source = "standard: std g/sqrt(fan_in) or the given std, lr 1"
    if not _is_matrix(widths):
        return _vector_like(widths, 1.0, source)
    return Scaling("normal", init.at(widths, widths.fan_in), 1.0, source)


def mup(
    widths: ParameterWidths, init: InitScale, optimizer: Optimizer, readout: Readout
) -> Scaling:
    """muP (see the module docstring's table)."""
    m_in, m_out = widths.width_multiplier_in, widths.width_multiplier_out
    sigma = init.at(widths, widths.base_fan_in)
    adam = optimizer == "adam"
    role = widths.role
    if role == "input":
        return Scaling("normal", sigma, 1.0 if adam else m_out, f"muP input: {_TP5}")
    if role == "hidden":
        lr = 1.0 / m_in if adam else m_out / m_in
        return Scaling("normal", sigma / math.sqrt(m_in), lr, f"muP hidden: {_TP5}")
    if role == "output":
        if readout == "zero":
            return Scaling("zeros", 0.0, 1.0 / m_in, f"muP output, zero init: {_TP5}, D.2")
        return Scaling("normal", sigma / m_in, 1.0 / m_in, f"muP output: {_TP5}")
    if role == "fixed":
        return Scaling("normal", sigma, 1.0, "muP: no width dimension, as the base")
    return _vector_like(widths, 1.0 if adam else m_out, f"muP {role} (vector-like): {_TP5}")


def _spectral_scale(fan_in: float, fan_out: float) -> float:
    r""":math:`\min(1, \sqrt{n_{out}/n_{in}})/\sqrt{n_{in}}`."""
    return min(1.0, math.sqrt(fan_out / fan_in)) / math.sqrt(fan_in)


def spectral(widths: ParameterWidths, init: InitScale, optimizer: Optimizer) -> Scaling:
    """The spectral condition (see the module docstring's table)."""
    m_in, m_out = widths.width_multiplier_in, widths.width_multiplier_out
    adam = optimizer == "adam"
    if not _is_matrix(widths):
        return _vector_like(widths, 1.0 if adam else m_out, f"spectral {widths.role}: {_SPECTRAL}")
    sigma = init.at(widths, widths.base_fan_in)
    if widths.site.role == "embedding":
        source = f"spectral embedding (one-hot input): {_SPECTRAL}"
        return Scaling("normal", sigma, 1.0 if adam else m_out, source)
    ratio = _spectral_scale(widths.fan_in, widths.fan_out) / _spectral_scale(
        widths.base_fan_in, widths.base_fan_out
    )
    lr = 1.0 / m_in if adam else m_out / m_in
    source = f"spectral {widths.role}: std ~ min(1, sqrt(fo/fi))/sqrt(fi); {_SPECTRAL}"
    return Scaling("normal", sigma * ratio, lr, source)


def check_optimizer(optimizer: object) -> Optimizer:
    """``optimizer`` if it is ``"adam"`` or ``"sgd"``."""
    if optimizer == "adam":
        return "adam"
    if optimizer == "sgd":
        return "sgd"
    raise ConfigError(
        f"parametrize: optimizer must be 'adam' (also for AdamW, RMSprop, Adagrad: entrywise "
        f"normalized updates) or 'sgd' (also for SGD with momentum), got {optimizer!r}."
    )


def check_readout(readout: object) -> Readout:
    """``readout`` if it is ``"scaled"`` or ``"zero"``."""
    if readout == "scaled":
        return "scaled"
    if readout == "zero":
        return "zero"
    raise ConfigError(
        f"parametrize: readout must be 'scaled' (std / width multiplier) or 'zero' (zero "
        f"init), got {readout!r}."
    )
