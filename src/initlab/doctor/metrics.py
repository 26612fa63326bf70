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

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from initlab.doctor.fused import fused_weight_values
from initlab.doctor.jacobian import EXACT_JACOBIAN_LIMIT, JacobianSpectrum, jacobian_spectrum
from initlab.fans import Layout, compute_fans
from initlab.plan.sites import ParameterSite, parameter_sites
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
    rows = [_measured(parameters[site.name], site.layout) for site in sites]
    shares = [_Share.of(values) for values in _on_host(rows)]
    duplicates = _duplicates([share.keys[:, :2] for share in shares], [s.order for s in shares])
    pairs = [(s.keys, s.grad_keys) for s in shares if s.grad_keys is not None]
    symmetric = iter(
        _duplicates(
            [np.concatenate([w[:, :2], g[:, :2]], axis=1) for w, g in pairs],
            [w[:, 3] + _SQRT5 * g[:, 3] for w, g in pairs],
        )
    )
    return [
        _record(
            site, share, int(duplicate), next(symmetric) if share.grad_keys is not None else None
        )
        for site, share, duplicate in zip(sites, shares, duplicates, strict=True)
    ]


def _on_host(rows: list[torch.Tensor | np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
    """Each weight's :func:`_measured` values as a float64 host array: the compiled pass's
    are there already; the tensors are copied in one piece (one wait for the device)."""
    tensors = [row for row in rows if isinstance(row, torch.Tensor)]
    if not tensors:
        return [row for row in rows if isinstance(row, np.ndarray)]
    device = tensors[0].device
    copied = torch.cat([row.to(device) for row in tensors]).double().cpu().numpy()
    found, at = [], 0
    for row in rows:
        if isinstance(row, np.ndarray):
            found.append(row)
        else:
            found.append(copied[at : at + row.numel()])
            at += row.numel()
    return found


@dataclass(frozen=True)
class _Share:
    """One weight's share of the host copy of :func:`_measured`: the values of
    :data:`_MEASURED` by name, the keys of its rows (``(rows, 4)``), their sort key, and the
    keys of its gradient's rows (``None`` without a gradient)."""

    values: dict[str, float]
    keys: np.ndarray[Any, Any]
    order: np.ndarray[Any, Any]
    grad_keys: np.ndarray[Any, Any] | None

    @classmethod
    def of(cls, row: np.ndarray[Any, Any]) -> _Share:
        values = dict(zip(_MEASURED, (float(v) for v in row[: len(_MEASURED)]), strict=True))
        units, head = int(values["units"]), len(_MEASURED)
        keys = row[head : head + 4 * units].reshape(units, 4)
        grad_keys = row[head + 4 * units :].reshape(units, 4) if values["has_gradient"] else None
        return cls(values, keys, keys[:, 3], grad_keys)


def _record(
    site: ParameterSite, share: _Share, duplicates: int, symmetric: int | None
) -> WeightRecord:
    """A :class:`WeightRecord` from one weight's :class:`_Share` and its counts of duplicate
    rows and of symmetric rows (``None`` without a gradient), finished on the host."""
    values = share.values
    fans = site.fans or compute_fans(site.fan_shape, layout=site.layout, groups=site.groups)
    count = math.prod(site.shape)
    units = values["units"]
    mean = values["mean"]
    std = values["centered_norm"] / math.sqrt(count)
    duplicate, zero = duplicates / units, values["zero_rows"] / units
    grad_std = grad_to_weight = None
    both = max(duplicate, zero) if symmetric is None else symmetric / units
    if values["has_gradient"]:
        grad_norm, grad_mean = values["grad_norm"], values["grad_sum"] / count
        grad_std = _known(math.sqrt(max(grad_norm**2 / count - grad_mean**2, 0.0)))
        grad_to_weight = _known(grad_norm / max(values["weight_norm"], 1e-30))
    return WeightRecord(
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
        grad_std=grad_std,
        grad_to_weight=grad_to_weight,
        symmetric_rows=both,
    )


_MEASURED = (
    "units",
    "has_gradient",
    "mean",
    "centered_norm",
    "zero_rows",
    "weight_norm",
    "grad_sum",
    "grad_norm",
)


def _known(value: float) -> float | None:
    return None if value != value else value  # NaN: a gradient holding NaN


def _measured(parameter: torch.Tensor, layout: Layout) -> torch.Tensor | np.ndarray[Any, Any]:
    """The values of :data:`_MEASURED` for one weight, on its device (on the host, float64,
    from the compiled pass), followed by the keys of its rows (``(rows, 4)``:
    :func:`_row_probe`'s projections) and, with a gradient, those of its gradient's rows.

    The weight and its gradient are read as few times as possible (these are memory-bound:
    ``std`` and ``abs().amax`` are several times slower on CPU, ``var_mean`` ten times, and
    every temporary costs a write): one product gives the row keys, the row sums and the sort
    key of the rows, one pass the row norms, and the std is centered (a third pass) so that a
    constant weight reads 0 up to rounding. On a small weight the cost is the number of kernel
    launches, not the arithmetic: counts, sums and the comparison of the rows' keys are left
    to the host (:func:`_record`), and everything leaves in one tensor. The fixed directions
    are stored as rows and used transposed: a product with a few-column right-hand side stored
    that way is several times faster on CPU.
    """
    weight = parameter.detach().float()
    matrix = unit_rows(weight, layout)
    fused = _measured_fused(matrix, parameter.grad, layout)
    if fused is not None:
        return fused
    directions = _row_probe(matrix.shape[1], matrix.device).T
    keys = matrix @ directions
    row_norms = torch.linalg.vector_norm(matrix, dim=1)
    mean = keys[:, 2].sum() / weight.numel()
    columns = [
        torch.linalg.vector_norm(weight - mean),
        (row_norms == 0).sum(),
        torch.linalg.vector_norm(row_norms),
    ]
    grad = parameter.grad
    pieces = [keys.reshape(-1)]
    if grad is None:
        missing = torch.full((), float("nan"), device=weight.device)
        columns += [missing, missing]
    else:
        g = grad.detach().float()
        grad_keys = unit_rows(g, layout) @ directions
        columns += [grad_keys[:, 2].sum(), torch.linalg.vector_norm(g)]
        pieces.append(grad_keys.reshape(-1))
    # Made on the host and sent without waiting: torch.tensor(..., device=cuda) would copy
    # synchronously, a wait for the device per weight.
    head = torch.tensor([matrix.shape[0], float(grad is not None)])
    head = head.to(weight.device, non_blocking=True)
    return torch.cat([head, mean.reshape(1), torch.stack(columns).float(), *pieces])  # promotes


def _measured_fused(
    matrix: torch.Tensor, grad: torch.Tensor | None, layout: Layout
) -> np.ndarray[Any, Any] | None:
    r""":func:`_measured` in one compiled call over the weight's rows and its gradient's
    (:func:`~initlab.doctor.fused.fused_weight_values`), where the kernels apply (CPU,
    float32, rows contiguous; a gradient the kernels cannot read sends both to torch);
    ``None`` otherwise. The centered norm is taken about each row's mean and the rows' means
    about the whole mean, so a constant weight reads 0 up to rounding, as on the torch
    path."""
    grad_rows = None if grad is None else unit_rows(grad.detach(), layout)
    return fused_weight_values(matrix, _row_probe(matrix.shape[1], matrix.device), grad_rows)


@functools.lru_cache(maxsize=64)
def _row_probe(columns: int, device: torch.device) -> torch.Tensor:
    """Two fixed random directions of ``columns`` values (their own generator, seed 0), a
    row of ones (the row sums) and a fixed irrational mix of the two directions (the rows'
    sort key), as the rows of a ``(4, columns)`` tensor (made once per width and device: a
    generator and a draw cost more than a small weight's measurement)."""
    generator = torch.Generator(device=device).manual_seed(0)
    directions = torch.randn(columns, 2, generator=generator, device=device)
    mix = directions[:, :1] + _SQRT2 * directions[:, 1:]
    ones = torch.ones(columns, 1, device=device)
    return torch.cat([directions, ones, mix], dim=1).T.contiguous()


_SQRT2, _SQRT5 = 2.0**0.5, 5.0**0.5


def _duplicates(
    keys: list[np.ndarray[Any, Any]], order_by: list[np.ndarray[Any, Any]]
) -> np.ndarray[Any, Any]:
    r"""For each weight, how many rows equal an earlier row, from the rows' ``keys`` (host).

    The keys are the rows' projections on fixed random directions (sorting scalars, not
    rows); equal rows project equally up to rounding, and distinct real-valued rows collide
    with probability ~0. One sort by ``order_by``, a fixed irrational mix of the rows (distinct
    rows tie on it with probability ~0 too), brings equal rows next to each other, and
    neighbours are then compared on every key. Not bit for bit: a matrix product may round two
    equal rows differently (BLAS kernels treat the last rows of a block apart), by about
    :math:`\epsilon \sqrt{n}\,\lVert w \rVert` with :math:`\epsilon = 6 \cdot 10^{-8}`;
    so keys count as equal within :data:`_KEY_TOLERANCE` times their column's rms over the
    weight's rows (a typical row's norm). Two distinct rows then agree on both keys with
    probability ~1e-8. Every weight at once: one sort by (weight, key) and a few array passes,
    not a sort and a dozen kernel launches per weight. Rows holding inf or NaN equal no row.
    """
    if not keys:
        return np.zeros(0, dtype=np.int64)
    sizes = np.asarray([len(k) for k in keys])
    weight = np.repeat(np.arange(len(keys)), sizes)
    stacked = np.concatenate(keys)
    order = np.lexsort((np.concatenate(order_by), weight))  # by weight, then by key
    sorted_keys = stacked[order]
    with np.errstate(all="ignore"):
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        squares = np.add.reduceat(stacked * stacked, starts, axis=0)
        limit = _KEY_TOLERANCE * np.sqrt(squares / sizes[:, None])
        gaps = np.abs(sorted_keys[1:] - sorted_keys[:-1])
        close = (gaps <= limit[weight[1:]]).all(axis=1) & (weight[1:] == weight[:-1])
    return np.bincount(weight[1:][close], minlength=len(keys))


_KEY_TOLERANCE = 1e-4
