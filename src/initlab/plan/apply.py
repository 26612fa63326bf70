"""Applying a resolved table: the one loop that fills a model's parameters.

:func:`apply_table` is what :meth:`initlab.Plan.apply`, :func:`initlab.scale.initialize` (a
DTensor's local shard) and :func:`initlab.integrations.hf.init_pretrained` (the parameters not
loaded from a checkpoint) all run: for each row that draws, fill the tensor
(:func:`fill_parameter`), then set every weight norm's magnitude from its drawn direction
(:func:`derive_magnitudes`). What differs between them is a hook: ``skip`` keeps some tensors
as they are, ``fill`` fills one tensor another way. The loop owns the checkpoint files it copies
from (:func:`initlab.plan.checkpoint.open_checkpoints`): each is opened once and let go at the
end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from typing import Protocol

import torch
from torch import nn

from initlab.counter import counter_fill_
from initlab.errors import InitlabError
from initlab.plan.assignments import Assignment, Assignments
from initlab.plan.checkpoint import Checkpoint, open_checkpoints
from initlab.rng import Region, Stream, check_stream, counter_stream, parameter_generator
from initlab.schemes import Scheme
from initlab.schemes.elementwise import ElementwiseLaw

__all__ = [
    "FillFunction",
    "SkipFunction",
    "apply_table",
    "derive_magnitudes",
    "fill_parameter",
    "zero_rows_",
]

SkipFunction = Callable[[Assignment, torch.Tensor], str | None]
"""``skip(row, tensor)``: why ``tensor`` keeps its values (the row's new ``source``), or
``None`` to fill it."""


class FillFunction(Protocol):
    """Fills one tensor as its row says (:func:`fill_parameter` is one)."""

    def __call__(
        self, tensor: torch.Tensor, row: Assignment, seed: int, *, stream: Stream = "counter"
    ) -> None: ...


def apply_table(
    model: nn.Module,
    table: Assignments,
    seed: int,
    *,
    stream: Stream = "counter",
    skip: SkipFunction | None = None,
    fill: FillFunction | None = None,
) -> Assignments:
    """Fill the parameters of ``model`` that ``table`` draws; returns the table as applied.

    Args:
        model: the model ``table`` was resolved against.
        table: the resolved plan (:meth:`initlab.Plan.resolve`).
        seed: the seed of the parameters' streams.
        stream: ``"counter"`` or ``"generator"`` (see :func:`fill_parameter`).
        skip: ``skip(row, tensor)`` -> a reason to keep ``tensor`` as it is (it becomes a
            kept row whose ``source`` is the reason; a weight norm magnitude it keeps is not
            derived either), or ``None`` to fill it.
        fill: fills one tensor (default :func:`fill_parameter`); e.g. a DTensor's local shard.

    Returns:
        ``table`` with ``seed`` set and the skipped rows kept.
    """
    check_stream(stream)
    fill = fill or fill_parameter
    parameters = dict(model.named_parameters(remove_duplicate=False))
    rows: list[Assignment] = []
    untouched: set[str] = set()
    with torch.no_grad(), open_checkpoints():
        for row in table:
            tensor = parameters[row.name]
            reason = None
            if skip is not None and (row.scheme is not None or row.site.magnitude_of):
                reason = skip(row, tensor)
            if reason is not None:
                untouched.add(row.name)
                row = _kept(row, reason)
            elif row.scheme is not None:
                fill(tensor, row, seed, stream=stream)
            rows.append(row)
    applied = dataclasses.replace(table, rows=tuple(rows), seed=seed)
    derive_magnitudes(model, applied, keep=untouched)
    return applied


def _kept(row: Assignment, reason: str) -> Assignment:
    """``row`` as a kept parameter whose ``source`` is ``reason`` (its plan not applied)."""
    if row.scheme is None:
        return row
    return dataclasses.replace(
        row, scheme=None, multiplier=1.0, fans=None, std=None, bound=None, source=reason,
        parts=(), law=None,
    )  # fmt: skip


def fill_parameter(
    tensor: torch.Tensor, row: Assignment, seed: int, *, stream: Stream = "counter"
) -> None:
    """Fill ``tensor`` as ``row`` says: from the parameter's own stream, or from its file.

    With ``stream="counter"`` elementwise schemes (constants, uniform, normal, truncated
    normal, the variance-scaling family) on floating tensors come from the counter stream
    (:func:`initlab.counter.counter_fill_`: element ``i`` depends only on seed, name, scheme,
    shape and ``i``); whole-matrix schemes (orthogonal, identity, dirac, sparse), and every
    scheme under ``stream="generator"``, draw from a ``torch.Generator`` seeded by
    :func:`initlab.rng.parameter_seed`. A stacked parameter (``row.parts``) is drawn block by
    block: elementwise blocks from the parameter's one counter stream (so any shard of it is
    reproducible alone), whole-matrix blocks from a generator of their own. The law of each
    element is the one the table was resolved with (``row.law``, ``part.law``). A checkpoint
    row is copied from its file (opened once per :func:`apply_table`). Then the rows the layer
    keeps at 0 (``row.zero_rows``: an embedding's ``padding_idx``) are set to 0, as
    ``nn.Embedding.reset_parameters`` does; the other elements are the draw's, bit for bit.
    """
    scheme = row.scheme
    if scheme is None or tensor.is_meta:
        return
    check_stream(stream)
    try:
        if isinstance(scheme, Checkpoint):
            with open_checkpoints() as files:
                files.copy_(scheme, tensor, row.site)
        elif row.parts:
            for part in row.parts:
                view = tensor.narrow(part.axis, part.start, part.stop - part.start)
                start = tuple(
                    part.start if axis == part.axis else 0 for axis in range(tensor.dim())
                )
                region = Region(tuple(tensor.shape), start, tuple(view.shape))
                name = f"{row.name}[{part.label}]"
                _draw(_Draw(view, part.scheme, part.law, name, region), row, seed, stream)
        else:
            _draw(_Draw(tensor, scheme, row.law, row.name, None), row, seed, stream)
    except InitlabError as error:
        message = f"Parameter {row.name!r} (shape {row.site.shape}, {row.source}): {error}"
        raise type(error)(message) from None
    if row.multiplier != 1.0:
        tensor.mul_(row.multiplier)
    zero_rows_(tensor, row.zero_rows)


def zero_rows_(
    tensor: torch.Tensor, rows: tuple[int, ...], region: Region | None = None
) -> torch.Tensor:
    """Set to 0 the ``rows`` (indices along the first axis of the whole parameter) that
    ``tensor`` holds: all of them, or those inside ``region``, the box of the parameter a
    shard holds (a row outside it is another shard's). Returns ``tensor``.

    Example:
        >>> shard = torch.ones(2, 3)  # rows 4 and 5 of a (10, 3) parameter
        >>> zero_rows_(shard, (5,), Region((10, 3), (4, 0), (2, 3)))[:, 0].tolist()
        [1.0, 0.0]
    """
    if not rows:
        return tensor
    first, count = (0, tensor.shape[0]) if region is None else (region.offset[0], region.shape[0])
    for index in rows:
        if first <= index < first + count:
            tensor[index - first].zero_()
    return tensor


@dataclasses.dataclass(frozen=True)
class _Draw:
    """One tensor to draw: a parameter, or one block of it.

    Attributes:
        tensor: the parameter, or a view of its block.
        scheme: the scheme it is drawn from.
        law: the scheme's elementwise law for the parameter's fans (``None``: whole-matrix).
        generator_name: the name its generator is seeded by, off the counter stream.
        region: where a block lies in the parameter (``None`` for the whole parameter).
    """

    tensor: torch.Tensor
    scheme: Scheme
    law: ElementwiseLaw | None
    generator_name: str
    region: Region | None


def _draw(draw: _Draw, row: Assignment, seed: int, stream: Stream) -> None:
    """Elementwise laws from the counter stream; the rest (and every draw under
    ``stream="generator"``) from a generator of the draw's own."""
    tensor, law = draw.tensor, draw.law
    if stream == "counter" and tensor.is_floating_point() and law is not None:
        counter_fill_(tensor, law, counter_stream(seed, row.name), draw.region)
        return
    generator = parameter_generator(seed, draw.generator_name, tensor.device)
    if law is not None:
        law.fill_(tensor, generator)
    else:
        draw.scheme.fill_(tensor, generator, layout=row.layout, groups=row.groups)


def derive_magnitudes(model: nn.Module, table: Assignments, *, keep: Collection[str] = ()) -> None:
    r"""Set each weight norm's magnitude :math:`g = \lVert v\rVert` (per output) from its drawn
    direction :math:`v`, so the layer's weight :math:`g\,v/\lVert v\rVert` equals :math:`v`;
    the magnitudes named in ``keep`` are left as they are."""
    parameters = dict(model.named_parameters(remove_duplicate=False))
    drawn = {row.name for row in table if row.scheme is not None}
    with torch.no_grad():
        for row in table:
            site = row.site
            if not site.magnitude_of or site.magnitude_of not in drawn or site.name in keep:
                continue
            magnitude, direction = parameters[site.name], parameters[site.magnitude_of]
            dims = [d for d in range(direction.dim()) if magnitude.shape[d] == 1]
            magnitude.copy_(torch.linalg.vector_norm(direction, dim=dims, keepdim=True))
