"""Models for the comparisons, named the way plans and the doctor expect.

* :class:`MLP`: ``flatten``, then ``layers.{i}.linear`` / ``.norm`` / ``.act`` / ``.dropout``
  for each hidden layer, then ``head``;
* :class:`SmallCNN`: ``blocks.{i}.conv`` / ``.norm`` / ``.act`` / ``.pool``, then ``flatten``,
  ``dropout``, ``head`` (8x8 digits: 8 -> 4 -> 2 pixels; 28x28: 28 -> 14 -> 7);
* :class:`ResNet`: torchvision's names on a CIFAR-sized network: ``stem.conv`` / ``stem.bn``,
  ``layer{s}.{b}.conv1`` / ``bn1`` / ``conv2`` / ``bn2`` / ``downsample``, ``avgpool``, ``fc``.

Activations are ``nn.Module`` s (so ``torch.fx`` and the module-order fallback of
:func:`initlab.plan.detect_activations` both see them); a layer followed by batch norm has no
bias (the norm's shift replaces it). No model re-initializes anything: they keep torch's
defaults until a Plan says otherwise.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from initlab.errors import ConfigError, UnknownNameError, did_you_mean
from initlab.layers import activation_module

__all__ = ["MLP", "BasicBlock", "Norm", "ResNet", "SmallCNN", "activation"]

Norm = Literal["batch", "layer"]


def activation(name: str) -> nn.Module:
    """A fresh activation module by name (``relu``, ``tanh``, ``gelu``, ``linear``...): any
    activation :mod:`initlab.layers` knows (see :data:`initlab.gains.ACTIVATIONS`)."""
    return activation_module(name)


def _check_norm(norm: str | None) -> None:
    if norm is not None and norm not in ("batch", "layer"):
        raise UnknownNameError(did_you_mean("norm", norm, ["batch", "layer"]))


def _check_dropout(dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}.")


def _positive(model: str, **values: int) -> None:
    for field, value in values.items():
        if value < 1:
            raise ConfigError(f"{model}: {field} must be >= 1, got {value!r}.")


class DenseLayer(nn.Module):
    """``linear -> norm -> act -> dropout`` (norm and dropout optional)."""

    def __init__(
        self, in_features: int, out_features: int, act: str, dropout: float, norm: Norm | None
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=norm != "batch")
        if norm == "batch":
            self.norm: nn.Module = nn.BatchNorm1d(out_features)
        elif norm == "layer":
            self.norm = nn.LayerNorm(out_features)
        self.act = activation(act)
        if dropout > 0:
            self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        if hasattr(self, "norm"):
            x = self.norm(x)
        x = self.act(x)
        if hasattr(self, "dropout"):
            x = self.dropout(x)
        return x


class MLP(nn.Module):
    """A multilayer perceptron of ``depth`` hidden layers of ``width`` units.

    .. math::

        h_0 = \\text{flatten}(x),\\quad
        h_{i+1} = \\text{dropout}(\\phi(\\text{norm}(W_i h_i + b_i))),\\quad
        y = W_{head} h_{depth} + b_{head}

    Example:
        >>> MLP(64, 10, depth=2, width=256)          # the 64-256-256-10 digits MLP
        >>> MLP(30, 2, depth=8, width=64, activation="tanh", dropout=0.1, norm="layer")

    Args:
        in_features: inputs per example (images are flattened).
        out_features: classes or regression targets.
        depth: number of hidden layers (0 gives a linear model).
        width: units per hidden layer.
        activation: an activation name (see :func:`activation`).
        dropout: drop probability after every hidden activation.
        norm: ``None``, ``"batch"`` or ``"layer"`` after every hidden linear layer.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        depth: int = 2,
        width: int = 256,
        activation: str = "relu",
        dropout: float = 0.0,
        norm: Norm | None = None,
    ) -> None:
        super().__init__()
        _positive("MLP", in_features=in_features, out_features=out_features, width=width)
        if depth < 0:
            raise ConfigError(f"MLP: depth must be >= 0, got {depth!r}.")
        _check_norm(norm)
        _check_dropout(dropout)
        self.flatten = nn.Flatten()
        sizes = [in_features] + [width] * depth
        self.layers = nn.Sequential(
            *(DenseLayer(a, b, activation, dropout, norm) for a, b in itertools.pairwise(sizes))
        )
        self.head = nn.Linear(sizes[-1], out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.flatten(x)))  # type: ignore[no-any-return]


class ConvBlock(nn.Module):
    """``conv (3x3, same padding) -> norm -> act -> pool (2x2 max)``."""

    def __init__(self, in_channels: int, out_channels: int, act: str, norm: Norm | None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=norm != "batch")
        if norm == "batch":
            self.norm: nn.Module = nn.BatchNorm2d(out_channels)
        elif norm == "layer":
            self.norm = nn.GroupNorm(1, out_channels)
        self.act = activation(act)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if hasattr(self, "norm"):
            x = self.norm(x)
        return self.pool(self.act(x))  # type: ignore[no-any-return]


