"""Activation detection where whole-model tracing fails: per-submodule tracing, custom layers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import initlab
from initlab.errors import ConfigError
from initlab.plan.activations import (
    ActivationDetection,
    ActivationMap,
    detect_activations,
    untraceable_reason,
)


class GELUActivation(nn.Module):
    """A custom activation class under Hugging Face's class name (transformers.activations)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(x)


class CustomLinear(nn.Module):
    """A layer that is not a torch.nn class (like GPT-2's Conv1D): fx would trace into it."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) / n_in**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


class FeedForward(nn.Module):
    """GPT-2's MLP pattern: the activation module is registered after the second layer."""

    def __init__(self) -> None:
        super().__init__()
        self.c_fc = CustomLinear(8, 32)
        self.c_proj = CustomLinear(32, 8)
        self.act = GELUActivation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mlp = FeedForward()
        self.head = nn.Linear(8, 2)
        self.squash = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: the whole model does not trace
            x = -x
        return self.squash(self.head(self.mlp(x)))


def test_traceable_submodules_are_traced_when_the_model_is_not() -> None:
    found = detect_activations(Untraceable())
    assert found.method == "fx per submodule, else module order"
    assert found.fallback_reason  # why the whole model did not trace
    # Registration order alone would say c_fc -> linear and c_proj -> gelu: the trace of the
    # block sees the real data flow.
    assert (found.by_layer["mlp.c_fc"].name, found.by_layer["mlp.c_fc"].source) == (
        "gelu",
        "fx, per submodule",
    )
    # c_proj leaves the block: what follows comes after the whole block (head is a layer).
    assert found.by_layer["mlp.c_proj"].name == "linear"
    assert found.by_layer["head"].name == "tanh"


def test_auto_plan_uses_the_per_submodule_answer() -> None:
    table = initlab.Plan(default="auto").resolve(Untraceable())
    assert table["mlp.c_fc.weight"].scheme.name.startswith("he_")  # GELU: the ReLU family
    assert table["mlp.c_proj.weight"].scheme.name.startswith("xavier")


def test_custom_layer_classes_are_leaves_of_a_whole_model_trace() -> None:
    model = nn.Sequential(CustomLinear(4, 8), nn.ReLU(), CustomLinear(8, 2))
    found = detect_activations(model)
    assert found.method == "fx"
    assert (found.by_layer["0"].name, found.by_layer["0"].source) == ("relu", "fx")
    assert found.by_layer["2"].name == "linear"


# --- Recording a forward pass on an example (when the whole model does not trace) -----------


class Functional(nn.Module):
    """Functional activations, methods and modules behind data-dependent control flow."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 8)
        self.d, self.e, self.f = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 2)
        self.slope = nn.PReLU(init=0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: the whole model does not trace
            x = -x
        x = F.silu(self.a(x))
        x = torch.tanh(self.b(x).view(-1, 8))  # a view on the way does not hide it
        x = self.c(x).relu()
        x = F.leaky_relu(self.d(x), 0.2)
        x = F.gelu(self.e(x), approximate="tanh")
        return self.slope(self.f(x))


def summary(found: ActivationMap) -> dict[str, tuple[str, float | None, str]]:
    return {name: (a.name, a.param, a.source) for name, a in found.by_layer.items()}


def test_without_an_example_module_order_misses_functional_activations() -> None:
    found = detect_activations(Functional())
    assert found.method == "module order"
    assert found.by_layer["a"].name == "linear"  # F.silu is invisible to module order


def test_an_example_is_recorded_and_sees_functional_calls_methods_and_modules() -> None:
    found = detect_activations(Functional(), example=torch.randn(3, 4))
    assert found.method == "recorded"
    assert summary(found) == {
        "a": ("silu", None, "recorded"),
        "b": ("tanh", None, "recorded"),
        "c": ("relu", None, "recorded"),
        "d": ("leaky_relu", 0.2, "recorded"),
        "e": ("gelu_tanh", None, "recorded"),
        "f": ("leaky_relu", pytest.approx(0.3), "recorded"),  # PReLU: its learned slope
    }


@pytest.mark.parametrize(
    "example", [(torch.randn(3, 4),), [torch.randn(3, 4)], {"x": torch.randn(3, 4)}]
)
def test_an_example_may_be_positional_inputs_or_keyword_inputs(example: object) -> None:
    assert detect_activations(Functional(), example=example).by_layer["a"].name == "silu"


def test_an_example_of_another_kind_is_refused_with_the_forms_allowed() -> None:
    with pytest.raises(ConfigError, match=r"example: batch must be a torch.Tensor.*got a int"):
        detect_activations(Functional(), example=3)


def test_prelu_is_a_leaky_rectifier_with_its_learned_slope() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.PReLU(init=0.25), nn.Linear(8, 2))
    found = detect_activations(model)
    assert found.method == "fx"
    assert (found.by_layer["0"].name, found.by_layer["0"].param) == ("leaky_relu", 0.25)


class SharedReLU(nn.Module):
    """One nn.ReLU instance called after two layers."""

    def __init__(self, branchy: bool) -> None:
        super().__init__()
        self.branchy = branchy
        self.a, self.b, self.c = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branchy and x.sum() > 0:
            x = -x
        return self.c(self.act(self.b(self.act(self.a(x)))))


@pytest.mark.parametrize(("branchy", "source"), [(False, "fx"), (True, "recorded")])
def test_an_activation_module_called_twice_follows_both_layers(branchy: bool, source: str) -> None:
    found = detect_activations(SharedReLU(branchy), example=torch.randn(2, 4))
    assert summary(found) == {
        "a": ("relu", None, source),
        "b": ("relu", None, source),
        "c": ("linear", None, source),
    }


class Reused(nn.Module):
    """One layer called twice: first followed by tanh, then by nothing (the output)."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            x = -x
        return self.shared(torch.tanh(self.shared(x)))


