"""initlab.init is a drop-in for torch.nn.init: bitwise the same tensor for the same RNG state."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

import initlab.init as init
from initlab.errors import ShapeError
from initlab.schemes import TRUNCATION_STD_2

SEED = 20240601
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
FULL_DTYPES = [torch.float32, torch.float64]  # where torch's LAPACK path needs them
SHAPES = [(3, 5), (64, 32), (16, 8, 3), (32, 16, 3, 3), (8, 4, 3, 3, 3)]
ANY_RANK_SHAPES = [(7,), *SHAPES]

Fill = Callable[[Tensor, torch.Generator | None], Tensor]


def dtype_id(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
full_dtypes = pytest.mark.parametrize("dtype", FULL_DTYPES, ids=dtype_id)
shapes = pytest.mark.parametrize("shape", SHAPES, ids=str)


def filled_pair(
    ours: Fill, theirs: Fill, shape: tuple[int, ...], dtype: torch.dtype, rng: str
) -> tuple[Tensor, Tensor]:
    """Fill two NaN tensors, one by each function, from identical RNG states."""
    mine = torch.full(shape, math.nan, dtype=dtype)
    reference = torch.full(shape, math.nan, dtype=dtype)
    with torch.random.fork_rng(devices=[]):
        if rng == "generator":
            # Different global states: a function that ignored `generator` would disagree.
            torch.manual_seed(SEED + 1)
            returned = ours(mine, torch.Generator().manual_seed(SEED))
            torch.manual_seed(SEED + 2)
            theirs(reference, torch.Generator().manual_seed(SEED))
        else:
            torch.manual_seed(SEED)
            returned = ours(mine, None)
            torch.manual_seed(SEED)
            theirs(reference, None)
    assert returned is mine, "in-place initializers return the tensor they filled"
    return mine, reference


def assert_bitwise_parity(
    ours: Fill,
    theirs: Fill,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    rngs: tuple[str, ...] = ("generator", "global"),
) -> None:
    """Equal tensors from an explicit generator and from the seeded global RNG."""
    for rng in rngs:
        mine, reference = filled_pair(ours, theirs, shape, dtype, rng)
        assert not mine.isnan().any(), "every element is written"
        assert torch.equal(mine, reference), f"differs from torch with the {rng} RNG"


# --- elementwise laws --------------------------------------------------------------------------


@dtypes
@pytest.mark.parametrize("shape", ANY_RANK_SHAPES, ids=str)
@pytest.mark.parametrize(("a", "b"), [(0.0, 1.0), (-0.3, 0.7), (-2.0, -1.0)])
def test_uniform(a: float, b: float, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    assert_bitwise_parity(
        lambda t, g: init.uniform_(t, a, b, generator=g),
        lambda t, g: nn.init.uniform_(t, a, b, generator=g),
        shape,
        dtype,
    )


@dtypes
@pytest.mark.parametrize("shape", ANY_RANK_SHAPES, ids=str)
@pytest.mark.parametrize(("mean", "std"), [(0.0, 1.0), (0.5, 0.02)])
def test_normal(mean: float, std: float, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    assert_bitwise_parity(
        lambda t, g: init.normal_(t, mean, std, generator=g),
        lambda t, g: nn.init.normal_(t, mean, std, generator=g),
        shape,
        dtype,
    )


def normal_mass(mean: float, std: float, a: float, b: float) -> float:
    def cdf(x: float) -> float:
        return 0.5 * math.erfc(-(x - mean) / (std * math.sqrt(2.0)))

    return cdf(b) - cdf(a)


# (mean, std, a, b): torch redraws outside [a, b] when the interval holds > 30% of the mass and
# rejection-samples a uniform proposal otherwise; both branches must match draw for draw.
TRUNCATION_CASES = [
    (0.0, 1.0, -2.0, 2.0),  # defaults, mass 0.954
    (0.0, 0.02, -2.0, 2.0),  # the ViT/llama init: absolute +-2 never truncates
    (0.1, 0.5, -0.4, 1.0),  # asymmetric, mass 0.80
    (0.0, 1.0, 1.0, 2.5),  # mass 0.15: uniform-proposal branch
    (0.5, 1.0, -0.1, 0.2),  # mass 0.10, mean outside [a, b]
    (0.0, 1.0, -0.3, 0.3),  # mass 0.236, symmetric
]


def test_truncation_cases_cover_both_branches() -> None:
    masses = [normal_mass(*case) for case in TRUNCATION_CASES]
    assert sum(m > 0.3 for m in masses) >= 2
    assert sum(m < 0.3 for m in masses) >= 2


@dtypes
@pytest.mark.parametrize("shape", ANY_RANK_SHAPES, ids=str)
@pytest.mark.parametrize(("mean", "std", "a", "b"), TRUNCATION_CASES)
def test_trunc_normal(
    mean: float,
    std: float,
    a: float,
    b: float,
    shape: tuple[int, ...],
    dtype: torch.dtype,
) -> None:
    assert_bitwise_parity(
        lambda t, g: init.trunc_normal_(t, mean, std, a, b, generator=g),
        lambda t, g: nn.init.trunc_normal_(t, mean, std, a, b, generator=g),
        shape,
        dtype,
    )


@dtypes
@pytest.mark.parametrize("shape", [(), *ANY_RANK_SHAPES], ids=str)
def test_constants(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    cases: list[tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = [
        (init.ones_, nn.init.ones_),
        (init.zeros_, nn.init.zeros_),
        (lambda t: init.constant_(t, 0.3), lambda t: nn.init.constant_(t, 0.3)),
        (lambda t: init.constant_(t, -2), lambda t: nn.init.constant_(t, -2)),
    ]
    for ours, theirs in cases:
        mine = torch.full(shape, math.nan, dtype=dtype)
        assert ours(mine) is mine
        assert torch.equal(mine, theirs(torch.full(shape, math.nan, dtype=dtype)))


# --- structured --------------------------------------------------------------------------------


@dtypes
@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 4), (1, 7)], ids=str)
def test_eye(shape: tuple[int, int], dtype: torch.dtype) -> None:
    mine = torch.full(shape, math.nan, dtype=dtype)
    assert init.eye_(mine) is mine
    assert torch.equal(mine, nn.init.eye_(torch.full(shape, math.nan, dtype=dtype)))


DIRAC_CASES = [
    ((4, 4, 3), 1),
    ((6, 4, 5), 1),
    ((4, 6, 4), 1),  # even kernel: centre k // 2
    ((6, 4, 3, 3), 1),
    ((3, 5, 5, 5), 1),
    ((8, 4, 3, 3), 2),
    ((6, 2, 4, 3), 2),
    ((4, 2, 3, 3, 3), 1),
    ((8, 3, 3, 2, 3), 2),
    ((6, 5, 3), 2),
]


@dtypes
@pytest.mark.parametrize(("shape", "groups"), DIRAC_CASES, ids=str)
def test_dirac(shape: tuple[int, ...], groups: int, dtype: torch.dtype) -> None:
    mine = torch.full(shape, math.nan, dtype=dtype)
    assert init.dirac_(mine, groups) is mine
    reference = nn.init.dirac_(torch.full(shape, math.nan, dtype=dtype), groups)
    assert torch.equal(mine, reference)
    assert mine.sum().item() == groups * min(shape[0] // groups, shape[1])


ORTHOGONAL_SHAPES = [(3, 5), (5, 3), (8, 8), (32, 4), (16, 8, 3, 3), (4, 32, 3), (64, 2, 2, 2)]


@full_dtypes
@pytest.mark.parametrize("shape", ORTHOGONAL_SHAPES, ids=str)
@pytest.mark.parametrize("gain", [1, 2.5, math.sqrt(2.0)])
def test_orthogonal(gain: float, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    assert_bitwise_parity(
        lambda t, g: init.orthogonal_(t, gain, generator=g),
        lambda t, g: nn.init.orthogonal_(t, gain, generator=g),
        shape,
        dtype,
    )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=dtype_id)
@pytest.mark.parametrize("shape", [(6, 10), (10, 6), (8, 8), (16, 4, 3, 3)], ids=str)
def test_orthogonal_on_half_precision(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    # torch's QR has no half kernels; initlab factorizes in float32 and rounds once.
    half = init.orthogonal_(
        torch.empty(shape, dtype=dtype), generator=torch.Generator().manual_seed(3)
    )
    single = init.orthogonal_(torch.empty(shape), generator=torch.Generator().manual_seed(3))
    assert torch.equal(half, single.to(dtype))
    matrix = half.reshape(shape[0], -1).double()
    small = matrix @ matrix.T if matrix.shape[0] <= matrix.shape[1] else matrix.T @ matrix
    # Each entry is rounded to the dtype (relative error <= eps/2); a row's unit norm then errs
    # by at most ~eps, and an off-diagonal product by less. Allow 2 eps.
    tolerance = 2 * torch.finfo(dtype).eps
    identity = torch.eye(small.shape[0], dtype=torch.float64)
    assert (small - identity).abs().max().item() <= tolerance


SPARSE_CASES = [((10, 6), 0.1), ((7, 20), 0.5), ((12, 3), 0.0), ((5, 5), 1.0), ((30, 8), 0.33)]


@full_dtypes
@pytest.mark.parametrize(("shape", "sparsity"), SPARSE_CASES, ids=str)
def test_sparse_global_rng(shape: tuple[int, int], sparsity: float, dtype: torch.dtype) -> None:
    # torch draws the zero positions from the global RNG, so parity holds with generator=None.
    assert_bitwise_parity(
        lambda t, g: init.sparse_(t, sparsity, 0.02, generator=g),
        lambda t, g: nn.init.sparse_(t, sparsity, 0.02, generator=g),
        shape,
        dtype,
        ("global",),
    )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=dtype_id)
def test_sparse_global_rng_half(dtype: torch.dtype) -> None:
    assert_bitwise_parity(
        lambda t, g: init.sparse_(t, 0.3, generator=g),
        lambda t, g: nn.init.sparse_(t, 0.3, generator=g),
        (9, 7),
        dtype,
        ("global",),
    )


@dtypes
@pytest.mark.parametrize(("shape", "sparsity"), SPARSE_CASES, ids=str)
def test_sparse_depends_only_on_its_generator(
    shape: tuple[int, int], sparsity: float, dtype: torch.dtype
) -> None:
    results = []
    with torch.random.fork_rng(devices=[]):
        for global_seed in (1, 2):
            torch.manual_seed(global_seed)
            tensor = torch.empty(shape, dtype=dtype)
            init.sparse_(tensor, sparsity, generator=torch.Generator().manual_seed(SEED))
            results.append(tensor)
    assert torch.equal(results[0], results[1])
    zeros_per_column = (results[0] == 0).sum(dim=0)
    assert (zeros_per_column == math.ceil(sparsity * shape[0])).all()


# --- variance scaling: Xavier / Kaiming ---------------------------------------------------------


@dtypes
@shapes
@pytest.mark.parametrize("gain", [1.0, math.sqrt(2.0), 5.0 / 3])
def test_xavier_uniform(gain: float, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    assert_bitwise_parity(
        lambda t, g: init.xavier_uniform_(t, gain, generator=g),
        lambda t, g: nn.init.xavier_uniform_(t, gain, generator=g),
        shape,
        dtype,
    )


@dtypes
@shapes
@pytest.mark.parametrize("gain", [1.0, math.sqrt(2.0), 5.0 / 3])
def test_xavier_normal(gain: float, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    assert_bitwise_parity(
        lambda t, g: init.xavier_normal_(t, gain, generator=g),
        lambda t, g: nn.init.xavier_normal_(t, gain, generator=g),
        shape,
        dtype,
    )


KAIMING_CASES = [
    (0, "fan_in", "leaky_relu"),  # torch's default: leaky_relu(0) = relu
    (math.sqrt(5), "fan_in", "leaky_relu"),  # nn.Linear / nn.ConvNd reset_parameters
    (0.2, "fan_out", "leaky_relu"),
    (0, "fan_out", "relu"),  # torchvision ResNet
    (0, "fan_in", "linear"),
    (0, "fan_in", "tanh"),
    (0, "fan_in", "selu"),
    (0.1, "fan_in", "conv2d"),  # `a` is ignored for non-leaky nonlinearities
]


@dtypes
@shapes
@pytest.mark.parametrize(("a", "mode", "nonlinearity"), KAIMING_CASES)
def test_kaiming_uniform(
    a: float, mode: str, nonlinearity: str, shape: tuple[int, ...], dtype: torch.dtype
) -> None:
    assert_bitwise_parity(
        lambda t, g: init.kaiming_uniform_(t, a, mode, nonlinearity, generator=g),
        lambda t, g: nn.init.kaiming_uniform_(t, a, mode, nonlinearity, generator=g),
        shape,
        dtype,
    )


@dtypes
@shapes
@pytest.mark.parametrize(("a", "mode", "nonlinearity"), KAIMING_CASES)
def test_kaiming_normal(
    a: float, mode: str, nonlinearity: str, shape: tuple[int, ...], dtype: torch.dtype
) -> None:
    assert_bitwise_parity(
        lambda t, g: init.kaiming_normal_(t, a, mode, nonlinearity, generator=g),
        lambda t, g: nn.init.kaiming_normal_(t, a, mode, nonlinearity, generator=g),
        shape,
        dtype,
    )


def test_kaiming_positional_arguments_keep_torchs_order() -> None:
    shape = (16, 8, 3, 3)
    mine, reference = filled_pair(
        lambda t, g: init.kaiming_uniform_(t, 0.2, "fan_out", "leaky_relu", g),
        lambda t, g: nn.init.kaiming_uniform_(t, 0.2, "fan_out", "leaky_relu", g),
        shape,
        torch.float32,
        ("generator",),
    )
    assert torch.equal(mine, reference)


# --- keyword-only extras change only what they name ---------------------------------------------


@pytest.mark.parametrize("shape", [(64, 32), (3, 3, 16, 32), (5, 8, 3)], ids=str)
def test_keras_layout_changes_only_the_fans(shape: tuple[int, ...]) -> None:
    # A Keras kernel (*k, in, out) has the fans of the torch weight (out, in, *k); from the same
    # generator both get the same sequence of values.
    keras_weight = init.kaiming_normal_(
        torch.empty(shape), generator=torch.Generator().manual_seed(SEED), layout="keras"
    )
    torch_weight = nn.init.kaiming_normal_(
        torch.empty(shape[-1], shape[-2], *shape[:-2]),
        generator=torch.Generator().manual_seed(SEED),
    )
    assert torch.equal(keras_weight.flatten(), torch_weight.flatten())


def test_grouped_conv_uses_fan_out_per_group() -> None:
    shape = (32, 4, 3, 3)  # Conv2d(16, 32, 3, groups=4): fan_in 4*9, fan_out (32/4)*9
    bound = math.sqrt(3.0) * (1.0 * math.sqrt(2.0 / float(36 + 72)))
    assert_bitwise_parity(
        lambda t, g: init.xavier_uniform_(t, generator=g, groups=4),
        lambda t, g: nn.init.uniform_(t, -bound, bound, g),
        shape,
        torch.float32,
        ("generator",),
    )


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_truncated_distribution_extra_is_keras_jax_truncation(shape: tuple[int, ...]) -> None:
    # Keras / JAX: N(0, sigma^2) restricted to +-2 sigma, sigma = target std / 0.8796...
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    sigma = (math.sqrt(2.0) / math.sqrt(fan_in)) / TRUNCATION_STD_2
    assert_bitwise_parity(
        lambda t, g: init.kaiming_normal_(
            t, nonlinearity="relu", generator=g, distribution="truncated_normal"
        ),
        lambda t, g: nn.init.trunc_normal_(t, 0.0, sigma, -2.0 * sigma, 2.0 * sigma, g),
        shape,
        torch.float32,
        ("generator",),
    )


# --- functions torch lacks ----------------------------------------------------------------------


@dtypes
@shapes
def test_lecun_uniform_is_kaiming_uniform_linear(
    shape: tuple[int, ...], dtype: torch.dtype
) -> None:
    # LeCun uniform U(+-sqrt(3 / fan_in)) = torch's kaiming_uniform_(nonlinearity="linear").
    assert_bitwise_parity(
        lambda t, g: init.lecun_uniform_(t, g),
        lambda t, g: nn.init.kaiming_uniform_(t, nonlinearity="linear", generator=g),
        shape,
        dtype,
    )


@dtypes
@shapes
def test_lecun_normal_is_kaiming_normal_linear(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    # LeCun normal N(0, 1 / fan_in) = torch's kaiming_normal_(nonlinearity="linear").
    assert_bitwise_parity(
        lambda t, g: init.lecun_normal_(t, g),
        lambda t, g: nn.init.kaiming_normal_(t, nonlinearity="linear", generator=g),
        shape,
        dtype,
    )


@shapes
def test_lecun_normal_truncated(shape: tuple[int, ...]) -> None:
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    sigma = (1.0 / math.sqrt(fan_in)) / TRUNCATION_STD_2
    assert_bitwise_parity(
        lambda t, g: init.lecun_normal_(t, g, distribution="truncated_normal"),
        lambda t, g: nn.init.trunc_normal_(t, 0.0, sigma, -2.0 * sigma, 2.0 * sigma, g),
        shape,
        torch.float32,
        ("generator",),
    )


@dtypes
@shapes
def test_variance_scaling_presets(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    sigma = (1.0 / math.sqrt(fan_in)) / TRUNCATION_STD_2
    cases: list[tuple[Fill, Fill]] = [
        # Keras / JAX default: scale 1, fan_in, truncated normal corrected to std sqrt(1/fan_in).
        (
            lambda t, g: init.variance_scaling_(t, generator=g),
            lambda t, g: nn.init.trunc_normal_(t, 0.0, sigma, -2.0 * sigma, 2.0 * sigma, g),
        ),
        # scale 2, fan_in, normal = He normal.
        (
            lambda t, g: init.variance_scaling_(t, 2.0, "fan_in", "normal", g),
            lambda t, g: nn.init.kaiming_normal_(t, nonlinearity="relu", generator=g),
        ),
        # scale 2, fan_out, uniform = He uniform with mode fan_out.
        (
            lambda t, g: init.variance_scaling_(t, 2.0, "fan_out", "uniform", g),
            lambda t, g: nn.init.kaiming_uniform_(t, mode="fan_out", generator=g),
        ),
        # scale 1, fan_avg, uniform = Glorot uniform.
        (
            lambda t, g: init.variance_scaling_(t, 1.0, "fan_avg", "uniform", g),
            lambda t, g: nn.init.xavier_uniform_(t, generator=g),
        ),
    ]
    for ours, theirs in cases:
        assert_bitwise_parity(ours, theirs, shape, dtype, ("generator",))


@shapes
@pytest.mark.parametrize("scale", [1.0, 2.0, 0.1])
def test_variance_scaling_fan_geo_avg(shape: tuple[int, ...], scale: float) -> None:
    # JAX's fan_geo_avg: n = sqrt(fan_in * fan_out); the uniform bound is sqrt(3 * scale / n).
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    bound = math.sqrt(3.0 * scale / math.sqrt(fan_in * fan_out))
    mine, reference = filled_pair(
        lambda t, g: init.variance_scaling_(t, scale, "fan_geo_avg", "uniform", g),
        lambda t, g: nn.init.uniform_(t, -bound, bound, g),
        shape,
        torch.float64,
        "generator",
    )
    torch.testing.assert_close(mine, reference, rtol=1e-14, atol=0)


DELTA_SHAPES = [(8, 4, 3, 3), (6, 6, 3), (16, 8, 2, 2), (8, 4, 3, 3, 3), (5, 2, 4)]


@pytest.mark.parametrize("dtype", [*FULL_DTYPES, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("shape", DELTA_SHAPES, ids=str)
@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_delta_orthogonal(gain: float, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    weight = torch.full(shape, math.nan, dtype=dtype)
    assert init.delta_orthogonal_(weight, gain, torch.Generator().manual_seed(SEED)) is weight
    # JAX's delta_orthogonal: centre tap at (k - 1) // 2 on every spatial axis, zeros elsewhere.
    centre = tuple((k - 1) // 2 for k in shape[2:])
    matrix = weight[(slice(None), slice(None), *centre)]
    rest = weight.clone()
    rest[(slice(None), slice(None), *centre)] = 0
    assert torch.equal(rest, torch.zeros_like(rest))
    # The centre is orthogonal_ of an (out, in) matrix from the same generator (torch's own
    # where torch supports the dtype).
    expected = init.orthogonal_(
        torch.empty(shape[:2], dtype=dtype), gain, torch.Generator().manual_seed(SEED)
    )
    assert torch.equal(matrix, expected)
    if dtype in FULL_DTYPES:
        reference = torch.empty(shape[:2], dtype=dtype)
        nn.init.orthogonal_(reference, gain, torch.Generator().manual_seed(SEED))
        assert torch.equal(matrix, reference)
    # Orthonormal columns (in <= out): Q^T Q = gain^2 I. Householder QR is backward stable, so
    # the error is a small multiple of eps for full precision; a half dtype adds one rounding
    # per entry (2 eps covers a unit column norm).
    columns = matrix.double().T @ matrix.double() / gain**2
    tolerance = (64 if dtype in FULL_DTYPES else 2) * torch.finfo(dtype).eps
    assert (columns - torch.eye(shape[1], dtype=torch.float64)).abs().max().item() <= tolerance


def test_delta_orthogonal_needs_in_at_most_out() -> None:
    with pytest.raises(ShapeError, match=r"in_channels <= out_channels.*\(4, 8, 3, 3\)"):
        init.delta_orthogonal_(torch.empty(4, 8, 3, 3))


# --- torch's edge-case behaviour ----------------------------------------------------------------


@pytest.mark.parametrize("function", [init.kaiming_uniform_, init.kaiming_normal_])
@pytest.mark.parametrize("shape", [(0, 3), (4, 0), (0, 2, 3, 3)], ids=str)
def test_kaiming_on_zero_elements_warns_like_torch(
    function: Callable[[Tensor], Tensor], shape: tuple[int, ...]
) -> None:
    tensor = torch.empty(shape)
    with pytest.warns(UserWarning, match="zero-element") as ours:
        assert function(tensor) is tensor
    torch_function = getattr(nn.init, function.__name__)
    with pytest.warns(UserWarning, match="zero-element") as theirs:
        torch_function(torch.empty(shape))
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
    # The warning points at the caller's line, as torch's does.
    assert ours[0].filename == __file__


NO_WARNING_ON_EMPTY: list[tuple[str, Callable[[Tensor], Tensor]]] = [
    ("xavier_uniform_", init.xavier_uniform_),
    ("uniform_", init.uniform_),
    ("normal_", init.normal_),
    ("orthogonal_", init.orthogonal_),
]


@pytest.mark.parametrize(
    "function", [f for _, f in NO_WARNING_ON_EMPTY], ids=[n for n, _ in NO_WARNING_ON_EMPTY]
)
def test_empty_tensors_are_left_alone(function: Callable[[Tensor], Tensor]) -> None:
    tensor = torch.empty(0, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert function(tensor) is tensor


REJECTED_SHAPES: list[tuple[str, Callable[[Tensor], Tensor], tuple[int, ...]]] = [
    ("xavier_uniform_", init.xavier_uniform_, (5,)),
    ("xavier_normal_", init.xavier_normal_, (5,)),
    ("kaiming_uniform_", init.kaiming_uniform_, (5,)),
    ("kaiming_normal_", init.kaiming_normal_, (5,)),
    ("orthogonal_", init.orthogonal_, (5,)),
    ("eye_", init.eye_, (2, 3, 4)),
    ("dirac_", init.dirac_, (4, 4)),
    ("sparse_", lambda t: init.sparse_(t, 0.1), (2, 3, 4)),
]


@pytest.mark.parametrize(
    ("name", "function", "shape"), REJECTED_SHAPES, ids=[row[0] for row in REJECTED_SHAPES]
)
def test_rejects_the_shapes_torch_rejects(
    name: str, function: Callable[[Tensor], Tensor], shape: tuple[int, ...]
) -> None:
    torch_function = getattr(nn.init, name)
    args = (0.1,) if name == "sparse_" else ()
    with pytest.raises(ValueError, match="dimensions"):
        torch_function(torch.empty(shape), *args)
    # initlab's error is a ValueError too, and says which shape it got.
    with pytest.raises(ShapeError, match=re.escape(str(shape))):
        function(torch.empty(shape))


def test_dirac_groups_must_divide_out_channels() -> None:
    with pytest.raises(ValueError, match="divisible"):
        nn.init.dirac_(torch.empty(5, 2, 3), groups=2)
    with pytest.raises(ShapeError, match="groups"):
        init.dirac_(torch.empty(5, 2, 3), groups=2)


REQUIRES_GRAD_CALLS: list[tuple[str, Callable[[Tensor], Tensor], tuple[int, ...]]] = [
    ("uniform_", init.uniform_, (4, 5)),
    ("normal_", init.normal_, (4, 5)),
    ("trunc_normal_", init.trunc_normal_, (4, 5)),
    ("trunc_normal_ rejection", lambda t: init.trunc_normal_(t, 0, 1, 1, 2.5), (4, 5)),
    ("constant_", lambda t: init.constant_(t, 0.5), (4,)),
    ("ones_", init.ones_, (4,)),
    ("zeros_", init.zeros_, (4,)),
    ("eye_", init.eye_, (4, 5)),
    ("dirac_", init.dirac_, (4, 4, 3, 3)),
    ("xavier_uniform_", init.xavier_uniform_, (4, 5)),
    ("xavier_normal_", init.xavier_normal_, (4, 5)),
    ("kaiming_uniform_", init.kaiming_uniform_, (4, 5)),
    ("kaiming_normal_", init.kaiming_normal_, (4, 5)),
    ("lecun_uniform_", init.lecun_uniform_, (4, 5)),
    ("lecun_normal_", init.lecun_normal_, (4, 5)),
    ("variance_scaling_", init.variance_scaling_, (4, 5)),
    ("orthogonal_", init.orthogonal_, (4, 5)),
    ("delta_orthogonal_", init.delta_orthogonal_, (8, 4, 3, 3)),
    ("sparse_", lambda t: init.sparse_(t, 0.5), (4, 5)),
]


@pytest.mark.parametrize(
    ("function", "shape"),
    [row[1:] for row in REQUIRES_GRAD_CALLS],
    ids=[row[0] for row in REQUIRES_GRAD_CALLS],
)
def test_leaf_parameters_that_require_grad(
    function: Callable[[Tensor], Tensor], shape: tuple[int, ...]
) -> None:
    parameter = nn.Parameter(torch.full(shape, math.nan))
    assert function(parameter) is parameter
    assert parameter.is_leaf
    assert parameter.requires_grad
    assert parameter.grad_fn is None
    assert not parameter.isnan().any()
    # Still trainable: a backward pass reaches it.
    parameter.sum().backward()
    assert parameter.grad is not None


def test_every_torch_initializer_has_an_initlab_twin() -> None:
    torch_names = {
        name
        for name in dir(nn.init)
        if name.endswith("_") and not name.startswith("_") and callable(getattr(nn.init, name))
    }
    # torch's deprecated un-suffixed aliases are not part of the contract.
    assert torch_names <= set(init.__all__)
