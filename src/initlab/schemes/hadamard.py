r"""ZerO's Hadamard weight for a layer that widens (Zhao, Schäfer & Anandkumar, 2022, TMLR).

"ZerO Initialization: Initializing Neural Networks with only Zeros and Ones", Algorithm 1: a
layer :math:`W \in \mathbb R^{m \times n}` with :math:`m > n` gets

.. math::

    W = c\, I_{m \times p}\, H_p\, I_{p \times n},\quad p = 2^k,\ k = \lceil\log_2 m\rceil,
    \quad c = 2^{-k/2},

with :math:`H_p` the Sylvester Hadamard matrix (:math:`H_{2q} = [[H_q, H_q], [H_q, -H_q]]`),
the normalization of the reference code (``ZerO_Init_on_matrix`` in ``example_mnist.ipynb`` of
``jiaweizzhao/ZerO-initialization``: ``hadamard(p) / 2**(clog_m/2)``), so that :math:`c H_p` is
orthogonal. A convolution (Algorithm 2) puts that matrix on its centre tap and 0 elsewhere. The
``zero`` preset (:mod:`initlab.plan.recipes.zero_init`) assigns it to the layers that widen.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import TYPE_CHECKING, Any

from initlab.errors import ShapeError
from initlab.schemes.base import Scheme, ValueStats, Weight, register

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["PartialHadamard", "hadamard_sum"]


@functools.lru_cache(maxsize=4096)
def hadamard_sum(rows: int, cols: int, size: int) -> int:
    """The sum of the entries of the top-left ``rows x cols`` corner of the ``size x size``
    Sylvester Hadamard matrix (``size`` a power of 2), by its block recursion: O(log^2 size)."""
    if rows == 0 or cols == 0:
        return 0
    if size == 1:
        return 1
    half = size // 2
    if rows == size and cols == size:
        return size  # the first row sums to `size`, every other row to 0
    top, bottom = min(rows, half), rows - min(rows, half)
    left, right = min(cols, half), cols - min(cols, half)
    return (
        hadamard_sum(top, left, half)
        + hadamard_sum(top, right, half)
        + hadamard_sum(bottom, left, half)
        - hadamard_sum(bottom, right, half)
    )


def _order(rows: int) -> int:
    """``k`` with ``2^k`` the smallest power of 2 >= ``rows``."""
    return max(math.ceil(math.log2(rows)), 0)


def _centre_tap(shape: tuple[int, ...]) -> tuple[slice | int, ...]:
    """The index of every (out, in) pair at the kernel's centre (the whole matrix if 2-D)."""
    return (slice(None), slice(None), *(size // 2 for size in shape[2:]))


@register()
@dataclasses.dataclass(frozen=True)
class PartialHadamard(Scheme):
    r"""Zhao, Schäfer & Anandkumar (2022): ZerO's weight for a layer that widens,

    .. math::

        W = 2^{-k/2} H_{2^k}[:m, :n],\qquad 2^k \ge m,

    the first ``m`` rows and ``n`` columns of the Sylvester Hadamard matrix; on the centre tap of
    a convolution, 0 on the other taps (Algorithms 1 and 2). Entries are :math:`\pm 2^{-k/2}`;
    a torch-order weight ``(out, in, *kernel)``. Deterministic (no draw).

    Reference: "ZerO Initialization: Initializing Neural Networks with only Zeros and Ones"
    (TMLR); ``jiaweizzhao/ZerO-initialization`` ``example_mnist.ipynb``.
    """

    name = "partial_hadamard"
    formula = "W = 2^(-k/2) H_(2^k)[:out, :in] on the centre tap, 2^k >= out"

    def _check(self, weight: Weight) -> None:
        if len(weight.shape) not in (2, 3, 4, 5) or weight.layout != "torch":
            raise ShapeError(
                f"partial_hadamard needs a torch-order (out, in, *kernel) weight of 2 to 5 "
                f"dimensions, got shape {weight.shape} with layout {weight.layout!r}."
            )

    def _stats(self, weight: Weight) -> ValueStats:
        rows, cols = weight.shape[0], weight.shape[1]
        order = _order(rows)
        scale = 2.0 ** (-order / 2)
        numel = math.prod(weight.shape)
        mean = scale * hadamard_sum(rows, cols, 2**order) / numel
        second = scale * scale * rows * cols / numel
        return ValueStats(mean, math.sqrt(max(second - mean * mean, 0.0)), scale)

    def _fill(
        self, tensor: torch.Tensor, generator: torch.Generator | None, weight: Weight
    ) -> torch.Tensor:
        import torch

        if tensor.is_meta:
            return tensor
        rows, cols = weight.shape[0], weight.shape[1]
        order = _order(rows)
        i = torch.arange(rows, device=tensor.device).reshape(-1, 1)
        j = torch.arange(cols, device=tensor.device).reshape(1, -1)
        both = i & j
        parity = torch.zeros_like(both)
        for bit in range(order):  # parity of popcount(i & j): H[i, j] = (-1)^parity
            parity ^= (both >> bit) & 1
        matrix = (1 - 2 * parity).to(tensor.dtype) * 2.0 ** (-order / 2)
        tensor.zero_()
        tensor[_centre_tap(weight.shape)] = matrix
        return tensor

    def _array(self, weight: Weight, rng: np.random.Generator, dtype: Any) -> np.ndarray[Any, Any]:
        import numpy as np

        rows, cols = weight.shape[0], weight.shape[1]
        order = _order(rows)
        both = np.bitwise_and.outer(np.arange(rows), np.arange(cols))
        parity = np.zeros_like(both)
        for bit in range(order):
            parity ^= (both >> bit) & 1
        out = np.zeros(weight.shape, dtype=dtype)
        out[_centre_tap(weight.shape)] = (1 - 2 * parity) * 2.0 ** (-order / 2)
        return out
