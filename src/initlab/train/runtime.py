"""Where and how reproducibly a run executes: device, seed streams, RNG state, autocast.

One seed feeds several independent streams (data order, dropout, augmentation) through
``numpy.random.SeedSequence``, so changing how often one of them is drawn from never shifts the
others. :func:`seeded` saves the global torch RNG state, seeds it for dropout, and restores it
afterwards; on CUDA it also puts cuDNN in deterministic mode for the run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from initlab.errors import ConfigError
from initlab.train.config import Precision

__all__ = ["autocast_factory", "resolve_device", "seed_streams", "seeded"]


def resolve_device(name: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; other names as ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"device {name!r} is not a device; use 'auto', 'cpu' or 'cuda'."
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} needs CUDA, which is not available; use 'cpu'.")
    return device


def seed_streams(seed: int) -> dict[str, int]:
    """Independent 63-bit seeds for the run's random streams, derived from one seed."""
    names = ("order", "dropout", "augment")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {
        n: int(c.generate_state(1, np.uint64)[0] >> 1)
        for n, c in zip(names, children, strict=True)
    }


def autocast_factory(precision: Precision, device: torch.device) -> Callable[[], Any]:
    """A zero-argument context factory: bfloat16 autocast, or a reusable no-op context."""
    if precision == "bfloat16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    null = contextlib.nullcontext()
    return lambda: null


@contextlib.contextmanager
def seeded(device: torch.device, seeds: dict[str, int]) -> Iterator[None]:
    """Run the body with the global RNG seeded from ``seeds["dropout"]``, then restore it."""
    cuda = device.type == "cuda"
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if (cuda)
        else []
    )
    flags = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seeds["dropout"])
        if cuda:
            with torch.cuda.device(devices[0]):
                torch.cuda.manual_seed(seeds["dropout"])
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        try:
            yield
        finally:
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags
