r"""The counter fill compiled with numba: hash, transform and store fused in one pass.

One call fills a block of a tensor: row ``i`` of ``out`` receives the elements whose flat
indices in the full tensor are ``firsts[i], firsts[i] + 1, ...``. Each element's value is
computed from its index alone: the SplitMix64 word (:mod:`initlab.rng`), its signed 32-bit half
(or the whole word for float64 draws), the affine map and clip, and for normals Giles' float32
``erfinv`` (:mod:`initlab.erfinv`), the scale, shift and bounds. The words of 2048 elements at a
time are hashed into an 8 KiB buffer (one word per two elements, 64-bit lanes); the rest runs
in registers on 32-bit lanes, so a fill costs one write of the tensor plus the arithmetic,
which LLVM vectorizes (no loop has a branch: both polynomial pieces are computed and one is
selected).

Compiled ``nogil`` (the fill's threads run in parallel), ``fastmath`` off and with no fused
multiply-add (numba emits none unless asked): every float operation rounds once, as the torch
reference path (:func:`initlab.counter.counter_fill_` on other devices, or with
``INITLAB_FILL_BACKEND=torch``) does, so both give the same bits. ``cache=True`` keeps the
machine code in ``__pycache__`` (first compile: a few seconds, once per machine).

This module imports numba; :mod:`initlab.counter` imports it on the first CPU fill.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import njit, types
from numba.extending import intrinsic

from initlab.erfinv import CENTRAL, LOG, TAIL
from initlab.rng import GOLDEN_GAMMA

__all__ = ["affine_float64", "normal_float32", "uniform_float32"]

_GAMMA = np.uint64(GOLDEN_GAMMA)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S27, _S30, _S31, _S32 = np.uint64(27), np.uint64(30), np.uint64(31), np.uint64(32)
_ONE64 = np.uint64(1)
_LOW32 = np.uint64(0xFFFFFFFF)
_F = np.float32
_C = tuple(_F(c) for c in CENTRAL)
_T = tuple(_F(c) for c in TAIL)
_LG1, _LG2, _LG3, _LG4 = _F(LOG.LG1), _F(LOG.LG2), _F(LOG.LG3), _F(LOG.LG4)
_LN2_HI, _LN2_LO = _F(LOG.LN2_HI), _F(LOG.LN2_LO)
_REDUCE, _MANTISSA, _SQRT_HALF = (
    np.int32(LOG.REDUCE),
    np.int32(LOG.MANTISSA),
    np.int32(LOG.SQRT_HALF_BITS),
)
_EXPONENT_SHIFT, _BIAS = np.int32(23), np.int32(0x7F)
_ONE, _TWO, _HALF = _F(1.0), _F(2.0), _F(0.5)
_CUT, _CENTRE, _TAIL_CENTRE = _F(5.0), _F(2.5), _F(3.0)


Function = TypeVar("Function", bound=Callable[..., Any])
Float32Rows = np.ndarray[tuple[int, int], np.dtype[np.float32]]
Float64Rows = np.ndarray[tuple[int, int], np.dtype[np.float64]]
Int64Array = np.ndarray[tuple[int], np.dtype[np.int64]]


def _compiled(function: Function) -> Function:
    """``function`` compiled in nopython mode, GIL released, machine code cached on disk."""
    # error_model="numpy": a float division by zero gives inf instead of raising, so that the
    # loops carry no exception branch and vectorize.
    compiler = njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
    return cast(Function, compiler(function))


def _float_bits_typing(typingctx: Any, value: Any) -> Any:
    """The bits of a float32 as an int32 (a register move)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


def _bits_float_typing(typingctx: Any, value: Any) -> Any:
    """The float32 with the bits of an int32."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


_float_bits: Any = intrinsic(_float_bits_typing)
_bits_float: Any = intrinsic(_bits_float_typing)


@_compiled
def _word(key: np.uint64, index: int | np.int64) -> np.uint64:
    """SplitMix64 word ``index`` of the stream keyed ``key`` (:func:`initlab.rng.mix64`)."""
    z = key + (np.uint64(index) + _ONE64) * _GAMMA
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@_compiled
def _half(key: np.uint64, element: np.int64) -> np.int32:
    """Element ``element``'s signed 32-bit half: the low half of word ``element // 2`` for
    even elements, the high half for odd ones."""
    word = _word(key, element >> 1)
    return np.int32(np.uint32((word >> (np.uint64(element & 1) * _S32)) & _LOW32))


@_compiled
def _log32(v: np.float32) -> np.float32:
    """musl's ``logf`` for positive normal ``v`` (:func:`initlab.erfinv._log_`).

    The bit arithmetic stays in int32 (each result cast back): int64 lanes would halve the
    vector width of that part.
    """
    bits = np.int32(_float_bits(v) + _REDUCE)
    k = _F(np.int32((bits >> _EXPONENT_SHIFT) - _BIAS))
    f: np.float32 = _bits_float(np.int32((bits & _MANTISSA) + _SQRT_HALF)) - _ONE
    s = f / (_TWO + f)
    z = s * s
    w = z * z
    t1 = (w * _LG4 + _LG2) * w
    t2 = (w * _LG3 + _LG1) * z
    half_square = (f * _HALF) * f
    return (((s * ((t2 + t1) + half_square) + k * _LN2_LO) - half_square) + f) + k * _LN2_HI


@_compiled
def _clip(value: Any, low: Any, high: Any) -> Any:
    """``value`` clipped to ``[low, high]`` (two selects, as ``torch.clamp``)."""
    above = low if value < low else value
    return high if above > high else above


@_compiled
def _depth(x: np.float32) -> np.float32:
    """Giles' ``w = -log((1 - x)(1 + x))``: below 5 the central polynomial applies."""
    return -_log32((_ONE - x) * (_ONE + x))


