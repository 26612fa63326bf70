"""Sharded initialization: every rank fills only its local shard, the same on any device count.

A parameter held as a DTensor (``torch.distributed.tensor``: ``distribute_tensor``, tensor
parallelism, FSDP2's ``fully_shard``) with ``Shard(d)`` / ``Replicate()`` placements keeps, on
each rank, a box of the full tensor: rows for ``Shard(0)``, column blocks for ``Shard(1)``.
:func:`initialize` asks DTensor for the box's global offset and fills it from the parameter's
counter stream (:func:`initlab.counter.counter_fill_`), which numbers elements by their flat index
in the *full* tensor: no rank builds the full tensor, no rank talks to another, and the gathered
parameter is bit for bit the single-process tensor, whatever the world size.

Whole-matrix schemes (orthogonal, identity, dirac, delta-orthogonal, sparse, checkpoints) and
``stream="generator"`` need the full matrix: each rank builds it once from the same
``torch.Generator`` seed (deterministic, so every rank builds the same matrix, still without
communication) and keeps its box. That costs the full matrix's memory and time on every rank,
for those parameters only. Orthogonal's QR (LAPACK) differs in the last bits between torch
thread counts: it is bit for bit the same across ranks and world sizes when every process runs
the same number of threads. Placements that are not boxes (FSDP2 + tensor parallelism's
``_StridedShard``) take the same full-matrix path and DTensor's own local split. An embedding's
padding row is set to 0 by the rank whose box holds it (:func:`initlab.plan.apply.zero_rows_`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from initlab.counter import counter_fill_
from initlab.errors import InitlabError
from initlab.plan.apply import apply_table, fill_parameter, zero_rows_
from initlab.plan.assignments import Assignment, Assignments
from initlab.plan.plan import Plan
from initlab.rng import Region, Stream, check_stream, counter_stream

__all__ = ["initialize", "is_dtensor", "local_region"]


def is_dtensor(tensor: object) -> bool:
    """Whether ``tensor`` is a ``torch.distributed.tensor.DTensor`` (without importing it)."""
    return hasattr(tensor, "placements") and hasattr(tensor, "to_local")


def _is_box(placements: Any) -> bool:
    return all(type(p).__name__ in ("Shard", "Replicate") for p in placements)


def local_region(tensor: Any) -> Region:
    """The box of the full tensor that this rank's local shard of DTensor ``tensor`` holds.

    Raises:
        InitlabError: a ``Partial`` placement (its local values are summands, not values), or
            a placement whose shard is not a box (``_StridedShard``).
    """
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    placements = tuple(tensor.placements)
    if any(p.is_partial() for p in placements):
        raise InitlabError(
            f"A DTensor with placements {placements} holds partial sums, not values, so it "
            "cannot be initialized shard by shard. Initialize it as Replicate() or Shard(d)."
        )
    if not _is_box(placements):
        raise InitlabError(
            f"The local shard of a DTensor with placements {placements} is not a box of the "
            "full tensor; initlab.scale.initialize fills it from the full tensor instead."
        )
    shape, offset = compute_local_shape_and_global_offset(
        tensor.shape, tensor.device_mesh, placements
    )
    return Region(tuple(tensor.shape), tuple(offset), tuple(shape))


def fill_shard_(tensor: Any, row: Assignment, seed: int, *, stream: Stream = "counter") -> None:
    """Fill this rank's shard of DTensor ``tensor`` as ``row`` says (see the module docstring)."""
    local = tensor.to_local()
    site = row.site
    scheme = row.scheme
    if scheme is None or local.is_meta:
        return
    if any(p.is_partial() for p in tensor.placements):
        raise InitlabError(
            f"Parameter {row.name!r} is a DTensor with placements {tuple(tensor.placements)}: "
            "its local values are partial sums, so it cannot be initialized. Make it "
            "Replicate() or Shard(d) before initializing."
        )
    try:
        law = row.law
        counter = stream == "counter" and local.is_floating_point() and not row.parts
        if counter and law is not None and _is_box(tensor.placements):
            region = local_region(tensor)
            counter_fill_(local, law, counter_stream(seed, row.name), region)
            if row.multiplier != 1.0:
                local.mul_(row.multiplier)
            zero_rows_(local, row.zero_rows, region)
            return
    except InitlabError as error:
        message = f"Parameter {row.name!r} (shape {site.shape}, {row.source}): {error}"
        raise type(error)(message) from None
    full = torch.empty(tuple(tensor.shape), dtype=local.dtype, device=local.device)
    fill_parameter(full, row, seed, stream=stream)
    local.copy_(_local_part(full, tensor))


def _local_part(full: torch.Tensor, tensor: Any) -> torch.Tensor:
    placements = tuple(tensor.placements)
    if _is_box(placements):
        region = local_region(tensor)
        index = tuple(slice(o, o + s) for o, s in zip(region.offset, region.shape, strict=True))
        return full[index]
    from torch.distributed.tensor import distribute_tensor

    split = distribute_tensor(full, tensor.device_mesh, placements, src_data_rank=None)
    local: torch.Tensor = split.to_local()
    return local


def initialize(
    model: nn.Module,
    plan: Plan,
    seed: int = 0,
    *,
    stream: Stream = "counter",
    table: Assignments | None = None,
) -> Assignments:
    """:meth:`Plan.apply` for models whose parameters may be DTensors (FSDP2, tensor parallel).

    Plain parameters are filled as :meth:`Plan.apply` fills them; each DTensor parameter gets
    its local shard only (see the module docstring). Call it on every rank, after
    ``fully_shard`` / ``parallelize_module`` and ``model.to_empty(device=...)``.

    Args:
        model: the model; its parameters may live on any device.
        plan: the plan (see :func:`initlab.preset`).
        seed: the run's seed.
        stream: ``"counter"`` (shard-local) or ``"generator"`` (full matrix on every rank).
        table: ``plan.resolve(model)`` when the caller already has it.

    Returns:
        The applied table, with ``seed`` set.
    """
    check_stream(stream)
    table = table if table is not None else plan.resolve(model)
    return apply_table(model, table, seed, stream=stream, fill=_fill_any)


def _fill_any(
    tensor: torch.Tensor, row: Assignment, seed: int, *, stream: Stream = "counter"
) -> None:
    """A DTensor's local shard (:func:`fill_shard_`), or a plain tensor whole."""
    if is_dtensor(tensor):
        fill_shard_(tensor, row, seed, stream=stream)
    else:
        fill_parameter(tensor, row, seed, stream=stream)