class SmallCNN(nn.Module):
    """Conv blocks that halve the image, then one linear classifier.

    With the default two blocks an 8x8 digit becomes 2x2 and a 28x28 image 7x7 before the
    classifier. ``norm="layer"`` uses ``GroupNorm(1, C)`` (layer norm over C, H, W).

    Example:
        >>> SmallCNN(1, 10, image_size=8)
        >>> SmallCNN(1, 10, image_size=28, channels=(32, 64), dropout=0.25, norm="batch")

    Args:
        in_channels: image channels.
        num_classes: outputs.
        image_size: height and width of the inputs (a multiple of ``2 ** len(channels)``).
        channels: output channels of each block.
        activation, dropout, norm: as for :class:`MLP` (dropout before the classifier).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        image_size: int | tuple[int, int] = 8,
        channels: Sequence[int] = (32, 64),
        activation: str = "relu",
        dropout: float = 0.0,
        norm: Norm | None = None,
    ) -> None:
        super().__init__()
        _positive("SmallCNN", in_channels=in_channels, num_classes=num_classes)
        _check_norm(norm)
        _check_dropout(dropout)
        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
        factor = 2 ** len(channels)
        if not channels or height % factor or width % factor:
            raise ConfigError(
                f"SmallCNN: {len(channels)} blocks halve the image {len(channels)} times, so "
                f"image_size {height}x{width} must be a multiple of {factor} (and channels "
                f"non-empty); pass fewer channels or pad the images."
            )
        sizes = [in_channels, *channels]
        self.blocks = nn.Sequential(
            *(ConvBlock(a, b, activation, norm) for a, b in itertools.pairwise(sizes))
        )
        self.flatten = nn.Flatten()
        if dropout > 0:
            self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(sizes[-1] * (height // factor) * (width // factor), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.blocks(x))
        if hasattr(self, "dropout"):
            x = self.dropout(x)
        return self.head(x)  # type: ignore[no-any-return]


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block: two 3x3 convs, identity or 1x1 projection shortcut.

    .. math:: y = \\phi(\\text{bn2}(\\text{conv2}(\\phi(\\text{bn1}(\\text{conv1}(x))))) + s(x))

    Without norm layers there are no ``bn1`` / ``bn2`` modules (not even ``nn.Identity``,
    which the activation detector would read as a linear activation) and the convs get biases.
    """

    def __init__(self, in_channels: int, channels: int, stride: int, act: str, norm: bool) -> None:
        super().__init__()
        self.norm = norm
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, padding=1, bias=not norm)
        if norm:
            self.bn1 = nn.BatchNorm2d(channels)
        self.act1 = activation(act)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=not norm)
        if norm:
            self.bn2 = nn.BatchNorm2d(channels)
        self.act2 = activation(act)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            projection = nn.Conv2d(in_channels, channels, 1, stride, bias=not norm)
            self.downsample = (
                nn.Sequential(projection, nn.BatchNorm2d(channels))
                if norm
                else nn.Sequential(projection)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv1(x)
        if self.norm:
            out = self.bn1(out)
        out = self.conv2(self.act1(out))
        if self.norm:
            out = self.bn2(out)
        return self.act2(out + identity)  # type: ignore[no-any-return]


class Stem(nn.Module):
    """``conv (3x3) -> bn -> act``: the CIFAR-style stem (no 7x7 conv, no max pool)."""

    def __init__(self, in_channels: int, channels: int, act: str, norm: bool) -> None:
        super().__init__()
        self.norm = norm
        self.conv = nn.Conv2d(in_channels, channels, 3, padding=1, bias=not norm)
        if norm:
            self.bn = nn.BatchNorm2d(channels)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm:
            x = self.bn(x)
        return self.act(x)  # type: ignore[no-any-return]


class ResNet(nn.Module):
    """A small ResNet for small images, with or without batch norm.

    Stages ``layer1``, ``layer2``... of ``blocks[i]`` basic blocks with ``width * 2**i``
    channels; every stage after the first halves the image. Then global average pooling and
    ``fc``. The default (3 stages of 2 blocks, width 16) is ResNet-14 for 8x8 or 32x32 inputs.
    ``norm=False`` is the setting where initialization alone must keep the signal
    (Fixup, SkipInit).

    Example:
        >>> ResNet(1, 10)                        # digits
        >>> ResNet(3, 10, blocks=(3, 3, 3), norm=False)

    Args:
        in_channels: image channels.
        num_classes: outputs.
        blocks: basic blocks per stage.
        width: channels of the stem and the first stage.
        activation: an activation name (see :func:`activation`).
        norm: batch norm after every conv (``True``) or none.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        blocks: Sequence[int] = (2, 2, 2),
        width: int = 16,
        activation: str = "relu",
        norm: bool = True,
    ) -> None:
        super().__init__()
        _positive("ResNet", in_channels=in_channels, num_classes=num_classes, width=width)
        if not blocks or min(blocks) < 1:
            raise ConfigError(f"ResNet: blocks must be a non-empty list of >= 1, got {blocks!r}.")
        self.stem = Stem(in_channels, width, activation, norm)
        channels = width
        for stage, count in enumerate(blocks, start=1):
            out_channels = width * 2 ** (stage - 1)
            stride = 1 if stage == 1 else 2
            layers = []
            for index in range(count):
                layers.append(
                    BasicBlock(
                        channels, out_channels, stride if index == 0 else 1, activation, norm
                    )
                )
                channels = out_channels
            self.add_module(f"layer{stage}", nn.Sequential(*layers))
        self.stages = len(blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in range(1, self.stages + 1):
            x = getattr(self, f"layer{stage}")(x)
        return self.fc(self.flatten(self.avgpool(x)))  # type: ignore[no-any-return]