def test_a_layer_called_twice_takes_its_first_call() -> None:
    found = detect_activations(Reused(), example=torch.randn(2, 4))
    assert summary(found) == {"shared": ("tanh", None, "recorded")}


class GatedMLP(nn.Module):
    """LLaMA's MLP: down(silu(gate(x)) * up(x)), with a custom RMSNorm class in front."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = RMSNorm(16)
        self.gate, self.up, self.down = nn.Linear(8, 16), nn.Linear(8, 16), nn.Linear(16, 8)
        self.fused = nn.Linear(8, 32)  # gate and up in one matrix, split by chunk()
        self.head = nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            x = -x
        x = self.down(F.silu(self.gate(x)) * self.up(x))
        gate, up = self.fused(x).chunk(2, dim=-1)
        return self.head(F.silu(self.norm(gate)) * up)


class RMSNorm(nn.Module):
    """Not torch's class: a norm recognised by behaviour (its inside multiplies two signals)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


def test_a_gate_is_followed_by_its_activation_and_the_value_path_by_linear() -> None:
    found = detect_activations(GatedMLP(), example=torch.randn(2, 8))
    assert {name: a.name for name, a in found.by_layer.items()} == {
        "gate": "silu",
        "up": "linear",  # multiplied by the gate: a product is not an activation
        "down": "linear",
        "fused": "silu",  # its gate half reaches silu, through the norm, before anything else
        "head": "linear",
    }


class Bottleneck(nn.Module):
    """A ResNet block: the last conv's "activation" is an nn.Identity; the ReLU comes after the
    residual sum (Hugging Face's ResNet is built this way)."""

    def __init__(self, branchy: bool) -> None:
        super().__init__()
        self.branchy = branchy
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.activation = nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branchy and x.sum() > 0:
            x = -x
        h = self.activation(self.norm(self.conv(x)))
        h += x
        return self.relu(h)


@pytest.mark.parametrize(("branchy", "source"), [(False, "fx"), (True, "recorded")])
def test_an_identity_module_passes_the_data_on_to_the_activation(
    branchy: bool, source: str
) -> None:
    found = detect_activations(Bottleneck(branchy).eval(), example=torch.randn(2, 4, 5, 5))
    assert summary(found) == {"conv": ("relu", None, source)}


