"""Each doctor finding on a model built to trigger it, and on one that must not."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import torch
from torch import nn

import initlab
from initlab.doctor import doctor
from initlab.errors import InitlabError

BATCH = torch.randn(128, 64, generator=torch.Generator().manual_seed(0))


def mlp(depth: int, activation: type[nn.Module], width: int = 64) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), activation()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def weights(scheme: str, **params: float) -> initlab.Plan:
    return initlab.Plan([initlab.rule(role="weight", scheme=scheme, **params)])


def codes(model: nn.Module, batch: torch.Tensor = BATCH) -> set[str]:
    return {f.code for f in doctor(model, batch, jacobian=False).findings}


def test_zero_init_is_symmetric() -> None:
    model = mlp(5, nn.ReLU)
    weights("zeros").apply(model)
    assert "symmetric_weights" in codes(model)


def test_constant_init_is_symmetric_too() -> None:
    model = mlp(4, nn.Tanh)
    weights("constant", value=0.05).apply(model)
    report = doctor(model, BATCH, jacobian=False)
    symmetric = next(f for f in report.findings if f.code == "symmetric_weights")
    assert symmetric.severity == "critical"
    assert "0" in symmetric.layers


def test_standard_normal_with_tanh_at_depth_10_saturates() -> None:
    model = mlp(10, nn.Tanh)
    weights("normal", std=1.0).apply(model)
    assert "saturated" in codes(model)


def test_small_normal_at_depth_20_vanishes() -> None:
    model = mlp(20, nn.ReLU)
    weights("normal", std=0.01).apply(model)
    found = codes(model)
    assert {"vanishing_forward", "vanishing_gradients"} <= found


def test_standard_normal_with_relu_explodes() -> None:
    model = mlp(10, nn.ReLU)
    weights("normal", std=1.0).apply(model)
    assert "exploding_forward" in codes(model)


def test_xavier_on_a_30_layer_relu_net_vanishes_and_is_called_a_mismatch() -> None:
    model = mlp(30, nn.ReLU)
    initlab.init_model(model, "xavier")
    found = codes(model)
    assert "vanishing_forward" in found
    assert "xavier_before_relu" in found


def test_he_on_a_30_layer_relu_net_is_healthy() -> None:
    model = mlp(30, nn.ReLU)
    initlab.init_model(model, "kaiming")
    report = doctor(model, BATCH)
    assert report.healthy, [f.title for f in report.findings]
    assert report.exit_code == 0


def test_torch_default_in_a_deep_relu_net_is_flagged_with_the_fix() -> None:
    torch.manual_seed(0)
    model = mlp(30, nn.ReLU)  # PyTorch's own reset_parameters
    report = doctor(model, BATCH, jacobian=False)
    flagged = next(f for f in report.findings if f.code == "torch_default_relu")
    assert "He" in flagged.fix
    assert flagged.plan is not None
    assert report.exit_code == 1


def test_he_before_tanh_is_a_mismatch_and_auto_is_healthy() -> None:
    he = mlp(10, nn.Tanh)
    initlab.init_model(he, "kaiming")
    assert "he_before_tanh" in codes(he)
    auto = mlp(10, nn.Tanh)
    initlab.init_model(auto, "auto")
    assert doctor(auto, BATCH, jacobian=False).healthy


def test_dead_relu_layer_is_not_confused_with_collapse() -> None:
    model = mlp(3, nn.ReLU)
    initlab.init_model(model, "kaiming")
    with torch.no_grad():
        model[2].bias.fill_(-100.0)  # the second ReLU never fires
    report = doctor(model, BATCH, jacobian=False)
    dead = next(f for f in report.findings if f.code == "dead_relu")
    assert dead.layers == ("3",)


def test_nonfinite_values_name_the_first_layer() -> None:
    model = mlp(4, nn.ReLU)
    initlab.init_model(model, "kaiming")
    with torch.no_grad():
        model[2].weight[0, 0] = float("inf")
    report = doctor(model, BATCH, jacobian=False)
    first = report.findings[0]
    assert first.code == "nonfinite"
    assert first.layers == ("2",)


class _InfiniteGradient(torch.autograd.Function):
    """Identity forward; an infinite gradient backward (a finite forward, a broken backward)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad * float("inf")


class _BreaksBackward(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _InfiniteGradient.apply(x)


def test_nonfinite_gradients_name_the_deepest_layer_they_reach() -> None:
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16), _BreaksBackward(),
                          nn.ReLU(), nn.Linear(16, 4))  # fmt: skip
    initlab.init_model(model, "kaiming")
    report = doctor(model, BATCH[:, :16], jacobian=False)
    first = report.findings[0]
    assert first.code == "nonfinite"
    assert first.layers == ("2",)  # the gradient at layer 2's output is the first to be inf
    assert "gradients" in first.title


def test_applying_the_fix_makes_an_unhealthy_model_healthy() -> None:
    model = mlp(30, nn.ReLU)
    initlab.init_model(model, "xavier")
    report = doctor(model, BATCH, jacobian=False)
    assert not report.healthy
    assert report.fix.rules
    report.fix.apply(model, seed=0)
    assert doctor(model, BATCH, jacobian=False).healthy


