"""The doctor never crashes on a model that runs forward and backward.

Each test here was a crash (or a silent mis-measurement) once: attention without double
backward, an exploding init whose Jacobian is not finite, dict outputs and inputs, repeated
module calls, a batch of one example. What cannot be measured must come back as a skipped note
with its reason; user errors stay clear ``InitlabError`` messages.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch.autograd.function import once_differentiable

import initlab
from initlab.batches import output_tensor
from initlab.doctor import diagnose
from initlab.doctor.jacobian import (
    DOUBLE_BACKWARD,
    EXACT,
    FINITE_DIFFERENCE,
    FORWARD_MODE,
    JACOBIAN_BATCH,
    jacobian_spectrum,
)
from initlab.doctor.probe import Probe
from initlab.errors import InitlabError


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class _Opaque(torch.autograd.Function):
    """The identity with a backward but neither double backward nor a forward-mode formula
    (like CPU flash attention)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


class _OnceDifferentiable(torch.autograd.Function):
    """The identity with a backward and a forward-mode formula but no double backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad

    @staticmethod
    def jvp(ctx: Any, tangent: torch.Tensor) -> torch.Tensor:
        return tangent


class _UnmarkedBackward(torch.autograd.Function):
    """The identity whose backward is not differentiable and does not say so."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.detach().clone()


