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
back to the system during the backward pass, and on a virtual machine memory given back costs
more to fault in again than the reductions cost to compute. Measured on the benchmark's small
ResNet with hooks that only run the kernels: 7,460 page faults per pass when each result is
kept as a tensor, 2,730 with one buffer, 4,260 for the plain pass (means of 40 passes). With
the whole probe the counts swing too much from one process to the next (4,500 to 9,100 per
pass, and so does the plain pass) for the difference to show.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import torch

from initlab.optional import compiled_kernels

__all__ = [
    "ResultPool",
    "fill_norm_terms",
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
        """``size`` values (their contents undefined: the kernels write every one), untouched
        by later takes until :meth:`rewind`."""
        while self._block < len(self._blocks):
            block = self._blocks[self._block]
            if self._at + size <= block.shape[0]:
                self._at += size
                return block[self._at - size : self._at]
            self._block, self._at = self._block + 1, 0
        self._blocks.append(np.empty(max(size, self.BLOCK)))
        return self.take(size)

    def rewind(self) -> None:
        """Hand every slice out again (the results taken so far are no longer needed)."""
        self._block = self._at = 0


def _result(pool: ResultPool | None, size: int) -> np.ndarray[Any, Any]:
    return np.empty(size) if pool is None else pool.take(size)


def _readable(tensor: torch.Tensor) -> ModuleType | None:
    """The kernels, if they can read ``tensor`` in place (as a NumPy view). The checks are
    the cheapest torch has (a hook pays them per call: ``is_cpu``, not ``device.type``)."""
    if (
        tensor.dtype is not torch.float32
        or not tensor.is_cpu
        or not tensor.is_contiguous()
        or tensor.is_neg()
    ):
        return None
    return kernels()


def _values(tensor: torch.Tensor) -> np.ndarray[Any, Any]:
    """A readable tensor's values as a NumPy view (no autograd: detached where it has to be)."""
    return (tensor.detach() if tensor.requires_grad else tensor).numpy()


def fused_output_sums(
    h: torch.Tensor,
    examples: int,
    cosine: bool,
    saturation: tuple[float, float] | None,
    zeros: bool,
    pool: ResultPool | None = None,
) -> np.ndarray[Any, Any] | None:
    r"""One pass over an output ``h``, as one float64 vector of length :math:`2C` +
    ``examples`` + 3: per unit (dimension 1; a vector is one unit) the mean of :math:`h` and of
    :math:`h^2`, the norms of the first ``examples`` examples, the count of nonzeros
    (meaningful with ``zeros``), the count at or beyond the ``saturation`` interval, and with
    ``cosine`` the norm of the examples' summed directions (NaN without; see
    :func:`~initlab.doctor.reduction_kernels.channel_rows`). ``None`` where the kernels do not
    apply. The vector is taken from ``pool`` where one is given.

    A hook calls this once per output, so it makes as few Python-level calls as it can: each
    one costs several microseconds there, with the model's own kernels between two hooks
    having pushed the interpreter out of the caches.
    """
    compiled = _readable(h)
    if compiled is None:
        return None
    shape = h.shape
    values = _values(h)
    if len(shape) > 1:
        batch, units = shape[0], shape[1]
        length = values.size // (batch * units) if batch * units else 1
    else:
        batch, units, length = shape[0], 1, 1
    low, high = _BOUNDS[saturation] if saturation in _BOUNDS else _bounds(saturation)
    cosine = cosine and examples > 1
    if length >= _SHORT:  # rows of a map, per example and unit
        out = _result(pool, 2 * units + examples + 3)
        rows = values.reshape(batch, units, length)
        compiled.channel_rows(
            rows, examples, cosine, zeros, saturation is not None, low, high, out
        )
        return out
    # A vector's values are the examples of one unit; a map with short rows per unit is read
    # as a matrix of (unit, position) columns and folded per unit by the kernel (a row's
    # setup costs more than a short row's values).
    matrix = values.reshape(batch, units * length)
    out = _result(pool, 2 * units * length + examples + 3)
    compiled.columns(
        matrix, length, examples, cosine, zeros, saturation is not None, low, high, out
    )
    return out[: 2 * units + examples + 3]


_NO_BOUNDS = (np.float32(-np.inf), np.float32(np.inf))
_BOUNDS: dict[tuple[float, float] | None, tuple[np.float32, np.float32]] = {None: _NO_BOUNDS}


def _bounds(saturation: tuple[float, float] | None) -> tuple[np.float32, np.float32]:
    """A saturation interval as the kernels' float32 bounds, kept for the next call."""
    if saturation is None:
        return _NO_BOUNDS
    found = (np.float32(saturation[0]), np.float32(saturation[1]))
    _BOUNDS[saturation] = found
    return found


_SHORT = 256
"""Rows shorter than this (values per unit and example) are read as columns: a row's setup
and the sum of its vector lanes cost more than its values below about 256 (measured, batch
32: an 8x8 map 3x faster as columns, 16x16 1.5x faster as rows)."""


def fused_moments(x: torch.Tensor, pool: ResultPool | None = None) -> np.ndarray[Any, Any] | None:
    """Sum and sum of squares of all of ``x`` as a float64 pair (taken from
    ``pool`` where one is given), in one pass; ``None`` where the kernels do not apply."""
    compiled = _readable(x)
    if compiled is None:
        return None
    out = _result(pool, 2)
    compiled.flat_moments(_values(x).reshape(-1), out)
    return out


def fill_norm_terms(
    invstd: np.ndarray[Any, Any],
    gamma: np.ndarray[Any, Any],
    beta: np.ndarray[Any, Any],
    eps: float,
    resolved: float,
    out: np.ndarray[Any, Any],
) -> bool:
    """A batch norm's terms into ``out`` (:func:`~initlab.doctor.reduction_kernels.norm_terms`;
    with NumPy where numba is missing); ``False`` where a unit's variance is unresolved."""
    compiled = kernels()
    if compiled is not None:
        return bool(compiled.norm_terms(invstd, gamma, beta, eps, resolved, out))
    if float(invstd.max()) ** 2 * eps > resolved:
        return False
    units = invstd.shape[0]
    out[:units] = beta if beta.shape[0] else 0.0
    out[units : 2 * units] = gamma if gamma.shape[0] else 1.0
    out[2 * units :] = invstd
    return True


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
