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
  from the words by inverse-CDF transforms, one draw per element (:func:`counter_fill_`), on
  every CPU core.
* ``"generator"``: a ``torch.Generator`` seeded with :func:`parameter_seed`; what whole-matrix
  schemes (orthogonal, sparse, ...) use, and what ``stream="generator"`` asks for everywhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from initlab.errors import InitlabError, ShapeError
from initlab.fans import Layout
from initlab.schemes import Constant, Normal, Scheme, TruncatedNormal, Uniform
from initlab.schemes.variance import _ScaledByFans

__all__ = [
    "GOLDEN_GAMMA",
    "STREAMS",
    "CounterStream",
    "Law",
    "Region",
    "Stream",
    "counter_fill_",
    "counter_stream",
    "elementwise_law",
    "mix64",
    "parameter_generator",
    "parameter_seed",
]

Stream = Literal["counter", "generator"]
STREAMS: tuple[str, ...] = ("counter", "generator")

GOLDEN_GAMMA = 0x9E3779B97F4A7C15
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_MASK64 = (1 << 64) - 1


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
        >>> [hex(w) for w in CounterStream(1234567).words(0, 2).tolist()]  # doctest: +SKIP
    """

    key: int

    def word(self, index: int) -> int:
        """Word ``index`` as an unsigned 64-bit Python integer (the scalar reference)."""
        return mix64(self.key + (index + 1) * GOLDEN_GAMMA)

    def words(self, start: int, stop: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Words ``start..stop-1`` as an int64 tensor holding the unsigned bit patterns."""
        bases = torch.tensor([self.base(start)], dtype=torch.int64)
        return _words_torch(bases, stop - start, torch.device(device)).reshape(-1)

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
        split = dims  # first dim from which the region spans the full tensor to the end
        while split > 0 and self.shape[split - 1] == self.global_shape[split - 1]:
            split -= 1
        strides = [1] * dims
        for d in range(dims - 2, -1, -1):
            strides[d] = strides[d + 1] * self.global_shape[d + 1]
        if split == 0:
            return np.zeros(1, dtype=np.int64), self.numel
        length = self.shape[split - 1] * (strides[split - 1] if dims else 1)
        starts = np.full((), self.offset[split - 1] * strides[split - 1], dtype=np.int64)
        for d in range(split - 2, -1, -1):
            axis = (np.arange(self.shape[d], dtype=np.int64) + self.offset[d]) * strides[d]
            starts = np.add.outer(axis, starts)
        return starts.reshape(-1), length


# --- words --------------------------------------------------------------------------------------
def _signed(value: int) -> int:
    return value - (1 << 64) if value >= (1 << 63) else value


def _words_torch(bases: torch.Tensor, count: int, device: torch.device) -> torch.Tensor:
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


_UInt64Array = np.ndarray[tuple[int, ...], np.dtype[np.uint64]]
_STEPS: _UInt64Array = np.zeros(0, dtype=np.uint64)


def _words_numpy(bases: _UInt64Array, out: _UInt64Array, scratch: _UInt64Array) -> None:
    """The same words as :func:`_words_torch` into ``out`` (rows: bases) with NumPy's unsigned
    ufuncs: logical shifts save torch's three masking passes, and each ufunc drops the GIL."""
    global _STEPS
    count = out.shape[1]
    if _STEPS.size < count:
        _STEPS = np.arange(max(count, 1 << 15), dtype=np.uint64) * np.uint64(GOLDEN_GAMMA)
    np.add(bases[:, None], _STEPS[None, :count], out=out)
    for shift, multiplier in ((30, _MIX1), (27, _MIX2), (31, 0)):
        np.right_shift(out, np.uint64(shift), out=scratch)
        np.bitwise_xor(out, scratch, out=out)
        if multiplier:
            np.multiply(out, np.uint64(multiplier), out=out)


# --- laws ---------------------------------------------------------------------------------------
Law = Constant | Uniform | Normal | TruncatedNormal


def elementwise_law(
    scheme: Scheme, fan_shape: Sequence[int], *, layout: Layout = "torch", groups: int = 1
) -> Law | None:
    """The i.i.d. law ``scheme`` draws from for a weight of ``fan_shape``; ``None`` when the
    scheme builds a whole matrix (orthogonal, identity, dirac, sparse, ...)."""
    if isinstance(scheme, Constant | Uniform | Normal | TruncatedNormal):
        return scheme
    if isinstance(scheme, _ScaledByFans):
        return scheme.resolve(fan_shape, layout=layout, groups=groups)
    return None


