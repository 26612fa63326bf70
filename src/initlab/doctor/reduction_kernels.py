r"""The doctor's reductions compiled with numba: one read of a tensor for all its sums.

A probe hook needs, of an output :math:`h`, per-unit sums of :math:`h` and :math:`h^2`, the
examples' norms, the cosine's summed directions, and for some activations a count of nonzeros
or of values in saturation (:func:`channel_rows`, :func:`columns`); of a gradient, its sum and
sum of squares (:func:`flat_moments`); of a weight, each row's keys and norms and the
weight's summary (:func:`row_keys`, :func:`weight_values`); of a batch norm, its terms
checked and copied (:func:`norm_terms`). As torch ops that is three to five passes over the
tensor (a parallel region and a dispatch each); here it is one pass on the calling thread,
while :math:`h`, just written by the layer, is still in cache.

Rounding follows torch's float32 reductions: sums of float32 values are accumulated in float32
over blocks of :data:`BLOCK` values (vectorized: the order within a block is free, as in
torch's own vectorized sums) and the block sums in float64, so a square beyond float32's range
is infinite here as it is in torch. Values are float32 and C-contiguous; the caller
(:mod:`initlab.doctor.reductions`) takes torch's path for anything else.

Compiled ``nogil`` (a gradient hook runs on autograd's thread) and cached in ``__pycache__``
(first compile: several seconds, once per machine; later processes load them from the cache).
This module imports numba; :mod:`initlab.doctor.fused` imports it on the first CPU reduction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
from numba import njit

__all__ = [
    "BLOCK",
    "ROWS",
    "channel_rows",
    "columns",
    "flat_moments",
    "norm_terms",
    "row_keys",
    "weight_values",
]

BLOCK = 1024
"""Values summed in float32 before their sum joins the float64 total."""
ROWS = 64
"""Rows a matrix's column sums take in float32 before they join the float64 totals."""

Function = TypeVar("Function", bound=Callable[..., Any])
# Reassociation (and no signed zeros) lets LLVM vectorize the sums; NaN and inf keep their
# IEEE meaning (no "nnan"/"ninf"), so a NaN in the output is a NaN in its sums.
_FAST = {"reassoc", "nsz"}


def _kernel(function: Function) -> Function:
    return cast(
        Function, njit(cache=True, nogil=True, fastmath=_FAST, boundscheck=False)(function)
    )


def _inline(function: Function) -> Function:
    return cast(Function, njit(fastmath=_FAST, boundscheck=False, inline="always")(function))


@_inline
def _block_sums(segment: Any) -> tuple[Any, Any]:
    total = np.float32(0.0)
    square = np.float32(0.0)
    for i in range(segment.shape[0]):
        value = segment[i]
        total += value
        square += value * value
    return total, square


@_inline
def _block_counts(
    segment: Any, zeros: bool, saturation: bool, low: Any, high: Any
) -> tuple[Any, Any, Any, Any]:
    """Sums of a block and its counts: with ``zeros`` the nonzeros (NaN is not 0), with
    ``saturation`` the values at or beyond ``low``/``high``. One loop per case: a flag tested
    inside the loop, or a count nobody asked for, would slow every block. The counts add in
    float32 lanes, as the sums do (exact: a block holds far fewer than 2**24 values); integer
    counts would be promoted to 64-bit lanes, half as many per vector."""
    total = np.float32(0.0)
    square = np.float32(0.0)
    nonzero = np.float32(0.0)
    saturated = np.float32(0.0)
    if zeros and saturation:
        for i in range(segment.shape[0]):
            value = segment[i]
            total += value
            square += value * value
            nonzero += np.float32(value != 0)
            saturated += np.float32((value <= low) | (value >= high))
    elif zeros:
        for i in range(segment.shape[0]):
            value = segment[i]
            total += value
            square += value * value
            nonzero += np.float32(value != 0)
    else:
        for i in range(segment.shape[0]):
            value = segment[i]
            total += value
            square += value * value
            saturated += np.float32((value <= low) | (value >= high))
    return total, square, nonzero, saturated


