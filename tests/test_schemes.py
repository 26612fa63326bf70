"""Schemes: the registry, serialization, validation, and the statistics each scheme implies."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as scipy_stats

import initlab
from initlab.errors import ConfigError, InitlabError, ShapeError, UnknownNameError
from initlab.schemes import (
    TRUNCATION_STD_2,
    HeNormal,
    HeUniform,
    LeCunNormal,
    LeCunUniform,
    Normal,
    Scheme,
    TruncatedNormal,
    Uniform,
    ValueStats,
    VarianceScaling,
    Weight,
    XavierNormal,
    XavierUniform,
    from_config,
    get,
    scheme_aliases,
    scheme_class,
    scheme_names,
)

# Parameters that differ from the defaults, so a round trip that dropped one would show.
EXAMPLE_PARAMS: dict[str, dict[str, Any]] = {
    "checkpoint": {"path": "model.safetensors", "strip_prefix": "module."},
    "constant": {"value": 0.5},
    "delta_orthogonal": {"gain": 2.0},
    "dirac": {"groups": 2},
    "he_normal": {
        "a": 0.1,
        "mode": "fan_out",
        "nonlinearity": "leaky_relu",
        "distribution": "truncated_normal",
    },
    "he_uniform": {"mode": "fan_avg", "nonlinearity": "gelu"},
    "identity": {"gain": 0.5},
    "lecun_normal": {"mode": "fan_out", "distribution": "truncated_normal"},
    "lecun_uniform": {"mode": "fan_geo_avg"},
    "mamba_dt_bias": {"dt_min": 0.002, "dt_max": 0.05, "dt_init_floor": 1e-3},
    "normal": {"mean": 0.1, "std": 0.02},
    "ones": {},
    "orthogonal": {"gain": math.sqrt(2.0)},
    "partial_hadamard": {},
    "s4d_real_log": {},
    "sparse": {"sparsity": 0.3, "std": 0.05},
    "truncated_normal": {"mean": 0.0, "std": 0.02, "a": -3.0, "b": 3.0, "unit": "std"},
    "uniform": {"a": -0.1, "b": 0.2},
    "variance_scaling": {"scale": 2.0, "mode": "fan_geo_avg", "distribution": "uniform"},
    "xavier_normal": {"gain": 5.0 / 3, "distribution": "truncated_normal"},
    "xavier_uniform": {"gain": 2.0},
    "zeros": {},
}
FOUNDATION_SCHEMES = sorted(set(EXAMPLE_PARAMS) - {"checkpoint"})
FAN_BASED = [name for name in FOUNDATION_SCHEMES if scheme_class(name).uses_fans]
ELEMENTWISE = ["constant", "normal", "ones", "truncated_normal", "uniform", "zeros"]


# --- registry ----------------------------------------------------------------------------------


def test_foundation_schemes_are_registered() -> None:
    assert set(FOUNDATION_SCHEMES) <= set(scheme_names())
    assert set(FAN_BASED) == {
        "he_normal",
        "he_uniform",
        "lecun_normal",
        "lecun_uniform",
        "variance_scaling",
        "xavier_normal",
        "xavier_uniform",
    }


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("he_normal", HeNormal),
        ("kaiming_normal", HeNormal),
        ("HE_NORMAL", HeNormal),
        ("Kaiming-Normal", HeNormal),
        (" he_uniform ", HeUniform),
        ("kaiming_uniform", HeUniform),
        ("glorot_uniform", XavierUniform),
        ("Glorot_Normal", XavierNormal),
        ("xavier_normal", XavierNormal),
        ("lecun_uniform", LeCunUniform),
        ("LeCun_Normal", LeCunNormal),
        ("vs", VarianceScaling),
        ("gaussian", Normal),
        ("trunc_normal", TruncatedNormal),
        ("Uniform", Uniform),
    ],
)
def test_get_by_name_or_alias_case_insensitive(name: str, cls: type[Scheme]) -> None:
    scheme = get(name)
    assert type(scheme) is cls
    assert scheme_class(name) is cls
    assert scheme == cls()


def test_every_alias_resolves_to_its_scheme() -> None:
    for name in scheme_names():
        for alias in scheme_aliases(name):
            assert scheme_class(alias).name == name
            assert alias in scheme_names(aliases=True)


def test_get_passes_parameters() -> None:
    scheme = get("he_normal", mode="fan_out", nonlinearity="relu")
    assert scheme == HeNormal(mode="fan_out", nonlinearity="relu")


def test_get_on_a_scheme_returns_it_or_a_modified_copy() -> None:
    scheme = HeNormal()
    assert get(scheme) is scheme
    changed = get(scheme, mode="fan_out")
    assert changed == HeNormal(mode="fan_out")
    assert scheme.mode == "fan_in"


def test_top_level_reexports() -> None:
    assert initlab.get is get
    assert initlab.from_config is from_config
    assert initlab.scheme_names is scheme_names


def test_typo_suggests_the_closest_name() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'he_normal'") as info:
        get("he_normall")
    message = str(info.value)
    assert "'he_normall'" in message
    # The full list is the way out when the suggestion is wrong.
    for name in FOUNDATION_SCHEMES:
        assert name in message


def test_unknown_name_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="Unknown scheme"):
        get("nonsense_scheme_name")


@pytest.mark.parametrize("name", FOUNDATION_SCHEMES)
def test_unknown_parameter_names_the_accepted_ones(name: str) -> None:
    accepted = [f.name for f in dataclasses.fields(scheme_class(name)) if f.init]
    with pytest.raises(ConfigError, match="has no parameter 'stdd'") as info:
        get(name, stdd=0.1)
    message = str(info.value)
    assert repr(scheme_class(name).name) in message
    for field in accepted:
        assert field in message


# --- serialization -----------------------------------------------------------------------------


def example(name: str) -> Scheme:
    if name not in EXAMPLE_PARAMS:
        pytest.fail(f"Scheme {name!r} is registered but has no entry in EXAMPLE_PARAMS.")
    return get(name, **EXAMPLE_PARAMS[name])


@pytest.mark.parametrize("name", scheme_names())
def test_config_round_trip(name: str) -> None:
    scheme = example(name)
    config = scheme.to_config()
    assert config["scheme"] == name
    assert {key: value for key, value in config.items() if key != "scheme"} == scheme.params()
    assert from_config(config) == scheme
    # Configs are saved as JSON/YAML: plain values survive a text round trip.
    assert from_config(json.loads(json.dumps(config))) == scheme


@pytest.mark.parametrize("name", FOUNDATION_SCHEMES)
def test_config_round_trip_of_defaults(name: str) -> None:
    scheme = get(name)
    assert from_config(scheme.to_config()) == scheme


@pytest.mark.parametrize("name", scheme_names())
def test_config_by_alias(name: str) -> None:
    scheme = example(name)
    for alias in scheme_aliases(name):
        assert from_config({**scheme.to_config(), "scheme": alias.upper()}) == scheme


def test_config_without_scheme_key() -> None:
    with pytest.raises(ConfigError, match=r"'scheme' key.*'mode'"):
        from_config({"mode": "fan_in"})


def test_keras_spelling_of_untruncated_normal() -> None:
    scheme = get("variance_scaling", distribution="untruncated_normal")
    assert scheme.to_config()["distribution"] == "normal"
    assert from_config(scheme.to_config()) == scheme


def test_str_shows_changed_parameters_only() -> None:
    assert str(get("he_normal")) == "he_normal()"
    assert str(get("he_normal", mode="fan_out")) == "he_normal(mode='fan_out')"
    assert str(get("normal", std=0.02)) == "normal(std=0.02)"


# --- frozen values -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", FOUNDATION_SCHEMES)
def test_schemes_are_frozen_values(name: str) -> None:
    scheme = example(name)
    field = next((f.name for f in dataclasses.fields(scheme) if f.init), "value")
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(scheme, field, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        scheme.extra = 1
    twin = example(name)
    assert twin == scheme
    assert hash(twin) == hash(scheme)


# --- validation at construction ----------------------------------------------------------------

INVALID: list[tuple[str, dict[str, Any], type[InitlabError], str]] = [
    ("normal", {"std": -1.0}, ConfigError, "std"),
    ("normal", {"mean": math.inf}, ConfigError, "mean"),
    ("uniform", {"a": 2.0, "b": 1.0}, ConfigError, "a <= b"),
    ("uniform", {"a": math.nan}, ConfigError, "a"),
    ("truncated_normal", {"std": 0.0}, ConfigError, "std"),
    ("truncated_normal", {"a": 1.0, "b": 1.0}, ConfigError, "a < b"),
    ("truncated_normal", {"unit": "sigma"}, UnknownNameError, "unit"),
    ("constant", {"value": math.nan}, ConfigError, "value"),
    ("sparse", {"sparsity": 1.5}, ConfigError, "sparsity"),
    ("sparse", {"sparsity": -0.1}, ConfigError, "sparsity"),
    ("sparse", {"std": -0.1}, ConfigError, "std"),
    ("variance_scaling", {"scale": 0.0}, ConfigError, "scale"),
    ("variance_scaling", {"scale": -2.0}, ConfigError, "scale"),
    ("variance_scaling", {"mode": "fan_inn"}, UnknownNameError, "mode"),
    ("variance_scaling", {"distribution": "gaussian"}, UnknownNameError, "distribution"),
    ("he_normal", {"distribution": "uniform"}, UnknownNameError, "distribution"),
    ("he_normal", {"mode": "avg"}, UnknownNameError, "mode"),
    ("he_uniform", {"nonlinearity": "relux"}, UnknownNameError, "nonlinearity"),
    ("he_uniform", {"a": math.nan}, ConfigError, "a"),
    ("lecun_normal", {"mode": "fan"}, UnknownNameError, "mode"),
    ("xavier_uniform", {"gain": "1"}, ConfigError, "gain"),
    ("xavier_normal", {"distribution": "uniform"}, UnknownNameError, "distribution"),
    ("orthogonal", {"gain": math.inf}, ConfigError, "gain"),
    ("identity", {"gain": math.nan}, ConfigError, "gain"),
    ("dirac", {"groups": 0}, ConfigError, "groups"),
    ("dirac", {"groups": 1.5}, ConfigError, "groups"),
    ("delta_orthogonal", {"gain": math.nan}, ConfigError, "gain"),
]


@pytest.mark.parametrize(
    ("name", "params", "error", "field"),
    INVALID,
    ids=[f"{name}-{'-'.join(params)}" for name, params, _, _ in INVALID],
)
def test_invalid_parameters_are_rejected_at_construction(
    name: str, params: dict[str, Any], error: type[InitlabError], field: str
) -> None:
    with pytest.raises(error) as info:
        get(name, **params)
    message = str(info.value)
    assert isinstance(info.value, InitlabError)
    assert isinstance(info.value, ValueError)
    assert name in message
    assert field in message
    # The message ends with what was received.
    received = next(iter(params.values()))
    assert repr(received) in message or str(received) in message


def test_did_you_mean_for_a_bad_choice() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'fan_in'"):
        get("variance_scaling", mode="fan_inn")
    with pytest.raises(UnknownNameError, match="Did you mean 'relu'"):
        get("he_uniform", nonlinearity="relux")


# --- statistics: formula parity with Keras 3 and JAX --------------------------------------------

# The worked test vector of REFERENCE.md: a conv weight (64, 32, 3, 3) in torch layout, which
# is the kernel (3, 3, 32, 64) in Keras/JAX layout; fan_in = 32*9 = 288, fan_out = 64*9 = 576.
TORCH_SHAPE = (64, 32, 3, 3)
KERAS_SHAPE = (3, 3, 32, 64)
FAN_IN, FAN_OUT = 288, 576
FAN_AVG = (FAN_IN + FAN_OUT) / 2
FAN_GEO_AVG = math.sqrt(FAN_IN * FAN_OUT)

# Expected values from the published formulas. Keras 3, keras/src/initializers/
# random_initializers.py, VarianceScaling.__call__: scale /= max(1, n) for n = fan_in, fan_out
# or (fan_in + fan_out) / 2; "uniform": limit = sqrt(3 * scale); "untruncated_normal":
# stddev = sqrt(scale); "truncated_normal": stddev = sqrt(scale) / 0.87962566103423978, drawn
# from truncated_normal (cut at 2 stddev). JAX, jax/_src/nn/initializers.py, variance_scaling:
# variance = scale / n with n also sqrt(fan_in * fan_out) for "fan_geo_avg"; "uniform" draws
# U(-1, 1) * sqrt(3 * variance); "normal" N(0, 1) * sqrt(variance); "truncated_normal"
# truncated_normal(-2, 2) * sqrt(variance) / .87962566103423978. torch.nn.init:
# kaiming_uniform_ bound = gain * sqrt(3 / fan), gain(leaky_relu, a) = sqrt(2 / (1 + a^2)).
# Each row: (label, scheme, quantity, published formula, REFERENCE.md's 6-digit value).
# quantity: "bound" = hard bound of the values, "std" = std of the values, "param_std" = the
# pre-truncation sigma handed to the truncated normal.
WORKED_VECTOR: list[tuple[str, Scheme, str, float, float]] = [
    ("glorot_uniform bound", XavierUniform(), "bound", math.sqrt(3.0 / FAN_AVG), 0.083333),
    ("glorot_uniform std", XavierUniform(), "std", math.sqrt(1.0 / FAN_AVG), 0.048113),
    ("glorot_normal std", XavierNormal(), "std", math.sqrt(1.0 / FAN_AVG), 0.048113),
    (
        "glorot_normal keras std",
        XavierNormal(distribution="truncated_normal"),
        "std",
        math.sqrt(1.0 / FAN_AVG),
        0.048113,
    ),
    ("he_uniform bound", HeUniform(), "bound", math.sqrt(3.0 * 2.0 / FAN_IN), 0.144338),
    ("he_normal std", HeNormal(), "std", math.sqrt(2.0 / FAN_IN), 0.083333),
    (
        "he_normal fan_out std",
        HeNormal(mode="fan_out"),
        "std",
        math.sqrt(2.0 / FAN_OUT),
        0.058926,
    ),
    ("lecun_uniform bound", LeCunUniform(), "bound", math.sqrt(3.0 / FAN_IN), 0.102062),
    ("lecun_normal std", LeCunNormal(), "std", math.sqrt(1.0 / FAN_IN), 0.058926),
    (
        "lecun_normal keras std",
        LeCunNormal(distribution="truncated_normal"),
        "std",
        math.sqrt(1.0 / FAN_IN),
        0.058926,
    ),
    (
        "lecun_normal keras param std",
        LeCunNormal(distribution="truncated_normal"),
        "param_std",
        math.sqrt(1.0 / FAN_IN) / 0.87962566103423978,
        0.066989,
    ),
    (
        "lecun_normal keras bound",
        VarianceScaling(1.0, "fan_in", "truncated_normal"),
        "bound",
        2.0 * math.sqrt(1.0 / FAN_IN) / 0.87962566103423978,
        0.133979,
    ),
    (
        "he_normal keras param std",
        HeNormal(distribution="truncated_normal"),
        "param_std",
        math.sqrt(2.0 / FAN_IN) / 0.87962566103423978,
        0.094737,
    ),
    (
        "he_normal keras bound",
        VarianceScaling(2.0, "fan_in", "truncated_normal"),
        "bound",
        2.0 * math.sqrt(2.0 / FAN_IN) / 0.87962566103423978,
        0.189475,
    ),
    (
        "jax he fan_geo_avg std",
        VarianceScaling(2.0, "fan_geo_avg", "normal"),
        "std",
        math.sqrt(2.0 / FAN_GEO_AVG),
        0.070075,
    ),
    (
        "torch default bound",
        HeUniform(a=math.sqrt(5.0)),
        "bound",
        math.sqrt(2.0 / (1 + 5.0)) * math.sqrt(3.0 / FAN_IN),
        0.058926,
    ),
    (
        "torch default std",
        HeUniform(a=math.sqrt(5.0)),
        "std",
        math.sqrt(2.0 / (1 + 5.0)) / math.sqrt(FAN_IN),
        0.034021,
    ),
    (
        "keras variance_scaling default std",
        VarianceScaling(),
        "std",
        math.sqrt(1.0 / FAN_IN),
        0.058926,
    ),
]


def quantity(scheme: Scheme, shape: tuple[int, ...], layout: str, which: str) -> float:
    if which == "param_std":
        law = scheme.law(shape, layout=layout)
        assert isinstance(law, TruncatedNormal)
        assert (law.a, law.b, law.unit) == (-2.0, 2.0, "std")
        return float(law.std)
    values = scheme.stats(shape, layout=layout)
    if which == "bound":
        assert values.bound is not None
        return values.bound
    return values.std


@pytest.mark.parametrize(
    ("label", "scheme", "which", "formula", "published"),
    WORKED_VECTOR,
    ids=[row[0] for row in WORKED_VECTOR],
)
@pytest.mark.parametrize(
    ("shape", "layout"),
    [(TORCH_SHAPE, "torch"), (KERAS_SHAPE, "keras"), (KERAS_SHAPE, "jax")],
    ids=["torch", "keras", "jax"],
)
def test_worked_test_vector(
    shape: tuple[int, ...],
    layout: str,
    label: str,
    scheme: Scheme,
    which: str,
    formula: float,
    published: float,
) -> None:
    value = quantity(scheme, shape, layout, which)
    assert value == pytest.approx(formula, rel=1e-12)
    assert value == pytest.approx(published, abs=5e-7)


def test_untruncated_normal_schemes_have_no_bound() -> None:
    assert HeNormal().stats(TORCH_SHAPE).bound is None
    assert XavierNormal().stats(TORCH_SHAPE).bound is None
    assert Normal(0.0, 0.02).stats(TORCH_SHAPE).bound is None


def test_truncation_std_2_is_the_std_of_a_standard_normal_cut_at_2() -> None:
    phi, cdf = scipy_stats.norm.pdf(2.0), scipy_stats.norm.cdf(2.0)
    expected = math.sqrt(1.0 - 4.0 * phi / (2.0 * cdf - 1.0))
    assert pytest.approx(expected, rel=1e-15) == TRUNCATION_STD_2
    assert pytest.approx(scipy_stats.truncnorm(-2.0, 2.0).std(), rel=1e-14) == TRUNCATION_STD_2
    # Keras and JAX hard-code this literal; initlab uses the same.
    assert TRUNCATION_STD_2 == 0.87962566103423978


# --- statistics of the other schemes -----------------------------------------------------------


def test_elementwise_stats() -> None:
    uniform = Uniform(-0.1, 0.3).stats((4, 5))
    assert uniform.mean == pytest.approx(0.1, rel=1e-15)
    assert uniform.std == pytest.approx(0.4 / math.sqrt(12.0), rel=1e-15)
    assert uniform.bound == 0.3
    assert Normal(0.5, 0.02).stats((4, 5)) == initlab.ValueStats(0.5, 0.02, None)
    assert get("constant", value=-0.3).stats((7,)) == initlab.ValueStats(-0.3, 0.0, 0.3)
    assert get("zeros").stats((7,)) == initlab.ValueStats(0.0, 0.0, 0.0)
    assert get("ones").stats((7,)) == initlab.ValueStats(1.0, 0.0, 1.0)


@pytest.mark.parametrize(
    ("mean", "std", "a", "b", "unit"),
    [
        (0.0, 1.0, -2.0, 2.0, "absolute"),
        (0.0, 0.02, -2.0, 2.0, "absolute"),
        (0.3, 1.0, 0.0, 1.0, "absolute"),
        (0.1, 0.5, -3.0, 1.0, "std"),
    ],
)
def test_truncated_normal_stats_match_scipy(
    mean: float, std: float, a: float, b: float, unit: str
) -> None:
    scheme = TruncatedNormal(mean, std, a, b, unit)
    low, high = (mean + a * std, mean + b * std) if unit == "std" else (a, b)
    law = scipy_stats.truncnorm((low - mean) / std, (high - mean) / std, loc=mean, scale=std)
    values = scheme.stats((3, 4))
    assert values.mean == pytest.approx(law.mean(), rel=1e-12, abs=1e-15)
    assert values.std == pytest.approx(law.std(), rel=1e-12)
    assert values.bound == max(abs(low), abs(high))


@pytest.mark.parametrize(
    ("shape", "layout", "rows", "cols"),
    [
        ((64, 32), "torch", 64, 32),
        ((32, 16, 3, 3), "torch", 32, 144),
        ((3, 3, 16, 32), "keras", 144, 32),
    ],
)
def test_orthogonal_stats(shape: tuple[int, ...], layout: str, rows: int, cols: int) -> None:
    # A (semi-)orthogonal rows x cols matrix has min(rows, cols) unit singular values, so its
    # mean square entry is min / (rows * cols) = 1 / max(rows, cols).
    values = get("orthogonal", gain=2.0).stats(shape, layout=layout)
    assert values.std == pytest.approx(2.0 / math.sqrt(max(rows, cols)), rel=1e-12)
    assert values.bound == 2.0


@pytest.mark.parametrize(
    ("scheme", "shape"),
    [
        (get("identity", gain=0.5), (3, 5)),
        (get("identity", gain=-2.0), (6, 4)),
        (get("dirac"), (4, 6, 3, 3)),
        (get("dirac", groups=2), (8, 3, 3)),
        (get("dirac"), (5, 3, 3, 3, 3)),
    ],
    ids=str,
)
def test_deterministic_stats_are_those_of_the_tensor(
    scheme: Scheme, shape: tuple[int, ...]
) -> None:
    tensor = scheme.sample(shape, dtype=torch.float64)
    values = scheme.stats(shape)
    assert values.mean == pytest.approx(tensor.mean().item(), rel=1e-12)
    assert values.std == pytest.approx(tensor.std(unbiased=False).item(), rel=1e-12)
    assert values.bound == tensor.abs().max().item()


@pytest.mark.parametrize("shape", [(8, 4, 3, 3), (6, 6, 3), (16, 2, 3, 3, 3)], ids=str)
def test_delta_orthogonal_stats(shape: tuple[int, ...]) -> None:
    # Mean 0 in law (Haar Q is sign-symmetric); the root mean square is exact: the centre's
    # orthonormal columns hold in_channels * gain^2 of squared mass.
    scheme = get("delta_orthogonal", gain=1.5)
    values = scheme.stats(shape)
    tensor = scheme.sample(shape, torch.Generator().manual_seed(0), dtype=torch.float64)
    assert values.mean == 0.0
    assert values.std == pytest.approx(tensor.square().mean().sqrt().item(), rel=1e-12)
    assert values.std == pytest.approx(1.5 * math.sqrt(shape[1] / math.prod(shape)), rel=1e-12)
    assert tensor.abs().max().item() <= values.bound


def test_sparse_stats() -> None:
    sparse = get("sparse", sparsity=0.25, std=0.1)
    # ceil(0.25 * 10) = 3 of 10 entries per column are zero: variance 0.01 * 7/10.
    assert sparse.stats((10, 4)).std == pytest.approx(0.1 * math.sqrt(0.7), rel=1e-12)


# --- properties over random shapes --------------------------------------------------------------

shapes_2_to_5 = st.lists(st.integers(1, 7), min_size=2, max_size=5).map(tuple)
layouts = st.sampled_from(["torch", "torch_transposed", "keras", "keras_depthwise", "jax"])


@given(name=st.sampled_from(FAN_BASED), shape=shapes_2_to_5, layout=layouts)
def test_fan_based_stats_are_positive_and_finite(
    name: str, shape: tuple[int, ...], layout: str
) -> None:
    values = get(name).stats(shape, layout=layout)
    assert values.mean == 0.0
    assert values.std > 0
    assert math.isfinite(values.std)
    if values.bound is not None:
        assert values.bound >= values.std


@given(
    scale=st.floats(1e-3, 1e3),
    mode=st.sampled_from(["fan_in", "fan_out", "fan_avg", "fan_geo_avg"]),
    distribution=st.sampled_from(["normal", "truncated_normal", "uniform"]),
    shape=shapes_2_to_5,
)
def test_variance_scaling_std_is_sqrt_scale_over_n(
    scale: float, mode: str, distribution: str, shape: tuple[int, ...]
) -> None:
    scheme = VarianceScaling(scale, mode, distribution)
    n = initlab.compute_fans(shape).fan(mode)
    values = scheme.stats(shape)
    assert values.std == pytest.approx(math.sqrt(scale / n), rel=1e-12)
    if distribution == "uniform":
        assert values.bound == pytest.approx(math.sqrt(3.0 * scale / n), rel=1e-12)
    elif distribution == "truncated_normal":
        assert values.bound == pytest.approx(2.0 * values.std / TRUNCATION_STD_2, rel=1e-12)
    else:
        assert values.bound is None


SAMPLED = [*FAN_BASED, *ELEMENTWISE, "orthogonal"]
dtypes = st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.float16])
small_shapes = st.lists(st.integers(1, 6), min_size=2, max_size=4).map(tuple)


@given(name=st.sampled_from(SAMPLED), shape=small_shapes, dtype=dtypes, seed=st.integers(0, 2**32))
def test_torch_samples_are_finite(
    name: str, shape: tuple[int, ...], dtype: torch.dtype, seed: int
) -> None:
    scheme = example(name)
    tensor = scheme.sample(shape, torch.Generator().manual_seed(seed), dtype=dtype)
    assert tensor.shape == shape
    assert tensor.dtype == dtype
    assert torch.isfinite(tensor).all()


@given(name=st.sampled_from(SAMPLED), shape=small_shapes, seed=st.integers(0, 2**32))
def test_numpy_samples_are_finite(name: str, shape: tuple[int, ...], seed: int) -> None:
    array = example(name).array(shape, np.random.default_rng(seed), dtype=np.float32)
    assert array.shape == shape
    assert array.dtype == np.float32
    assert np.isfinite(array).all()


bias_shapes = st.lists(st.integers(1, 9), min_size=0, max_size=1).map(tuple)


@given(name=st.sampled_from(FAN_BASED), shape=bias_shapes)
def test_fan_based_schemes_reject_bias_shapes(name: str, shape: tuple[int, ...]) -> None:
    scheme = get(name)
    expected = re.escape(str(shape))
    with pytest.raises(ShapeError, match=expected):
        scheme.stats(shape)
    with pytest.raises(InitlabError, match=expected):
        scheme.fill_(torch.empty(shape))
    with pytest.raises(InitlabError, match=expected):
        scheme.array(shape, np.random.default_rng(0), layout="torch")


@pytest.mark.parametrize(
    ("scheme", "shape"),
    [
        (HeNormal(mode="fan_out"), (0, 5)),
        (LeCunUniform(), (5, 0)),
        (XavierUniform(), (0, 0, 3)),
        (VarianceScaling(mode="fan_geo_avg"), (4, 0)),
    ],
    ids=str,
)
def test_zero_fan_is_a_shape_error(scheme: Scheme, shape: tuple[int, ...]) -> None:
    with pytest.raises(ShapeError, match=re.escape(str(shape))):
        scheme.stats(shape)


@pytest.mark.parametrize(
    ("scheme", "expected"),
    [
        (initlab.get("zeros"), initlab.get("zeros")),
        (initlab.get("normal", std=0.5), initlab.get("normal", std=0.5)),
        (initlab.get("uniform", a=-1.0, b=2.0), initlab.get("uniform", a=-1.0, b=2.0)),
        (initlab.get("he_normal"), initlab.get("normal", std=math.sqrt(2.0 / 8))),
        (initlab.get("xavier_uniform"), initlab.get("uniform", a=-0.5, b=0.5)),
        (initlab.get("orthogonal"), None),
        (initlab.get("sparse", sparsity=0.5), None),
    ],
    ids=str,
)
def test_law_is_the_elementwise_law_or_none(
    scheme: initlab.Scheme, expected: initlab.Scheme | None
) -> None:
    fans = initlab.compute_fans((16, 8))  # fan_in 8, fan_out 16: xavier bound sqrt(6/24)
    for fans_or_shape in (fans, (16, 8)):  # the fans, or the shape they come from
        law = scheme.law(fans_or_shape)
        if expected is None:
            assert law is None
        else:
            assert law is not None
            assert law.to_config() == pytest.approx(expected.to_config())


def test_law_without_fans() -> None:
    assert initlab.get("he_normal").law(None) is None
    normal = initlab.get("normal", std=0.5)
    assert normal.law(None) is normal
    assert normal.law((3,)) is normal  # a fixed law needs no fans, so any shape


def test_law_of_a_shape_reads_its_layout_and_names_a_zero_fan() -> None:
    keras = initlab.get("he_normal").law((3, 3, 16, 32), layout="keras")
    assert keras == initlab.get("normal", std=math.sqrt(2.0) / math.sqrt(16 * 9))  # torch order
    with pytest.raises(ShapeError, match=r"shape \(0, 8\)"):
        initlab.get("he_normal", mode="fan_out").law((0, 8))


def test_law_is_what_fill_draws() -> None:
    weight = torch.empty(64, 32)
    drawn = initlab.get("xavier_normal").fill_(weight, torch.Generator().manual_seed(5))
    law = initlab.get("xavier_normal").law(tuple(weight.shape))
    assert law is not None
    expected = law.fill_(torch.empty(64, 32), torch.Generator().manual_seed(5))
    assert torch.equal(drawn, expected)


def test_keras_spelling_is_translated_by_get_and_explained_by_the_constructor() -> None:
    assert get("he_normal", distribution="untruncated_normal") == initlab.get("he_normal")
    with pytest.raises(ConfigError, match="Keras' name for 'normal'"):
        VarianceScaling(distribution="untruncated_normal")  # type: ignore[arg-type]


# --- the `initlab schemes` command ---------------------------------------------------------------
@pytest.fixture
def schemes_cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``initlab schemes ARGS`` at a fixed width, uncoloured: its output."""
    from rich.console import Console
    from typer.testing import CliRunner

    from initlab.cli import app
    from initlab.cli import application as cli

    monkeypatch.setattr(cli, "console", Console(width=240, color_system=None))

    def invoke(*args: str) -> str:
        result = CliRunner().invoke(app, ["schemes", *args])
        assert result.exit_code == 0, result.output
        return result.output

    return invoke