@_compiled
def _horner(coefficients: tuple[np.float32, ...], u: np.float32) -> np.float32:
    """The polynomial of ``coefficients`` (highest degree first) at ``u``, by Horner's rule:
    ``p = c[0]``, then ``p = p * u + c[i]`` (the order :mod:`initlab.erfinv` rounds in)."""
    p = coefficients[0]
    for k in range(1, len(coefficients)):
        p = p * u + coefficients[k]
    return p


@_compiled
def _central(x: np.float32, w: np.float32) -> np.float32:
    """``x P_c(w - 2.5)``: Giles' ``erfinv`` for ``w < 5``."""
    return x * _horner(_C, w - _CENTRE)


@_compiled
def _tail(x: np.float32, w: np.float32) -> np.float32:
    """``x P_t(sqrt(w) - 3)``: Giles' ``erfinv`` for ``w >= 5``."""
    t: np.float32 = np.sqrt(w) - _TAIL_CENTRE
    return x * _horner(_T, t)


_WORDS = 1024  # words hashed per step: 2048 float32 elements, their words in L1


@_compiled
def _halves(
    words: np.ndarray[tuple[int], np.dtype[np.uint64]], key: np.uint64, first: int, size: int
) -> np.ndarray[tuple[int], np.dtype[np.int32]]:
    """The signed halves of elements ``first .. first + size - 1`` (``size <= 2 * _WORDS``).

    One word is hashed per two elements, in a loop of 64-bit lanes alone; the loop that
    transforms the halves then runs on 32-bit lanes only (twice as many per vector).
    """
    base, parity = first >> 1, first & 1
    for k in range((parity + size + 1) >> 1):
        words[k] = _word(key, base + k)
    return words.view(np.int32)[parity : parity + size]  # little-endian: low half first


@_compiled
def uniform_float32(
    out: Float32Rows,
    firsts: Int64Array,
    key: np.uint64,
    scale: np.float32,
    shift: np.float32,
    low: np.float32,
    high: np.float32,
) -> None:
    r"""``out[i, j] = clip(fl(h) * scale + shift, low, high)``, ``h`` the signed half of element
    ``firsts[i] + j`` (float32 arguments; pass infinite bounds for no clip)."""
    words = np.empty(_WORDS + 1, dtype=np.uint64)
    for i in range(out.shape[0]):
        row, first = out[i], firsts[i]
        for start in range(0, row.shape[0], 2 * _WORDS):
            size = min(2 * _WORDS, row.shape[0] - start)
            halves, piece = _halves(words, key, first + start, size), row[start : start + size]
            for j in range(size):
                piece[j] = _clip(_F(halves[j]) * scale + shift, low, high)


@_compiled
def normal_float32(
    out: Float32Rows,
    firsts: Int64Array,
    key: np.uint64,
    affine: np.ndarray[tuple[int], np.dtype[np.float32]],
    post: np.ndarray[tuple[int], np.dtype[np.float32]],
    bounds: np.ndarray[tuple[int], np.dtype[np.float32]] | None,
) -> None:
    r"""``out[i, j] = clip(erfinv(clip(fl(h) a_0 + a_1, a_2, a_3)) p_0 + p_1, b_0, b_1)``: the
    float32 normal and truncated normal (``affine``, ``post``, ``bounds``: float32 arrays).

    ``bounds=None`` is a normal: no clip at all (both clips would be the identity; leaving them
    out saves a sixth of the work). Both polynomial pieces (Giles' ``erfinv``,
    :func:`initlab.erfinv.erfinv_float32_`) are computed and one is selected: the loop
    vectorizes (written out here: behind one more call, LLVM keeps the branch).
    """
    scale, shift, low, high = affine[0], affine[1], affine[2], affine[3]
    post_scale, post_shift = post[0], post[1]
    words = np.empty(_WORDS + 1, dtype=np.uint64)
    for i in range(out.shape[0]):
        row, first = out[i], firsts[i]
        for start in range(0, row.shape[0], 2 * _WORDS):
            size = min(2 * _WORDS, row.shape[0] - start)
            halves, piece = _halves(words, key, first + start, size), row[start : start + size]
            if bounds is None:
                for j in range(size):
                    x = _F(halves[j]) * scale + shift
                    w = _depth(x)
                    y = _central(x, w) if w < _CUT else _tail(x, w)
                    piece[j] = y * post_scale + post_shift
            else:
                bound_low, bound_high = bounds[0], bounds[1]  # locals: piece might alias bounds
                for j in range(size):
                    x = _clip(_F(halves[j]) * scale + shift, low, high)
                    w = _depth(x)
                    y = _central(x, w) if w < _CUT else _tail(x, w)
                    piece[j] = _clip(y * post_scale + post_shift, bound_low, bound_high)


@_compiled
def affine_float64(
    out: Float64Rows,
    firsts: Int64Array,
    key: np.uint64,
    wide: bool,
    scale: float,
    shift: float,
    low: float,
    high: float,
) -> None:
    r"""``out[i, j] = clip(fl(w) * scale + shift, low, high)`` in float64: ``w`` the whole word
    of element ``firsts[i] + j`` (``wide``) or its signed half (float32 tensors in a far
    tail). Normals then take ``torch.erfinv`` in float64."""
    for i in range(out.shape[0]):
        row, first = out[i], firsts[i]
        if wide:
            for j in range(row.shape[0]):
                signed = np.float64(np.int64(_word(key, first + j)))
                row[j] = _clip(signed * scale + shift, low, high)
        else:
            for j in range(row.shape[0]):
                half = np.float64(_half(key, first + j))
                row[j] = _clip(half * scale + shift, low, high)
