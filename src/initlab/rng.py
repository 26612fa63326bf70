"""Reproducible random streams: one per (seed, parameter name).

A parameter's values depend only on the run's seed, its qualified name, its scheme and its
shape, never on module order or on which other parameters exist: inserting a layer leaves every
other layer's initial weights bit for bit the same. The stream's seed is a keyed hash
(BLAKE2b, 63 bits) of the seed and the name, so nearby seeds or names give unrelated streams.
"""

from __future__ import annotations

import hashlib

import torch

__all__ = ["parameter_generator", "parameter_seed"]


def parameter_seed(seed: int, name: str) -> int:
    """The 63-bit seed of parameter ``name``'s stream under run seed ``seed``."""
    digest = hashlib.blake2b(f"{int(seed)}\x00{name}".encode(), digest_size=8, person=b"initlab")
    return int.from_bytes(digest.digest(), "little") & ((1 << 63) - 1)


def parameter_generator(
    seed: int, name: str, device: torch.device | str | None = None
) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`parameter_seed`.

    CPU and CUDA generators are different algorithms: the same (seed, name) gives different
    values on the two device types (but the same on every CPU, and on every CUDA device).
    """
    target = torch.device(device) if device is not None else torch.device("cpu")
    return torch.Generator(device=target).manual_seed(parameter_seed(seed, name))
