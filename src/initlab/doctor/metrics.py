r"""Weight-side measurements (and, re-exported, the input-output Jacobian's spectrum).

Weights: for every weight matrix/kernel, its std and mean, the *effective gain*
:math:`g^2 = \operatorname{Var}(W)\cdot\text{fan\_in}` (2 for He, 1 for LeCun,
:math:`2\,\text{fan\_in}/(\text{fan\_in}+\text{fan\_out})` for Xavier, 1/3 for PyTorch's default),
the fraction of output rows (filters) that duplicate another row or are all zero (symmetry that
no gradient step can break), and after backward the gradient std and
:math:`\lVert\nabla W\rVert / \lVert W\rVert`.

The Jacobian's singular values live in :mod:`initlab.doctor.jacobian`; :class:`JacobianSpectrum`
and :func:`jacobian_spectrum` are importable from here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from initlab.doctor.jacobian import EXACT_JACOBIAN_LIMIT, JacobianSpectrum, jacobian_spectrum
from initlab.fans import Layout, compute_fans
from initlab.plan.sites import parameter_sites
from initlab.schemes.structured import unit_rows

__all__ = ["EXACT_JACOBIAN_LIMIT", "JacobianSpectrum", "WeightRecord", "jacobian_spectrum",
           "weight_records"]  # fmt: skip


@dataclass(frozen=True)
class WeightRecord:
    """Measurements of one weight parameter (host floats).

    ``duplicate_rows`` and ``zero_rows`` describe the weight alone; ``symmetric_rows`` is the
    fraction of rows (units) that equal another row *and* whose gradient rows are equal too:
    units no gradient step can tell apart. Equal rows with different gradients are not
    symmetric: a zero-initialized last layer of a residual branch (Fixup, zero-init-residual)
    or a zero classifier head gets a different gradient per unit from the first step. Without
    a gradient it is the fraction of duplicate or zero rows.
    """

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
    symmetric_rows: float = 0.0


def weight_records(model: nn.Module) -> list[WeightRecord]:
    """Every ``weight``-role parameter of ``model`` measured, with one host sync."""
    parameters = dict(model.named_parameters())
    sites = [s for s in parameter_sites(model) if s.role == "weight" and len(s.shape) >= 2]
    if not sites:
        return []
    probes: dict[tuple[int, torch.device], torch.Tensor] = {}
    rows = [_measured(parameters[site.name], site.layout, probes) for site in sites]
    table = torch.stack([row.to(rows[0].device) for row in rows]).cpu().tolist()
    records = []
    for site, row in zip(sites, table, strict=True):
        values = dict(zip(_MEASURED, row, strict=True))
        fans = site.fans or compute_fans(site.fan_shape, layout=site.layout, groups=site.groups)
        mean, std = values["mean"], values["std"]
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
                duplicate_rows=values["duplicate_rows"],
                zero_rows=values["zero_rows"],
                grad_std=_known(values["grad_std"]),
                grad_to_weight=_known(values["grad_to_weight"]),
                symmetric_rows=values["symmetric_rows"],
            )
        )
    return records


_MEASURED = (
    "mean",
    "std",
    "duplicate_rows",
    "zero_rows",
    "grad_std",
    "grad_to_weight",
    "symmetric_rows",
)


def _known(value: float) -> float | None:
    return None if value != value else value  # NaN: no gradient


def _measured(
    parameter: torch.Tensor, layout: Layout, probes: dict[tuple[int, torch.device], torch.Tensor]
) -> torch.Tensor:
    """The values of :data:`_MEASURED` for one weight, on its device.

    The weight and its gradient are read as few times as possible (these are memory-bound:
    ``std`` and ``abs().amax`` are several times slower on CPU, ``var_mean`` ten times, and
    every temporary costs a write): one product gives the row keys and the row sums, one pass
    the row norms, and the std is centered (a third pass) so that a constant weight reads
    exactly 0. The fixed directions are stored as rows and used transposed: a product with a
    3-column right-hand side stored that way is several times faster on CPU.
    """
    weight = parameter.detach().float()
    matrix = unit_rows(weight, layout)
    key = (matrix.shape[1], matrix.device)
    if key not in probes:
        probes[key] = _row_probe(*key)
    directions = probes[key].T
    keys = matrix @ directions
    duplicate = _duplicate_row_fraction(keys[:, :2])
    row_norms = torch.linalg.vector_norm(matrix, dim=1)
    zero = (row_norms == 0).float().mean()
    count = weight.numel()
    mean = keys[:, 2].sum() / count
    std = torch.linalg.vector_norm(weight - mean) / count**0.5
    grad = parameter.grad
    if grad is None:
        missing = torch.full((), float("nan"), device=weight.device)
        symmetric = torch.maximum(duplicate, zero)
        return torch.stack([mean, std, duplicate, zero, missing, missing, symmetric])
    g = grad.detach().float()
    grad_keys = unit_rows(g, layout) @ directions
    grad_norm = torch.linalg.vector_norm(g)
    grad_mean = grad_keys[:, 2].sum() / count
    grad_std = (grad_norm.square() / count - grad_mean.square()).clamp_min(0).sqrt()
    ratio = grad_norm / torch.linalg.vector_norm(row_norms).clamp_min(1e-30)
    symmetric = _duplicate_row_fraction(torch.cat([keys[:, :2], grad_keys[:, :2]], dim=1))
    return torch.stack([mean, std, duplicate, zero, grad_std, ratio, symmetric])


def _row_probe(columns: int, device: torch.device) -> torch.Tensor:
    """Two fixed random directions of ``columns`` values (their own generator, seed 0), and
    a row of ones (the row sums), as the rows of a ``(3, columns)`` tensor."""
    generator = torch.Generator(device=device).manual_seed(0)
    directions = torch.randn(columns, 2, generator=generator, device=device)
    return torch.cat([directions, torch.ones(columns, 1, device=device)], dim=1).T.contiguous()


def _duplicate_row_fraction(keys: torch.Tensor) -> torch.Tensor:
    """Fraction of rows equal to an earlier row, on the device, from the rows' ``keys``.

    The keys are the rows' projections on fixed random directions (sorting scalars, not
    rows); equal rows always project equally, and distinct real-valued rows collide with
    probability ~0. One sort by a fixed irrational mix of all keys brings equal rows next to
    each other (distinct rows tie on the mix with probability ~0 too), and neighbours are then
    compared on every key.
    """
    rows = keys.shape[0]
    if rows < 2:
        return torch.zeros((), device=keys.device)
    mix = torch.tensor(_MIX[: keys.shape[1]], dtype=keys.dtype, device=keys.device)
    sorted_keys = keys[torch.argsort(keys @ mix)]
    repeats = (sorted_keys[1:] == sorted_keys[:-1]).all(dim=1)
    return repeats.float().sum() / rows


_MIX = (1.0, 2.0**0.5, 3.0**0.5, 5.0**0.5, 7.0**0.5)