class WeightInAFunction(nn.Module):
    """A layer applied through its weight (Mamba's ``self.dt_proj.weight @ x``)."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 8)
        self.proj = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            x = -x
        return F.softplus(F.linear(self.first(x), self.proj.weight.t().t(), self.proj.bias))


def test_a_layer_applied_through_its_weight_counts_as_a_call() -> None:
    found = detect_activations(WeightInAFunction(), example=torch.randn(2, 4))
    assert summary(found) == {
        "first": ("linear", None, "recorded"),  # it enters proj's weight
        "proj": ("softplus", None, "recorded"),
    }


class Skipped(nn.Module):
    """A branch the example does not take: its layer is found without the recording."""

    def __init__(self) -> None:
        super().__init__()
        self.taken, self.other = nn.Linear(4, 4), nn.Linear(4, 4)
        self.squash = nn.Tanh()
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.taken(x) if x.sum() > 0 else self.other(x)
        return self.head(F.relu(x))


def test_layers_the_example_never_reaches_fall_back_and_the_method_says_so() -> None:
    found = detect_activations(Skipped(), example=torch.ones(2, 4))
    assert found.method == "recorded, else module order"
    assert summary(found) == {
        "taken": ("relu", None, "recorded"),
        "other": ("tanh", None, "module order"),
        "head": ("linear", None, "recorded"),
    }


class Stateful(nn.Module):
    """Batch norm (running statistics) and dropout (random) in training mode."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 8)
        self.norm = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            x = -x
        return self.head(self.drop(F.elu(self.norm(self.fc(x)), 0.5)))


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("training", [True, False])
def test_recording_leaves_the_model_and_the_random_stream_as_they_were(training: bool) -> None:
    model = Stateful().train(training)
    model.norm.eval()  # a mixed mode must survive too
    before = {name: value.clone() for name, value in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    example = torch.randn(16, 4) + 3
    torch.manual_seed(7)
    expected_draw = torch.rand(3)
    torch.manual_seed(7)
    found = detect_activations(model, example=example)
    assert torch.equal(torch.rand(3), expected_draw)  # dropout in the pass used a forked stream
    assert found.by_layer["fc"].name == "elu"  # through batch norm
    assert found.by_layer["fc"].param == 0.5
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[name], value) for name, value in before.items())
    assert [m.training for m in model.modules()] == modes
    assert hook_count(model) == 0


def test_running_statistics_are_restored_after_a_training_mode_pass() -> None:
    model = Stateful().train()
    detect_activations(model, example=torch.randn(16, 4) + 3)
    assert int(model.norm.num_batches_tracked) == 0
    assert torch.equal(model.norm.running_mean, torch.zeros(8))


def test_an_example_the_model_rejects_warns_falls_back_and_leaves_no_hooks() -> None:
    model = Stateful()
    with pytest.warns(UserWarning, match="could not run the model on the example"):
        found = detect_activations(model, example=torch.randn(16, 5))  # 5 features, not 4
    assert found.method == "module order"
    assert found.fallback_reason.endswith("and the model could not be run on the example")
    assert "mat1" not in found.fallback_reason  # torch's message stays out of the table
    assert hook_count(model) == 0
    assert int(model.norm.num_batches_tracked) == 0


# --- Why the whole model did not trace, in plain words ------------------------------------------


class Loops(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([2 * row for row in self.fc(x)])  # iterating a tensor


class Length(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)[: len(x)]


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (Functional(), "Python control flow that depends on the data"),
        (Loops(), "loops over or unpacks a tensor"),
        (Length(), "takes len() of a tensor"),
    ],
    ids=["control-flow", "iteration", "len"],
)
def test_the_fallback_reason_is_a_plain_sentence(model: nn.Module, reason: str) -> None:
    found = detect_activations(model)
    assert reason in found.fallback_reason
    assert found.fallback_reason.endswith("which torch.fx cannot trace")
    for raw in ("Error", "Proxy", "symbolically traced", "torch.fx.wrap"):
        assert raw not in found.fallback_reason


def test_an_unknown_tracing_error_gets_the_generic_sentence() -> None:
    reason = untraceable_reason(nn.Linear(2, 2), ValueError("code: co_varnames is too small"))
    assert reason == "torch.fx cannot trace this model's forward pass"


# --- Real architectures, built from tiny configs (nothing is downloaded) ------------------------


def test_llama_recorded_gate_is_silu_and_everything_else_linear() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=100,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config)
    found = detect_activations(model, example=torch.randint(0, 100, (2, 8)))
    assert found.method == "recorded"
    assert found.fallback_reason == (
        "torch.fx cannot trace this model's forward (Hugging Face models use constructs it "
        "does not support)"
    )
    names = {name: a.name for name, a in found.by_layer.items()}
    for block in ("model.layers.0", "model.layers.1"):
        assert names.pop(f"{block}.mlp.gate_proj") == "silu"  # HF's SiLUActivation module
    assert set(names.values()) == {"linear"}  # up/down, q/k/v/o, lm_head
    assert len(names) == 13