class HalfCut(nn.Module):
    """``2 x``, half of it through a path a double backward cannot see."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + _UnmarkedBackward.apply(x)
        return out


class NoDoubleBackward(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = _OnceDifferentiable.apply(x)
        return out


class NoForwardMode(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = _Opaque.apply(x)
        return out


def _mlp(width: int, depth: int, activation: type[nn.Module], gain: float) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth):
        linear = nn.Linear(width, width)
        nn.init.normal_(linear.weight, std=gain / math.sqrt(width))
        nn.init.zeros_(linear.bias)
        layers += [linear, activation()]
    return nn.Sequential(*layers)


def _exact_singular_values(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """The reference: the full Jacobian of example 0's output (the doctor's sub-batch around
    it), by reverse mode, and its SVD in float64."""
    rest = batch[1:JACOBIAN_BATCH]

    def row(x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = model(torch.cat([x.unsqueeze(0), rest]))[0]
        return out.reshape(-1)

    jacobian = torch.autograd.functional.jacobian(row, batch[0])
    return torch.linalg.svdvals(jacobian.reshape(-1, batch[0].numel()).double())


def _check_estimate(spectrum: initlab.JacobianSpectrum, exact: torch.Tensor) -> None:
    largest = float(exact.max())
    assert spectrum.largest is not None
    assert spectrum.mean_square is not None
    # Golub-Kahan-Lanczos gives a Ritz value: a lower bound of the largest singular value (to
    # rounding), which 8 steps bring within ~0.5% of it on these spectra (checked against the
    # SVD); 3% still fails a J v from another function (a dropout mask drawn anew, a wrong
    # step), which moves it by far more.
    assert largest * 0.97 <= spectrum.largest <= largest * (1 + 1e-3)
    # Hutchinson's variance with Gaussian probes is 2 ||J J^T||_F^2 = 2 sum(s^4) per probe
    # (deflation by the Lanczos vectors only lowers it); with 4 probes the estimate of
    # sum(s^2) has sd <= sqrt(2 sum(s^4) / 4). Four such sd: a false failure ~1e-4.
    count = min(exact.numel(), 300)
    sd = math.sqrt(2.0 * float(exact.pow(4).sum()) / 4) / count
    assert spectrum.mean_square == pytest.approx(float(exact.square().sum()) / count, abs=4 * sd)


# 1. The Jacobian without double backward ------------------------------------------------


@pytest.mark.parametrize(
    ("activation", "gain"), [(nn.Tanh, 1.0), (nn.ReLU, math.sqrt(2.0))], ids=["tanh", "relu"]
)
def test_double_backward_estimate_matches_the_exact_svd(
    activation: type[nn.Module], gain: float
) -> None:
    model = _mlp(300, 4, activation, gain)  # 300 outputs: over the exact limit, estimated
    batch = torch.randn(20, 300, generator=_generator())
    spectrum = jacobian_spectrum(model, batch)
    assert spectrum.method == DOUBLE_BACKWARD
    assert spectrum.smallest is None
    _check_estimate(spectrum, _exact_singular_values(model, batch))


@pytest.mark.parametrize(
    ("activation", "gain"), [(nn.Tanh, 1.0), (nn.ReLU, math.sqrt(2.0))], ids=["tanh", "relu"]
)
def test_forward_mode_replaces_a_missing_double_backward(
    activation: type[nn.Module], gain: float
) -> None:
    model = _mlp(300, 4, activation, gain)
    model.insert(2, NoDoubleBackward())
    batch = torch.randn(20, 300, generator=_generator())
    spectrum = jacobian_spectrum(model, batch)
    assert spectrum.method == FORWARD_MODE
    assert spectrum.smallest is None
    _check_estimate(spectrum, _exact_singular_values(model, batch))


def test_a_double_backward_that_misses_a_path_is_not_trusted() -> None:
    model = _mlp(300, 4, nn.Tanh, 1.0)
    model.insert(2, HalfCut())
    batch = torch.randn(20, 300, generator=_generator())
    spectrum = jacobian_spectrum(model, batch)
    # The check against the pullback sees the missing half; no forward-mode formula either.
    assert spectrum.method == FINITE_DIFFERENCE
    _check_estimate(spectrum, _exact_singular_values(model, batch))


@pytest.mark.parametrize(
    ("activation", "gain"), [(nn.Tanh, 1.0), (nn.ReLU, math.sqrt(2.0))], ids=["tanh", "relu"]
)
def test_finite_differences_replace_a_missing_forward_mode_formula(
    activation: type[nn.Module], gain: float
) -> None:
    model = _mlp(300, 4, activation, gain)
    model.insert(2, NoForwardMode())
    batch = torch.randn(20, 300, generator=_generator())
    spectrum = jacobian_spectrum(model, batch)
    assert spectrum.method == FINITE_DIFFERENCE
    _check_estimate(spectrum, _exact_singular_values(model, batch))


def test_dropout_draws_the_same_mask_for_every_product() -> None:
    model = _mlp(300, 3, nn.Tanh, 1.0)
    model.insert(2, nn.Dropout(0.5))
    model.insert(3, NoForwardMode())  # finite differences: two evaluations per product
    batch = torch.randn(20, 300, generator=_generator())
    state = torch.get_rng_state()
    spectrum = jacobian_spectrum(model, batch)
    # Every evaluation started from the state the call found, and left it there.
    assert torch.equal(torch.get_rng_state(), state)
    exact = _exact_singular_values(model, batch)  # one forward pass: one mask, from ``state``
    assert spectrum.method == FINITE_DIFFERENCE
    _check_estimate(spectrum, exact)


def test_transformer_encoder_is_diagnosed() -> None:
    # Scaled dot-product attention on CPU has neither double backward nor forward-mode AD.
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
    model = nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)
    report = initlab.doctor(model, torch.randn(8, 16, 64, generator=_generator()))
    spectrum = report.jacobian
    assert spectrum is not None
    assert not spectrum.skipped
    assert spectrum.method in (FORWARD_MODE, FINITE_DIFFERENCE)  # not DOUBLE_BACKWARD
    assert spectrum.largest is not None
    assert math.isfinite(spectrum.largest)
    assert spectrum.largest > 0
    assert not report.skipped


def test_small_outputs_keep_the_exact_spectrum() -> None:
    model = _mlp(32, 3, nn.Tanh, 1.0)
    batch = torch.randn(8, 32, generator=_generator())
    spectrum = jacobian_spectrum(model, batch)
    exact = _exact_singular_values(model, batch)
    assert spectrum.method == EXACT
    assert spectrum.largest == pytest.approx(float(exact.max()), rel=1e-4)
    assert spectrum.smallest == pytest.approx(float(exact.min()), rel=1e-3, abs=1e-6)


# 2. What cannot be computed is skipped, with the reason -----------------------------------


def test_exploding_init_is_a_finding_not_an_svd_error() -> None:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(40):
        linear = nn.Linear(256, 256)
        nn.init.normal_(linear.weight)
        layers += [linear, nn.ReLU()]
    report = initlab.doctor(nn.Sequential(*layers), torch.randn(16, 256, generator=_generator()))
    assert "nonfinite" in {f.code for f in report.findings}
    assert report.jacobian is not None
    assert "not finite" in report.jacobian.skipped
    assert report.jacobian.largest is None


def test_a_model_that_fails_on_the_jacobian_sub_batch_gets_a_skipped_note() -> None:
    class FixedBatch(nn.Module):
        """Only runs on batches of exactly 32 (the Jacobian passes 16)."""

        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.linear(x.reshape(32, 8))
            return out

    report = initlab.doctor(FixedBatch(), torch.randn(32, 8, generator=_generator()))
    assert report.records
    assert report.jacobian is not None
    assert report.jacobian.skipped.startswith("the model failed while it was evaluated")
    assert "\n" not in report.jacobian.skipped


@pytest.mark.parametrize("part", ["weight_records", "ActivationDetection"])
def test_advisory_failures_become_skipped_notes(
    part: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("unreadable\nsecond line of a long traceback")

    monkeypatch.setattr(diagnose, part, broken)
    model = _mlp(16, 3, nn.ReLU, math.sqrt(2.0))
    report = initlab.doctor(model, torch.randn(32, 16, generator=_generator()))
    assert report.records
    assert len(report.skipped) == 1
    note = report.skipped[0]
    assert "skipped" in note
    assert "RuntimeError: unreadable" in note
    assert "second line" not in note
    assert report.to_dict()["skipped"] == [note]
    rich = pytest.importorskip("rich.console")
    from initlab.report.doctor import findings_panel

    console = rich.Console(width=400, record=True)
    console.print(findings_panel(report))
    assert note in console.export_text()


def test_a_failing_backward_pass_keeps_the_forward_statistics() -> None:
    class NoBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            return x.clone()

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            raise NotImplementedError("no backward for this op")

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first = nn.Linear(8, 8)
            self.second = nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.second(NoBackward.apply(self.first(x)))
            return out

    report = initlab.doctor(Model(), torch.randn(16, 8, generator=_generator()), jacobian=False)
    assert [r.name for r in report.records] == ["first", "second"]
    assert any(note.startswith("gradients skipped") for note in report.skipped)


def test_gradients_are_measured_inside_no_grad_and_missing_ones_are_explained() -> None:
    model = _mlp(16, 2, nn.Tanh, 1.0)
    batch = torch.randn(8, 16, generator=_generator())
    with torch.no_grad():
        report = initlab.doctor(model, batch)
    assert all(r.grad_std is not None for r in report.records)
    assert not report.skipped
    model.requires_grad_(False)
    frozen = initlab.doctor(model, batch)
    assert all(r.grad_std is None for r in frozen.records)
    assert frozen.skipped == (
        "gradients skipped: every parameter has requires_grad=False (a frozen model), so no "
        "gradient can be measured; call model.requires_grad_(True) first.",
    )
    assert frozen.jacobian is not None
    assert frozen.jacobian.method == EXACT  # the Jacobian differentiates w.r.t. the input


def test_model_errors_stay_initlab_errors() -> None:
    model = nn.Linear(8, 4)
    with pytest.raises(InitlabError, match=r"the model failed on a batch of shape \(2, 5\)"):
        initlab.doctor(nn.Sequential(model), torch.randn(2, 5))


# 3. Outputs: tensor, tuple, dict, ModelOutput, output_fn ----------------------------------


class TwoHeads(nn.Module):
    """Returns a dict; ``a`` and ``b`` come from separate layers."""

    def __init__(self) -> None:
        super().__init__()
        self.head_a = nn.Linear(8, 4)
        self.head_b = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"a": self.head_a(x), "b": self.head_b(x)}


def test_dict_outputs_measure_the_first_tensor() -> None:
    model = TwoHeads()
    report = initlab.doctor(model, torch.randn(16, 8, generator=_generator()))
    grads = {r.name: r.grad_std for r in report.records}
    assert grads["head_a"] is not None
    assert grads["head_b"] is None  # the backward pass starts from "a" only
    # The Jacobian of a linear head is its weight.
    assert report.jacobian is not None
    assert report.jacobian.method == EXACT
    expected = torch.linalg.svdvals(model.head_a.weight.detach())
    assert report.jacobian.largest == pytest.approx(float(expected.max()), rel=1e-5)


def test_output_fn_picks_the_tensor_to_measure() -> None:
    model = TwoHeads()
    batch = torch.randn(16, 8, generator=_generator())
    report = initlab.doctor(model, batch, output_fn=lambda out: out["b"])
    grads = {r.name: r.grad_std for r in report.records}
    assert grads["head_a"] is None
    assert grads["head_b"] is not None
    expected = torch.linalg.svdvals(model.head_b.weight.detach())
    assert report.jacobian is not None
    assert report.jacobian.largest == pytest.approx(float(expected.max()), rel=1e-5)


def test_logits_are_preferred_and_nesting_is_searched() -> None:
    hidden, logits = torch.randn(2, 3), torch.randn(2, 5)
    ids = torch.zeros(2, dtype=torch.long)
    assert output_tensor({"hidden": hidden, "logits": logits}) is logits
    assert output_tensor((ids, [hidden, logits])) is hidden
    assert output_tensor(logits, lambda out: out[:, :2]).shape == (2, 2)


def test_hugging_face_model_output_uses_logits() -> None:
    outputs = pytest.importorskip("transformers.modeling_outputs")
    loss, logits = torch.tensor(1.0), torch.randn(2, 5)
    found = output_tensor(outputs.SequenceClassifierOutput(loss=loss, logits=logits))
    assert found is logits


def test_a_model_without_tensor_output_gets_a_clear_error() -> None:
    class Labels(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> dict[str, Any]:
            return {"labels": self.linear(x).argmax(dim=1), "note": "done"}

    with pytest.raises(
        InitlabError, match=r"returned a dict with keys 'labels', 'note'.*output_fn="
    ):
        initlab.doctor(Labels(), torch.randn(8, 4))
    with pytest.raises(InitlabError, match="output_fn must return a floating-point tensor"):
        initlab.doctor(Labels(), torch.randn(8, 4), output_fn=lambda out: out["labels"])


def test_recurrent_and_attention_modules_with_tuple_outputs() -> None:
    torch.manual_seed(0)

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(32, 4, batch_first=True)
            self.out = nn.Linear(32, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.out(self.attn(x, x, x)[0])
            return out

    lstm = initlab.doctor(nn.LSTM(16, 32, batch_first=True), torch.randn(8, 10, 16))
    assert lstm.jacobian is not None
    assert not lstm.jacobian.skipped
    attention = initlab.doctor(Attention(), torch.randn(8, 10, 32))
    assert [r.name for r in attention.records] == ["attn", "out"]
    assert all(r.grad_std is not None for r in attention.records)


# 4. Batches: tensor, tuple, mapping; validation; one example -------------------------------


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.mix = nn.Linear(8, 4)

    def forward(self, features: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.mix(features + self.embed(ids))
        return out


def test_tuple_and_mapping_batches_are_unpacked() -> None:
    features = torch.randn(16, 8, generator=_generator())
    ids = torch.randint(0, 10, (16,), generator=_generator())
    model = TwoInputs()
    as_tuple = initlab.doctor(model, (features, ids))
    as_mapping = initlab.doctor(model, {"ids": ids, "features": features})
    for report in (as_tuple, as_mapping):
        assert [r.name for r in report.records] == ["mix"]
        # The Jacobian perturbs the floating-point input (features), not the ids: d out/d x = W.
        assert report.jacobian is not None
        assert report.jacobian.method == EXACT
    assert as_tuple.records[0].forward["std"] == pytest.approx(
        as_mapping.records[0].forward["std"]
    )


def test_token_ids_skip_the_jacobian_with_the_reason() -> None:
    model = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 4))
    report = initlab.doctor(model, torch.randint(0, 10, (16, 5)))
    assert report.jacobian is not None
    assert report.jacobian.skipped == "the input is not floating point (token ids)"


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ([1.0, 2.0], r"holds no torch\.Tensor"),
        (torch.randn(0, 4), "0 examples"),
        ({"x": torch.full((2, 4), math.nan)}, r"batch\['x'\] contains NaN or inf"),
        ((torch.randn(2, 4), torch.tensor([math.inf])), r"batch\[1\] contains NaN or inf"),
        ("text", "got a str"),
    ],
    ids=["floats", "empty", "nan-in-mapping", "inf-in-tuple", "string"],
)
def test_bad_batches_get_clear_errors(batch: Any, message: str) -> None:
    with pytest.raises(InitlabError, match=message):
        initlab.doctor(nn.Linear(4, 2), batch)


def test_numpy_batches_are_pointed_to_torch() -> None:
    numpy = pytest.importorskip("numpy")
    with pytest.raises(InitlabError, match=r"torch\.from_numpy"):
        initlab.doctor(nn.Linear(4, 2), numpy.zeros((2, 4)))


def test_a_batch_of_one_example_does_not_misfire() -> None:
    model = _mlp(64, 6, nn.ReLU, math.sqrt(2.0))  # He init: nothing wrong with it
    report = initlab.doctor(model, torch.randn(1, 64, generator=_generator()))
    relus = [r for r in report.records if r.kind == "ReLU"]
    assert relus
    for record in relus:
        # Zero on "every example" of one example says nothing about a unit: undefined.
        assert math.isnan(record.forward["dead_fraction"])
        assert math.isnan(record.forward["cosine"])
    assert report.healthy, [f.code for f in report.findings]
    assert report.jacobian is not None
    assert not report.jacobian.skipped


# 5. Every call of a module is recorded ---------------------------------------------------


class SharedActivation(nn.Module):
    """One ReLU module applied twice, one Linear applied three times (ALBERT-style)."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(8, 16)
        self.act = nn.ReLU()
        self.shared = nn.Linear(16, 16)
        self.out = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.inp(x))
        for _ in range(3):
            h = self.shared(h)
        out: torch.Tensor = self.out(self.act(h))
        return out


