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

On the CPU the words come from NumPy's unsigned ufuncs and blocks of 507904 elements are filled
on ``torch.get_num_threads()`` threads (the element streams are independent, and every ufunc
and kernel drops the GIL). ``erfinv`` in float32 is MKL's ``vmsErfInv`` in its low-accuracy mode
(at most 4 ulp; about twice as fast as ``torch.erfinv``, MKL's high-accuracy mode there) when the
torch build exports it (x86 wheels), else ``torch.erfinv``; see :func:`erfinv_implementation`
(``INITLAB_NO_MKL=1`` forces ``torch.erfinv``, to match a machine without MKL bit for bit).
On other devices (CUDA) the same words and steps run as torch ops there. Values are therefore
identical on every rank and world size of one platform; CPU and CUDA, or builds with and
without MKL, may differ in the last bits of ``erfinv``.
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from initlab.errors import InitlabError, ShapeError
from initlab.fans import Fans
from initlab.rng import GOLDEN_GAMMA, CounterStream, Region, words_numpy, words_torch
from initlab.schemes import Constant, Normal, Scheme, TruncatedNormal, Uniform
from initlab.schemes.elementwise import ElementwiseLaw

__all__ = ["Law", "counter_fill_", "elementwise_law", "erfinv_implementation"]

Law = ElementwiseLaw
Block = tuple[int, int, int, int]  # first run, last run + 1, first column, last column + 1
_UInt64Array = np.ndarray[tuple[int, ...], np.dtype[np.uint64]]
_Int64Array = np.ndarray[tuple[int, ...], np.dtype[np.int64]]
_MASK64 = (1 << 64) - 1


def elementwise_law(scheme: Scheme, fans: Fans | None) -> Law | None:
    """The i.i.d. law ``scheme`` draws from for a weight of ``fans`` (see
    :meth:`initlab.schemes.Scheme.law_for`); ``None`` when the scheme builds a whole matrix
    (orthogonal, identity, dirac, delta-orthogonal, sparse) or needs fans it was not given."""
    return scheme.law_for(fans)


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


# --- erfinv: MKL's low-accuracy mode when torch ships it ----------------------------------------
_VML_LA, _VML_FTZDAZ_OFF, _VML_ERRMODE_IGNORE = 0x1, 0x140000, 0x100  # mkl_vml_defines.h
_MODE = _VML_LA | _VML_FTZDAZ_OFF | _VML_ERRMODE_IGNORE
_TORCH_CPU = os.path.join("lib", "libtorch_cpu.so")  # other platforms: torch.erfinv
_mkl_lock = threading.Lock()
_mkl: tuple[Any, Any] | bool | None = False  # False: not looked up yet


def _load_mkl() -> tuple[Any, Any] | None:
    """``(vmsErfInv or None, MKL_Set_Num_Threads_Local)`` from torch's own library, or None.

    ``vmsErfInv`` is checked against ``torch.erfinv`` and left out under ``INITLAB_NO_MKL``; the
    thread setter is kept either way: torch's own erfinv calls MKL too, and MKL's threads inside
    our worker threads oversubscribe the cores (50x slower here).
    """
    try:
        library = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), _TORCH_CPU))
        erfinv = library.vmsErfInv
        threads = library.MKL_Set_Num_Threads_Local
    except (OSError, AttributeError):
        return None
    erfinv.restype, threads.restype = None, ctypes.c_int
    erfinv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_longlong]
    threads.argtypes = [ctypes.c_int]
    probe = np.linspace(-0.9999, 0.9999, 4099, dtype=np.float32)
    ours = np.empty_like(probe)
    erfinv(probe.size, probe.ctypes.data, ours.ctypes.data, _MODE)
    theirs = torch.erfinv(torch.from_numpy(probe)).numpy()
    usable = np.allclose(ours, theirs, rtol=1e-6, atol=0.0) and not os.environ.get(
        "INITLAB_NO_MKL"
    )
    return (erfinv if usable else None), threads