def test_gpt2_recorded() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=64, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    found = detect_activations(
        transformers.GPT2LMHeadModel(config), example=torch.randint(0, 100, (2, 8))
    )
    assert found.method == "recorded"
    names = {name: a.name for name, a in found.by_layer.items()}
    assert names.pop("transformer.h.0.mlp.c_fc") == "gelu_tanh"  # NewGELUActivation
    assert names.pop("transformer.h.1.mlp.c_fc") == "gelu_tanh"
    assert set(names.values()) == {"linear"}  # attention c_attn/c_proj, mlp.c_proj, lm_head


def test_bert_recorded_from_keyword_inputs() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )  # fmt: skip
    ids = torch.randint(0, 100, (2, 8))
    example = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    found = detect_activations(transformers.BertModel(config), example=example)
    assert found.method == "recorded"
    names = {name: a.name for name, a in found.by_layer.items()}
    assert names.pop("pooler.dense") == "tanh"
    for block in ("encoder.layer.0", "encoder.layer.1"):
        assert names.pop(f"{block}.intermediate.dense") == "gelu"
    assert set(names.values()) == {"linear"}  # query/key/value, attention and output dense


def test_mamba_recorded_through_functional_uses_of_its_weights() -> None:
    """transformers' MambaMixer (torch path) applies conv1d and dt_proj through their weights:
    ``F.conv1d(x, self.conv1d.weight...)`` then ``ACT2FN["silu"]``, and
    ``softplus(self.dt_proj.weight @ time_step + bias)``; in_proj's output is chunked into
    the conv's input (a layer: reached first) and the gate (silu, later)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.MambaConfig(
        vocab_size=100, hidden_size=32, state_size=4, num_hidden_layers=2, intermediate_size=64,
        time_step_rank=4,
    )  # fmt: skip
    found = detect_activations(
        transformers.MambaModel(config).eval(), example=torch.randint(0, 100, (2, 8))
    )
    assert found.method == "recorded"
    assert {name: a.name for name, a in found.by_layer.items() if name.startswith("layers.0")} == {
        "layers.0.mixer": "linear",  # owns A_log: used as exp(A_log), never activated
        "layers.0.mixer.in_proj": "linear",
        "layers.0.mixer.conv1d": "silu",
        "layers.0.mixer.x_proj": "linear",  # its time-step slice enters dt_proj
        "layers.0.mixer.dt_proj": "softplus",
        "layers.0.mixer.out_proj": "linear",
    }


def test_an_example_is_checked_like_any_batch() -> None:
    """The example is a batch like the doctor's: no NaN, no empty batch, named in the error."""
    with pytest.raises(ConfigError, match=r"example: batch contains NaN or inf"):
        detect_activations(Functional(), example=torch.full((4, 8), float("nan")))
    with pytest.raises(ConfigError, match=r"example: batch holds 0 examples"):
        detect_activations(Functional(), example=torch.empty(0, 8))


def _counted(model: nn.Module) -> list[int]:
    calls = [0]
    model.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("model", [Functional(), Skipped()], ids=["functional", "skipped"])
def test_a_detection_sharing_the_callers_pass_finds_what_detect_activations_finds(
    model: nn.Module,
) -> None:
    example = torch.ones(3, 4)
    expected = detect_activations(model, example=example)
    calls = _counted(model)
    detection = ActivationDetection(model, example)
    with detection.recording() as recording:
        assert recording is not None  # the model does not trace
        output = model(example)
        recording.leaving(output)
    found = detection.result()
    assert (summary(found), found.method) == (summary(expected), expected.method)
    assert found.fallback_reason == expected.fallback_reason
    assert calls[0] == 1  # the caller's pass only


def test_a_detection_of_a_model_that_traces_records_nothing() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 2))
    detection = ActivationDetection(model, torch.ones(3, 4))
    with detection.recording() as recording:
        assert recording is None
    assert summary(detection.result()) == summary(detect_activations(model))


def test_a_detection_whose_pass_never_ran_runs_its_own() -> None:
    model = Functional()
    calls = _counted(model)
    found = ActivationDetection(model, torch.ones(3, 4)).result()
    assert found.method == "recorded"
    assert calls[0] == 1
