r"""Elementwise laws drawn from the counter stream: any slice of a tensor filled on its own.

:func:`counter_fill_` fills a tensor, or one box of it (a shard: :class:`initlab.rng.Region`),
from a parameter's :class:`initlab.rng.CounterStream`. Element ``g`` (its flat index in the full
tensor) consumes a fixed part of the stream, so its value depends only on (seed, name, scheme,
shape, ``g``) and the shards of a tensor concatenate to the full tensor bit for bit:

* float32, bfloat16, float16 tensors: the 32-bit half ``g mod 2`` (low half first) of word
  ``g // 2``, a signed integer :math:`w \in [-2^{31}, 2^{31})`, with :math:`v = \mathrm{fl}(w)
  / 2^{31} \in [-1, 1]`; values are computed in float32 and rounded to the tensor's dtype;
* float64 tensors: the whole word ``g``, :math:`v = \mathrm{fl}(w) / 2^{63}`.

Then, by inverse-CDF sampling (one draw per element):

.. math::

    U(a, b):\ \tfrac{a+b}{2} + \tfrac{b-a}{2} v, \qquad
    \mathcal N(\mu, \sigma^2):\ \mu + \sigma\sqrt2\,\operatorname{erfinv}((1-2^{-24}) v),

    \mathcal N(\mu, \sigma^2)\big|_{[a, b]}:\ \operatorname{clip}_{[a,b]}\Big(\mu +
    \sigma\sqrt2\,\operatorname{erfinv}\big(\tfrac{e_a+e_b}{2} + \tfrac{e_b-e_a}{2} v\big)
    \Big), \quad e_x = \operatorname{erf}\tfrac{x-\mu}{\sigma\sqrt2}.

In float32 the largest normal value is :math:`\sqrt2\,\operatorname{erfinv}(1-2^{-24})\,\sigma
= 5.42\sigma` (a mass of 6e-8 lies beyond); a truncated normal far in a tail (where float32
cannot resolve :math:`e_x` near 1) is computed in float64.

The float32 ``erfinv`` is Giles' single-precision approximation written out in IEEE float32
operations (:mod:`initlab.erfinv`, within 4 ulp of the exact function); float64 draws use
``torch.erfinv`` in float64.

Two backends compute the same steps, bit for bit (see :func:`fill_backend`):

* ``"numba"``, CPU tensors: :mod:`initlab.counter_kernels`, one compiled pass per block that
  hashes each element's word and transforms it in registers; blocks of 2^19 elements run on
  ``torch.get_num_threads()`` threads (the kernels drop the GIL).
* ``"torch"``, the reference: the same words and steps as torch ops, block by block. Other
  devices (CUDA) always use it; on the CPU it runs when numba cannot be imported or
  ``INITLAB_FILL_BACKEND=torch``.

Values are therefore identical for any backend, thread count, shard and world size, and in
float32 on any device; float64 normals follow the platform's ``torch.erfinv`` (MKL on x86).
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

import numpy as np
import torch

from initlab.erfinv import erfinv_float32_
from initlab.errors import ConfigError, InitlabError, ShapeError
from initlab.optional import compiled_kernels
from initlab.rng import GOLDEN_GAMMA, CounterStream, Region, words_torch
from initlab.schemes import Constant, Normal, TruncatedNormal, Uniform
from initlab.schemes.elementwise import ElementwiseLaw

__all__ = ["FillBackend", "Law", "counter_fill_", "fill_backend"]

Law = ElementwiseLaw
Block = tuple[int, int, int, int]  # first run, last run + 1, first column, last column + 1
FillBackend = Literal["numba", "torch"]
_UInt64Array = np.ndarray[tuple[int, ...], np.dtype[np.uint64]]
_Int64Array = np.ndarray[tuple[int, ...], np.dtype[np.int64]]


# --- the steps from a signed word to a value ----------------------------------------------------
@dataclass(frozen=True)
class _Steps:
    """``x = scale * w + shift``, clip, then ``erfinv``, ``* post_scale + post_shift``, bounds."""

    scale: float
    shift: float
    clip: tuple[float, float] | None
    erfinv: bool
    post_scale: float = 1.0
    post_shift: float = 0.0
    bounds: tuple[float, float] | None = None


def _inward(value: float, dtype: torch.dtype, toward: float) -> float:
    """``value`` rounded to ``dtype``, moved one ulp toward ``toward`` if rounding left it out."""
    rounded = torch.tensor(value, dtype=torch.float64).to(dtype)
    if (float(rounded) - value) * (toward - value) < 0:
        rounded = torch.nextafter(rounded, torch.tensor(toward, dtype=dtype))
    return float(rounded)


def _erf_ends(law: TruncatedNormal) -> tuple[float, float]:
    low, high = law.interval
    root = law.std * math.sqrt(2.0)
    return math.erf((low - law.mean) / root), math.erf((high - law.mean) / root)


def _steps(law: Law, wide: bool, dtype: torch.dtype) -> _Steps:
    unit = 2.0**-63 if wide else 2.0**-31  # the signed word times this lies in [-1, 1]
    if isinstance(law, Uniform):
        half, mid = (law.b - law.a) / 2.0, (law.a + law.b) / 2.0
        return _Steps(half * unit, mid, (law.a, law.b) if mid != 0.0 else None, erfinv=False)
    root2 = math.sqrt(2.0)
    if isinstance(law, Normal):
        inside = 1.0 - (2.0**-53 if wide else 2.0**-24)  # keeps erfinv's argument off +-1
        return _Steps(unit * inside, 0.0, None, True, law.std * root2, law.mean)
    assert isinstance(law, TruncatedNormal)
    low, high = law.interval
    e_low, e_high = _erf_ends(law)
    bounds = (_inward(low, dtype, high), _inward(high, dtype, low))
    centre, spread = (e_low + e_high) / 2.0, (e_high - e_low) / 2.0
    return _Steps(spread * unit, centre, (-1.0, 1.0), True, law.std * root2, law.mean, bounds)


def _needs_float64(law: Law) -> bool:
    """A truncated normal far in a tail: float32 cannot resolve erf near +-1 finely enough."""
    if not isinstance(law, TruncatedNormal):
        return False
    e_low, e_high = _erf_ends(law)
    return e_high - e_low < 2.0**-6 or 1.0 - max(abs(e_low), abs(e_high)) < 2.0**-20


# --- the backends ------------------------------------------------------------------------------
_BACKEND_VARIABLE = "INITLAB_FILL_BACKEND"
_kernels_lock = threading.Lock()
_kernels: ModuleType | Literal[False] | None = False  # False: not looked up yet


def fill_backend() -> FillBackend:
    """Which backend fills CPU tensors: ``"numba"`` (compiled) or ``"torch"`` (the reference).

    Both give the same bits; other devices always use ``"torch"``. The first call imports
    numba (and compiles the kernels, or loads them from numba's cache).

    Raises:
        ConfigError: ``INITLAB_FILL_BACKEND`` is set to something other than ``numba`` or
            ``torch``.
    """
    return "numba" if _compiled_kernels() is not None else "torch"


def _compiled_kernels() -> ModuleType | None:
    """:mod:`initlab.counter_kernels`, or None without numba or under the variable."""
    global _kernels
    with _kernels_lock:
        if _kernels is False:
            chosen = os.environ.get(_BACKEND_VARIABLE, "numba") or "numba"
            if chosen not in ("numba", "torch"):
                raise ConfigError(
                    f"{_BACKEND_VARIABLE}={chosen!r} is not a fill backend. Known: numba (the "
                    "compiled CPU fill), torch (the reference torch ops); both give the same "
                    "values. Unset it for the default."
                )
            _kernels = compiled_kernels("initlab.counter_kernels") if chosen == "numba" else None
        return _kernels


def _finish_torch(values: torch.Tensor, steps: _Steps) -> None:
    """The steps after the affine map, as torch ops on any device."""
    if steps.clip is not None:
        values.clamp_(*steps.clip)
    if steps.erfinv:
        if values.dtype == torch.float32:
            erfinv_float32_(values)
        else:
            values.erfinv_()
        values.mul_(steps.post_scale)
        if steps.post_shift != 0.0:
            values.add_(steps.post_shift)
    if steps.bounds is not None:
        values.clamp_(*steps.bounds)


# --- filling ------------------------------------------------------------------------------------
_CHUNK = 1 << 19  # elements per CPU block: long GIL-free stretches, scratch that stays in cache
_SHORT_RUN = 1 << 15  # runs shorter than this are grouped into blocks, longer ones cut
_DEVICE_CHUNK = 1 << 24
_local = threading.local()
_pool_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None


@dataclass(frozen=True, eq=False)
class _Job:
    """One fill: ``rows`` (a runs x length view of the tensor) receives the law's values."""

    rows: torch.Tensor
    starts: _Int64Array
    key: int
    wide: bool  # one 64-bit word per element (float64) instead of one 32-bit half
    compute: torch.dtype
    steps: _Steps
    rows_numpy: np.ndarray | None  # the rows as NumPy when values are computed in place


def counter_fill_(
    tensor: torch.Tensor, law: Law, stream: CounterStream, region: Region | None = None
) -> torch.Tensor:
    """Fill ``tensor`` in place with ``law`` from the counter ``stream``; returns it.

    See the module docstring for the map from words to values.

    Args:
        tensor: a floating tensor holding ``region`` of the parameter.
        law: the elementwise law (see :meth:`initlab.schemes.Scheme.law`).
        stream: the parameter's :class:`~initlab.rng.CounterStream`
            (:func:`~initlab.rng.counter_stream`).
        region: which elements of the full parameter ``tensor`` holds; all when ``None``.

    Raises:
        ShapeError: ``region`` does not match the tensor, or the tensor is not floating.
        InitlabError: ``tensor`` is a DTensor (fill its local shard).

    Example:
        >>> shard = torch.empty(2, 8)  # rows 2..3 of an (8, 8) weight
        >>> counter_fill_(shard, Normal(0.0, 0.02), counter_stream(0, "w"),
        ...               Region((8, 8), (2, 0), (2, 8)))  # doctest: +SKIP
    """
    if hasattr(tensor, "placements"):
        raise InitlabError(
            "counter_fill_ got a DTensor; fill its local shard with "
            "initlab.scale.initialize(model, plan), or counter_fill_(dtensor.to_local(), ..., "
            "region=initlab.scale.local_region(dtensor))."
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
        target = tensor.detach() if tensor.is_contiguous() else torch.empty_like(tensor)
        _run(_job(target.contiguous(), law, stream.key, region))
        if target.data_ptr() != tensor.data_ptr():
            tensor.copy_(target)
    return tensor


def _job(tensor: torch.Tensor, law: Law, key: int, region: Region) -> _Job:
    starts, length = region.runs()
    wide = tensor.dtype == torch.float64
    compute = torch.float64 if wide or _needs_float64(law) else torch.float32
    steps = _steps(law, wide, tensor.dtype)
    if compute == torch.float32:  # the constants both backends use, exactly
        single = [float(np.float32(v)) for v in (steps.scale, steps.shift, steps.post_scale)]
        steps = dataclasses.replace(steps, scale=single[0], shift=single[1], post_scale=single[2])
    rows = tensor.view(len(starts), length)
    direct = rows.device.type == "cpu" and rows.dtype == compute
    return _Job(rows, starts, key, wide, compute, steps, rows.numpy() if direct else None)


def _blocks(job: _Job, chunk: int) -> list[Block]:
    """Blocks of about ``chunk`` elements: pieces of one long run, or several short runs."""
    runs, length = job.rows.shape
    if length >= min(chunk, _SHORT_RUN):
        return [(r, r + 1, c, min(c + chunk, length)) for r in range(runs)
                for c in range(0, length, chunk)]  # fmt: skip
    per = max(1, chunk // max(length, 1))
    return [(r, min(r + per, runs), 0, length) for r in range(0, runs, per)]


def _run(job: _Job) -> None:
    kernels = _compiled_kernels() if job.rows.device.type == "cpu" else None
    if kernels is None:
        for block in _blocks(job, _DEVICE_CHUNK if job.rows.device.type != "cpu" else _CHUNK):
            _fill_block_torch(job, block)
        return
    blocks = _blocks(job, _CHUNK)
    # torch.erfinv (float64) runs on torch's own threads: one block at a time from this thread.
    threads = 1 if job.steps.erfinv and job.compute == torch.float64 else torch.get_num_threads()
    workers = min(threads, len(blocks))
    if workers <= 1:
        for block in blocks:
            _fill_block_compiled(job, block, kernels)
        return
    queue = iter(blocks)
    lock = threading.Lock()

    def drain() -> None:
        while True:
            with lock:
                block = next(queue, None)
            if block is None:
                return
            _fill_block_compiled(job, block, kernels)

    for future in [_executor(workers).submit(drain) for _ in range(workers)]:
        future.result()


def _executor(workers: int) -> ThreadPoolExecutor:
    """One pool for the process, grown on demand (its threads idle between fills)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] < workers:
            if _pool is not None:
                _pool[1].shutdown(wait=False)
            _pool = (workers, ThreadPoolExecutor(workers, thread_name_prefix="initlab-fill"))
        return _pool[1]


def _buffer(shape: tuple[int, int], kind: type[np.floating]) -> np.ndarray:
    """A per-thread scratch array reused across blocks (fresh pages are slow to fault in)."""
    name = f"values_{kind.__name__}"
    size = shape[0] * shape[1]
    cached = getattr(_local, name, None)
    if cached is None or cached.size < size:
        cached = np.empty(max(size, _CHUNK), dtype=kind)
        setattr(_local, name, cached)
    return cached[:size].reshape(shape)


def _fill_block_compiled(job: _Job, block: Block, kernels: ModuleType) -> None:
    """One block with the compiled kernels (:mod:`initlab.counter_kernels`)."""
    r0, r1, c0, c1 = block
    kind = np.float64 if job.compute == torch.float64 else np.float32
    if job.rows_numpy is not None:
        values = job.rows_numpy[r0:r1, c0:c1]  # one piece of a run, or whole runs: contiguous
    else:
        values = _buffer((r1 - r0, c1 - c0), kind)
    firsts = job.starts[r0:r1] + c0
    key, steps = np.uint64(job.key), job.steps
    low, high = steps.clip if steps.clip is not None else (-math.inf, math.inf)
    if kind is np.float64:
        kernels.affine_float64(values, firsts, key, job.wide, steps.scale, steps.shift, low, high)
        if steps.erfinv:
            _finish_torch(torch.from_numpy(values), dataclasses.replace(steps, clip=None))
    elif steps.erfinv:
        affine = np.array([steps.scale, steps.shift, low, high], dtype=np.float32)
        post = np.array([steps.post_scale, steps.post_shift], dtype=np.float32)
        truncated = steps.clip is not None or steps.bounds is not None
        bounds = np.array(steps.bounds or (-math.inf, math.inf), dtype=np.float32)
        kernels.normal_float32(values, firsts, key, affine, post, bounds if truncated else None)
    else:
        single = [np.float32(v) for v in (steps.scale, steps.shift, low, high)]
        kernels.uniform_float32(values, firsts, key, *single)
    if job.rows_numpy is None:
        job.rows[r0:r1, c0:c1].copy_(torch.from_numpy(values))


def _block_bases(job: _Job, block: Block) -> tuple[torch.Tensor, int, _Int64Array]:
    """``(Weyl state of each run's first word, words per run, parity of each run)``."""
    r0, r1, c0, c1 = block
    firsts: _Int64Array = job.starts[r0:r1] + c0
    parities: _Int64Array = np.zeros_like(firsts) if job.wide else firsts & 1
    indices = firsts if job.wide else firsts >> 1
    width = c1 - c0 if job.wide else (int(parities.max()) + c1 - c0 + 1) >> 1
    weyl = (indices.astype(np.uint64) + np.uint64(1)) * np.uint64(GOLDEN_GAMMA)
    bases: _UInt64Array = weyl + np.uint64(job.key)
    return torch.from_numpy(bases.view(np.int64)), width, parities


def _fill_block_torch(job: _Job, block: Block) -> None:
    """One block with torch ops (the reference backend; any device)."""
    r0, r1, c0, c1 = block
    bases, count, parity = _block_bases(job, block)
    device = job.rows.device
    words = words_torch(bases, count, device)
    if job.wide:
        signed = words
    else:
        lift = torch.from_numpy(parity).to(device).reshape(-1, 1)
        columns = torch.arange(c1 - c0, device=device).reshape(1, -1) + lift
        signed = words.view(torch.int32).gather(1, columns)
    values = signed.to(job.compute).mul_(job.steps.scale)
    if job.steps.shift != 0.0:
        values.add_(job.steps.shift)
    _finish_torch(values, job.steps)
    job.rows[r0:r1, c0:c1].copy_(values)
