r"""Reproducible random streams: one per (seed, parameter name).

A parameter's values depend only on the run's seed, its qualified name, its scheme and its
shape, never on module order or on which other parameters exist: inserting a layer leaves every
other layer's initial weights bit for bit the same. The stream's seed is a keyed hash
(BLAKE2b, 63 bits) of the seed and the name, so nearby seeds or names give unrelated streams.

Two kinds of stream (:data:`Stream`):

* ``"counter"`` (the default of :meth:`initlab.Plan.apply`): element ``i`` of a parameter is a
  pure function of (seed, name, scheme, shape, ``i``), so any slice of a tensor (a shard) is
  generated on its own and the shards of a tensor concatenate to the full tensor bit for bit.
  Its words are SplitMix64 (Steele, Lea & Flood, 2014; Vigna's ``splitmix64.c``), keyed by
  :math:`k` = :func:`parameter_seed`:

  .. math::

      w_j = \operatorname{mix64}\big(k + (j + 1)\,\gamma \bmod 2^{64}\big), \qquad
      \gamma = \texttt{0x9e3779b97f4a7c15},

  where ``mix64`` is Stafford's variant 13 (xor-shift 30, multiply, xor-shift 27, multiply,
  xor-shift 31). Word ``j`` is the ``j+1``-th output of ``splitmix64`` seeded with :math:`k`:
  a parameter's stream is a window of one well-tested sequence at a pseudo-random offset.
  Elementwise laws (uniform, normal, truncated normal, the variance-scaling family) are drawn
  from the words by inverse-CDF transforms, one draw per element, on every CPU core
  (:func:`initlab.counter.counter_fill_`).
* ``"generator"``: a ``torch.Generator`` seeded with :func:`parameter_seed`; what whole-matrix
  schemes (orthogonal, sparse, ...) use, and what ``stream="generator"`` asks for everywhere.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from initlab.errors import ShapeError, UnknownNameError, did_you_mean

__all__ = [
    "GOLDEN_GAMMA",
    "STREAMS",
    "CounterStream",
    "Region",
    "Stream",
    "check_stream",
    "counter_stream",
    "mix64",
    "parameter_generator",
    "parameter_seed",
    "words_torch",
]

Stream = Literal["counter", "generator"]
STREAMS: tuple[str, ...] = ("counter", "generator")

GOLDEN_GAMMA = 0x9E3779B97F4A7C15
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_MASK64 = (1 << 64) - 1


def check_stream(stream: str) -> None:
    """Raise :class:`UnknownNameError` unless ``stream`` is one of :data:`STREAMS`."""
    if stream not in STREAMS:
        raise UnknownNameError(
            did_you_mean("stream", str(stream), STREAMS)
            + " 'counter' fills any shard alone; 'generator' uses a torch.Generator."
        )


def parameter_seed(seed: int, name: str) -> int:
    """The 63-bit seed of parameter ``name``'s stream under run seed ``seed``."""
    digest = hashlib.blake2b(f"{int(seed)}\x00{name}".encode(), digest_size=8, person=b"initlab")
    return int.from_bytes(digest.digest(), "little") & ((1 << 63) - 1)


def parameter_generator(
    seed: int, name: str, device: torch.device | str | None = None
) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`parameter_seed`.

    CPU and CUDA generators are different algorithms: the same (seed, name) gives different
    values on the two device types (but the same on every CPU, and on every CUDA device).
    """
    target = torch.device(device) if device is not None else torch.device("cpu")
    return torch.Generator(device=target).manual_seed(parameter_seed(seed, name))


def mix64(z: int) -> int:
    """SplitMix64's output function (Stafford's mix 13) on one 64-bit integer: the reference."""
    z &= _MASK64
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
    return z ^ (z >> 31)


@dataclass(frozen=True)
class CounterStream:
    """The counter-based stream of one parameter: word ``j`` is ``mix64(key + (j+1) * gamma)``.

    Attributes:
        key: the 64-bit start of the Weyl sequence (:func:`parameter_seed` for parameters).

    Example:
        >>> hex(CounterStream(0).word(0))  # splitmix64 seeded with 0: its first output
        '0xe220a8397b1dcdaf'
    """

    key: int

    def word(self, index: int) -> int:
        """Word ``index`` as an unsigned 64-bit Python integer (the scalar reference)."""
        return mix64(self.key + (index + 1) * GOLDEN_GAMMA)

    def words(self, start: int, stop: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Words ``start..stop-1`` as an int64 tensor holding the unsigned bit patterns."""
        bases = torch.tensor([self.base(start)], dtype=torch.int64)
        return words_torch(bases, stop - start, torch.device(device)).reshape(-1)

    def base(self, index: int) -> int:
        """``key + (index + 1) * gamma`` as a signed 64-bit integer (the Weyl state of a word)."""
        return _signed((self.key + (index + 1) * GOLDEN_GAMMA) & _MASK64)