@dataclass(frozen=True)
class _Affine:
    """``x = scale * w + shift`` on the signed word ``w``, then torch steps on ``x``."""

    scale: float
    shift: float
    clip: tuple[float, float] | None
    erfinv: bool
    post_scale: float = 1.0
    post_shift: float = 0.0
    bounds: tuple[float, float] | None = None


def _inward(value: float, dtype: torch.dtype, direction: float) -> float:
    """``value`` rounded to ``dtype``, stepped one ulp toward ``direction`` if it fell outside."""
    rounded = torch.tensor(value, dtype=torch.float64).to(dtype)
    if (float(rounded) - value) * direction < 0:
        rounded = torch.nextafter(rounded, torch.tensor(direction, dtype=dtype))
    return float(rounded)


def _affine(law: Law, wide: bool, dtype: torch.dtype) -> _Affine:
    word_unit = 2.0**-63 if wide else 2.0**-31  # the signed word times this lies in [-1, 1]
    if isinstance(law, Uniform):
        half, mid = (law.b - law.a) / 2.0, (law.a + law.b) / 2.0
        clip = (law.a, law.b) if mid != 0.0 else None
        return _Affine(half * word_unit, mid, clip, erfinv=False)
    if isinstance(law, Normal):
        inside = 1.0 - (2.0**-53 if wide else 2.0**-24)  # keeps erfinv's argument off +-1
        return _Affine(word_unit * inside, 0.0, None, True, law.std * math.sqrt(2.0), law.mean)
    assert isinstance(law, TruncatedNormal)
    low, high = law.interval
    ends = [math.erf((bound - law.mean) / (law.std * math.sqrt(2.0))) for bound in (low, high)]
    centre, spread = (ends[0] + ends[1]) / 2.0, (ends[1] - ends[0]) / 2.0
    bounds = (_inward(low, dtype, high), _inward(high, dtype, low))
    return _Affine(
        spread * word_unit, centre, (-1.0, 1.0), True, law.std * math.sqrt(2.0), law.mean, bounds
    )


def _needs_float64(law: Law) -> bool:
    """A truncated normal far in a tail: float32 cannot resolve erf near +-1 finely enough."""
    if not isinstance(law, TruncatedNormal):
        return False
    low, high = law.interval
    ends = [math.erf((b - law.mean) / (law.std * math.sqrt(2.0))) for b in (low, high)]
    return ends[1] - ends[0] < 2.0**-6 or 1.0 - max(abs(e) for e in ends) < 2.0**-20


def _finish(values: torch.Tensor, step: _Affine) -> None:
    if step.clip is not None:
        values.clamp_(*step.clip)
    if step.erfinv:
        values.erfinv_().mul_(step.post_scale)
        if step.post_shift != 0.0:
            values.add_(step.post_shift)
    if step.bounds is not None:
        values.clamp_(*step.bounds)


# --- filling ------------------------------------------------------------------------------------
_CHUNK = 1 << 15  # elements per work item: torch runs ops this small on one thread, in L2
_DEVICE_CHUNK = 1 << 24
_local = threading.local()
_pool_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None


@dataclass(frozen=True)
class _Job:
    """One fill: ``rows`` (runs x length view of the tensor) gets the law's values."""

    rows: torch.Tensor
    starts: np.ndarray[tuple[int], np.dtype[np.int64]]
    key: int
    wide: bool  # one 64-bit word per element (float64) instead of one 32-bit half
    compute: torch.dtype
    step: _Affine


