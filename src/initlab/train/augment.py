"""Random geometric augmentation of image batches, on the batch's device, from a generator.

Each image gets its own random affine map: horizontal flip (probability ``hflip``), then shear
along x, then rotation and isotropic scaling about the centre, then translation. The
parameters are drawn in one call from the ``torch.Generator`` handed in (so a seed fixes every
augmented image); kornia composes the matrix (``get_affine_matrix2d``) and warps the batch
(``warp_affine``) in one pass. With only flips enabled, images are flipped exactly, with no
resampling.

For an image of width :math:`W` and height :math:`H`, per image:

.. math::

    \\theta \\sim U(\\text{rotate}),\\; s \\sim U(\\text{scale}),\\;
    \\psi \\sim U(\\text{shear}),\\;
    t_x \\sim U(\\pm \\text{translate}_x W),\\; t_y \\sim U(\\pm \\text{translate}_y H),\\;
    f \\sim \\text{Bernoulli}(\\text{hflip})

Angles are in degrees; a positive rotation turns the image clockwise as displayed (kornia's
convention). Pixels that come from outside the image are filled by ``padding``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from initlab.errors import ConfigError, ShapeError, UnknownNameError, did_you_mean
from initlab.optional import require

__all__ = ["Augment", "Padding"]

Padding = Literal["zeros", "border", "reflection"]
Range = float | tuple[float, float]


def _symmetric(field: str, value: Range) -> tuple[float, float]:
    if isinstance(value, tuple | list):
        low, high = (float(v) for v in value)
    elif isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return (-float(value), float(value))
    else:
        raise ConfigError(
            f"Augment: {field} must be a number >= 0 (meaning ±{field}) or a (low, high) pair, "
            f"got {value!r}."
        )
    if not low <= high:
        raise ConfigError(
            f"Augment: {field} range must be (low, high) with low <= high, got {value!r}."
        )
    return (low, high)


@dataclass(frozen=True)
class Augment:
    """Ranges of the random affine augmentation (zero ranges switch a part off).

    Example:
        >>> Augment(translate=0.1, rotate=10, scale=(0.9, 1.1), shear=5, hflip=0.5)

    Attributes:
        translate: largest shift as a fraction of the width and height; a number applies to
            both axes, a pair is ``(x, y)``.
        rotate: degrees; ``r`` means uniform in ``(-r, r)``, a pair is ``(low, high)``.
        scale: ``(low, high)`` zoom factor (1 keeps the size).
        shear: degrees of shear along x; ``s`` means ``(-s, s)``, a pair is ``(low, high)``.
        hflip: probability of a left-right flip.
        padding: fill for pixels from outside the image: zeros, border or reflection.
        interpolation: ``bilinear`` or ``nearest``.
    """

    translate: float | tuple[float, float] = 0.0
    rotate: Range = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    shear: Range = 0.0
    hflip: float = 0.0
    padding: Padding = "zeros"
    interpolation: Literal["bilinear", "nearest"] = "bilinear"

    def __post_init__(self) -> None:
        shift = self.translation
        if not all(0.0 <= t <= 1.0 for t in shift):
            raise ConfigError(f"Augment: translate fractions must be in [0, 1], got {shift}.")
        _symmetric("rotate", self.rotate)
        _symmetric("shear", self.shear)
        low, high = self.scale
        if not 0 < low <= high:
            raise ConfigError(
                f"Augment: scale must be (low, high) with 0 < low <= high, got {self.scale!r}."
            )
        if not max(abs(v) for v in self.shear_range) < 90:
            raise ConfigError(f"Augment: shear must stay within ±90 degrees, got {self.shear!r}.")
        if not 0.0 <= self.hflip <= 1.0:
            raise ConfigError(f"Augment: hflip is a probability in [0, 1], got {self.hflip!r}.")
        if self.padding not in ("zeros", "border", "reflection"):
            raise UnknownNameError(
                "Augment: "
                + did_you_mean("padding", self.padding, ["zeros", "border", "reflection"])
            )
        if self.interpolation not in ("bilinear", "nearest"):
            raise UnknownNameError(
                "Augment: "
                + did_you_mean("interpolation", self.interpolation, ["bilinear", "nearest"])
            )

    @property
    def translation(self) -> tuple[float, float]:
        """Largest shift as fractions ``(x, y)`` of width and height."""
        if isinstance(self.translate, int | float):
            return (float(self.translate), float(self.translate))
        x, y = self.translate
        return (float(x), float(y))

    @property
    def rotation_range(self) -> tuple[float, float]:
        """Rotation range in degrees."""
        return _symmetric("rotate", self.rotate)

    @property
    def shear_range(self) -> tuple[float, float]:
        """Shear range along x in degrees."""
        return _symmetric("shear", self.shear)

    @property
    def warps(self) -> bool:
        """Whether any part besides flipping is on (so images are resampled)."""
        return (
            any(self.translation)
            or any(self.rotation_range)
            or self.scale != (1.0, 1.0)
            or any(self.shear_range)
        )

    @property
    def active(self) -> bool:
        """Whether this augmentation changes anything at all."""
        return self.warps or self.hflip > 0

    def matrices(
        self, batch: int, height: int, width: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image ``(B, 3, 3)`` pixel-space matrices and the ``(B,)`` flip mask.

        All parameters come from one ``torch.rand(B, 6, generator=generator)`` on the
        generator's device.
        """
        transform = require("kornia.geometry.transform", "initlab.train.Augment")
        device = generator.device
        u = torch.rand(batch, 6, generator=generator, device=device)
        spread = u.mul(2).sub_(1)  # U(-1, 1)
        rot_low, rot_high = self.rotation_range
        angle = rot_low + (rot_high - rot_low) * u[:, 0]
        shear_low, shear_high = self.shear_range
        shear = torch.deg2rad(shear_low + (shear_high - shear_low) * u[:, 1])
        tx, ty = self.translation
        shift = torch.stack([spread[:, 2] * (tx * width), spread[:, 3] * (ty * height)], dim=1)
        low, high = self.scale
        zoom = (low + (high - low) * u[:, 4]).unsqueeze(1).expand(batch, 2)
        flip = u[:, 5] < self.hflip
        center = u.new_empty(batch, 2)  # filled from Python scalars: no host-to-device copy
        center[:, 0], center[:, 1] = (width - 1) / 2, (height - 1) / 2
        affine: torch.Tensor = transform.get_affine_matrix2d(shift, center, zoom, angle, sx=shear)
        mirror = torch.eye(3, device=device).repeat(batch, 1, 1)
        sign = 1 - 2 * flip.to(affine.dtype)
        mirror[:, 0, 0] = sign
        mirror[:, 0, 2] = (1 - sign) * (width - 1) / 2
        return affine @ mirror, flip

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A new batch: each image of ``images`` ``(B, C, H, W)`` transformed at random.

        Args:
            images: float images on the same device as ``generator``.
            generator: the source of every random parameter.

        Raises:
            ShapeError: ``images`` is not a 4-D batch.
        """
        if images.dim() != 4:
            raise ShapeError(
                f"Augment needs image batches (B, C, H, W), got shape {tuple(images.shape)}; "
                f"augmentation applies to image datasets only."
            )
        if not self.active:
            return images
        batch, _, height, width = images.shape
        if not self.warps:
            flip = torch.rand(batch, generator=generator, device=generator.device) < self.hflip
            return torch.where(flip.view(batch, 1, 1, 1), images.flip(-1), images)
        matrix, _ = self.matrices(batch, height, width, generator)
        transform = require("kornia.geometry.transform", "initlab.train.Augment")
        warped: torch.Tensor = transform.warp_affine(
            images,
            matrix[:, :2].to(images.dtype),
            (height, width),
            mode=self.interpolation,
            padding_mode=self.padding,
            align_corners=True,
        )
        return warped
