"""initlab.numpy: the schemes as NumPy arrays, (fan_in, fan_out) layout by default."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

import initlab.numpy as inp
from initlab.errors import ConfigError, ShapeError, UnknownNameError

# function name -> (shape that fits it in the default Keras layout, extra parameters)
FUNCTIONS: dict[str, tuple[tuple[int, ...], dict[str, Any]]] = {
    "zeros": ((5,), {}),
    "ones": ((4, 3), {}),
    "constant": ((4, 3), {"value": 0.25}),
    "uniform": ((4, 3), {"a": -1.0, "b": 1.0}),
    "normal": ((4, 3), {"std": 0.02}),
    "truncated_normal": ((4, 3), {"std": 0.02}),
    "variance_scaling": ((3, 3, 8, 16), {"scale": 2.0}),
    "xavier_uniform": ((3, 3, 8, 16), {}),
    "xavier_normal": ((3, 3, 8, 16), {}),
    "glorot_uniform": ((64, 32), {}),
    "glorot_normal": ((64, 32), {"distribution": "truncated_normal"}),
    "he_uniform": ((64, 32), {}),
    "he_normal": ((64, 32), {"mode": "fan_out"}),
    "lecun_uniform": ((5, 8, 16), {}),
    "lecun_normal": ((5, 8, 16), {}),
    "orthogonal": ((3, 3, 8, 16), {}),
    "identity": ((6, 4), {}),
    "dirac": ((3, 3, 8, 16), {}),
    "delta_orthogonal": ((3, 3, 8, 16), {}),
    "sparse": ((20, 10), {"sparsity": 0.2}),
}


def test_every_exported_function_is_covered() -> None:
    assert set(inp.__all__) == {*FUNCTIONS, "sample"}


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_shape_and_dtype(name: str, dtype: Any) -> None:
    shape, params = FUNCTIONS[name]
    array = getattr(inp, name)(shape, seed=0, dtype=dtype, **params)
    assert isinstance(array, np.ndarray)
    assert array.shape == shape
    assert array.dtype == dtype
    assert np.isfinite(array).all()


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_default_dtype_is_float64(name: str) -> None:
    shape, params = FUNCTIONS[name]
    assert getattr(inp, name)(shape, seed=0, **params).dtype == np.float64


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_same_as_sample_by_name(name: str) -> None:
    shape, params = FUNCTIONS[name]
    named = getattr(inp, name)(shape, seed=3, **params)
    assert np.array_equal(named, inp.sample(name, shape, seed=3, **params))


def test_functions_are_documented() -> None:
    assert inp.he_normal.__name__ == "he_normal"
    assert inp.he_normal.__doc__
    assert "He et al." in inp.he_normal.__doc__


# --- layout ------------------------------------------------------------------------------------

# A dense 784 -> 256 layer. The std of 200_704 draws has standard error ~ sigma / sqrt(2 n)
# (normal law: kurtosis 3, se = sigma * sqrt((3 - 1) / (4 n))); allow 5 standard errors.
DENSE_IN, DENSE_OUT = 784, 256
STD_TOLERANCE = 5 / math.sqrt(2 * DENSE_IN * DENSE_OUT)


def test_default_layout_is_fan_in_fan_out() -> None:
    weights = inp.he_normal((DENSE_IN, DENSE_OUT), seed=0)
    expected = math.sqrt(2.0 / DENSE_IN)
    assert weights.std() == pytest.approx(expected, rel=STD_TOLERANCE)
    assert weights.mean() == pytest.approx(0.0, abs=5 * expected / math.sqrt(weights.size))


def test_torch_layout_reads_out_in() -> None:
    weights = inp.he_normal((DENSE_OUT, DENSE_IN), seed=0, layout="torch")
    assert weights.std() == pytest.approx(math.sqrt(2.0 / DENSE_IN), rel=STD_TOLERANCE)


def test_fan_out_mode() -> None:
    weights = inp.he_normal((DENSE_IN, DENSE_OUT), seed=0, mode="fan_out")
    assert weights.std() == pytest.approx(math.sqrt(2.0 / DENSE_OUT), rel=STD_TOLERANCE)


@pytest.mark.parametrize(
    ("name", "bound"),
    [
        ("he_uniform", math.sqrt(6.0 / DENSE_IN)),
        ("lecun_uniform", math.sqrt(3.0 / DENSE_IN)),
        ("xavier_uniform", math.sqrt(6.0 / (DENSE_IN + DENSE_OUT))),
    ],
)
def test_uniform_bounds_use_keras_fans(name: str, bound: float) -> None:
    weights = getattr(inp, name)((DENSE_IN, DENSE_OUT), seed=0)
    assert np.abs(weights).max() <= bound
    # 200k draws of U(-b, b) reach within 1e-3 b of the bound (miss probability e^-200).
    assert np.abs(weights).max() >= bound * (1 - 1e-3)


def test_truncated_normal_keras_convention() -> None:
    # Keras he_normal: truncated at 2 sigma, sigma corrected so the std is sqrt(2 / fan_in).
    weights = inp.he_normal((DENSE_IN, DENSE_OUT), seed=0, distribution="truncated_normal")
    expected = math.sqrt(2.0 / DENSE_IN)
    assert np.abs(weights).max() <= 2 * expected / 0.87962566103423978
    # se(std) = sigma * sqrt((kurtosis - 1) / (4 n)) with the kurtosis of N(0, 1) cut at +-2.
    kurtosis = float(stats.truncnorm(-2.0, 2.0).stats(moments="k")) + 3.0
    tolerance = 5 * math.sqrt((kurtosis - 1) / (4 * weights.size))
    assert weights.std() == pytest.approx(expected, rel=tolerance)


def test_grouped_kernel() -> None:
    # Keras Conv2D(32, 3, groups=4) on 16 channels: kernel (3, 3, 4, 32); fan_out 9 * 32 / 4.
    grouped = inp.sample("xavier_uniform", (3, 3, 4, 32), seed=0, groups=4)
    assert np.abs(grouped).max() <= math.sqrt(6.0 / (36 + 72))
    assert np.abs(grouped).max() > math.sqrt(6.0 / (36 + 288))


def test_keras_orthogonal_columns_are_orthonormal() -> None:
    kernel = inp.orthogonal((3, 3, 8, 16), seed=0)
    matrix = kernel.reshape(-1, 16)
    np.testing.assert_allclose(matrix.T @ matrix, np.eye(16), atol=1e-12)


def test_keras_dirac_is_identity_convolution() -> None:
    kernel = inp.dirac((3, 3, 8, 8), seed=0)
    np.testing.assert_array_equal(kernel[1, 1], np.eye(8))
    assert kernel.sum() == 8


def test_keras_delta_orthogonal_centre_tap() -> None:
    kernel = inp.delta_orthogonal((3, 3, 8, 16), seed=0, gain=2.0)
    centre = kernel[1, 1]  # (in, out) = (8, 16): orthonormal rows times the gain
    np.testing.assert_allclose(centre @ centre.T, 4.0 * np.eye(8), atol=1e-12)
    assert np.abs(kernel).sum() == pytest.approx(np.abs(centre).sum(), rel=1e-15)


def test_keras_sparse_zeros_per_input_unit() -> None:
    weights = inp.sparse((20, 10), seed=0, sparsity=0.2)
    # (in, out) layout: each input unit (row) loses ceil(0.2 * 10) = 2 of its 10 connections.
    assert ((weights == 0).sum(axis=1) == 2).all()


# --- randomness --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["he_normal", "truncated_normal", "orthogonal", "sparse"])
def test_seed_reproducibility(name: str) -> None:
    shape, params = FUNCTIONS[name]
    function = getattr(inp, name)
    first = function(shape, seed=7, **params)
    assert np.array_equal(first, function(shape, seed=7, **params))
    assert not np.array_equal(first, function(shape, seed=8, **params))


def test_seed_equals_a_fresh_default_rng() -> None:
    seeded = inp.he_normal((64, 32), seed=11)
    from_rng = inp.he_normal((64, 32), rng=np.random.default_rng(11))
    assert np.array_equal(seeded, from_rng)


def test_rng_is_advanced() -> None:
    rng = np.random.default_rng(0)
    first = inp.normal((10,), rng=rng)
    second = inp.normal((10,), rng=rng)
    assert not np.array_equal(first, second)


def test_rng_and_seed_together_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="rng or seed"):
        inp.he_normal((4, 4), rng=np.random.default_rng(0), seed=0)


# --- errors ------------------------------------------------------------------------------------


def test_unknown_parameter_names_the_accepted_ones() -> None:
    with pytest.raises(ConfigError, match=r"'mod'.*mode"):
        inp.he_normal((4, 4), seed=0, mod="fan_out")


def test_unknown_scheme_suggests_the_closest() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'he_normal'"):
        inp.sample("he_norml", (4, 4), seed=0)


def test_bias_shape_under_torch_layout() -> None:
    with pytest.raises(ShapeError, match=r"\(7,\)"):
        inp.he_normal((7,), seed=0, layout="torch")


def test_bias_shape_under_keras_layout_uses_n() -> None:
    # Keras: a rank-1 shape (n,) has fan_in = fan_out = n.
    bias = inp.lecun_uniform((4000,), seed=0)
    assert np.abs(bias).max() <= math.sqrt(3.0 / 4000)
