"""The classics of initialization, reproduced on scikit-learn's digits (10 classes, chance 0.1).

Thresholds come from repeated runs (seeds 0, 1, 2 at the settings below): a 30-layer plain ReLU
MLP reached best validation accuracy 0.100 / 0.100 / 0.100 under Xavier and 0.513 / 0.450 /
0.428 under He; a depth-10 tanh MLP reached 0.100 (x3) under N(0, 1) and 0.967 / 0.967 / 0.974
under Xavier. The bounds sit between those groups with a wide margin on both sides.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import initlab
from initlab.experiments.trial import SWEEP_TASKS, run_configuration
from initlab.train import MLP, TrainConfig, fit

BASE: dict[str, Any] = {"lr": 0.01, "optimizer": "sgd", "momentum": 0.9, "l1": 0.0, "l2": 0.0,
                        "weight_decay": 0.0, "dropout": 0.0, "schedule": "constant",
                        "clip": None, "augment": False, "width": 64, "norm": None}  # fmt: skip


@pytest.fixture(scope="module")
def digits() -> Any:
    return SWEEP_TASKS["digits-mlp"].load()


def _best(digits: Any, **config: Any) -> float:
    outcome = run_configuration({**BASE, **config}, SWEEP_TASKS["digits-mlp"], digits, seed=0,
                                epochs=10, batch_size=64)  # fmt: skip
    return outcome.best_val_accuracy


def test_30_layer_relu_mlp_stalls_under_xavier_and_trains_under_he(digits: Any) -> None:
    assert _best(digits, init="xavier", activation="relu", depth=30) < 0.15
    assert _best(digits, init="kaiming", activation="relu", depth=30) > 0.3


def test_standard_normal_with_tanh_trains_far_worse_than_xavier(digits: Any) -> None:
    saturated = _best(digits, init="normal:1", activation="tanh", depth=10)
    xavier = _best(digits, init="xavier", activation="tanh", depth=10)
    assert saturated < 0.2
    assert xavier > 0.9


def test_constant_init_units_stay_identical_through_training(digits: Any) -> None:
    model = MLP(64, 10, depth=3, width=32, activation="tanh")
    initlab.Plan([initlab.rule(role="weight", scheme="constant", value=0.05),
                  initlab.rule(role="bias", scheme="zeros")]).apply(model)  # fmt: skip
    history = fit(model, digits, TrainConfig(epochs=3, lr=0.05, seed=0, device="cpu"))
    assert not history.diverged
    for index in range(3):  # every hidden unit gets the same gradient as its neighbours
        weight = model.layers[index].linear.weight.detach()
        assert not torch.equal(weight, torch.full_like(weight, 0.05)), "it did train"
        assert torch.equal(weight, weight[:1].expand_as(weight)), f"layer {index} rows differ"
