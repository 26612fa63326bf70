"""Augmentation: reproducible under a seed, changes images, each part does what it says."""

from __future__ import annotations

import math

import pytest
import torch

from initlab.errors import ConfigError, ShapeError
from initlab.train import MLP, Augment, Dataset, TrainConfig, fit, load_wine

pytest.importorskip("kornia")

IMAGES = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
FULL = Augment(translate=0.15, rotate=15, scale=(0.9, 1.1), shear=10, hflip=0.5)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_same_seed_same_images_other_seed_other_images() -> None:
    first = FULL(IMAGES, _generator(1))
    assert torch.equal(first, FULL(IMAGES, _generator(1)))
    assert not torch.equal(first, FULL(IMAGES, _generator(2)))


def test_augmentation_changes_every_image_but_keeps_shape_and_scale() -> None:
    out = FULL(IMAGES, _generator(0))
    assert out.shape == IMAGES.shape
    changed = (out - IMAGES).abs().flatten(1).amax(1) > 1e-3
    assert bool(changed.all())
    assert float(out.max()) <= 1 + 1e-5
    assert float(out.min()) >= 0


def test_flip_alone_is_exact_and_happens_with_its_probability() -> None:
    assert torch.equal(Augment(hflip=1.0)(IMAGES, _generator(0)), IMAGES.flip(-1))
    images = torch.rand(2000, 1, 4, 4, generator=_generator(1))
    out = Augment(hflip=0.3)(images, _generator(2))
    flipped = (out != images).flatten(1).any(1).float().mean()
    # Binomial(2000, 0.3): std sqrt(0.3 * 0.7 / 2000) = 0.0102; allow 4 std.
    assert abs(float(flipped) - 0.3) < 4 * math.sqrt(0.21 / 2000)


def test_rotation_is_in_degrees_clockwise() -> None:
    out = Augment(rotate=(90, 90))(IMAGES, _generator(0))
    torch.testing.assert_close(out, torch.rot90(IMAGES, k=-1, dims=(2, 3)), atol=1e-5, rtol=0)


def test_translation_by_whole_pixels_shifts_the_image() -> None:
    # translate=(0.25, 0) shifts by U(-2, 2) pixels on 8 wide images; recover each shift.
    augment = Augment(translate=(0.25, 0.0))
    matrices, _ = augment.matrices(64, 8, 8, _generator(3))
    shifts = matrices[:, 0, 2]
    assert float(shifts.abs().max()) <= 2
    assert float(shifts.abs().max()) > 1
    torch.testing.assert_close(matrices[:, 1, 2], torch.zeros(64))
    torch.testing.assert_close(matrices[:, :2, :2], torch.eye(2).expand(64, 2, 2))


def test_no_op_and_validation() -> None:
    assert Augment()(IMAGES, _generator(0)) is IMAGES
    with pytest.raises(ShapeError, match=r"\(B, C, H, W\)"):
        FULL(IMAGES[0], _generator(0))
    with pytest.raises(ConfigError, match="hflip is a probability"):
        Augment(hflip=2.0)
    with pytest.raises(ConfigError, match="scale"):
        Augment(scale=(1.2, 0.8))
    with pytest.raises(ConfigError, match="rotate"):
        Augment(rotate=-5)


def test_fit_augments_only_images(small_digits: Dataset) -> None:
    with pytest.raises(ConfigError, match="augment transforms images"):
        fit(MLP(13, 3), load_wine(), TrainConfig(epochs=1, augment=FULL))
    torch.manual_seed(0)
    model = MLP(64, 10, depth=1, width=32)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    plain = fit(model, small_digits, TrainConfig(epochs=1))
    model.load_state_dict(state)
    augmented = fit(model, small_digits, TrainConfig(epochs=1, augment=FULL))
    assert plain.final.train_loss != augmented.final.train_loss
