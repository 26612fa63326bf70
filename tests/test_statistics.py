"""The random schemes draw from the law they state: moments, Kolmogorov-Smirnov, bounds, Haar.

Every check runs on both samplers: ``Scheme.fill_`` (torch, float32) and ``Scheme.array``
(NumPy, float64), at fixed seeds. Expected laws are written from the published formulas with
scipy, independently of initlab's own arithmetic.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats

from initlab.schemes import (
    HeNormal,
    HeUniform,
    LeCunNormal,
    LeCunUniform,
    Normal,
    Orthogonal,
    Scheme,
    Sparse,
    TruncatedNormal,
    Uniform,
    VarianceScaling,
    XavierNormal,
    XavierUniform,
)

SEED = 1234
# A torch (out, in) = (400, 500) weight is the NumPy/Keras (in, out) = (500, 400) kernel:
# fan_in 500, fan_out 400 in both; n = 200_000 samples per draw.
TORCH_SHAPE = (400, 500)
KERAS_SHAPE = (500, 400)
N = 200_000
FAN_IN, FAN_OUT = 500, 400
FANS = {
    "fan_in": float(FAN_IN),
    "fan_out": float(FAN_OUT),
    "fan_avg": (FAN_IN + FAN_OUT) / 2.0,
    "fan_geo_avg": math.sqrt(FAN_IN * FAN_OUT),
}
C_TN = 0.87962566103423978  # std of N(0, 1) cut at +-2 (Keras / JAX constant)
KS_MIN_P_VALUE = 1e-3
STANDARD_ERRORS = 5.0

Law = Any  # a frozen scipy.stats distribution


def variance_law(variance: float, distribution: str) -> Law:
    """The law of a variance-scaling sample of target ``variance`` (Keras 3 / JAX formulas)."""
    if distribution == "uniform":
        limit = math.sqrt(3.0 * variance)
        return stats.uniform(loc=-limit, scale=2.0 * limit)
    if distribution == "normal":
        return stats.norm(loc=0.0, scale=math.sqrt(variance))
    return stats.truncnorm(-2.0, 2.0, loc=0.0, scale=math.sqrt(variance) / C_TN)


def truncated_law(mean: float, std: float, low: float, high: float) -> Law:
    return stats.truncnorm((low - mean) / std, (high - mean) / std, loc=mean, scale=std)


VS_SCALES = {"fan_in": 2.0, "fan_out": 1.0, "fan_avg": 1.0, "fan_geo_avg": 0.5}
CASES: list[tuple[str, Scheme, Law]] = [
    ("uniform", Uniform(-0.3, 0.7), stats.uniform(loc=-0.3, scale=1.0)),
    ("normal", Normal(0.5, 0.02), stats.norm(0.5, 0.02)),
    ("trunc_abs_default", TruncatedNormal(), truncated_law(0.0, 1.0, -2.0, 2.0)),
    (
        "trunc_abs_asymmetric",
        TruncatedNormal(0.1, 0.5, -0.4, 1.0),
        truncated_law(0.1, 0.5, -0.4, 1.0),
    ),
    # Interval mass 0.15 < 0.3: the uniform-proposal rejection sampler.
    ("trunc_abs_tail", TruncatedNormal(0.0, 1.0, 1.0, 2.5), truncated_law(0.0, 1.0, 1.0, 2.5)),
    (
        "trunc_std_units",
        TruncatedNormal(0.0, 0.02, -3.0, 3.0, unit="std"),
        truncated_law(0.0, 0.02, -0.06, 0.06),
    ),
    (
        "trunc_std_offset",
        TruncatedNormal(0.5, 2.0, -1.0, 2.0, unit="std"),
        truncated_law(0.5, 2.0, -1.5, 4.5),
    ),
    *[
        (
            f"vs_{mode}_{distribution}",
            VarianceScaling(VS_SCALES[mode], mode, distribution),
            variance_law(VS_SCALES[mode] / FANS[mode], distribution),
        )
        for mode in FANS
        for distribution in ("uniform", "normal", "truncated_normal")
    ],
    ("xavier_uniform", XavierUniform(), variance_law(1.0 / FANS["fan_avg"], "uniform")),
    ("xavier_normal", XavierNormal(2.0), variance_law(4.0 / FANS["fan_avg"], "normal")),
    (
        "xavier_normal_truncated",
        XavierNormal(distribution="truncated_normal"),
        variance_law(1.0 / FANS["fan_avg"], "truncated_normal"),
    ),
    ("he_uniform", HeUniform(), variance_law(2.0 / FAN_IN, "uniform")),
    (
        "he_uniform_torch_default",
        HeUniform(a=math.sqrt(5.0)),
        variance_law((2.0 / 6.0) / FAN_IN, "uniform"),
    ),
    (
        "he_normal_fan_out_relu",
        HeNormal(mode="fan_out", nonlinearity="relu"),
        variance_law(2.0 / FAN_OUT, "normal"),
    ),
    (
        "he_normal_tanh",
        HeNormal(nonlinearity="tanh"),
        variance_law((5.0 / 3.0) ** 2 / FAN_IN, "normal"),
    ),
    (
        "he_normal_truncated",
        HeNormal(distribution="truncated_normal"),
        variance_law(2.0 / FAN_IN, "truncated_normal"),
    ),
    ("lecun_uniform", LeCunUniform(), variance_law(1.0 / FAN_IN, "uniform")),
    ("lecun_normal", LeCunNormal(), variance_law(1.0 / FAN_IN, "normal")),
    (
        "lecun_normal_truncated",
        LeCunNormal(distribution="truncated_normal"),
        variance_law(1.0 / FAN_IN, "truncated_normal"),
    ),
]
PATHS = ["torch", "numpy"]

cases = pytest.mark.parametrize(
    ("scheme", "law"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
paths = pytest.mark.parametrize("path", PATHS)


@functools.cache
def draw(scheme: Scheme, path: str, seed: int = SEED) -> np.ndarray[Any, Any]:
    """n samples of ``scheme`` as float64: torch's float32 fill_ or NumPy's array."""
    if path == "torch":
        generator = torch.Generator().manual_seed(seed)
        tensor = scheme.sample(TORCH_SHAPE, generator, dtype=torch.float32)
        return tensor.double().numpy().ravel()
    return scheme.array(KERAS_SHAPE, np.random.default_rng(seed)).ravel()


def moment_tolerances(law: Law, n: int) -> tuple[float, float]:
    """5 standard errors of the sample mean and of the sample std for n draws of ``law``.

    se(mean) = sigma / sqrt(n); by the delta method on s^2, se(std) ~= sigma * sqrt((kurtosis
    - 1) / (4 n)) with the (non-excess) kurtosis of the law. At 5 standard errors a correct
    sampler fails with probability ~6e-7 per check.
    """
    sigma = float(law.std())
    kurtosis = float(law.stats(moments="k")) + 3.0
    mean_error = sigma / math.sqrt(n)
    std_error = sigma * math.sqrt((kurtosis - 1.0) / (4.0 * n))
    return STANDARD_ERRORS * mean_error, STANDARD_ERRORS * std_error


# --- moments -----------------------------------------------------------------------------------


@paths
@cases
def test_mean_and_std(scheme: Scheme, law: Law, path: str) -> None:
    samples = draw(scheme, path)
    assert samples.size == N
    mean_tolerance, std_tolerance = moment_tolerances(law, N)
    assert samples.mean() == pytest.approx(law.mean(), abs=mean_tolerance)
    assert samples.std() == pytest.approx(law.std(), abs=std_tolerance)


@cases
def test_reported_stats_are_the_laws(scheme: Scheme, law: Law) -> None:
    # What `initlab schemes` and plans print is the law's exact mean and std.
    reported = scheme.stats(TORCH_SHAPE)
    assert reported.mean == pytest.approx(law.mean(), rel=1e-9, abs=1e-15)
    assert reported.std == pytest.approx(law.std(), rel=1e-9)
    assert scheme.stats(KERAS_SHAPE, layout="keras") == reported
    lower, upper = law.support()
    if math.isfinite(upper):
        assert reported.bound == pytest.approx(max(abs(lower), abs(upper)), rel=1e-12)
    else:
        assert reported.bound is None


# --- distribution ------------------------------------------------------------------------------


@paths
@cases
def test_kolmogorov_smirnov(scheme: Scheme, law: Law, path: str) -> None:
    # At a fixed seed; a correct sampler passes at p > 1e-3 with probability 0.999.
    result = stats.kstest(draw(scheme, path), law.cdf)
    assert result.pvalue > KS_MIN_P_VALUE, f"KS statistic {result.statistic:.2e}"


# --- bounds ------------------------------------------------------------------------------------

# Bounds chosen not to be representable in bfloat16/float16, both sampler branches.
TRUNCATED = [
    ("abs_2sigma", TruncatedNormal(0.0, 0.05, -0.1, 0.1)),
    ("abs_tail", TruncatedNormal(0.0, 1.0, 0.3, 0.7)),
    ("std_units", TruncatedNormal(0.02, 0.1, -3.0, 2.2, unit="std")),
    ("vs_truncated", VarianceScaling(1.0, "fan_in", "truncated_normal")),
    ("he_truncated", HeNormal(mode="fan_avg", distribution="truncated_normal")),
]
truncated = pytest.mark.parametrize(
    "scheme", [scheme for _, scheme in TRUNCATED], ids=[name for name, _ in TRUNCATED]
)


# 50_000 draws put several float samples within half a bfloat16 ulp of each bound, where
# rounding to the dtype could step outside.
BOUNDS_SHAPE = (200, 250)


def interval(scheme: Scheme) -> tuple[float, float]:
    if isinstance(scheme, TruncatedNormal):
        return scheme.interval
    bound = scheme.stats(BOUNDS_SHAPE).bound
    assert bound is not None
    return -bound, bound


@truncated
@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["float32", "bf16", "fp16"]
)
def test_torch_truncated_samples_stay_inside_the_bounds(
    scheme: Scheme, dtype: torch.dtype
) -> None:
    low, high = interval(scheme)
    tensor = scheme.sample(BOUNDS_SHAPE, torch.Generator().manual_seed(SEED), dtype=dtype)
    # As torch.nn.init.trunc_normal_ (bitwise parity), the bounds are the dtype's values nearest
    # to [low, high]: nothing is ever drawn past them.
    low_in_dtype = torch.tensor(low, dtype=dtype).item()
    high_in_dtype = torch.tensor(high, dtype=dtype).item()
    assert tensor.min().item() >= low_in_dtype
    assert tensor.max().item() <= high_in_dtype
    # Sanity: the nearest representable bound is within half a unit in the last place.
    half_ulp = torch.finfo(dtype).eps * max(abs(low), abs(high))
    assert abs(high_in_dtype - high) <= half_ulp
    assert abs(low_in_dtype - low) <= half_ulp


@truncated
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_numpy_truncated_samples_stay_inside_the_bounds(scheme: Scheme, dtype: Any) -> None:
    low, high = interval(scheme)
    array = scheme.array(BOUNDS_SHAPE[::-1], np.random.default_rng(SEED), dtype=dtype)
    assert array.dtype == dtype
    # The NumPy path rounds inward: every value lies inside the exact real interval.
    assert float(array.min()) >= low
    assert float(array.max()) <= high


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("scheme", "bound"),
    [(Uniform(-0.3, 0.7), 0.7), (XavierUniform(), math.sqrt(3.0 / FANS["fan_avg"]))],
    ids=["uniform", "xavier_uniform"],
)
def test_uniform_samples_stay_inside_the_bounds(scheme: Scheme, bound: float, path: str) -> None:
    samples = draw(scheme, path)
    assert np.abs(samples).max() <= bound


# --- sparse ------------------------------------------------------------------------------------

SPARSE = Sparse(sparsity=0.2, std=0.05)
ROWS = TORCH_SHAPE[0]  # torch (out, in): every input column keeps 400 - ceil(0.2 * 400) weights
ZEROS_PER_INPUT = math.ceil(0.2 * ROWS)


def sparse_samples(path: str) -> np.ndarray[Any, Any]:
    """The sparse weight in torch order (out, in), as float64."""
    if path == "torch":
        tensor = SPARSE.sample(TORCH_SHAPE, torch.Generator().manual_seed(SEED))
        return tensor.double().numpy()
    return SPARSE.array(KERAS_SHAPE, np.random.default_rng(SEED)).T


@paths
def test_sparse_zeros_per_input_unit(path: str) -> None:
    weight = sparse_samples(path)
    assert ((weight == 0).sum(axis=0) == ZEROS_PER_INPUT).all()


@paths
def test_sparse_moments_and_law(path: str) -> None:
    weight = sparse_samples(path).ravel()
    kept = 1.0 - ZEROS_PER_INPUT / ROWS
    # Mixture of 0 (prob 1 - kept) and N(0, std^2): variance kept * std^2, kurtosis 3 / kept.
    sigma = 0.05 * math.sqrt(kept)
    kurtosis = 3.0 / kept
    assert SPARSE.stats(TORCH_SHAPE).std == pytest.approx(sigma, rel=1e-12)
    # 5 standard errors, as in moment_tolerances.
    assert weight.mean() == pytest.approx(0.0, abs=5 * sigma / math.sqrt(N))
    std_tolerance = 5 * sigma * math.sqrt((kurtosis - 1.0) / (4.0 * N))
    assert weight.std() == pytest.approx(sigma, abs=std_tolerance)
    nonzero = weight[weight != 0]
    assert stats.kstest(nonzero, stats.norm(0.0, 0.05).cdf).pvalue > KS_MIN_P_VALUE


# --- orthogonal --------------------------------------------------------------------------------


def gram(matrix: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Q Q^T for a wide matrix, Q^T Q for a tall one: the identity when Q is (semi-)orthogonal."""
    rows, cols = matrix.shape
    return matrix @ matrix.T if rows <= cols else matrix.T @ matrix