@_inline
def _row_sums(
    row: Any, zeros: bool, saturation: bool, low: Any, high: Any
) -> tuple[float, float, int, int]:
    """Sum and sum of squares of a vector (float32 per block of :data:`BLOCK`, float64 across
    blocks), its nonzeros (with ``zeros``) and its values in saturation (with ``saturation``)."""
    total = 0.0
    square = 0.0
    nonzero = 0
    saturated = 0
    for start in range(0, row.shape[0], BLOCK):
        segment = row[start : start + BLOCK]
        if zeros or saturation:
            s, q, z, t = _block_counts(segment, zeros, saturation, low, high)
            nonzero += int(z)
            saturated += int(t)
        else:
            s, q = _block_sums(segment)
        total += s
        square += q
    return total, square, nonzero, saturated


@_inline
def _add_direction(example: Any, norm: float, directions: Any) -> None:
    """``directions += example / max(norm, 1e-12)`` in float32 (a NaN norm stays NaN), as
    :func:`~initlab.doctor.reductions.cosine_pieces` computes it with torch."""
    clamped = 1e-12 if norm < 1e-12 else norm
    inverse = np.float32(1.0 / clamped)
    for i in range(example.shape[0]):
        directions[i] += example[i] * inverse


@_inline
def _finish(
    out: Any, units: int, per_value: float, examples: int, counts: tuple[int, int], directions: Any
) -> None:
    """Unit sums to means, the counts, and the norm of the summed directions (NaN without)."""
    for c in range(2 * units):
        out[c] *= per_value
    at = 2 * units + examples
    out[at] = counts[0]
    out[at + 1] = counts[1]
    out[at + 2] = np.nan
    if directions.shape[0]:
        out[at + 2] = np.sqrt(_row_sums(directions, False, False, np.float32(0), np.float32(0))[1])


@_kernel
def channel_rows(
    h: Any,
    examples: int,
    cosine: bool,
    zeros: bool,
    saturation: bool,
    low: Any,
    high: Any,
    out: Any,
) -> None:
    r"""The sums of a map :math:`h \in \mathbb R^{B \times C \times S}` into ``out``
    (float64, :math:`2C` + ``examples`` + 3 long, overwritten), in this order: per unit
    :math:`c` the mean of :math:`h` and of :math:`h^2` over :math:`B \times S`; the norms
    :math:`\lVert h_b\rVert` of the first ``examples`` examples; the count of nonzeros (with
    ``zeros``) and the count in saturation (with ``saturation``); with ``cosine``,
    :math:`\lVert \sum_b h_b / \lVert h_b\rVert \rVert` over those examples (the piece
    :func:`~initlab.doctor.reductions.cosine_pieces` makes; the example is re-read while in
    cache), else NaN."""
    batch, units, length = h.shape
    out[:] = 0.0
    nonzero = 0
    saturated = 0
    directions = np.zeros(units * length if cosine else 0, dtype=np.float32)
    for b in range(batch):
        example = 0.0
        for c in range(units):
            total, square, z, t = _row_sums(h[b, c], zeros, saturation, low, high)
            nonzero += z
            saturated += t
            out[c] += total
            out[units + c] += square
            example += square
        if b < examples:
            out[2 * units + b] = np.sqrt(example)
            if cosine:
                _add_direction(h[b].reshape(-1), np.sqrt(example), directions)
    _finish(out, units, 1.0 / (batch * length), examples, (nonzero, saturated), directions)