def test_every_call_is_recorded_in_order_with_its_own_gradient() -> None:
    torch.manual_seed(0)
    model = SharedActivation()
    batch = torch.randn(32, 8, generator=_generator())
    report = initlab.doctor(model, batch)
    calls = [(r.name, r.call) for r in report.records]
    assert calls == [
        ("inp", 0), ("act", 0), ("shared", 0), ("shared", 1), ("shared", 2), ("act", 1),
        ("out", 0),
    ]  # fmt: skip
    assert [r.index for r in report.records] == list(range(7))
    # The oracle: each call's output and its gradient, from plain tensor hooks.
    outputs: list[torch.Tensor] = []

    def keep(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        output.retain_grad()
        outputs.append(output)

    handles = [m.register_forward_hook(keep) for m in (model.inp, model.act, model.shared)]
    handles.append(model.out.register_forward_hook(keep))
    result = model(batch)
    cotangent = torch.randn(result.shape, generator=_generator())
    (result * cotangent).sum().backward()
    for handle in handles:
        handle.remove()
    for record, output in zip(report.records, outputs, strict=True):
        assert record.forward["std"] == pytest.approx(
            output.detach().std(unbiased=False).item(), rel=1e-4
        )
        assert output.grad is not None
        assert record.grad_std == pytest.approx(output.grad.std(unbiased=False).item(), rel=1e-4)
    stds = [r.forward["std"] for r in report.records if r.name == "shared"]
    assert len(set(stds)) == 3


def test_repeated_calls_render_in_every_report() -> None:
    pytest.importorskip("rich")
    from rich.console import Console

    from initlab.report.doctor import before_after_table, layers_table

    torch.manual_seed(0)
    report = initlab.doctor(SharedActivation(), torch.randn(32, 8, generator=_generator()))
    console = Console(width=200, record=True)
    console.print(layers_table(report))
    console.print(before_after_table(report, report))
    text = console.export_text()
    assert "shared (call 3)" in text
    assert "act (call 2)" in text
    scalars = report.scalars()
    assert "doctor/shared/call3/std" in scalars
    assert scalars["doctor/act/call2/std"] == pytest.approx(report.records[5].forward["std"])
    assert [row["call"] for row in report.rows()] == [0, 0, 0, 1, 2, 1, 0]


# 6. The probe reads activations as initlab.layers knows them ------------------------------


@pytest.mark.parametrize(
    ("activation", "dead"),
    [(nn.ReLU(), 1.0), (nn.ReLU6(), 1.0), (nn.LeakyReLU(0.1), math.nan), (nn.PReLU(), math.nan)],
    ids=["relu", "relu6", "leaky", "prelu"],
)
def test_only_hard_rectifiers_have_dead_units(activation: nn.Module, dead: float) -> None:
    model = nn.Sequential(activation)
    with Probe(model, ["0"], gradients=False) as probe:
        model(-torch.rand(16, 8, generator=_generator()) - 0.1)  # every input negative
        (record,) = probe.collect()
    if math.isnan(dead):
        assert math.isnan(record.forward["dead_fraction"])
        assert math.isnan(record.forward["zero_fraction"])
    else:
        assert record.forward["dead_fraction"] == dead


@pytest.mark.parametrize(
    ("activation", "scale", "expected"),
    [
        (nn.Hardsigmoid(), 10.0, 1.0),  # |x| > 3: exactly 0 or 1, saturated
        (nn.Hardsigmoid(), 0.5, 0.0),  # |x| <= 0.5: within (1/3, 2/3), not saturated
        (nn.Hardtanh(), 10.0, 1.0),
        (nn.Tanh(), 0.1, 0.0),
    ],
    ids=["hardsigmoid-large", "hardsigmoid-small", "hardtanh-large", "tanh-small"],
)
def test_saturation_uses_the_activation_interval(
    activation: nn.Module, scale: float, expected: float
) -> None:
    model = nn.Sequential(activation)
    signs = torch.randint(0, 2, (16, 8), generator=_generator()) * 2 - 1
    batch = signs * scale * (0.5 + 0.5 * torch.rand(16, 8, generator=_generator()))
    with Probe(model, ["0"], gradients=False) as probe:
        model(batch)
        (record,) = probe.collect()
    assert record.forward["saturated_fraction"] == expected


def test_hugging_face_activation_classes_are_recognised() -> None:
    activations = pytest.importorskip("transformers.activations")
    model = nn.Sequential(nn.Linear(8, 8), activations.NewGELUActivation(), nn.Linear(8, 2))
    with Probe(model) as probe:
        model(torch.randn(16, 8, generator=_generator())).sum().backward()
        names = [(r.name, r.kind) for r in probe.collect()]
    assert ("1", "NewGELUActivation") in names


# 7. Hugging Face models from tiny configs -------------------------------------------------


def _hf_cases() -> list[tuple[str, Callable[[], tuple[nn.Module, Any]]]]:
    transformers = pytest.importorskip("transformers")
    hf = pytest.importorskip("initlab.integrations.hf")

    def bert() -> tuple[nn.Module, Any]:
        config = transformers.BertConfig(
            hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128,
            vocab_size=100,
        )  # fmt: skip
        model = transformers.BertForSequenceClassification(config)
        return model, hf.token_batch(model, 8, 16)

    def bert_mask() -> tuple[nn.Module, Any]:
        model, ids = bert()
        mask = torch.ones_like(ids)
        mask[:, 12:] = 0
        return model, {"input_ids": ids, "attention_mask": mask}

    def vit() -> tuple[nn.Module, Any]:
        config = transformers.ViTConfig(
            image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2,
            num_attention_heads=4, intermediate_size=128, num_labels=10,
        )  # fmt: skip
        return transformers.ViTForImageClassification(config), torch.randn(4, 3, 32, 32)

    def llama() -> tuple[nn.Module, Any]:
        config = transformers.LlamaConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=100, max_position_embeddings=64,
        )  # fmt: skip
        model = transformers.LlamaForCausalLM(config)
        return model, hf.token_batch(model, 4, 16)

    def t5() -> tuple[nn.Module, Any]:
        config = transformers.T5Config(
            d_model=64, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4, d_kv=16,
            vocab_size=100,
        )  # fmt: skip
        ids = torch.randint(0, 100, (4, 16), generator=_generator())
        decoder = torch.randint(0, 100, (4, 8), generator=_generator(1))
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                 "decoder_input_ids": decoder}  # fmt: skip
        return transformers.T5ForConditionalGeneration(config), batch

    def gpt2() -> tuple[nn.Module, Any]:
        config = transformers.GPT2Config(
            n_embd=64, n_layer=2, n_head=4, vocab_size=100, n_positions=64, bos_token_id=0,
            eos_token_id=0,
        )  # fmt: skip
        model = transformers.GPT2LMHeadModel(config)
        return model, hf.token_batch(model, 4, 16)

    return [("bert", bert), ("bert-mask", bert_mask), ("vit", vit), ("llama", llama),
            ("t5", t5), ("gpt2", gpt2)]  # fmt: skip


@pytest.mark.parametrize("case", range(6), ids=["bert", "bert-mask", "vit", "llama", "t5", "gpt2"])
def test_hugging_face_models_are_diagnosed(case: int) -> None:
    torch.manual_seed(0)
    _, build = _hf_cases()[case]
    model, batch = build()
    report = initlab.doctor(model, batch)
    assert report.records
    assert any(r.grad_std is not None for r in report.records)
    assert report.weights
    assert not report.skipped, report.skipped
    assert report.jacobian is not None
    if isinstance(batch, torch.Tensor) and batch.is_floating_point():
        assert not report.jacobian.skipped
    else:
        assert report.jacobian.skipped == "the input is not floating point (token ids)"