ORTHOGONAL_TORCH = [((64, 128), "torch"), ((128, 64), "torch"), ((32, 16, 3, 3), "torch")]
ORTHOGONAL_NUMPY = [((3, 3, 16, 32), "keras"), ((128, 64), "keras"), ((16, 8, 3, 3), "torch")]


def as_matrix(values: np.ndarray[Any, Any], layout: str) -> np.ndarray[Any, Any]:
    shape = values.shape
    if layout == "torch":
        return values.reshape(shape[0], -1)
    return values.reshape(-1, shape[-1])


@pytest.mark.parametrize(
    ("dtype", "tolerance"),
    # Householder QR is backward stable: the error is a small multiple of n * eps.
    [(torch.float32, 1e-5), (torch.float64, 1e-13)],
    ids=["float32", "float64"],
)
@pytest.mark.parametrize(("shape", "layout"), ORTHOGONAL_TORCH, ids=str)
def test_torch_orthogonal_is_orthogonal(
    shape: tuple[int, ...], layout: str, dtype: torch.dtype, tolerance: float
) -> None:
    gain = 1.7
    tensor = Orthogonal(gain).sample(shape, torch.Generator().manual_seed(SEED), dtype=dtype)
    matrix = as_matrix(tensor.double().numpy(), layout) / gain
    assert np.abs(gram(matrix) - np.eye(min(matrix.shape))).max() <= tolerance


