r"""Weight-side measurements and the input-output Jacobian's spectrum.

Weights: for every weight matrix/kernel, its std and mean, the *effective gain*
:math:`g^2 = \operatorname{Var}(W)\cdot\text{fan\_in}` (2 for He, 1 for LeCun,
:math:`2\,\text{fan\_in}/(\text{fan\_in}+\text{fan\_out})` for Xavier, 1/3 for PyTorch's default),
the fraction of output rows (filters) that duplicate another row or are all zero (symmetry that
no gradient step can break), and after backward the gradient std and
:math:`\lVert\nabla W\rVert / \lVert W\rVert`.

Jacobian: the singular values of :math:`J = \partial f(x)/\partial x` for one example measure
dynamical isometry (Pennington et al., 2017): a well-conditioned deep net has them all near 1.
When the output is small (at most :data:`EXACT_JACOBIAN_LIMIT` values, e.g. a classifier's
logits) :math:`J` is built exactly, one reverse-mode product per output; otherwise the mean
squared singular value is estimated by Hutchinson's
:math:`\mathbb E\lVert J^\top\omega\rVert^2 = \lVert J\rVert_F^2` and the largest by power
iteration on :math:`JJ^\top`, and the smallest is not estimated. Everything is reverse mode
(forward-mode AD costs a slow one-time load in torch), and the smallest singular value is
reported only when the output has no more values than the input (else it is 0). Probes
draw from their own generator, never the model's stream, and buffers (e.g. BatchNorm running
statistics) are restored afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from initlab.fans import compute_fans
from initlab.plan.sites import parameter_sites

__all__ = ["EXACT_JACOBIAN_LIMIT", "JacobianSpectrum", "WeightRecord", "jacobian_spectrum",
           "weight_records"]  # fmt: skip

EXACT_JACOBIAN_LIMIT = 256
JACOBIAN_BATCH = 16


@dataclass(frozen=True)
class WeightRecord:
    """Measurements of one weight parameter (host floats)."""

    name: str
    layer: str
    shape: tuple[int, ...]
    fan_in: float
    fan_out: float
    mean: float
    std: float
    gain_sq: float
    duplicate_rows: float
    zero_rows: float
    grad_std: float | None
    grad_to_weight: float | None


def weight_records(model: nn.Module) -> list[WeightRecord]:
    """Every ``weight``-role parameter of ``model`` measured, with one host sync."""
    parameters = dict(model.named_parameters())
    sites = [s for s in parameter_sites(model) if s.role == "weight" and len(s.shape) >= 2]
    if not sites:
        return []
    rows = []
    probes: dict[tuple[int, torch.device], torch.Tensor] = {}
    for site in sites:
        weight = parameters[site.name].detach().float()
        matrix = weight.reshape(weight.shape[0], -1)
        if site.layout == "keras":
            matrix = weight.reshape(-1, weight.shape[-1]).T
        elif site.layout == "torch_transposed":
            matrix = weight.transpose(0, 1).reshape(weight.shape[1], -1)
        key = (matrix.shape[1], matrix.device)
        if key not in probes:
            probes[key] = _row_probe(*key)
        # The weight is read as few times as possible (these are memory-bound: ``std`` and
        # ``abs().amax`` are several times slower on CPU, and every temporary costs a write):
        # one product gives the row keys and the row sums, one pass the row norms, and the std
        # is centered (a third pass) so that a constant weight reads exactly 0.
        keys = matrix @ probes[key]
        duplicate = _duplicate_row_fraction(keys[:, :2])
        row_norms = torch.linalg.vector_norm(matrix, dim=1)
        zero = (row_norms == 0).float().mean()
        count = weight.numel()
        weight_mean = keys[:, 2].sum() / count
        weight_norm = torch.linalg.vector_norm(row_norms)
        weight_std = torch.linalg.vector_norm(weight - weight_mean) / count**0.5
        grad = parameters[site.name].grad
        if grad is not None:
            g = grad.detach().float()
            grad_norm = torch.linalg.vector_norm(g)
            grad_mean = g.sum() / count
            grad_std = (grad_norm.square() / count - grad_mean.square()).clamp_min(0).sqrt()
            ratio = grad_norm / weight_norm.clamp_min(1e-30)
        else:
            grad_std = ratio = torch.full((), float("nan"), device=weight.device)
        rows.append(torch.stack([weight_mean, weight_std, duplicate, zero, grad_std, ratio]))
    values = torch.stack([row.to(rows[0].device) for row in rows]).cpu().tolist()
    records = []
    for site, (mean, std, duplicate, zero, grad_std, ratio) in zip(sites, values, strict=True):
        fans = site.fans or compute_fans(site.fan_shape, layout=site.layout, groups=site.groups)
        records.append(
            WeightRecord(
                name=site.name,
                layer=site.module_name,
                shape=site.shape,
                fan_in=fans.fan_in,
                fan_out=fans.fan_out,
                mean=mean,
                std=std,
                gain_sq=(std * std + mean * mean) * fans.fan_in,
                duplicate_rows=duplicate,
                zero_rows=zero,
                grad_std=None if grad_std != grad_std else grad_std,
                grad_to_weight=None if ratio != ratio else ratio,
            )
        )
    return records


def _row_probe(columns: int, device: torch.device) -> torch.Tensor:
    """Two fixed random directions of ``columns`` values (their own generator, seed 0), and
    a column of ones (the row sums)."""
    generator = torch.Generator(device=device).manual_seed(0)
    directions = torch.randn(columns, 2, generator=generator, device=device)
    return torch.cat([directions, torch.ones(columns, 1, device=device)], dim=1)


def _duplicate_row_fraction(keys: torch.Tensor) -> torch.Tensor:
    """Fraction of rows equal to an earlier row, on the device, from the rows' ``keys``.

    The keys are the rows' projections on two fixed random directions (sorting scalars, not
    rows); equal rows always project equally, and distinct real-valued rows collide with
    probability ~0.
    """
    rows = keys.shape[0]
    if rows < 2:
        return torch.zeros((), device=keys.device)
    keys = keys.T
    order = torch.argsort(keys[0])
    sorted_keys = keys[:, order]
    repeats = (sorted_keys[:, 1:] == sorted_keys[:, :-1]).all(dim=0)
    return repeats.float().sum() / rows


@dataclass(frozen=True)
class JacobianSpectrum:
    """Singular values of the input-output Jacobian, for one example.

    Attributes:
        largest: the largest singular value.
        smallest: the smallest (``None`` when estimated rather than computed exactly).
        mean_square: the mean of the squared singular values.
        method: ``"exact"`` or ``"estimate"``.
        skipped: why it was not computed (e.g. integer inputs), else ``""``.
    """

    largest: float | None
    smallest: float | None
    mean_square: float | None
    method: str
    skipped: str = ""

    @property
    def spread(self) -> float | None:
        """largest / smallest (the condition number), when both are known."""
        if self.largest is None or not self.smallest:
            return None
        return self.largest / self.smallest


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: buffer.detach().clone() for name, buffer in model.named_buffers()}


def _restore(model: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for name, value in saved.items():
            buffers[name].copy_(value)


def jacobian_spectrum(
    model: nn.Module,
    batch: torch.Tensor,
    *,
    example: int = 0,
    probes: int = 8,
    power_iterations: int = 10,
    seed: int = 0,
) -> JacobianSpectrum:
    """Singular values of d model(batch)[example] / d batch[example] (see the module docstring).

    The whole batch is passed (so BatchNorm sees its usual statistics); only ``example``'s
    input is perturbed and only its output read.
    """
    if not torch.is_floating_point(batch):
        return JacobianSpectrum(None, None, None, "", skipped="the input is not floating point")
    saved = _snapshot(model)
    try:
        return _spectrum(model, batch, example, probes, power_iterations, seed)
    finally:
        _restore(model, saved)


def _spectrum(
    model: nn.Module, batch: torch.Tensor, example: int, probes: int, iterations: int, seed: int
) -> JacobianSpectrum:
    # A sub-batch keeps the cost down while normalization layers still see several examples.
    base = batch.detach()[: max(JACOBIAN_BATCH, example + 1)]
    in_shape = base.shape[1:]
    anchor = base[example].reshape(-1).clone().requires_grad_(True)
    full = torch.cat([base[:example], anchor.reshape(1, *in_shape), base[example + 1 :]])
    output: Any = model(full)
    image = (output if isinstance(output, torch.Tensor) else output[0])[example].reshape(-1)
    image = image.float()
    in_features, out_features = anchor.numel(), image.numel()

    def pullback(cotangent: torch.Tensor, *, create_graph: bool = False) -> torch.Tensor:
        """J^T cotangent (reverse mode; forward-mode AD would cost a slow first-use load)."""
        (grad,) = torch.autograd.grad(
            image, anchor, cotangent, retain_graph=True, create_graph=create_graph,
            allow_unused=True,
        )  # fmt: skip
        return torch.zeros_like(anchor) if grad is None else grad

    if out_features <= EXACT_JACOBIAN_LIMIT:
        rows = torch.eye(out_features, device=image.device, dtype=image.dtype)
        jacobian = torch.stack([pullback(row) for row in rows]).detach()
        values = torch.linalg.svdvals(jacobian.float()).cpu()
        smallest = float(values.min()) if out_features <= in_features else 0.0
        return JacobianSpectrum(
            float(values.max()), smallest, float(values.square().mean()), "exact"
        )
    generator = torch.Generator(device=image.device).manual_seed(seed)

    def gaussian() -> torch.Tensor:
        return torch.randn(image.shape, generator=generator, device=image.device)

    # Hutchinson: E ||J^T w||^2 = ||J||_F^2 for w ~ N(0, I).
    squares = torch.stack([pullback(gaussian()).detach().square().sum() for _ in range(probes)])
    mean_square = float(squares.mean()) / min(in_features, out_features)
    # Power iteration on J J^T; J v comes from differentiating v -> J^T u w.r.t. u.
    dummy = torch.zeros_like(image, requires_grad=True)
    transposed = pullback(dummy, create_graph=True)
    vector = gaussian()
    vector = vector / vector.norm()
    largest = 0.0
    for _ in range(iterations):
        back = pullback(vector).detach()
        (forward,) = torch.autograd.grad(transposed, dummy, back, retain_graph=True)
        largest = float(forward.norm().sqrt())
        vector = forward / forward.norm().clamp_min(1e-30)
    return JacobianSpectrum(largest, None, mean_square, "estimate")