def erfinv_implementation() -> str:
    """Which float32 ``erfinv`` CPU fills use: ``"mkl-la"`` or ``"torch"``."""
    functions = _mkl_functions()
    return "mkl-la" if functions is not None and functions[0] is not None else "torch"


def _mkl_functions() -> tuple[Any, Any] | None:
    global _mkl
    with _mkl_lock:
        if _mkl is False:
            _mkl = _load_mkl()
        return _mkl if isinstance(_mkl, tuple) else None


def _erfinv_(values: np.ndarray, tensor: torch.Tensor) -> None:
    """``erfinv`` in place on a CPU block (``values`` and ``tensor`` share memory)."""
    functions = _mkl_functions()
    previous = functions[1](1) if functions is not None else None  # MKL: one thread here
    try:
        if functions is not None and functions[0] is not None and values.dtype == np.float32:
            for row in [values] if values.flags.c_contiguous else list(values):
                functions[0](row.size, row.ctypes.data, row.ctypes.data, _MODE)
        else:
            for piece in _torch_pieces(tensor):
                piece.erfinv_()
    finally:
        if functions is not None:
            functions[1](previous)


def _finish_numpy(values: np.ndarray, tensor: torch.Tensor, steps: _Steps) -> None:
    """The steps after the affine map on a CPU block: NumPy ufuncs, then erfinv."""
    kind = values.dtype.type
    if steps.clip is not None:
        np.clip(values, kind(steps.clip[0]), kind(steps.clip[1]), out=values)
    if steps.erfinv:
        _erfinv_(values, tensor)
        np.multiply(values, kind(steps.post_scale), out=values)
        if steps.post_shift != 0.0:
            np.add(values, kind(steps.post_shift), out=values)
    if steps.bounds is not None:
        np.clip(values, kind(steps.bounds[0]), kind(steps.bounds[1]), out=values)


def _finish_torch(values: torch.Tensor, steps: _Steps) -> None:
    """The same steps with torch ops, on any device (the CPU's erfinv is the same as above)."""
    if steps.clip is not None:
        values.clamp_(*steps.clip)
    if steps.erfinv:
        if values.device.type == "cpu":
            _erfinv_(values.numpy(), values)
        else:
            values.erfinv_()
        values.mul_(steps.post_scale)
        if steps.post_shift != 0.0:
            values.add_(steps.post_shift)
    if steps.bounds is not None:
        values.clamp_(*steps.bounds)