@_kernel
def columns(
    h: Any,
    length: int,
    examples: int,
    cosine: bool,
    zeros: bool,
    saturation: bool,
    low: Any,
    high: Any,
    out: Any,
) -> None:
    r""":func:`channel_rows` for a matrix :math:`h \in \mathbb R^{B \times C}` whose columns
    are ``length`` positions of each unit in turn (a map with short rows, read whole; 1 for a
    matrix): the same layout of ``out``, for :math:`C / \text{length}` units, in its first
    values. Column sums run in float32 over :data:`ROWS` rows at a time, then join float64
    totals; a unit's means are then the means of its columns'."""
    batch, units = h.shape
    out[:] = 0.0
    nonzero = 0
    saturated = 0
    sums = np.zeros(units, dtype=np.float32)
    squares = np.zeros(units, dtype=np.float32)
    directions = np.zeros(units if cosine else 0, dtype=np.float32)
    for b in range(batch):
        row = h[b]
        _, example, z, t = _row_sums(row, zeros, saturation, low, high)
        nonzero += z
        saturated += t
        if b < examples:
            out[2 * units + b] = np.sqrt(example)
            if cosine:
                _add_direction(row, np.sqrt(example), directions)
        for c in range(units):
            value = row[c]
            sums[c] += value
            squares[c] += value * value
        if (b + 1) % ROWS == 0 or b == batch - 1:
            for c in range(units):
                out[c] += sums[c]
                out[units + c] += squares[c]
                sums[c] = 0.0
                squares[c] = 0.0
    _finish(out, units, 1.0 / batch, examples, (nonzero, saturated), directions)
    if length > 1:
        _fold(out, units, length, examples)


@_inline
def _fold(out: Any, columns: int, length: int, examples: int) -> None:
    """Per unit, the mean of its ``length`` columns' means (both moments), then the rest of
    ``out`` moved up behind them."""
    units = columns // length
    for moment in range(2):
        for u in range(units):
            total = 0.0
            first = moment * columns + u * length
            for k in range(length):
                total += out[first + k]
            out[moment * units + u] = total / length
    for k in range(examples + 3):
        out[2 * units + k] = out[2 * columns + k]


@_kernel
def flat_moments(x: Any, out: Any) -> None:
    """Sum and sum of squares of a float32 vector into ``out[0]``, ``out[1]``."""
    total, square, _, _ = _row_sums(x, False, False, np.float32(0.0), np.float32(0.0))
    out[0] = total
    out[1] = square


@_inline
def _block_keys(
    segment: Any, first: Any, second: Any, ones: Any, mix: Any
) -> tuple[Any, Any, Any, Any, Any]:
    """A block's dot products with the matching blocks of the four directions, and its sum
    of squares (float32)."""
    a = np.float32(0.0)
    b = np.float32(0.0)
    c = np.float32(0.0)
    d = np.float32(0.0)
    square = np.float32(0.0)
    for i in range(segment.shape[0]):
        value = segment[i]
        a += value * first[i]
        b += value * second[i]
        c += value * ones[i]
        d += value * mix[i]
        square += value * value
    return a, b, c, d, square


@_inline
def _block_spread(segment: Any, mean: Any) -> Any:
    part = np.float32(0.0)
    for i in range(segment.shape[0]):
        part += (segment[i] - mean) * (segment[i] - mean)
    return part


@_kernel
def row_keys(matrix: Any, directions: Any, centered: bool, out: Any) -> None:
    r"""Per row :math:`w_r` of a matrix (``(R, K)``, float32), into ``out`` (``(R, 6)``,
    float64): its dot products with the four rows of ``directions`` (``(4, K)``: the keys
    :func:`initlab.doctor.metrics._row_probe` makes; the third is all ones, the row's sum),
    :math:`\lVert w_r\rVert^2`, and with ``centered`` :math:`\sum_k (w_{rk} - \bar w_r)^2`
    (a second read of the row, from cache; 0 without), from which the whole matrix's centered
    norm follows without cancellation."""
    rows, width = matrix.shape
    for r in range(rows):
        row = matrix[r]
        first = second = total = mix = square = 0.0
        for start in range(0, width, BLOCK):
            stop = start + BLOCK
            a, b, c, d, q = _block_keys(
                row[start:stop],
                directions[0, start:stop],
                directions[1, start:stop],
                directions[2, start:stop],
                directions[3, start:stop],
            )
            first += a
            second += b
            total += c
            mix += d
            square += q
        out[r, 0] = first
        out[r, 1] = second
        out[r, 2] = total
        out[r, 3] = mix
        out[r, 4] = square
        spread = 0.0
        if centered:
            mean = np.float32(total / width)
            for start in range(0, width, BLOCK):
                spread += _block_spread(row[start : start + BLOCK], mean)
        out[r, 5] = spread