def counter_stream(seed: int, name: str) -> CounterStream:
    """The counter stream of parameter ``name`` under run seed ``seed``."""
    return CounterStream(parameter_seed(seed, name))


@dataclass(frozen=True)
class Region:
    """Which elements of a parameter a tensor holds: a box ``offset .. offset + shape``.

    A full tensor is ``Region.full(shape)``; the local shard of a DTensor sharded on dims
    ``Shard(d)`` is the box DTensor assigns to the rank. Elements are numbered by their flat
    (row-major) index in the full tensor of shape ``global_shape``.
    """

    global_shape: tuple[int, ...]
    offset: tuple[int, ...]
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        dims = (len(self.global_shape), len(self.offset), len(self.shape))
        inside = all(
            o >= 0 and o + s <= g
            for g, o, s in zip(self.global_shape, self.offset, self.shape, strict=False)
        )
        if len(set(dims)) != 1 or not inside:
            raise ShapeError(
                f"Region offset {self.offset} + shape {self.shape} does not lie inside a tensor "
                f"of shape {self.global_shape}. Pass the local shape and its global offset."
            )

    @classmethod
    def full(cls, shape: tuple[int, ...] | torch.Size) -> Region:
        """The whole tensor."""
        dims = tuple(int(s) for s in shape)
        return cls(dims, (0,) * len(dims), dims)

    @property
    def numel(self) -> int:
        """How many elements the region holds."""
        count = 1
        for size in self.shape:
            count *= size
        return count

    def runs(self) -> tuple[np.ndarray[tuple[int], np.dtype[np.int64]], int]:
        """``(starts, length)``: the region's elements are the runs ``[s, s + length)`` of flat
        indices, in row-major order of the region (``starts`` is an int64 array)."""
        dims = len(self.shape)
        split = dims  # the dims from `split` on span the full tensor: each run covers them
        while split > 0 and self.shape[split - 1] == self.global_shape[split - 1]:
            split -= 1
        strides = [1] * dims
        for d in range(dims - 2, -1, -1):
            strides[d] = strides[d + 1] * self.global_shape[d + 1]
        if split == 0:
            return np.zeros(1, dtype=np.int64), self.numel
        length = self.shape[split - 1] * strides[split - 1]
        starts = np.full((), self.offset[split - 1] * strides[split - 1], dtype=np.int64)
        for d in range(split - 2, -1, -1):
            axis = (np.arange(self.shape[d], dtype=np.int64) + self.offset[d]) * strides[d]
            starts = np.add.outer(axis, starts)
        return starts.reshape(-1), length


# --- words --------------------------------------------------------------------------------------
def _signed(value: int) -> int:
    return value - (1 << 64) if value >= (1 << 63) else value


def words_torch(bases: torch.Tensor, count: int, device: torch.device) -> torch.Tensor:
    """``(len(bases), count)`` words ``mix64(base + j * gamma)`` with int64 torch ops.

    torch has no unsigned shift, so each ``z >> s`` is an arithmetic shift masked back to
    ``64 - s`` bits; multiplications wrap modulo 2^64 as two's complement does.
    """
    steps = torch.arange(count, dtype=torch.int64, device=device).mul_(_signed(GOLDEN_GAMMA))
    z = bases.to(device).reshape(-1, 1) + steps
    shifted = torch.empty_like(z)
    for shift, multiplier in ((30, _MIX1), (27, _MIX2), (31, 0)):
        torch.bitwise_right_shift(z, shift, out=shifted)
        z.bitwise_xor_(shifted.bitwise_and_((1 << (64 - shift)) - 1))
        if multiplier:
            z.mul_(_signed(multiplier))
    return z
