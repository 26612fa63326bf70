"""The doctor's reductions (the probe's outputs and gradients, the weights' rows) in one
compiled pass each (:mod:`initlab.doctor.reduction_kernels`), where they apply: a
C-contiguous float32 CPU tensor, with numba importable. Everything else
(another device, another dtype, a strided view) returns ``None`` here and takes torch's ops
in :mod:`initlab.doctor.reductions`; both give the same statistics to float32 rounding.

numba is imported on the first call, not with the doctor: importing it and loading the kernels
from numba's cache takes about half a second, once per process.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np
import torch

from initlab.optional import compiled_kernels

__all__ = ["fused_moments", "fused_output_sums", "fused_row_keys", "kernels"]


def kernels() -> ModuleType | None:
    """:mod:`initlab.doctor.reduction_kernels`, or ``None`` where numba cannot be imported."""
    return compiled_kernels("initlab.doctor.reduction_kernels")


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
) -> torch.Tensor | None:
    r"""One pass over an output ``h`` (detached), as one float64 vector of length
    :math:`2C` + ``examples`` + 3: per unit (dimension 1; a vector is one unit) the mean of
    :math:`h` and of :math:`h^2`, the norms of the first ``examples`` examples, the count of
    nonzeros (meaningful with ``zeros``), the count at or beyond the ``saturation`` interval,
    and with ``cosine`` the norm of the examples' summed directions (NaN without; see
    :func:`~initlab.doctor.reduction_kernels.channel_rows`). ``None`` where the kernels do
    not apply."""
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
    out = np.zeros(2 * columns + examples + 3)
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
    if not rows and length > 1:  # per unit: the mean over its positions
        moments = out[: 2 * columns].reshape(2, -1, length).mean(axis=2).reshape(-1)
        out = np.concatenate([moments, out[2 * columns :]])
    return torch.from_numpy(out)


_SHORT = 64
"""Rows shorter than this (values per unit and example) are read as columns."""


def fused_moments(x: torch.Tensor) -> torch.Tensor | None:
    """Sum and sum of squares of all of ``x`` (detached) as a float64 pair, in one pass;
    ``None`` where the kernels do not apply."""
    compiled = _readable(x)
    if compiled is None:
        return None
    out = np.empty(2)
    compiled.flat_moments(x.view(-1).numpy(), out)
    return torch.from_numpy(out)


def fused_row_keys(
    matrix: torch.Tensor, directions: torch.Tensor, *, centered: bool
) -> np.ndarray[Any, Any] | None:
    r"""Per row of ``matrix`` (a weight's or its gradient's :func:`unit_rows`, detached), its
    dot products with the four ``directions`` rows, its squared norm and with ``centered`` its
    sum of squares about its own mean, as an ``(R, 6)`` float64 array, in one pass
    (:func:`~initlab.doctor.reduction_kernels.row_keys`); ``None`` where the kernels do not
    apply."""
    compiled = _readable(matrix)
    if compiled is None or _readable(directions) is None:
        return None
    out = np.empty((matrix.shape[0], 6))
    compiled.row_keys(matrix.numpy(), directions.numpy(), centered, out)
    return out