def counter_fill_(
    tensor: torch.Tensor, law: Law, stream: CounterStream, region: Region | None = None
) -> torch.Tensor:
    r"""Fill ``tensor`` in place with ``law`` from the counter ``stream``; returns it.

    Element ``g`` (flat index in the full tensor) takes the 32-bit half ``g mod 2`` (low half
    first) of word ``g // 2``, read as a signed integer :math:`w \in [-2^{31}, 2^{31})`, for
    float32, bfloat16 and float16 tensors (computed in float32, then rounded), or the whole word
    :math:`w \in [-2^{63}, 2^{63})` of word ``g`` for float64 tensors. With
    :math:`v = \mathrm{fl}(w) / 2^{31}` (or :math:`/2^{63}`):

    .. math::

        U(a, b):\ \tfrac{a+b}{2} + \tfrac{b-a}{2} v, \qquad
        \mathcal N(\mu, \sigma^2):\ \mu + \sigma\sqrt2\,\operatorname{erfinv}((1-2^{-24}) v),

        \mathcal N(\mu, \sigma^2)\big|_{[a, b]}:\ \operatorname{clip}_{[a,b]}\Big(\mu + \sigma
        \sqrt2\,\operatorname{erfinv}\big(\tfrac{e_a+e_b}{2} + \tfrac{e_b-e_a}{2} v\big)\Big),
        \quad e_x = \operatorname{erf}\tfrac{x-\mu}{\sigma\sqrt2},

    inverse-CDF sampling with one draw per element. The largest normal value is
    :math:`\sqrt2\,\operatorname{erfinv}(1-2^{-24})\,\sigma = 5.42\sigma` in float32 (a mass of
    6e-8 lies beyond). A truncated normal far in a tail is computed in float64.

    On the CPU the words come from NumPy and the chunks (32768 elements) are filled on
    ``torch.get_num_threads()`` threads; on other devices torch ops run there. CPU and CUDA
    give the same words; their ``erfinv`` may differ in the last bit.

    Args:
        tensor: a contiguous floating tensor holding ``region`` of the parameter.
        law: the elementwise law (see :func:`elementwise_law`).
        stream: the parameter's :class:`CounterStream`.
        region: which elements of the full parameter ``tensor`` holds; the whole of it when
            ``None``.

    Raises:
        ShapeError: ``region`` does not match the tensor, or the tensor is not floating.
    """
    if hasattr(tensor, "placements"):
        raise InitlabError(
            "counter_fill_ got a DTensor; fill its local shard with "
            "initlab.scale.initialize(model, plan) (or counter_fill_(dtensor.to_local(), ..., "
            "region=initlab.scale.local_region(dtensor)))."
        )
    region = region if region is not None else Region.full(tensor.shape)
    if tuple(tensor.shape) != region.shape or not tensor.is_floating_point():
        raise ShapeError(
            f"counter_fill_: a {tensor.dtype} tensor of shape {tuple(tensor.shape)} cannot hold "
            f"region {region.shape}; pass a floating tensor of the region's shape."
        )
    if tensor.is_meta or tensor.numel() == 0:
        return tensor
    with torch.no_grad():
        if isinstance(law, Constant):
            return tensor.fill_(law.value)
        target = tensor if tensor.is_contiguous() else torch.empty_like(tensor).contiguous()
        _run(_job(target.detach(), law, stream.key, region))
        if target is not tensor:
            tensor.copy_(target)
    return tensor


def _job(tensor: torch.Tensor, law: Law, key: int, region: Region) -> _Job:
    starts, length = region.runs()
    wide = tensor.dtype == torch.float64
    compute = torch.float64 if wide or _needs_float64(law) else torch.float32
    step = _affine(law, wide, tensor.dtype)
    if compute == torch.float32:
        step = dataclasses.replace(
            step, scale=float(np.float32(step.scale)), shift=float(np.float32(step.shift))
        )
    return _Job(tensor.view(len(starts), length), starts, key, wide, compute, step)


def _items(job: _Job, chunk: int) -> list[tuple[int, int, int, int]]:
    """``(first run, last run + 1, first column, last column + 1)`` blocks of ~``chunk``."""
    runs, length = job.rows.shape
    if length >= chunk:
        return [(r, r + 1, c, min(c + chunk, length)) for r in range(runs)
                for c in range(0, length, chunk)]  # fmt: skip
    per = max(1, chunk // max(length, 1))
    return [(r, min(r + per, runs), 0, length) for r in range(0, runs, per)]


def _run(job: _Job) -> None:
    if job.rows.device.type != "cpu":
        for item in _items(job, _DEVICE_CHUNK):
            _fill_block_torch(job, item)
        return
    items = _items(job, _CHUNK)
    workers = min(torch.get_num_threads(), len(items))
    if workers <= 1:
        for item in items:
            _fill_block_numpy(job, item)
        return
    queue = iter(items)
    lock = threading.Lock()

    def drain() -> None:
        while True:
            with lock:
                item = next(queue, None)
            if item is None:
                return
            _fill_block_numpy(job, item)

    for future in [_executor(workers).submit(drain) for _ in range(workers)]:
        future.result()


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] < workers:
            if _pool is not None:
                _pool[1].shutdown(wait=False)
            _pool = (workers, ThreadPoolExecutor(workers, thread_name_prefix="initlab-fill"))
        return _pool[1]


