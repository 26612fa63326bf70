"""Task models: output shapes and the conventional names plans and the doctor rely on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import initlab
from initlab.errors import ConfigError, UnknownNameError
from initlab.plan import detect_activations
from initlab.train import MLP, ResNet, SmallCNN
from initlab.train.regularize import decay_split


def test_mlp_names_layers_like_a_plan_expects() -> None:
    model = MLP(64, 10, depth=2, width=256)
    names = [n for n, _ in model.named_parameters()]
    assert names == [
        "layers.0.linear.weight",
        "layers.0.linear.bias",
        "layers.1.linear.weight",
        "layers.1.linear.bias",
        "head.weight",
        "head.bias",
    ]
    assert model(torch.zeros(5, 1, 8, 8)).shape == (5, 10)  # images are flattened
    found = detect_activations(MLP(8, 2, depth=3, width=4, activation="tanh"))
    assert found.method == "fx"
    assert [found.by_layer[f"layers.{i}.linear"].name for i in range(3)] == ["tanh"] * 3
    assert found.by_layer["head"].name == "linear"


def test_mlp_options() -> None:
    model = MLP(8, 3, depth=2, width=16, activation="gelu", dropout=0.2, norm="batch")
    block = model.layers[0]
    assert isinstance(block.norm, nn.BatchNorm1d)
    assert isinstance(block.dropout, nn.Dropout)
    assert block.linear.bias is None  # batch norm's shift makes the bias redundant
    assert isinstance(MLP(8, 3, norm="layer").layers[1].norm, nn.LayerNorm)
    linear = MLP(8, 3, depth=0)
    assert [n for n, _ in linear.named_parameters()] == ["head.weight", "head.bias"]
    with pytest.raises(UnknownNameError, match="Did you mean 'relu'"):
        MLP(8, 3, activation="rleu")
    with pytest.raises(ConfigError, match="dropout"):
        MLP(8, 3, dropout=1.0)


@pytest.mark.parametrize(("size", "flat"), [(8, 64 * 2 * 2), (28, 64 * 7 * 7)])
def test_small_cnn_for_8x8_and_28x28(size: int, flat: int) -> None:
    model = SmallCNN(1, 10, image_size=size, norm="batch", dropout=0.1)
    assert model(torch.zeros(3, 1, size, size)).shape == (3, 10)
    assert model.head.in_features == flat
    assert {"blocks.0.conv.weight", "blocks.1.norm.weight", "head.weight"} <= {
        n for n, _ in model.named_parameters()
    }
    found = detect_activations(model)
    assert found.by_layer["blocks.0.conv"].name == "relu"


def test_small_cnn_rejects_sizes_it_cannot_halve() -> None:
    with pytest.raises(ConfigError, match="multiple of 4"):
        SmallCNN(1, 10, image_size=10)


def test_resnet_uses_torchvision_names() -> None:
    model = ResNet(1, 10)
    names = {n for n, _ in model.named_modules()}
    assert {
        "stem.conv",
        "stem.bn",
        "layer1.0.conv1",
        "layer1.0.bn1",
        "layer1.0.conv2",
        "layer1.0.bn2",
        "layer2.0.downsample",
        "layer2.0.downsample.0",
        "fc",
    } <= names
    assert "layer1.0.downsample.0" not in names  # same width and stride: identity shortcut
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert model.layer1[0].conv1.bias is None


def test_resnet_without_norm_has_no_norm_layers_and_keeps_activations_visible() -> None:
    model = ResNet(3, 5, blocks=(1, 1), norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d | nn.Identity) for m in model.modules())
    assert model.layer1[0].conv1.bias is not None
    found = detect_activations(model)
    assert found.method == "fx"
    assert found.by_layer["layer1.0.conv1"].name == "relu"
    assert model(torch.zeros(2, 3, 8, 8)).shape == (2, 5)


def test_decay_rules_see_the_models_layers() -> None:
    decay, no_decay = decay_split(ResNet(1, 10))
    assert all(n.endswith("weight") and ".bn" not in n for n in decay)
    assert "stem.bn.weight" in no_decay
    assert "fc.bias" in no_decay
    assert "fc.weight" in decay


@pytest.mark.parametrize(
    "factory",
    [
        lambda: MLP(64, 10),
        lambda: SmallCNN(1, 10),
        lambda: ResNet(1, 10, norm=False),
    ],
)
def test_plans_apply_to_every_model(factory) -> None:
    model = factory()
    initlab.init_model(model, "kaiming", seed=0)
    assert all(torch.isfinite(p).all() for p in model.parameters())
