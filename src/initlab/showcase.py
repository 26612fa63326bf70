"""Signal scale through a deep MLP under each classic scheme: the folklore, measured.

For a plain MLP ``h_{l+1} = f(W_l h_l)`` (no bias) fed a Gaussian batch, the std of the
pre-activations :math:`W_l h_l` at each depth shows at a glance what the textbooks say: zero init
gives nothing, N(0, 1) explodes, N(0, 0.01) vanishes, PyTorch's default
U(+-1/sqrt(fan_in)) shrinks ReLU signals by :math:`\\sqrt{1/6}` per layer, He keeps ReLU nets at
scale and Xavier keeps tanh nets at scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from initlab.schemes import HeNormal, Normal, Orthogonal, Scheme, XavierNormal, Zeros, get

__all__ = ["SHOWCASE_SCHEMES", "Propagation", "propagate", "showcase"]

SHOWCASE_SCHEMES: dict[str, Scheme] = {
    "zeros": Zeros(),
    "N(0, 1)": Normal(0.0, 1.0),
    "N(0, 0.01)": Normal(0.0, 0.01),
    "torch default": get("he_uniform", a=math.sqrt(5.0)),
    "xavier_normal": XavierNormal(),
    "xavier_normal (tanh gain)": XavierNormal(gain=5.0 / 3.0),
    "he_normal": HeNormal(nonlinearity="relu"),
    "orthogonal (relu gain)": Orthogonal(gain=math.sqrt(2.0)),
}


@dataclass(frozen=True)
class Propagation:
    """Pre-activation std at each depth, for one scheme and one activation."""

    scheme: str
    activation: str
    stds: tuple[float, ...]


def propagate(
    scheme: Scheme, activation: str, *, depth: int, width: int, batch: int = 256, seed: int = 0
) -> tuple[float, ...]:
    """Std of the pre-activations of each of ``depth`` layers of a bias-free MLP."""
    generator = torch.Generator().manual_seed(seed)
    signal = torch.randn(batch, width, generator=generator)
    nonlinearity = torch.relu if activation == "relu" else torch.tanh
    weight = torch.empty(width, width)
    stds = []
    with torch.no_grad():
        for _ in range(depth):
            scheme.fill_(weight, generator)
            pre = signal @ weight.T
            stds.append(float(pre.std()))
            signal = nonlinearity(pre)
    return tuple(stds)


def showcase(*, depth: int, width: int, seed: int = 0) -> list[Propagation]:
    """:func:`propagate` for every scheme of :data:`SHOWCASE_SCHEMES`, ReLU and tanh."""
    return [
        Propagation(
            label, activation, propagate(scheme, activation, depth=depth, width=width, seed=seed)
        )
        for label, scheme in SHOWCASE_SCHEMES.items()
        for activation in ("relu", "tanh")
    ]