def _block_words(job: _Job, item: tuple[int, int, int, int]) -> tuple[np.ndarray, int, np.ndarray]:
    """``(first word index per run, words per run, parity per run)`` of a block."""
    r0, r1, c0, c1 = item
    firsts = job.starts[r0:r1] + c0
    if job.wide:
        return firsts, c1 - c0, np.zeros_like(firsts)
    parity = firsts & 1
    return firsts >> 1, (int(parity.max()) + c1 - c0 + 1) >> 1, parity


def _bases(job: _Job, indices: np.ndarray) -> _UInt64Array:
    weyl = (indices.astype(np.uint64) + np.uint64(1)) * np.uint64(GOLDEN_GAMMA)
    return weyl + np.uint64(job.key)


def _buffer(name: str, size: int, dtype: type[np.generic]) -> np.ndarray:
    """A per-thread scratch array reused across blocks (fresh pages are slow to fault in)."""
    cached = getattr(_local, name, None)
    if cached is None or cached.size < size:
        cached = np.empty(max(size, _CHUNK + 64), dtype=dtype)
        setattr(_local, name, cached)
    return cached[:size]


def _fill_block_numpy(job: _Job, item: tuple[int, int, int, int]) -> None:
    r0, r1, c0, c1 = item
    runs, width = r1 - r0, c1 - c0
    indices, count, parity = _block_words(job, item)
    words = _buffer("words", runs * count, np.uint64).reshape(runs, count)
    _words_numpy(
        _bases(job, indices),
        words,
        _buffer("shifted", runs * count, np.uint64).reshape(runs, count),
    )
    signed = words.view(np.int64) if job.wide else _halves(words.view(np.int32), parity, width)
    target = job.rows[r0:r1, c0:c1]
    direct = target.dtype == job.compute
    out = (
        target
        if direct
        else torch.from_numpy(
            _buffer(
                f"values{job.compute}",
                runs * width,
                np.float64 if job.compute == torch.float64 else np.float32,
            ).reshape(runs, width)
        )
    )
    kind = np.float64 if job.compute == torch.float64 else np.float32
    values = out.numpy()
    np.multiply(signed, kind(job.step.scale), out=values, dtype=kind)
    if job.step.shift != 0.0:
        np.add(values, kind(job.step.shift), out=values)
    _finish(out, job.step)
    if not direct:
        target.copy_(out)


def _halves(halves: np.ndarray, parity: np.ndarray, width: int) -> np.ndarray:
    """Each run's ``width`` 32-bit halves, starting at its parity (low half = even index)."""
    first = int(parity[0])
    if (parity == first).all():
        return halves[:, first : first + width]
    picked = np.empty((halves.shape[0], width), dtype=np.int32)
    odd = parity.astype(bool)
    picked[~odd] = halves[~odd, :width]
    picked[odd] = halves[odd, 1 : width + 1]
    return picked


def _fill_block_torch(job: _Job, item: tuple[int, int, int, int]) -> None:
    r0, r1, c0, c1 = item
    width = c1 - c0
    indices, count, parity = _block_words(job, item)
    device = job.rows.device
    bases = torch.from_numpy(_bases(job, indices).view(np.int64))
    words = _words_torch(bases, count, device)
    if job.wide:
        signed = words
    else:
        halves = words.view(torch.int32)
        lift = torch.from_numpy(parity).to(device).reshape(-1, 1)
        columns = torch.arange(width, device=device).reshape(1, -1) + lift
        signed = halves.gather(1, columns)
    values = signed.to(job.compute).mul_(job.step.scale)
    if job.step.shift != 0.0:
        values.add_(job.step.shift)
    _finish(values, job.step)
    job.rows[r0:r1, c0:c1].copy_(values)
