r"""What a probe hook leaves on the device for one module call, and the statistics the host
derives from it (see :mod:`initlab.doctor.probe` for the list).

Every full-size pass over an activation is a kernel launch (a parallel region on CPU) and every
full-size temporary an allocation, so their number, not the arithmetic, is what a probe costs:
a hook reduces an output to a few per-unit sums, and :func:`forward_fields` turns one module's
share of the single host copy into float64 statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from initlab.errors import InitlabError
from initlab.layers import activation_kind, module_activation

__all__ = [
    "NAN",
    "Key",
    "Reduced",
    "Watch",
    "cosine_pieces",
    "forward_fields",
    "measurable",
    "moments",
    "reduce_output",
    "std_rms",
    "watch_for",
]

Key = tuple[str, int]
"""A module's qualified name and the index of its call (0 for the first)."""


def measurable(tensor: torch.Tensor) -> bool:
    """A dense real floating-point tensor with values (what the reductions can read)."""
    return (
        tensor.is_floating_point()
        and tensor.layout == torch.strided
        and not tensor.is_nested
        and tensor.numel() > 0
    )


_COSINE_EXAMPLES = 64
_EXACT = (torch.float32, torch.float64)
NAN = float("nan")


@dataclass(frozen=True)
class Watch:
    """How a module's output is read, decided once when the probe is built.

    ``can_die``: a hard rectifier (:attr:`initlab.layers.ActivationKind.can_die`), whose zeros
    and dead units are counted. ``saturation``: the activation's saturation interval, if any.
    ``is_layer``: a layer (or a saturating activation, which is read like one): the std of its
    input and the between-example cosine of its output are measured too.
    """

    kind: str
    can_die: bool
    saturation: tuple[float, float] | None
    is_layer: bool


def watch_for(module: nn.Module, is_layer: bool) -> Watch:
    found = module_activation(module)
    try:
        activation = activation_kind(found[0]) if found is not None else None
    except (InitlabError, KeyError):  # a name gains.py knows but kinds.py does not judge
        activation = None
    saturation = activation.saturation if activation is not None else None
    return Watch(
        kind=type(module).__name__,
        can_die=activation is not None and activation.can_die,
        saturation=saturation,
        is_layer=is_layer or saturation is not None,
    )


def _widened(tensor: torch.Tensor) -> torch.Tensor:
    """float32 for half precision (squares of fp16 overflow past 256), the tensor otherwise."""
    return tensor if tensor.dtype in _EXACT else tensor.float()


@dataclass(frozen=True)
class Reduced:
    """What a forward hook leaves on the device for :meth:`Probe.collect` to finish.

    ``pieces`` are, in order: the per-unit mean and mean square (``units`` each), the count of
    nonzeros (hard rectifiers), the count in saturation (saturating activations), the input's
    sum and 2-norm (a layer whose input no probed module produced), and for the cosine
    similarity the norms of the first ``cosine_rows`` examples and the norm of their normalized
    sum.
    """

    pieces: tuple[torch.Tensor, ...]
    units: int
    numel: int
    examples: int
    zeros: bool
    saturated: bool
    input_numel: int
    input_from: Key | None
    cosine_rows: int

    @property
    def size(self) -> int:
        inputs = 2 if self.input_numel else 0
        cosine = self.cosine_rows + 1 if self.cosine_rows else 0
        return 2 * self.units + self.zeros + self.saturated + inputs + cosine


def reduce_output(watch: Watch, output: torch.Tensor) -> list[torch.Tensor]:
    """The device-side reductions of one output (see :class:`Reduced`).

    Two per-unit means (of :math:`h` and :math:`h^2`) carry every moment; hard rectifiers add
    one count of the nonzeros, saturating activations one comparison. Every full-size pass is a
    kernel launch (a parallel region on CPU) and every full-size temporary an allocation, so
    their number, not the arithmetic, is what a probe costs: the mean square of a contiguous
    map is read through per-row 2-norms (no squared copy) and the zeros are counted through
    ``sign`` (a comparison to 0 makes a bool tensor whose sum is several times slower).
    """
    h = _widened(output.detach())
    dims = (0, *range(2, h.dim())) if h.dim() > 1 else (0,)
    if h.dim() > 2 and h.is_contiguous():
        rows = h.reshape(h.shape[0], h.shape[1], -1)
        unit_sq = torch.linalg.vector_norm(rows, dim=2).square().mean(dim=0) / rows.shape[2]
    else:
        unit_sq = h.square().mean(dim=dims)
    pieces = [h.mean(dim=dims).reshape(-1), unit_sq.reshape(-1)]
    if watch.can_die:  # NaN counts as nonzero, as it is not == 0
        pieces.append(torch.sign(h).nan_to_num_(nan=1.0).abs_().sum())
    if watch.saturation is not None:
        low, high = watch.saturation
        if low == -high:  # one comparison for a symmetric interval (tanh, hardtanh, softsign)
            pieces.append((h.abs() >= high).sum())
        else:
            pieces.append(((h <= low) | (h >= high)).sum())
    return pieces