def test_the_catalogue_lists_every_scheme_with_aliases_defaults_and_formula(
    schemes_cli: Callable[..., str],
) -> None:
    lines = schemes_cli().splitlines()
    for name in scheme_names():
        row = next(line for line in lines if line.startswith(f"│ {name} "))
        assert scheme_class(name).formula in row
        for alias in scheme_aliases(name):
            assert alias in row
    he_normal = next(line for line in lines if line.startswith("│ he_normal "))
    assert "a=0.0, mode='fan_in', nonlinearity='leaky_relu', distribution='normal'" in he_normal
    assert any(line.startswith("│ checkpoint ") for line in lines)  # registered by plan/


def test_describe_gives_fans_std_and_bound_of_a_shape(schemes_cli: Callable[..., str]) -> None:
    text = schemes_cli("he_normal", "--shape", "64,3,3,3", "--param", "mode=fan_out")
    rows = {line.split("  ")[0]: line.split("  ", 1)[1].strip() for line in text.splitlines()
            if "  " in line}  # fmt: skip
    assert rows["scheme"] == "he_normal(mode='fan_out')"
    assert (rows["fan_in"], rows["fan_out"], rows["receptive field"]) == ("27", "576", "9")
    assert rows["std"] == f"{math.sqrt(2.0 / 576):.6g}"
    assert rows["bound"] == "unbounded"