@_inline
def _copy_keys(keys: Any, out: Any, at: int) -> None:
    for r in range(keys.shape[0]):
        for k in range(4):
            out[at + 4 * r + k] = keys[r, k]


@_kernel
def weight_values(matrix: Any, directions: Any, grad: Any, has_grad: bool, out: Any) -> None:
    r"""A weight's measurement (:func:`initlab.doctor.metrics._measured`) in one call, into
    ``out`` (float64, :math:`8 + 4R` long, :math:`8 + 8R` with ``has_grad``): the rows
    :math:`R`, ``has_grad``, the mean :math:`\bar w`, the centered norm, the count of zero
    rows, the norm, the gradient's sum and norm (NaN without), then the four keys of each row
    (:func:`row_keys`) and with ``has_grad`` those of each row of ``grad`` (same shape).

    With row means :math:`\bar w_r` over :math:`K` columns the centered norm is
    :math:`\sqrt{\sum_r \sum_k (w_{rk} - \bar w_r)^2 + K \sum_r (\bar w_r - \bar w)^2}`:
    a constant weight reads 0 up to rounding."""
    rows, width = matrix.shape
    keys = np.empty((rows, 6))
    row_keys(matrix, directions, True, keys)
    total = 0.0
    squares = 0.0
    zero_rows = 0
    for r in range(rows):
        total += keys[r, 2]
        squares += keys[r, 4]
        zero_rows += keys[r, 4] == 0.0
    mean = total / (rows * width)
    spread = 0.0
    for r in range(rows):
        offset = keys[r, 2] / width - mean
        spread += keys[r, 5] + width * offset * offset
    out[0] = rows
    out[1] = 1.0 if has_grad else 0.0
    out[2] = mean
    out[3] = np.sqrt(spread)
    out[4] = zero_rows
    out[5] = np.sqrt(squares)
    out[6] = np.nan
    out[7] = np.nan
    _copy_keys(keys, out, 8)
    if has_grad:
        grad_keys = np.empty((rows, 6))
        row_keys(grad, directions, False, grad_keys)
        grad_total = 0.0
        grad_squares = 0.0
        for r in range(rows):
            grad_total += grad_keys[r, 2]
            grad_squares += grad_keys[r, 4]
        out[6] = grad_total
        out[7] = np.sqrt(grad_squares)
        _copy_keys(grad_keys, out, 8 + 4 * rows)


@_kernel
def norm_terms(invstd: Any, gamma: Any, beta: Any, eps: float, resolved: float, out: Any) -> bool:
    r"""A batch norm's terms into ``out`` (float64, :math:`3C`): :math:`\beta` (0 where
    ``beta`` is empty), :math:`\gamma` (1 where ``gamma`` is empty), :math:`s` =
    ``invstd``; ``False`` (``out`` unwritten) where a unit's :math:`\epsilon s_c^2` exceeds
    ``resolved`` (see :func:`initlab.doctor.reductions.batch_norm_terms`; a NaN passes)."""
    units = invstd.shape[0]
    for c in range(units):
        inverse = np.float64(invstd[c])
        if inverse * inverse * eps > resolved:
            return False
    for c in range(units):
        out[c] = beta[c] if beta.shape[0] else 0.0
        out[units + c] = gamma[c] if gamma.shape[0] else 1.0
        out[2 * units + c] = invstd[c]
    return True
