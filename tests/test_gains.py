"""Gains: torch's table value for value, and second-moment gains checked by Monte Carlo."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab.errors import InitlabError, UnknownNameError
from initlab.gains import (
    ACTIVATIONS,
    TORCH_NONLINEARITIES,
    calculate_gain,
    canonical_activation,
    gain,
    second_moment_gain,
)

# --- torch's table -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", TORCH_NONLINEARITIES)
def test_calculate_gain_is_torchs_value_and_type(name: str) -> None:
    ours = calculate_gain(name)
    theirs = nn.init.calculate_gain(name)
    assert ours == theirs
    # torch returns the int 1 for linear-like names and sigmoid; code may rely on the type.
    assert type(ours) is type(theirs)


def test_linear_like_names_give_int_one() -> None:
    for name in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose2d", "sigmoid"):
        value = calculate_gain(name)
        assert value == 1
        assert type(value) is int


@pytest.mark.parametrize("slope", [None, 0, 0.01, 0.2, 1, math.sqrt(5), -0.5, 3])
def test_leaky_relu_gain_matches_torch(slope: float | None) -> None:
    ours = calculate_gain("leaky_relu", slope)
    theirs = nn.init.calculate_gain("leaky_relu", slope)
    assert ours == theirs
    assert type(ours) is type(theirs)
    expected_slope = 0.01 if slope is None else slope
    assert ours == math.sqrt(2.0 / (1 + expected_slope**2))


@pytest.mark.parametrize("param", [True, False, "0.2"])
def test_leaky_relu_rejects_non_numbers_like_torch(param: object) -> None:
    with pytest.raises(ValueError, match="not a valid number") as ours:
        calculate_gain("leaky_relu", param)
    with pytest.raises(ValueError, match="not a valid number"):
        nn.init.calculate_gain("leaky_relu", param)
    assert isinstance(ours.value, InitlabError)


@pytest.mark.parametrize("name", ["gelu", "silu", "elu", "identity", "ReLU"])
def test_calculate_gain_rejects_what_torch_rejects(name: str) -> None:
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        nn.init.calculate_gain(name)
    with pytest.raises(UnknownNameError, match=r"initlab\.gain\(name\)"):
        calculate_gain(name)


def test_init_module_reexports_calculate_gain() -> None:
    import initlab.init

    assert initlab.init.calculate_gain is calculate_gain


# --- second-moment gains: closed forms ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "param", "expected", "tolerance"),
    [
        ("linear", None, 1.0, 1e-12),
        ("relu", None, math.sqrt(2.0), 1e-12),
        ("leaky_relu", None, math.sqrt(2.0 / (1 + 0.01**2)), 1e-12),
        ("leaky_relu", 0.2, math.sqrt(2.0 / (1 + 0.2**2)), 1e-12),
        ("leaky_relu", 0.0, math.sqrt(2.0), 1e-12),
        # SELU's constants make E[selu(z)^2] = 1 (Klambauer et al., 2017) to ~7 digits.
        ("selu", None, 1.0, 1e-6),
        # E[hardtanh(z)^2] = E[z^2; |z| < 1] + P(|z| > 1) = 1 - 2 phi(1).
        (
            "hardtanh",
            None,
            1.0 / math.sqrt(1.0 - 2.0 * math.exp(-0.5) / math.sqrt(2 * math.pi)),
            1e-9,
        ),
    ],
)
def test_second_moment_gain_closed_forms(
    name: str, param: float | None, expected: float, tolerance: float
) -> None:
    assert gain(name, param, kind="second_moment") == pytest.approx(expected, abs=tolerance)
    assert second_moment_gain(name, param) == pytest.approx(expected, abs=tolerance)


# --- second-moment gains: Monte Carlo ----------------------------------------------------------

MONTE_CARLO_SAMPLES = 2_000_000
TORCH_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "silu": F.silu,
    "mish": F.mish,
    "elu": F.elu,
    "softplus": F.softplus,
    "hardswish": F.hardswish,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu6": F.relu6,
    "softsign": F.softsign,
    "celu": F.celu,
    "hardsigmoid": F.hardsigmoid,
}


@pytest.fixture(scope="module")
def standard_normal() -> torch.Tensor:
    rng = np.random.default_rng(20240601)
    return torch.from_numpy(rng.standard_normal(MONTE_CARLO_SAMPLES))


@pytest.mark.parametrize("name", sorted(TORCH_ACTIVATIONS))
def test_second_moment_gain_matches_monte_carlo(name: str, standard_normal: torch.Tensor) -> None:
    squares = TORCH_ACTIVATIONS[name](standard_normal).square()
    moment = squares.mean().item()
    # Tolerance from n: the standard error of the mean of f(z)^2 is sd(f(z)^2)/sqrt(n); by the
    # delta method g = m^(-1/2) has standard error |dg/dm| * se(m) = se(m) / (2 m^(3/2)).
    # Allow 5 standard errors (a false failure has probability ~6e-7 per activation).
    moment_error = squares.std().item() / math.sqrt(MONTE_CARLO_SAMPLES)
    gain_error = moment_error / (2.0 * moment**1.5)
    estimate = 1.0 / math.sqrt(moment)
    assert gain(name, kind="second_moment") == pytest.approx(estimate, abs=5 * gain_error)


def test_monte_carlo_covers_every_smooth_activation() -> None:
    closed_form = {"linear", "relu", "leaky_relu", "hardtanh", "selu"}
    closed_or_sampled = closed_form | set(TORCH_ACTIVATIONS) | {"gelu_tanh"}
    assert set(ACTIVATIONS) <= closed_or_sampled


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_has_a_finite_positive_gain(name: str) -> None:
    value = gain(name, kind="second_moment")
    assert math.isfinite(value)
    assert value > 0


def test_gelu_tanh_approximation_is_close_to_gelu() -> None:
    exact = gain("gelu", kind="second_moment")
    approximate = gain("gelu_tanh", kind="second_moment")
    assert approximate == pytest.approx(exact, rel=1e-3)
    assert approximate != exact


@pytest.mark.parametrize(
    ("name", "param", "reference"),
    [
        ("elu", 0.5, lambda z: F.elu(z, alpha=0.5)),
        ("softplus", 2.0, lambda z: F.softplus(z, beta=2.0)),
        ("leaky_relu", 0.3, lambda z: F.leaky_relu(z, 0.3)),
    ],
)
def test_second_moment_gain_uses_the_parameter(
    name: str,
    param: float,
    reference: Callable[[torch.Tensor], torch.Tensor],
    standard_normal: torch.Tensor,
) -> None:
    squares = reference(standard_normal).square()
    moment = squares.mean().item()
    # Same 5-standard-error tolerance as above (delta method on the mean of f(z)^2).
    gain_error = squares.std().item() / math.sqrt(MONTE_CARLO_SAMPLES) / (2.0 * moment**1.5)
    assert gain(name, param, kind="second_moment") == pytest.approx(
        1.0 / math.sqrt(moment), abs=5 * gain_error
    )
    assert gain(name, param, kind="second_moment") != gain(name, kind="second_moment")


# --- kinds -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TORCH_NONLINEARITIES)
def test_auto_is_torchs_value_for_torch_names(name: str) -> None:
    assert gain(name) == nn.init.calculate_gain(name)
    assert gain(name, kind="torch") == nn.init.calculate_gain(name)


def test_auto_passes_the_slope_to_torchs_leaky_relu() -> None:
    assert gain("leaky_relu", 0.2) == nn.init.calculate_gain("leaky_relu", 0.2)


@pytest.mark.parametrize("name", ["gelu", "silu", "mish", "elu", "softplus", "hardswish"])
def test_auto_is_second_moment_for_other_names(name: str) -> None:
    assert gain(name) == second_moment_gain(name)
    assert gain(name, kind="auto") == gain(name, kind="second_moment")


def test_torch_and_second_moment_differ_where_torch_is_heuristic() -> None:
    # tanh: torch's 5/3 is a heuristic; sigmoid: torch says 1 (pytorch/pytorch#24991).
    assert gain("tanh") == 5.0 / 3
    assert gain("tanh", kind="second_moment") == pytest.approx(1.59254, abs=1e-5)
    assert gain("sigmoid") == 1
    assert gain("sigmoid", kind="second_moment") == pytest.approx(1.84623, abs=1e-5)


def test_kind_torch_on_gelu_raises() -> None:
    with pytest.raises(UnknownNameError, match="second_moment") as info:
        gain("gelu", kind="torch")
    assert "'gelu'" in str(info.value)


def test_unknown_kind_raises() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'torch'"):
        gain("relu", kind="torh")


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("ReLU", "relu"),
        ("LeakyReLU", "leaky_relu"),
        ("leaky-relu", "leaky_relu"),
        ("swish", "silu"),
        ("SiLU", "silu"),
        ("GELU", "gelu"),
        ("gelu_new", "gelu_tanh"),
        ("Identity", "linear"),
        ("conv2d", "linear"),
        ("Hardswish", "hardswish"),
        (" Tanh ", "tanh"),
    ],
)
def test_module_style_names_resolve(name: str, canonical: str) -> None:
    assert canonical_activation(name) == canonical
    assert gain(name) == gain(canonical)


def test_module_style_leaky_relu_uses_the_slope() -> None:
    assert gain("LeakyReLU", 0.2) == nn.init.calculate_gain("leaky_relu", 0.2)


def test_typo_suggests_the_closest_name() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'gelu'") as info:
        gain("gelo")
    assert "'gelo'" in str(info.value)


def test_non_numeric_param_is_a_config_error() -> None:
    with pytest.raises(InitlabError, match="must be a number"):
        gain("elu", "1", kind="second_moment")