@pytest.mark.parametrize(("shape", "layout"), ORTHOGONAL_NUMPY, ids=str)
def test_numpy_orthogonal_is_orthogonal(shape: tuple[int, ...], layout: str) -> None:
    array = Orthogonal(0.5).array(shape, np.random.default_rng(SEED), layout=layout)
    matrix = as_matrix(array, layout) / 0.5
    assert np.abs(gram(matrix) - np.eye(min(matrix.shape))).max() <= 1e-13


HAAR_DRAWS = 400


@paths
def test_orthogonal_is_haar_distributed(path: str) -> None:
    # For Q Haar-distributed on O(n): E[tr Q] = 0 and E[(tr Q)^2] = 1 (Diaconis & Shahshahani,
    # 1994). Without the sign correction of R's diagonal, LAPACK's QR gives E[tr Q] ~ -2.4 for
    # n = 16. Tolerance: 5 standard errors of the mean of HAAR_DRAWS traces (sd 1).
    rng = np.random.default_rng(SEED)
    generator = torch.Generator().manual_seed(SEED)
    traces = []
    for _ in range(HAAR_DRAWS):
        if path == "torch":
            matrix = Orthogonal().sample((16, 16), generator, dtype=torch.float64).numpy()
        else:
            matrix = Orthogonal().array((16, 16), rng)
        traces.append(np.trace(matrix))
    assert np.mean(traces) == pytest.approx(0.0, abs=5 / math.sqrt(HAAR_DRAWS))
    # Var of (tr Q)^2 is 2 for large n (tr Q -> N(0, 1)): se of the mean square sqrt(2 / draws).
    mean_square = float(np.mean(np.square(traces)))
    assert mean_square == pytest.approx(1.0, abs=5 * math.sqrt(2.0 / HAAR_DRAWS))


# --- reproducibility ---------------------------------------------------------------------------


@paths
@pytest.mark.parametrize(
    "scheme", [HeNormal(), TruncatedNormal(0.0, 1.0, 1.0, 2.5), Sparse(0.3)], ids=str
)
def test_same_seed_same_values_other_seed_other_values(scheme: Scheme, path: str) -> None:
    def sample(seed: int) -> np.ndarray[Any, Any]:
        if path == "torch":
            return scheme.sample((40, 50), torch.Generator().manual_seed(seed)).numpy()
        return scheme.array((50, 40), np.random.default_rng(seed))

    assert np.array_equal(sample(SEED), sample(SEED))
    assert not np.array_equal(sample(SEED), sample(SEED + 1))
