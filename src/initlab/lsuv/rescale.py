r"""One layer's rescaling, on the output of its first call (see :mod:`initlab.lsuv`).

The layer's output :math:`h` is measured (mean and population std over every element) and its
weight rescaled by :math:`c = \sqrt{v^\ast} / (\operatorname{std}(h) + 10^{-8})` until
:math:`|\operatorname{Var}(h) - v^\ast| < \text{tol}` or ``max_iter`` rescalings were made.

A layer whose forward is a known affine map :math:`h = W \star x + b` (Linear, Conv,
ConvTranspose, Bilinear, Hugging Face's Conv1D, MultiheadAttention in ``out_proj.weight``) is
not run again: with :math:`b = 0` the new output is exactly :math:`c\,h`, and with the centred
bias :math:`b \leftarrow c\,(b - \bar h)` it is exactly :math:`c\,(h - \bar h)` whatever
:math:`b` was, so the output tensor is corrected in place and its statistics follow from the
measured ones (:math:`\operatorname{std} \to c\,\operatorname{std}`), one measurement per layer.
Any other layer (a fixed nonzero bias, a subclass whose forward adds a norm or a clamp, a
module with hooks of its own) is called again on the same inputs after each rescaling and
measured afresh.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from initlab.batches import first_floating_tensor
from initlab.layers import is_hf_conv1d
from initlab.lsuv.log import LsuvRow
from initlab.lsuv.targets import Target, unmeasurable

__all__ = ["MISSING", "Fitted", "Settings", "Statistics", "fit_layer", "row_for", "statistics"]

_EPS = 1e-8

#: Forwards known to compute ``weight (*) input + bias`` and nothing else.
_AFFINE_FORWARDS = frozenset(
    kind.forward
    for kind in (
        nn.Linear, nn.Bilinear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
        nn.ConvTranspose2d, nn.ConvTranspose3d, nn.MultiheadAttention,
    )
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """What every layer is fitted to.

    Attributes:
        target_var: the output variance to reach.
        tol: the tolerance on it.
        max_iter: the most rescalings per layer.
        center_bias: also shift the bias so the output has mean 0.
    """

    target_var: float
    tol: float
    max_iter: int
    center_bias: bool


@dataclass(frozen=True)
class Statistics:
    """One output's mean and population std over all elements, and whether all were finite."""

    mean: float
    std: float
    finite: bool


MISSING = Statistics(math.nan, math.nan, False)


def statistics(output: Any) -> Statistics:
    r"""The statistics of an output's first floating-point tensor, :data:`MISSING` when LSUV
    cannot measure it: from its sum and 2-norm (two vectorized reads, one host sync),
    :math:`\sigma^2 = \lVert h\rVert_2^2/n - \bar h^2`, accumulated in float32 at least."""
    tensor = first_floating_tensor(output)
    if tensor is None or unmeasurable(output):
        return MISSING
    h = tensor.detach()
    found = _moments(h, torch.float64 if h.dtype == torch.float64 else torch.float32)
    if found.finite or not bool(torch.isfinite(h).all()):
        return found
    return _moments(h, torch.float64)  # finite values whose float32 square overflows


def _moments(h: torch.Tensor, dtype: torch.dtype) -> Statistics:
    total, norm = torch.stack(
        [h.sum(dtype=dtype), torch.linalg.vector_norm(h, dtype=dtype)]
    ).tolist()
    count = h.numel()
    mean = total / count
    variance = max(norm * norm / count - mean * mean, 0.0)  # max keeps NaN: NaN stays NaN
    finite = math.isfinite(mean) and math.isfinite(variance)
    return Statistics(mean, math.sqrt(variance), finite)


@dataclass(frozen=True)
class Fitted:
    """One layer's fit.

    Attributes:
        row: its log row.
        problem: the warning it gives (empty when it converged or had nothing to do).
        output: the output the forward pass goes on with (the rescaled layer's).
        calls: how many times the layer was called again on its inputs.
    """

    row: LsuvRow
    problem: str
    output: Any
    calls: int