@dataclasses.dataclass(frozen=True)
class _Halves(Scheme):
    """A user's scheme: 0.5 everywhere, for 2-D weights only (the subclass contract)."""

    name = "halves_for_test"

    def _check(self, weight: Weight) -> None:
        if len(weight.shape) != 2:
            raise ShapeError(f"halves: 2-D only, got {weight.shape}")

    def _stats(self, weight: Weight) -> ValueStats:
        return ValueStats(0.5, 0.0, 0.5)

    def _fill(
        self, tensor: torch.Tensor, generator: torch.Generator | None, weight: Weight
    ) -> torch.Tensor:
        return tensor.fill_(0.5)

    def _array(self, weight: Weight, rng: np.random.Generator, dtype: Any) -> np.ndarray[Any, Any]:
        return np.full(weight.shape, 0.5, dtype=dtype)


def test_a_subclass_implements_the_hooks_and_gets_the_public_methods() -> None:
    scheme = _Halves()
    weight = torch.nn.Parameter(torch.zeros(3, 4))  # in place on a leaf: fill_ is under no_grad
    assert scheme.fill_(weight) is weight
    assert torch.equal(weight.detach(), torch.full((3, 4), 0.5))
    assert scheme.array((2, 5), dtype="float32").dtype == np.float32
    assert scheme.stats((3, 4)) == ValueStats(0.5, 0.0, 0.5)
    for call in (
        lambda: scheme.fill_(torch.zeros(3)),
        lambda: scheme.array((3,)),
        lambda: scheme.stats((2, 2, 2)),
    ):
        with pytest.raises(ShapeError, match="2-D only"):
            call()