def test_a_report_after_the_fix_can_reuse_the_activations_found_before() -> None:
    model = mlp(30, nn.ReLU)
    initlab.init_model(model, "xavier")
    report = doctor(model, BATCH, jacobian=False)
    assert report.fix.rules
    report.fix.apply(model, seed=0)
    fresh = doctor(model, BATCH, jacobian=False)
    reused = doctor(model, BATCH, jacobian=False, activations=report.activations)
    assert reused.activations is report.activations
    assert reused.activations == fresh.activations  # a plan changes weights, not activations
    assert reused.to_dict() == fresh.to_dict()
    with pytest.raises(InitlabError, match="activations must be an ActivationMap"):
        doctor(model, BATCH, activations="relu")  # type: ignore[arg-type]


def test_the_model_is_left_as_it_was() -> None:
    model = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    model[0].weight.grad = torch.ones_like(model[0].weight)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    doctor(model, BATCH)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight))
    assert model[3].weight.grad is None


def test_orthogonal_deep_linear_net_has_an_isometric_jacobian() -> None:
    model = nn.Sequential(*(nn.Linear(32, 32, bias=False) for _ in range(12)))
    initlab.init_model(model, "orthogonal")
    spectrum = doctor(model, torch.randn(8, 32)).jacobian
    assert spectrum is not None
    assert spectrum.method == "exact"
    # A product of orthogonal matrices is orthogonal: every singular value is 1.
    assert spectrum.largest == pytest.approx(1.0, abs=1e-4)
    assert spectrum.smallest == pytest.approx(1.0, abs=1e-4)
    assert spectrum.spread == pytest.approx(1.0, abs=1e-3)


def test_large_inputs_get_an_estimated_spectrum() -> None:
    model = nn.Sequential(*(nn.Linear(300, 300, bias=False) for _ in range(3)))
    initlab.init_model(model, "orthogonal")
    spectrum = doctor(model, torch.randn(4, 300), jacobian=True).jacobian
    assert spectrum is not None
    assert spectrum.method == "double-backward estimate"
    assert spectrum.smallest is None
    assert spectrum.largest == pytest.approx(1.0, rel=0.05)
    # Hutchinson with 8 probes of a 300-dim isometry: ||J w||^2 ~ chi2(300)/300 per probe,
    # relative std sqrt(2/300)/sqrt(8) ~ 2.9%, so 15% is 5 standard errors.
    assert spectrum.mean_square == pytest.approx(1.0, rel=0.15)


def test_bad_batches_get_clear_errors() -> None:
    model = mlp(2, nn.ReLU)
    with pytest.raises(InitlabError, match="NaN or inf"):
        doctor(model, torch.full((4, 64), math.nan))
    with pytest.raises(InitlabError, match="failed on a batch of shape"):
        doctor(model, torch.randn(4, 3))
    with pytest.raises(InitlabError, match=r"torch\.Tensor"):
        doctor(model, [[0.0] * 64])  # type: ignore[arg-type]


def test_report_serializes_and_tabulates() -> None:
    model = mlp(3, nn.ReLU)
    initlab.init_model(model, "kaiming")
    report = doctor(model, BATCH)
    data = report.to_dict()
    assert data["healthy"] is True
    assert len(data["layers"]) == len(report.records)
    frame = report.layers
    assert {"layer", "std", "grad_std", "dead_fraction", "weight_gain_sq"} <= set(frame.columns)


def test_print_of_a_zero_init_report_gives_the_verdict_codes_layers_and_fix() -> None:
    from initlab.report.doctor import verdict

    model = mlp(3, nn.ReLU, width=16)
    weights("zeros").apply(model)
    report = doctor(model, BATCH[:, :16], jacobian=False)
    text = str(report)
    lines = text.splitlines()
    assert lines[0] == f"initlab doctor: {verdict(report)}"  # the CLI panel's words
    assert "critical" in lines[0]
    symmetric = next(f for f in report.findings if f.code == "symmetric_weights")
    line = next(line for line in lines if "symmetric_weights" in line)
    assert line.strip().startswith("CRITICAL symmetric_weights: " + symmetric.title)
    assert "[layers: 0, 2, 4, 6]" in line  # every Linear
    assert "fix (report.fix): plan 'doctor-fix'" in text
    assert "  everything else -> keep" in text
    assert "DoctorReport(" not in text


def test_print_of_a_healthy_report_says_healthy_and_its_fix_is_an_empty_plan() -> None:
    model = mlp(30, nn.ReLU)
    initlab.init_model(model, "kaiming")
    report = doctor(model, BATCH, jacobian=False)
    assert report.healthy
    assert str(report).splitlines()[0] == "initlab doctor: healthy: no problem found"
    assert "fix" not in str(report)
    assert isinstance(report.fix, initlab.Plan)
    assert report.fix.rules == ()
    assert str(report.fix.default) == "keep"
    before = {name: value.clone() for name, value in model.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an empty plan warns about nothing either
        applied = report.fix.apply(model, seed=0)
    after = model.state_dict()
    assert before.keys() == after.keys()
    for name, value in before.items():
        assert value.numpy().tobytes() == after[name].numpy().tobytes(), name  # bit for bit
    assert len(applied) == len(list(model.parameters()))
    assert all(row.scheme is None and row.scheme_label == "keep" for row in applied)
