"""Activation detection where whole-model tracing fails: per-submodule tracing, custom layers."""

from __future__ import annotations

import torch
from torch import nn

import initlab
from initlab.plan.activations import detect_activations


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
