r"""The float32 inverse error function of the counter fills: one written-out algorithm.

The counter stream's normal and truncated-normal draws are :math:`\sqrt2\,\sigma\,
\operatorname{erfinv}(x)`. In float32 ``erfinv`` is Giles' single-precision approximation
(M. Giles, "Approximating the erfinv function", GPU Computing Gems Jade, 2011):

.. math::

    w = -\log\big((1 - x)(1 + x)\big), \qquad
    \operatorname{erfinv}(x) \approx x \cdot \begin{cases}
        P_c(w - 2.5) & w < 5 \\ P_t(\sqrt w - 3) & w \ge 5
    \end{cases}

with the two degree-8 polynomials below (Horner, ``p = c + p * w``), and ``log`` musl's
``logf`` (the FreeBSD/fdlibm single-precision algorithm): ``v = 2^k m`` with
:math:`m \in [\sqrt2/2, \sqrt2)` taken from the bits, :math:`f = m - 1`, :math:`s = f/(2+f)`,
a degree-4 polynomial in :math:`s^2`, and :math:`k \ln 2` in two parts.

Every step is one IEEE-754 float32 ``+``, ``-``, ``*``, ``/`` or ``sqrt`` (each correctly rounded,
none fused) or an exact bit operation, in a fixed order. The compiled kernel
(:mod:`initlab.counter_kernels`) and :func:`erfinv_float32_` (torch ops, any device) therefore
give the same bits on every machine, thread count and shard. The approximation is within
4 ulp of the exact ``erfinv`` (float32 values; ``tests/scale/test_scale_counter.py`` measures
it against ``torch.erfinv`` in float64) on :math:`|x| \le 1 - 2^{-24}`, the fills' range.
``torch.erfinv`` itself is left out of float32 fills on purpose: on x86 it is MKL's closed
``vmsErfInv`` (other builds: a different algorithm), so its bits cannot be reproduced elsewhere.
Float64 fills use ``torch.erfinv`` in float64.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["CENTRAL", "LOG", "TAIL", "erfinv_float32_"]


def _single(value: float) -> float:
    return float(np.float32(value))


# Giles' coefficients, highest degree first: p = c[0]; p = c[i] + p * w for i = 1..8.
CENTRAL: tuple[float, ...] = tuple(
    _single(c)
    for c in (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
              -0.00125372503, -0.00417768164, 0.246640727, 1.50140941)
)  # fmt: skip
TAIL: tuple[float, ...] = tuple(
    _single(c)
    for c in (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
              -0.0076224613, 0.00943887047, 1.00167406, 2.83297682)
)  # fmt: skip


class LOG:
    """musl's ``logf`` constants: ``Lg1..Lg4`` (hex floats there) and ``ln 2`` split in two."""

    LG1 = 0xAAAAAA * 2.0**-24
    LG2 = 0xCCCE13 * 2.0**-25
    LG3 = 0x91E9EE * 2.0**-25
    LG4 = 0xF89E26 * 2.0**-26
    LN2_HI = float(np.array(0x3F317180, dtype=np.uint32).view(np.float32))
    LN2_LO = float(np.array(0x3717F7D1, dtype=np.uint32).view(np.float32))
    REDUCE = 0x3F800000 - 0x3F3504F3  # moves m's cut from 1 to sqrt(2)/2
    SQRT_HALF_BITS = 0x3F3504F3
    MANTISSA = 0x007FFFFF


def _log_(v: torch.Tensor) -> torch.Tensor:
    """musl ``logf`` on positive normal float32 values, in place."""
    bits = v.view(torch.int32).add_(LOG.REDUCE)
    exponent = torch.bitwise_right_shift(bits, 23).sub_(0x7F).to(torch.float32)
    mantissa = bits.bitwise_and_(LOG.MANTISSA).add_(LOG.SQRT_HALF_BITS).view(torch.float32)
    f = mantissa.sub_(1.0)
    s = torch.div(f, f + 2.0)
    z = s * s
    w = z * z
    t1 = (w * LOG.LG4).add_(LOG.LG2).mul_(w)
    t2 = (w * LOG.LG3).add_(LOG.LG1).mul_(z)
    half_square = (f * 0.5).mul_(f)
    result = s.mul_(t2.add_(t1).add_(half_square))
    result.add_(exponent * LOG.LN2_LO).sub_(half_square).add_(f)
    return result.add_(exponent.mul_(LOG.LN2_HI))


def _horner(w: torch.Tensor, coefficients: tuple[float, ...]) -> torch.Tensor:
    p = torch.full_like(w, coefficients[0])
    for c in coefficients[1:]:
        p.mul_(w).add_(c)
    return p


def erfinv_float32_(x: torch.Tensor) -> torch.Tensor:
    """Giles' float32 ``erfinv`` (module docstring) in place on a float32 tensor; returns it.

    Torch ops only (one rounding each), so the result is the compiled kernel's bit for bit on
    the CPU and on any other device. Defined for :math:`|x| < 1`.
    """
    w = _log_((1.0 - x).mul_(1.0 + x)).neg_()
    central = _horner(w - 2.5, CENTRAL)
    # torch's CPU float32 sqrt is SLEEF's (not always correctly rounded); the float64 root
    # rounded to float32 is the correctly rounded float32 root (53 >= 2 * 24 + 2 bits).
    tail = _horner(w.double().sqrt_().float().sub_(3.0), TAIL)
    return x.mul_(torch.where(w < 5.0, central, tail))