# --- filling ------------------------------------------------------------------------------------
_TORCH_CHUNK = 31 * 1024  # below torch's grain size (32768): its ops stay on the calling thread
_CHUNK = 16 * _TORCH_CHUNK  # elements per CPU block: fewer, longer GIL-free stretches
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
        law: the elementwise law (see :func:`elementwise_law`).
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
    if length >= min(chunk, _TORCH_CHUNK):
        return [(r, r + 1, c, min(c + chunk, length)) for r in range(runs)
                for c in range(0, length, chunk)]  # fmt: skip
    per = max(1, chunk // max(length, 1))
    return [(r, min(r + per, runs), 0, length) for r in range(0, runs, per)]


def _torch_pieces(values: torch.Tensor) -> list[torch.Tensor]:
    """``values`` (a block) in views of at most :data:`_TORCH_CHUNK` elements."""
    length = values.shape[1]
    if length >= _TORCH_CHUNK:
        return list(torch.split(values, _TORCH_CHUNK, dim=1))
    return list(torch.split(values, max(1, _TORCH_CHUNK // max(length, 1)), dim=0))


def _run(job: _Job) -> None:
    if job.rows.device.type != "cpu":
        for block in _blocks(job, _DEVICE_CHUNK):
            _fill_block_torch(job, block)
        return
    blocks = _blocks(job, _CHUNK)
    workers = min(torch.get_num_threads(), len(blocks))
    if workers <= 1:
        for block in blocks:
            _fill_block_numpy(job, block)
        return
    queue = iter(blocks)
    lock = threading.Lock()

    def drain() -> None:
        while True:
            with lock:
                block = next(queue, None)
            if block is None:
                return
            _fill_block_numpy(job, block)

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


def _block_words(job: _Job, block: Block) -> tuple[_UInt64Array, int, _Int64Array]:
    """``(Weyl state of each run's first word, words per run, parity of each run)``."""
    r0, r1, c0, c1 = block
    if r1 - r0 == 1:  # one run: Python integers cost less than small NumPy arrays
        first = int(job.starts[r0]) + c0
        word, parity = (first, 0) if job.wide else (first >> 1, first & 1)
        count = c1 - c0 if job.wide else (parity + c1 - c0 + 1) >> 1
        base = (job.key + (word + 1) * GOLDEN_GAMMA) & _MASK64
        return np.array([base], dtype=np.uint64), count, np.array([parity], dtype=np.int64)
    firsts: _Int64Array = job.starts[r0:r1] + c0
    parities: _Int64Array = np.zeros_like(firsts) if job.wide else firsts & 1
    indices = firsts if job.wide else firsts >> 1
    width = c1 - c0 if job.wide else (int(parities.max()) + c1 - c0 + 1) >> 1
    weyl = (indices.astype(np.uint64) + np.uint64(1)) * np.uint64(GOLDEN_GAMMA)
    bases: _UInt64Array = weyl + np.uint64(job.key)
    return bases, width, parities


def _buffer(name: str, shape: tuple[int, int], kind: type[np.generic]) -> np.ndarray:
    """A per-thread scratch array reused across blocks (fresh pages are slow to fault in)."""
    size = shape[0] * shape[1]
    cached = getattr(_local, name, None)
    if cached is None or cached.size < size:
        cached = np.empty(max(size, _CHUNK + 64), dtype=kind)
        setattr(_local, name, cached)
    return cached[:size].reshape(shape)


def _signed_words(job: _Job, block: Block, words: np.ndarray, parity: _Int64Array) -> np.ndarray:
    """Each element's signed word: a 32-bit half from its run's parity on, or a whole word."""
    width = block[3] - block[2]
    if job.wide:
        return words.view(np.int64)
    halves = words.view(np.int32)
    first = int(parity[0])
    if (parity == first).all():
        return halves[:, first : first + width]
    picked = np.empty((halves.shape[0], width), dtype=np.int32)
    odd = parity.astype(bool)
    picked[~odd] = halves[~odd, :width]
    picked[odd] = halves[odd, 1 : width + 1]
    return picked


def _fill_block_numpy(job: _Job, block: Block) -> None:
    r0, r1, c0, c1 = block
    bases, count, parity = _block_words(job, block)
    words = _buffer("words", (r1 - r0, count), np.uint64)
    words_numpy(bases, words, _buffer("shifted", (r1 - r0, count), np.uint64))
    kind = np.float64 if job.compute == torch.float64 else np.float32
    if job.rows_numpy is not None:
        values = job.rows_numpy[r0:r1, c0:c1]
    else:
        values = _buffer(f"values_{kind.__name__}", (r1 - r0, c1 - c0), kind)
    signed = _signed_words(job, block, words, parity)
    np.multiply(signed, kind(job.steps.scale), out=values, dtype=kind)
    if job.steps.shift != 0.0:
        np.add(values, kind(job.steps.shift), out=values)
    tensor = torch.from_numpy(values)
    _finish_numpy(values, tensor, job.steps)
    if job.rows_numpy is None:
        job.rows[r0:r1, c0:c1].copy_(tensor)


def _fill_block_torch(job: _Job, block: Block) -> None:
    r0, r1, c0, c1 = block
    bases, count, parity = _block_words(job, block)
    device = job.rows.device
    words = words_torch(torch.from_numpy(bases.view(np.int64)), count, device)
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
