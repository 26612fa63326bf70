"""The doctor's reductions (the probe's outputs and gradients, the weights' rows) in one
compiled pass each (:mod:`initlab.doctor.reduction_kernels`), where they apply: a
C-contiguous float32 CPU tensor, with numba importable. Everything else
(another device, another dtype, a strided view) returns ``None`` here and takes torch's ops
in :mod:`initlab.doctor.reductions`; both give the same statistics to float32 rounding.

numba is imported on the first call, not with the doctor: importing it and loading the kernels
from numba's cache takes about half a second, once per process.

The results are NumPy views into a probe's :class:`ResultPool`, not tensors: a result kept
until :meth:`~initlab.doctor.probe.Probe.collect` as a small tensor of its own (a few hundred
bytes of C heap, between the layers' activations) changes where the allocator can give memory
back to the system during the backward pass, and on a virtual machine the memory taken back
costs more to fault in again than the reductions cost to compute (measured on the benchmark's
small ResNet: 7,400 page faults per pass with a tensor per result, 2,700 with the pool, 4,300
for the plain pass).
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np
import torch

from initlab.optional import compiled_kernels

__all__ = [
    "ResultPool",
    "fused_moments",
    "fused_output_sums",
    "fused_weight_values",
    "kernels",
]


def kernels() -> ModuleType | None:
    """:mod:`initlab.doctor.reduction_kernels`, or ``None`` where numba cannot be imported."""
    return compiled_kernels("initlab.doctor.reduction_kernels")


class ResultPool:
    """Host float64 memory the compiled reductions write their results into, taken in slices
    that stay valid until :meth:`rewind`: one allocation for a whole probed pass instead of
    one per hook. The first block is allocated with the pool (before the pass it serves); a
    result larger than what is left starts a new one."""

    BLOCK = 1 << 16
    """Values (float64) per block: 512 KiB, a few hundred hooks' results."""

    def __init__(self) -> None:
        self._blocks: list[np.ndarray[Any, Any]] = [np.empty(self.BLOCK)]
        self._block = 0
        self._at = 0

    def take(self, size: int) -> np.ndarray[Any, Any]:
        """``size`` zeroed values, untouched by later takes until :meth:`rewind`."""
        while self._block < len(self._blocks):
            block = self._blocks[self._block]
            if self._at + size <= block.shape[0]:
                view = block[self._at : self._at + size]
                self._at += size
                view.fill(0.0)
                return view
            self._block, self._at = self._block + 1, 0
        self._blocks.append(np.empty(max(size, self.BLOCK)))
        return self.take(size)

    def rewind(self) -> None:
        """Hand every slice out again (the results taken so far are no longer needed)."""
        self._block = self._at = 0


def _result(pool: ResultPool | None, size: int) -> np.ndarray[Any, Any]:
    return np.zeros(size) if pool is None else pool.take(size)


def _readable(tensor: torch.Tensor) -> ModuleType | None:
    """The kernels, if they can read ``tensor`` in place (as a NumPy view)."""
    if (
        tensor.device.type != "cpu"
        or tensor.dtype != torch.float32
        or not tensor.is_contiguous()
        or tensor.is_neg()
    ):
        return None
    return kernels()


def fused_output_sums(
    h: torch.Tensor,
    examples: int,
    cosine: bool,
    saturation: tuple[float, float] | None,
    zeros: bool,
    pool: ResultPool | None = None,
) -> np.ndarray[Any, Any] | None:
    r"""One pass over an output ``h`` (detached), as one float64 vector of length
    :math:`2C` + ``examples`` + 3: per unit (dimension 1; a vector is one unit) the mean of
    :math:`h` and of :math:`h^2`, the norms of the first ``examples`` examples, the count of
    nonzeros (meaningful with ``zeros``), the count at or beyond the ``saturation`` interval,
    and with ``cosine`` the norm of the examples' summed directions (NaN without; see
    :func:`~initlab.doctor.reduction_kernels.channel_rows`). ``None`` where the kernels do
    not apply. The vector is taken from ``pool`` where one is given."""
    compiled = _readable(h)
    if compiled is None:
        return None
    # A vector's values are the examples of one unit; a map with short rows per unit is read
    # as a matrix of (unit, position) columns and folded after (a row's setup costs more than
    # a short row's values).
    length = math.prod(h.shape[2:])  # 1 for a matrix or a vector
    rows = h.dim() > 2 and length >= _SHORT
    if rows:
        array, kernel = h.view(h.shape[0], h.shape[1], -1).numpy(), compiled.channel_rows
    else:
        matrix = h.view(h.shape[0], -1) if h.dim() > 1 else h.view(-1, 1)
        array, kernel = matrix.numpy(), compiled.columns
    columns = array.shape[1]
    out = _result(pool, 2 * columns + examples + 3)
    low, high = saturation if saturation is not None else (-np.inf, np.inf)
    kernel(
        array,
        examples,
        cosine and examples > 1,
        zeros,
        saturation is not None,
        np.float32(low),
        np.float32(high),
        out,
    )
    if not rows and length > 1:  # per unit: the mean over its positions, in place
        moments = 2 * columns // length  # two per unit
        out[:moments] = out[: 2 * columns].reshape(moments, length).mean(axis=1)
        out[moments : moments + examples + 3] = out[2 * columns :]  # numpy copies overlaps safely
        out = out[: moments + examples + 3]
    return out


_SHORT = 256
"""Rows shorter than this (values per unit and example) are read as columns: a row's setup
and the sum of its vector lanes cost more than its values below about 256 (measured, batch
32: an 8x8 map 3x faster as columns, 16x16 1.5x faster as rows)."""


def fused_moments(x: torch.Tensor, pool: ResultPool | None = None) -> np.ndarray[Any, Any] | None:
    """Sum and sum of squares of all of ``x`` (detached) as a float64 pair (taken from
    ``pool`` where one is given), in one pass; ``None`` where the kernels do not apply."""
    compiled = _readable(x)
    if compiled is None:
        return None
    out = _result(pool, 2)
    compiled.flat_moments(x.view(-1).numpy(), out)
    return out


def fused_weight_values(
    matrix: torch.Tensor, directions: torch.Tensor, grad: torch.Tensor | None
) -> np.ndarray[Any, Any] | None:
    r"""A weight's measurement from its rows ``matrix`` (its :func:`unit_rows`, detached),
    the four key ``directions`` and its gradient's rows ``grad`` (same shape, or ``None``),
    in one call (:func:`~initlab.doctor.reduction_kernels.weight_values`: the head values,
    then the rows' keys and the gradient rows' keys, float64); ``None`` where the kernels do
    not read all three (an empty weight, another device or dtype, a strided gradient)."""
    compiled = _readable(matrix)
    if compiled is None or matrix.numel() == 0 or _readable(directions) is None:
        return None
    if grad is not None and _readable(grad) is None:
        return None
    rows = matrix.shape[0]
    out = np.empty(8 + (8 if grad is not None else 4) * rows)
    grad_rows = _NO_ROWS if grad is None else grad.numpy()
    compiled.weight_values(matrix.numpy(), directions.numpy(), grad_rows, grad is not None, out)
    return out


_NO_ROWS = np.empty((0, 0), dtype=np.float32)