def _scales_exactly(module: nn.Module, bias: torch.Tensor | None, center: bool) -> bool:
    """Whether rescaling the weight by ``c`` maps the output to exactly ``c * h`` (or
    ``c * (h - mean)`` with a centred bias): a known affine forward, no hook or forward
    override of the user's on the module, and a zero bias unless it is centred."""
    known = is_hf_conv1d(module) and type(module).__module__.startswith("transformers.")
    known = known or type(module).forward in _AFFINE_FORWARDS
    plain = len(module._forward_hooks) == 1 and "forward" not in vars(module)  # ours only
    return known and plain and (center or bias is None or not bool(bias.any()))


def fit_layer(target: Target, output: Any, call: Callable[[], Any], settings: Settings) -> Fitted:
    """Rescale ``target``'s weight from ``output``, its first call's output, until the output
    variance is within ``tol`` of the target (see the module docstring).

    Args:
        target: the layer.
        output: what its first call returned, on the final outputs of the layers before it.
        call: the layer called again on that call's inputs.
        settings: the target variance, tolerance, iteration limit and bias centring.
    """
    center = settings.center_bias and target.bias is not None
    exact = _scales_exactly(target.module, target.bias, center)
    measured = statistics(output)
    initial_var = measured.std * measured.std
    target_std = math.sqrt(settings.target_var)
    iterations = calls = 0
    while iterations < settings.max_iter and measured.finite and measured.std > 0:
        within = abs(measured.std * measured.std - settings.target_var) < settings.tol
        if within and not (center and iterations == 0):
            break
        factor = target_std / (measured.std + _EPS)
        target.weight.mul_(factor)
        if center:
            assert target.bias is not None
            target.bias.sub_(measured.mean).mul_(factor)
        iterations += 1
        if exact:
            tensor = first_floating_tensor(output)
            assert tensor is not None  # measured, so present
            if center:
                tensor.sub_(measured.mean)
            tensor.mul_(factor)
            mean = 0.0 if center else measured.mean * factor
            measured = Statistics(mean, measured.std * factor, True)
        else:
            output = call()
            calls += 1
            measured = statistics(output)
    row = row_for(target, iterations, initial_var, measured, settings)
    return Fitted(row, _problem(target.name, measured, row, settings), output, calls)


def row_for(
    target: Target, iterations: int, initial_var: float, final: Statistics, settings: Settings
) -> LsuvRow:
    """The log row of a layer that ended with the statistics ``final``."""
    variance = final.std * final.std
    return LsuvRow(
        layer=target.name,
        kind=type(target.module).__name__,
        weight=target.weight_name,
        iterations=iterations,
        initial_var=initial_var,
        final_var=variance,
        final_mean=final.mean,
        converged=final.finite and abs(variance - settings.target_var) < settings.tol,
    )


def _problem(name: str, final: Statistics, row: LsuvRow, settings: Settings) -> str:
    """The warning a fitted layer gives, or ``""``."""
    if not final.finite:
        return (
            f"lsuv: layer {name!r} gives NaN/inf outputs on this batch; its weight was left "
            "unscaled. Check the layers before it and the input's scale."
        )
    if final.std == 0:
        return (
            f"lsuv: layer {name!r} outputs a constant on this batch (std 0), so it cannot be "
            "rescaled; check for dead units before it or use a more varied batch."
        )
    if not row.converged and settings.max_iter > 0:
        return (
            f"lsuv: layer {name!r} did not reach variance {settings.target_var:g} ± "
            f"{settings.tol:g} in {settings.max_iter} iteration(s): final variance "
            f"{row.final_var:.4g}. Raise max_iter or tol, or check what follows the weight "
            "inside the layer (a fixed bias, a clamp)."
        )
    return ""
