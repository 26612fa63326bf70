"""The counter stream: SplitMix64 known answers, shards equal to the full tensor bit for bit,
the laws it draws (Kolmogorov-Smirnov, moments, bounds), and its place in ``Plan.apply``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

import initlab
import initlab.counter as counter
from initlab.counter import counter_fill_
from initlab.erfinv import erfinv_float32_
from initlab.errors import ConfigError, ShapeError, UnknownNameError
from initlab.rng import CounterStream, Region, counter_stream, parameter_generator
from initlab.schemes import (
    Constant,
    HeNormal,
    Normal,
    Scheme,
    TruncatedNormal,
    Uniform,
    XavierUniform,
)

# Vigna's splitmix64.c seeded with 1234567 (the Rosetta Code task's published first outputs)
# and with 0: word j of CounterStream(seed) is the (j+1)-th output.
KNOWN_ANSWERS = {
    1234567: [6457827717110365317, 3203168211198807973, 9817491932198370423,
              4593380528125082431, 16408922859458223821],
    0: [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4],
}  # fmt: skip

LAWS: list[Scheme] = [
    Normal(0.0, 0.02),
    Normal(1.5, 3.0),
    Uniform(-0.3, 0.3),
    Uniform(0.5, 3.0),
    TruncatedNormal(0.0, 1.0, -2.0, 2.0),
    TruncatedNormal(0.1, 0.5, -0.2, 1.0),
    TruncatedNormal(0.0, 1.0, 5.0, 6.0),  # far in the tail: computed in float64
]
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


@pytest.mark.parametrize("seed", sorted(KNOWN_ANSWERS))
def test_words_are_splitmix64_known_answers(seed: int) -> None:
    expected = KNOWN_ANSWERS[seed]
    stream = CounterStream(seed)
    assert [stream.word(j) for j in range(len(expected))] == expected
    as_signed = [w - (1 << 64) if w >= 1 << 63 else w for w in expected]
    assert stream.words(0, len(expected)).tolist() == as_signed
    assert stream.words(1, len(expected)).tolist() == as_signed[1:]  # any window alone


def test_compiled_and_torch_word_generators_agree() -> None:
    # The CPU fills hash each word in the compiled kernel, other devices with torch's masked
    # int64 ops. Halves scaled by 1 are exact in float64; whole words round alike.
    kernels = pytest.importorskip("initlab.counter_kernels")
    stream = CounterStream(7)
    firsts = np.array([0, 2001, 2**41 + 1], dtype=np.int64)
    halves, whole = np.empty((3, 513)), np.empty((3, 513))
    key, infinite = np.uint64(stream.key), math.inf
    kernels.affine_float64(halves, firsts, key, False, 1.0, 0.0, -infinite, infinite)
    kernels.affine_float64(whole, firsts, key, True, 1.0, 0.0, -infinite, infinite)
    for row, first in enumerate(firsts.tolist()):
        words = stream.words(first // 2, first // 2 + 258)
        expected = words.view(torch.int32)[first % 2 : first % 2 + 513].double()
        assert np.array_equal(halves[row], expected.numpy())
        assert np.array_equal(whole[row], stream.words(first, first + 513).double().numpy())


def _box_indices(region: Region) -> np.ndarray:
    flat = np.arange(math.prod(region.global_shape)).reshape(region.global_shape)
    box = tuple(slice(o, o + s) for o, s in zip(region.offset, region.shape, strict=True))
    return flat[box].reshape(-1)


@pytest.mark.parametrize(
    "region",
    [
        Region.full((5, 7)),
        Region((5, 7), (1, 0), (3, 7)),
        Region((5, 7), (0, 3), (5, 2)),
        Region((4, 5, 6), (1, 2, 0), (2, 3, 6)),
        Region((4, 5, 6), (0, 1, 3), (4, 2, 3)),
        Region((3,), (2,), (1,)),
        Region((6, 2), (6, 0), (0, 2)),
    ],
)
def test_region_runs_list_the_boxes_flat_indices(region: Region) -> None:
    starts, length = region.runs()
    runs = (starts[:, None] + np.arange(length)[None, :]).reshape(-1)
    assert np.array_equal(runs, _box_indices(region))


@pytest.mark.parametrize("law", LAWS, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_shards_concatenate_to_the_full_tensor_bitwise(law: Scheme, dtype: torch.dtype) -> None:
    assert isinstance(law, Normal | Uniform | TruncatedNormal)
    stream = CounterStream(2024)
    full = counter_fill_(torch.empty(37, 53, dtype=dtype), law, stream)
    generator = np.random.default_rng(0)
    for _ in range(12):  # boxes at random, mostly odd, offsets
        start = [int(generator.integers(0, s)) for s in (37, 53)]
        size = [
            int(generator.integers(1, s - o + 1)) for s, o in zip((37, 53), start, strict=True)
        ]
        part = torch.empty(size, dtype=dtype)
        counter_fill_(part, law, stream, Region((37, 53), tuple(start), tuple(size)))
        expected = full[start[0] : start[0] + size[0], start[1] : start[1] + size[1]]
        assert torch.equal(part, expected), (start, size)

    def box(offset: tuple[int, int], shape: tuple[int, int]) -> torch.Tensor:
        part = torch.empty(shape, dtype=dtype)
        return counter_fill_(part, law, stream, Region((37, 53), offset, shape))

    rows = [box((0, 0), (10, 53)), box((10, 0), (27, 53))]
    columns = [box((0, 0), (37, 27)), box((0, 27), (37, 26))]
    assert torch.equal(torch.cat(rows, dim=0), full)
    assert torch.equal(torch.cat(columns, dim=1), full)


def test_shards_across_block_boundaries_and_mixed_parity_runs() -> None:
    # Rows longer than a CPU block are cut mid-row; a column box of an odd-width matrix starts
    # its runs on alternating even and odd flat indices.
    stream, law = CounterStream(99), Normal(0.0, 1.0)
    width = counter._CHUNK + 12345
    long_rows = counter_fill_(torch.empty(2, width), law, stream)
    middle = torch.empty(2, counter._CHUNK)
    counter_fill_(middle, law, stream, Region((2, width), (0, 9999), (2, counter._CHUNK)))
    assert torch.equal(middle, long_rows[:, 9999 : 9999 + counter._CHUNK])
    odd = counter_fill_(torch.empty(5001, 9), law, stream)
    box = torch.empty(4999, 5)
    counter_fill_(box, law, stream, Region((5001, 9), (1, 2), (4999, 5)))
    assert torch.equal(box, odd[1:5000, 2:7])


def test_threads_do_not_change_the_values() -> None:
    stream, law = CounterStream(5), TruncatedNormal(0.0, 1.0, -2.0, 2.0)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = counter_fill_(torch.empty(3 * counter._CHUNK + 1), law, stream)
        torch.set_num_threads(2)
        two = counter_fill_(torch.empty(3 * counter._CHUNK + 1), law, stream)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def test_torch_backend_equals_the_cpu_backend() -> None:
    # Devices other than the CPU run the same words and steps as torch ops, block by block;
    # any blocking gives the CPU fill's bits.
    for law in LAWS:
        assert isinstance(law, Normal | Uniform | TruncatedNormal)
        for dtype in (torch.float32, torch.float64, torch.bfloat16):
            region = Region((41, 17), (3, 1), (30, 13))
            expected = counter_fill_(
                torch.empty(30, 13, dtype=dtype), law, CounterStream(3), region
            )
            job = counter._job(torch.empty(30, 13, dtype=dtype), law, 3, region)
            for block in counter._blocks(job, 64):
                counter._fill_block_torch(job, block)
            assert torch.equal(job.rows.reshape(30, 13), expected), (law, dtype)


BACKEND_REGIONS = [
    Region.full((1, 3 * counter._CHUNK + 7)),  # several blocks, cut mid-run
    Region((3, 2 * counter._CHUNK + 5), (1, 777), (2, 2 * counter._CHUNK - 1001)),  # odd, cut
    Region((257, 63), (3, 1), (250, 61)),  # short runs of both parities, grouped
    Region((4, 5, 6), (1, 2, 1), (3, 3, 4)),
    Region.full((1,)),
]


def _fill_with(
    backend: str, monkeypatch: pytest.MonkeyPatch, region: Region, law: Scheme, dtype: torch.dtype
) -> torch.Tensor:
    assert isinstance(law, Normal | Uniform | TruncatedNormal)
    with monkeypatch.context() as patch:
        kernels = pytest.importorskip("initlab.counter_kernels") if backend == "numba" else None
        patch.setattr(counter, "_kernels", kernels)
        assert counter.fill_backend() == backend
        return counter_fill_(torch.empty(region.shape, dtype=dtype), law, CounterStream(4), region)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_compiled_and_reference_backends_agree_bitwise(
    dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The compiled kernel (numba) and the torch-op reference compute the same IEEE operations
    # in the same order: the same bits for every law, dtype, slice, and with 1 or 2 threads.
    pytest.importorskip("initlab.counter_kernels")
    before = torch.get_num_threads()
    try:
        for law in LAWS:
            for region in BACKEND_REGIONS:
                torch.set_num_threads(1)
                reference = _fill_with("torch", monkeypatch, region, law, dtype)
                for threads in (1, 2):
                    torch.set_num_threads(threads)
                    compiled = _fill_with("numba", monkeypatch, region, law, dtype)
                    assert torch.equal(compiled, reference), (law, region, threads)
    finally:
        torch.set_num_threads(before)


def test_float32_erfinv_is_giles_within_4_ulp_of_the_exact_function() -> None:
    # Every float32 argument a normal fill can produce lies in |x| <= 1 - 2^-24; a dense grid,
    # the far tail and tiny arguments, against torch.erfinv in float64 (error ~1e-16).
    generator = np.random.default_rng(0)
    grid = np.concatenate(
        [
            generator.uniform(-1.0, 1.0, 1_000_000),
            1.0 - np.logspace(np.log10(2.0**-24), -0.1, 100_000),
            np.logspace(-30.0, -0.01, 10_000),
        ]
    ).astype(np.float32)
    x = torch.from_numpy(np.clip(grid, -1.0 + 2.0**-24, 1.0 - 2.0**-24))
    ours = erfinv_float32_(x.clone()).double()
    exact = torch.erfinv(x.double())
    ulp = torch.from_numpy(np.spacing(exact.float().abs().numpy())).double()
    assert ((ours - exact).abs() <= 4 * ulp).all()


def test_unknown_fill_backend_variable_says_what_is_known(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(counter, "_kernels", False)
    monkeypatch.setenv("INITLAB_FILL_BACKEND", "mkl")
    with pytest.raises(ConfigError, match="Known: numba"):
        counter.fill_backend()
    monkeypatch.setenv("INITLAB_FILL_BACKEND", "torch")
    assert counter.fill_backend() == "torch"


def test_bfloat16_is_the_float32_draw_rounded() -> None:
    stream, law = CounterStream(11), HeNormal().law((64, 32))
    single = counter_fill_(torch.empty(64, 32), law, stream)
    half = counter_fill_(torch.empty(64, 32, dtype=torch.bfloat16), law, stream)
    assert torch.equal(half, single.to(torch.bfloat16))


N = 200_000
KS_CRITICAL = 1.95 / math.sqrt(N)  # Kolmogorov's D at alpha = 0.001 for n = 200000


def _sample(law: Scheme, dtype: torch.dtype = torch.float32, key: int = 12345) -> np.ndarray:
    assert isinstance(law, Normal | Uniform | TruncatedNormal)
    values = counter_fill_(torch.empty(N, dtype=dtype), law, CounterStream(key))
    return values.double().numpy()


def _scipy_law(law: Scheme) -> stats.rv_continuous:
    if isinstance(law, Normal):
        return stats.norm(law.mean, law.std)
    if isinstance(law, Uniform):
        return stats.uniform(law.a, law.b - law.a)
    assert isinstance(law, TruncatedNormal)
    low, high = law.interval
    return stats.truncnorm((low - law.mean) / law.std, (high - law.mean) / law.std,
                           loc=law.mean, scale=law.std)  # fmt: skip


@pytest.mark.parametrize("law", LAWS, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_values_follow_the_law(law: Scheme, dtype: torch.dtype) -> None:
    values = _sample(law, dtype)
    expected = _scipy_law(law)
    assert stats.kstest(values, expected.cdf).statistic < KS_CRITICAL
    # Mean within 5 standard errors (std / sqrt(n)); the variance within 5 standard errors of
    # the sample variance, sqrt((m4 - s^4) / n), m4 the law's fourth central moment.
    mean, variance = expected.mean(), expected.var()
    assert abs(values.mean() - mean) < 5 * math.sqrt(variance / N)
    fourth = (
        expected.moment(4)
        - 4 * mean * expected.moment(3)
        + 6 * mean**2 * expected.moment(2)
        - 3 * mean**4
    )
    assert abs(values.var() - variance) < 5 * math.sqrt((fourth - variance**2) / N)
    if isinstance(law, Uniform | TruncatedNormal):
        low, high = (law.a, law.b) if isinstance(law, Uniform) else law.interval
        assert values.min() >= low
        assert values.max() <= high


def test_normal_tails_and_largest_value() -> None:
    values = _sample(Normal(0.0, 1.0))
    beyond = float(np.mean(np.abs(values) > 3.0))
    expected = 2 * stats.norm.sf(3.0)  # 0.0027; binomial standard error sqrt(p (1-p) / n)
    assert abs(beyond - expected) < 5 * math.sqrt(expected * (1 - expected) / N)
    assert np.abs(values).max() <= math.sqrt(2.0) * 3.9  # erfinv(1 - 2^-24) = 3.83 < 3.9


def test_neighbours_and_other_parameters_are_uncorrelated() -> None:
    # Pearson r of independent samples has standard error 1/sqrt(n): 5 of them.
    values = _sample(Normal(0.0, 1.0))
    other = _sample(Normal(0.0, 1.0), key=initlab.rng.parameter_seed(0, "layer.1.weight"))
    assert abs(np.corrcoef(values[:-1], values[1:])[0, 1]) < 5 / math.sqrt(N)
    assert abs(np.corrcoef(values[0::2], values[1::2])[0, 1]) < 5 / math.sqrt(N / 2)
    assert abs(np.corrcoef(values, other)[0, 1]) < 5 / math.sqrt(N)


def test_uniform_stays_inside_its_bounds_in_every_dtype() -> None:
    for dtype in DTYPES:
        values = counter_fill_(
            torch.empty(50_000, dtype=dtype), Uniform(-0.1, 0.1), CounterStream(1)
        )
        assert values.abs().max() <= torch.tensor(0.1, dtype=dtype)


def test_constants_and_empty_and_meta_tensors() -> None:
    assert torch.equal(
        counter_fill_(torch.empty(3), Constant(2.5), CounterStream(0)), torch.full((3,), 2.5)
    )
    assert counter_fill_(torch.empty(0, 4), Normal(), CounterStream(0)).shape == (0, 4)
    assert counter_fill_(torch.empty(2, 2, device="meta"), Normal(), CounterStream(0)).is_meta


def test_bad_inputs_say_what_is_wrong() -> None:
    with pytest.raises(ShapeError, match="cannot hold region"):
        counter_fill_(torch.empty(3, 4), Normal(), CounterStream(0), Region.full((4, 3)))
    with pytest.raises(ShapeError, match="floating tensor"):
        counter_fill_(torch.empty(3, dtype=torch.int64), Normal(), CounterStream(0))
    with pytest.raises(ShapeError, match="does not lie inside"):
        Region((4, 4), (3, 0), (2, 4))
    with pytest.raises(UnknownNameError, match="Did you mean 'counter'"):
        initlab.Plan().apply(nn.Linear(2, 2), stream="countr")  # type: ignore[arg-type]


def test_plan_apply_uses_the_counter_stream_by_default() -> None:
    model = nn.Linear(16, 8)
    initlab.Plan([initlab.rule(role="weight", scheme="xavier_uniform")]).apply(model, seed=4)
    law = XavierUniform().law((8, 16))
    expected = counter_fill_(torch.empty(8, 16), law, counter_stream(4, "weight"))
    assert torch.equal(model.weight, expected)


def test_plan_apply_generator_stream_is_the_torch_generator_path() -> None:
    model = nn.Linear(16, 8)
    plan = initlab.Plan([initlab.rule(role="weight", scheme="he_normal")], default="keep")
    plan.apply(model, seed=4, stream="generator")
    generator = parameter_generator(4, "weight")
    expected = torch.empty(8, 16).normal_(0.0, HeNormal().target_std((8, 16)), generator=generator)
    assert torch.equal(model.weight, expected)


def test_whole_matrix_schemes_keep_the_generator_under_the_counter_stream() -> None:
    model = nn.Linear(16, 8)
    initlab.Plan([initlab.rule(role="weight", scheme="orthogonal")], default="keep").apply(model)
    expected = nn.Linear(16, 8)
    initlab.Plan([initlab.rule(role="weight", scheme="orthogonal")], default="keep").apply(
        expected, stream="generator"
    )
    assert torch.equal(model.weight, expected.weight)