def cosine_pieces(output: torch.Tensor) -> list[torch.Tensor]:
    r"""What the mean between-example cosine similarity needs, for the first 64 examples.

    With :math:`u_i = x_i/\lVert x_i\rVert` the mean over pairs :math:`i \ne j` of
    :math:`u_i\cdot u_j` is :math:`(\lVert\sum_i u_i\rVert^2 - \sum_i \lVert u_i\rVert^2) /
    (n(n-1))`: the row norms and one matrix-vector product, not an :math:`n \times n` Gram
    matrix. 64 examples put its standard error at about 1/64 of its spread, plenty for a
    collapse diagnosis. Empty for a single example.
    """
    if output.dim() < 2 or output.shape[0] < 2:
        return []
    h = _widened(output.detach())
    rows = h[:_COSINE_EXAMPLES].reshape(min(h.shape[0], _COSINE_EXAMPLES), -1)
    norms = torch.linalg.vector_norm(rows, dim=1)
    total = norms.clamp_min(1e-12).reciprocal() @ rows
    return [norms, torch.linalg.vector_norm(total)]


def moments(tensor: torch.Tensor) -> torch.Tensor:
    """Sum and 2-norm of all of ``tensor``: two read-only, vectorized passes."""
    x = _widened(tensor.detach())
    return torch.stack([x.sum(), torch.linalg.vector_norm(x)])


def std_rms(total: float, norm: float, count: int) -> tuple[float, float]:
    r"""Population std and RMS from a sum and a 2-norm.

    .. math:: \sigma^2 = \lVert x\rVert_2^2/n - \bar x^2,
        \quad \text{rms} = \lVert x\rVert_2/\sqrt n
    """
    count = max(count, 1)
    mean = total / count
    mean_sq = norm * norm / count
    variance = mean_sq - mean * mean
    return math.sqrt(max(variance, 0.0)), math.sqrt(mean_sq)  # max keeps NaN: NaN stays NaN


def forward_fields(
    reduced: Reduced, values: np.ndarray[Any, Any], input_std: float
) -> dict[str, float]:
    """The :data:`FORWARD_FIELDS` from one module's reduced values (host, float64).

    A unit is dead when it is 0 on every example: with a single example that says nothing
    about the unit, so the dead fraction is NaN then (as is the cosine).
    """
    units = reduced.units
    unit_mean, unit_sq = values[:units], values[units : 2 * units]
    at = 2 * units
    zero_fraction = dead_fraction = saturated = cosine = NAN
    with np.errstate(all="ignore"):  # NaN/inf outputs give NaN/inf statistics, quietly
        mean = float(unit_mean.mean())
        mean_sq = float(unit_sq.mean())
        variance = mean_sq - mean * mean
        channel_var = float(np.maximum(unit_sq - unit_mean**2, 0.0).mean())
        channel_mean_sq = float((unit_mean**2).mean())
        if reduced.zeros:
            zero_fraction = 1.0 - float(values[at]) / max(reduced.numel, 1)
            if reduced.examples > 1:
                dead_fraction = float((unit_sq == 0).mean())
            at += 1
        if reduced.saturated:
            saturated = float(values[at]) / max(reduced.numel, 1)
            at += 1
        if reduced.input_numel:
            total, norm = float(values[at]), float(values[at + 1])
            input_std = std_rms(total, norm, reduced.input_numel)[0]
            at += 2
        if reduced.cosine_rows:
            n = reduced.cosine_rows
            norms = values[at : at + n]
            diagonal = float(((norms / np.maximum(norms, 1e-12)) ** 2).sum())
            cosine = (float(values[at + n]) ** 2 - diagonal) / (n * (n - 1))
    return {
        "mean": mean,
        "std": math.sqrt(max(variance, 0.0)),
        "rms": math.sqrt(mean_sq),
        "input_std": input_std,
        "zero_fraction": zero_fraction,
        "dead_fraction": dead_fraction,
        "saturated_fraction": saturated,
        "channel_mean_sq": channel_mean_sq,
        "channel_var": channel_var,
        "cosine": cosine,
        "nonfinite": float(np.count_nonzero(~np.isfinite(unit_sq))),
    }
