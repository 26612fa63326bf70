r"""What a probe hook leaves on the device for one module call, and the statistics the host
derives from it (see :mod:`initlab.doctor.probe` for the list).

Every full-size pass over an activation is a kernel launch (a parallel region on CPU) and every
full-size temporary an allocation, so their number, not the arithmetic, is what a probe costs:
a hook reduces an output to a few per-unit sums, and :func:`forward_fields` turns one module's
share of the single host copy into float64 statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from initlab.doctor.fused import ResultPool, fill_norm_terms, fused_moments, fused_output_sums
from initlab.errors import InitlabError
from initlab.layers import activation_kind, module_activation

__all__ = [
    "NAN",
    "Key",
    "OutputSums",
    "Piece",
    "Reduced",
    "Scratch",
    "UnitMoments",
    "Watch",
    "batch_norm_terms",
    "batch_norm_units",
    "cosine_pieces",
    "forward_fields",
    "measurable",
    "moments",
    "piece_size",
    "reduce_output",
    "std_rms",
    "unit_moments",
    "watch_for",
]

Key = tuple[str, int]
"""A module's qualified name and the index of its call (0 for the first)."""

Piece = torch.Tensor | np.ndarray[Any, Any]
"""A reduction's result: a tensor on the device (torch's ops), or a host float64 view into a
:class:`~initlab.doctor.fused.ResultPool` (the compiled pass)."""


def piece_size(piece: Piece) -> int:
    """How many values a piece holds."""
    return piece.numel() if isinstance(piece, torch.Tensor) else int(piece.size)


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
    input and the between-example cosine of its output are measured too. ``batch_norm``: a
    batch norm, whose output moments may follow from its own batch statistics
    (:func:`batch_norm_terms`).
    """

    kind: str
    can_die: bool
    saturation: tuple[float, float] | None
    is_layer: bool
    batch_norm: bool = False


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
        batch_norm=isinstance(module, nn.modules.batchnorm._BatchNorm),
    )


def _widened(tensor: torch.Tensor) -> torch.Tensor:
    """float32 for half precision (squares of fp16 overflow past 256), the tensor otherwise."""
    return tensor if tensor.dtype in _EXACT else tensor.float()


class Reduced(NamedTuple):
    """What a forward hook leaves for :meth:`Probe.collect` to finish: its pieces on the
    device (torch's ops), or host views into the probe's result pool (the compiled pass). A
    named tuple: a hook makes one per call, and a frozen dataclass costs several times more to
    build.

    ``pieces`` are, in order: the per-unit mean and mean square (``units`` each), the count of
    nonzeros (hard rectifiers), the count in saturation (saturating activations), the input's
    sum and sum of squares (a layer whose input no probed module produced), and for the cosine
    similarity the norms of the first ``cosine_rows`` examples and the norm of their normalized
    sum. A batch norm read from its batch statistics (``batch_norm_eps`` set) leaves one piece
    instead of the two unit moments: its bias, weight and inverse std (``units`` each, see
    :func:`batch_norm_terms`), which :func:`batch_norm_units` turns into the unit moments on
    the host.
    """

    pieces: tuple[Piece, ...]
    units: int
    numel: int
    examples: int
    zeros: bool
    saturated: bool
    input_numel: int
    input_from: Key | None
    cosine_rows: int
    batch_norm_eps: float | None = None

    @property
    def moment_pieces(self) -> int:
        """How many of ``pieces`` carry the unit moments (the rest are counts, inputs...)."""
        return 1 if self.batch_norm_eps is not None else 2

    @property
    def moment_size(self) -> int:
        """How many values the unit moments take in the host copy."""
        return (3 if self.batch_norm_eps is not None else 2) * self.units

    @property
    def size(self) -> int:
        inputs = 2 if self.input_numel else 0
        cosine = self.cosine_rows + 1 if self.cosine_rows else 0
        return self.moment_size + self.zeros + self.saturated + inputs + cosine


class Scratch:
    """One reusable buffer per device and dtype, for the passes that must write a full-size
    result (a comparison, a square). A fresh full-size temporary per hook is an allocation
    and, on CPU, its first touch is page faults (a 2 MB map costs more to fault in than to
    compare); the probe's buffer is allocated once and grows to the largest output."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def like(self, tensor: torch.Tensor) -> torch.Tensor:
        """A contiguous tensor of ``tensor``'s shape, dtype and device (contents undefined)."""
        key = (tensor.device, tensor.dtype)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < tensor.numel():
            buffer = torch.empty(tensor.numel(), dtype=tensor.dtype, device=tensor.device)
            self._buffers[key] = buffer
        return buffer[: tensor.numel()].view(tensor.shape)

    def clear(self) -> None:
        self._buffers.clear()


class OutputSums(NamedTuple):
    """The device-side reductions of one output (see :func:`reduce_output`).

    ``unit_mean``, ``unit_sq``: per unit (channel), the mean of :math:`h` and of :math:`h^2`.
    ``counts``: the nonzeros (hard rectifiers), the values in saturation (saturating
    activations). ``cosine``: the pieces of :func:`cosine_pieces` (empty when not asked for,
    or for a single example).
    """

    unit_mean: Piece
    unit_sq: Piece
    counts: Sequence[Piece]
    cosine: Sequence[Piece]


def reduce_output(
    watch: Watch,
    output: torch.Tensor,
    scratch: Scratch,
    *,
    cosine: bool,
    pool: ResultPool | None = None,
) -> OutputSums:
    r"""The device-side reductions of one output, and with ``cosine`` the pieces of the
    between-example cosine similarity.

    Two per-unit means (of :math:`h` and :math:`h^2`) carry every moment; hard rectifiers add
    one count of the nonzeros, saturating activations one count in saturation. On CPU in
    float32 all of it is one compiled pass (:mod:`initlab.doctor.fused`), the cosine's second
    read of each example from cache. Elsewhere every full-size pass is a torch kernel launch
    and every full-size temporary an allocation, so their number, not the arithmetic, is what
    a probe costs: a contiguous map :math:`h \in \mathbb R^{B \times C \times S}` is read as
    :math:`BC` rows, one pass of row sums and one of row 2-norms (no squared copy), and the
    per-unit means are sums of those :math:`B \times C` values, as are the examples' squared
    norms the cosine needs. Counts write their comparison into the probe's :class:`Scratch`
    (a comparison to 0 makes a bool tensor whose sum is several times slower; a fresh float
    temporary costs page faults). The compiled pass writes into ``pool`` where one is given.
    """
    examples = min(output.shape[0], _COSINE_EXAMPLES) if output.dim() > 1 else 0
    cosine = cosine and examples > 1
    fused = fused_output_sums(output, examples, cosine, watch.saturation, watch.can_die, pool)
    if fused is not None:
        units = (fused.size - examples - 3) // 2
        counts = [fused[-3:-2]] if watch.can_die else []
        counts += [fused[-2:-1]] if watch.saturation is not None else []
        norms = [fused[2 * units : 2 * units + examples], fused[-1:]] if cosine else []
        return OutputSums(fused[:units], fused[units : 2 * units], counts, norms)
    h = _widened(output.detach())
    if h.dim() > 2 and h.is_contiguous():
        rows = h.view(h.shape[0], h.shape[1], -1)
        per_value = 1.0 / (rows.shape[0] * rows.shape[2])
        row_sq = torch.linalg.vector_norm(rows, dim=2).square()
        unit_mean = rows.sum(dim=2).sum(dim=0).mul_(per_value)
        unit_sq = row_sq.sum(dim=0).mul_(per_value)
        example_sq: torch.Tensor | None = row_sq[:examples].sum(dim=1)
    else:
        dims = (0, *range(2, h.dim())) if h.dim() > 1 else (0,)
        squared = torch.square(h, out=scratch.like(h))
        unit_mean = h.mean(dim=dims).reshape(-1)
        unit_sq = squared.mean(dim=dims).reshape(-1)
        example_sq = squared[:examples].reshape(examples, -1).sum(dim=1) if examples else None
    pieces = cosine_pieces(h, example_sq) if cosine else []
    return OutputSums(unit_mean, unit_sq, _counts(watch, h, scratch), pieces)


def _counts(watch: Watch, h: torch.Tensor, scratch: Scratch) -> list[torch.Tensor]:
    """The count of nonzeros (NaN counts as nonzero, as it is not == 0) of a hard rectifier's
    output, and the count in saturation of a saturating activation's."""
    counts = []
    if watch.can_die:
        counts.append(torch.ne(h, 0, out=scratch.like(h)).sum())
    if watch.saturation is not None:
        low, high = watch.saturation
        if low == -high:  # one comparison for a symmetric interval (tanh, hardtanh, softsign)
            magnitude = torch.abs(h, out=scratch.like(h))
            counts.append(torch.ge(magnitude, high, out=magnitude).sum())
        else:  # low < high: the two counts never overlap
            below = torch.le(h, low, out=scratch.like(h)).sum()
            counts.append(below + torch.ge(h, high, out=scratch.like(h)).sum())
    return counts


def batch_norm_terms(
    module: nn.Module, output: torch.Tensor, pool: ResultPool | None = None
) -> tuple[np.ndarray[Any, Any], float] | None:
    r"""A batch norm's bias :math:`\beta`, weight :math:`\gamma` and the inverse std
    :math:`s_c = 1/\sqrt{\sigma_c^2 + \epsilon}` it normalized with, as one float64 host
    vector of :math:`3C` values (taken from ``pool`` where one is given), and its
    :math:`\epsilon`: what its output's unit moments follow from (:func:`batch_norm_units`),
    with no pass over the output.

    Only for a float32 or float64 call that normalized with the batch's own statistics
    (training mode, or no running statistics) and whose output is the batch norm's own (its
    autograd node, which keeps :math:`s_c`, is ``native_batch_norm``'s, with this module's
    weight), on CPU, and with every unit's variance resolved (:data:`_RESOLVED`); ``None``
    otherwise (half precision, eval mode, no autograd graph, a subclass that changes the
    output, a constant unit...), and the output is then reduced like any other.
    """
    node: Any = output.grad_fn
    # Half precision: torch keeps s_c in half (1 - eps s^2 known to 1e-3 at best) and the
    # output is rounded to it, so the exact moments differ from the output's; it is read.
    if output.dtype not in _EXACT:
        return None
    if type(node).__name__ != "NativeBatchNormBackward0" or not node._saved_training:
        return None
    weight = getattr(module, "weight", None)
    invstd: torch.Tensor = node._saved_result2
    eps = float(node._saved_eps)
    units = output.shape[1] if output.dim() > 1 else 0
    if node._saved_weight is not weight or invstd.shape != (units,) or units == 0:
        return None
    # Read in place on CPU; elsewhere the reads below would each wait for the device.
    if invstd.device.type != "cpu" or invstd.dtype not in _EXACT:
        return None
    bias = getattr(module, "bias", None)
    if not (_unit_vector(weight, units) and _unit_vector(bias, units)):
        return None
    gamma = _NONE if weight is None else _host(weight)
    beta = _NONE if bias is None else _host(bias)
    terms = np.empty(3 * units) if pool is None else pool.take(3 * units)
    # A unit whose variance is below float32's resolution of sigma^2 + eps (a constant unit)
    # has a kept fraction 1 - eps s^2 that is rounding: its output is read instead.
    if not fill_norm_terms(invstd.detach().numpy(), gamma, beta, eps, _RESOLVED, terms):
        return None
    return terms, eps


_NONE = np.empty(0, dtype=np.float32)


def _unit_vector(parameter: torch.Tensor | None, units: int) -> bool:
    """No parameter, or one value per unit on the CPU."""
    return parameter is None or (parameter.shape == (units,) and parameter.is_cpu)


def _host(parameter: torch.Tensor) -> np.ndarray[Any, Any]:
    """A CPU parameter's values as a NumPy array (a view where the dtype allows)."""
    values = parameter.detach()
    return (values if values.dtype in _EXACT else values.double()).numpy()


_RESOLVED = 1.0 - 1e-3
r"""The largest :math:`\epsilon s_c^2` (the fraction of :math:`\sigma_c^2 + \epsilon` that is
:math:`\epsilon`) read from the batch statistics: float32 rounds :math:`s_c` to about
:math:`10^{-7}`, so the kept fraction :math:`1 - \epsilon s_c^2 \ge 10^{-3}` is known to 1e-4."""


def batch_norm_units(
    values: np.ndarray[Any, Any], starts: list[int], units: list[int], eps: list[float]
) -> None:
    r"""In place, for every batch norm record :math:`r`: its :func:`batch_norm_terms`
    (:math:`3U_r` host float64 values from ``values[starts[r]]``) replaced by its unit means
    and then its unit mean squares (the first :math:`2U_r` of them), all records at once.

    Unit :math:`c` of the output is :math:`y = \gamma_c s_c (x - \mu_c) + \beta_c` with
    :math:`\mu_c, \sigma_c^2` the batch's mean and (biased) variance of the unit, so

    .. math:: \bar y_c = \beta_c, \quad \overline{y^2_c} = \beta_c^2 + \gamma_c^2 \,
        \frac{\sigma_c^2}{\sigma_c^2 + \epsilon} = \beta_c^2 + \gamma_c^2 (1 - \epsilon s_c^2)

    exactly, with torch's own :math:`\sigma_c^2` (no cancellation of raw sums). An infinite
    variance (:math:`s_c = 0`) makes the output :math:`\beta_c`; a NaN in the unit makes its
    moments NaN, as the output's are.
    """
    if not starts:
        return
    count = np.asarray(units, dtype=np.int64)
    width = np.repeat(count, count)  # each unit's record's unit count
    beta_at = np.arange(int(count.sum())) + np.repeat(
        np.asarray(starts, dtype=np.int64) - (np.cumsum(count) - count), count
    )
    beta, gamma, invstd = values[beta_at], values[beta_at + width], values[beta_at + 2 * width]
    epsilon = np.repeat(np.asarray(eps, dtype=np.float64), count)
    with np.errstate(all="ignore"):
        kept = np.where(invstd == 0, 0.0, np.maximum(1.0 - epsilon * invstd * invstd, 0.0))
        values[beta_at] = beta + 0.0 * invstd
        values[beta_at + width] = beta * beta + gamma * gamma * kept


def cosine_pieces(output: torch.Tensor, example_sq: torch.Tensor | None) -> list[torch.Tensor]:
    r"""What the mean between-example cosine similarity needs, for the first 64 examples.

    With :math:`u_i = x_i/\lVert x_i\rVert` the mean over pairs :math:`i \ne j` of
    :math:`u_i\cdot u_j` is :math:`(\lVert\sum_i u_i\rVert^2 - \sum_i \lVert u_i\rVert^2) /
    (n(n-1))`: the row norms (``example_sq``, their squares, when :func:`reduce_output` gave
    them) and one matrix-vector product, not an :math:`n \times n` Gram matrix. 64 examples
    put its standard error at about 1/64 of its spread, plenty for a collapse diagnosis. Empty
    for a single example.
    """
    if output.dim() < 2 or output.shape[0] < 2:
        return []
    h = _widened(output.detach())
    rows = h[:_COSINE_EXAMPLES].reshape(min(h.shape[0], _COSINE_EXAMPLES), -1)
    norms = torch.linalg.vector_norm(rows, dim=1) if example_sq is None else example_sq.sqrt()
    total = norms.clamp_min(1e-12).reciprocal().to(rows.dtype) @ rows
    return [norms, torch.linalg.vector_norm(total)]


def moments(tensor: torch.Tensor, pool: ResultPool | None = None) -> list[Piece]:
    """Sum and sum of squares of all of ``tensor``: two read-only, vectorized passes, left as
    two pieces (the host takes the square root: no stacking, no extra kernel). A contiguous
    tensor's squares are summed by a dot product with itself (BLAS: faster than
    ``vector_norm`` on CPU, and as accurate). On CPU in float32, one compiled pass gives both
    as one piece (:func:`~initlab.doctor.fused.fused_moments`, from ``pool`` where one is
    given)."""
    fused = fused_moments(tensor, pool)
    if fused is not None:
        return [fused]
    x = _widened(tensor.detach())
    if not x.is_contiguous():
        return [x.sum(), torch.linalg.vector_norm(x).square()]
    flat = x.view(-1)
    return [flat.sum(), flat.dot(flat)]


def std_rms(total: float, squares: float, count: int) -> tuple[float, float]:
    r"""Population std and RMS from a sum and a sum of squares (:func:`moments`).

    .. math:: \sigma^2 = \lVert x\rVert_2^2/n - \bar x^2,
        \quad \text{rms} = \lVert x\rVert_2/\sqrt n
    """
    count = max(count, 1)
    mean = total / count
    mean_sq = squares / count
    variance = mean_sq - mean * mean
    return math.sqrt(max(variance, 0.0)), math.sqrt(mean_sq)  # max keeps NaN: NaN stays NaN


@dataclass(frozen=True)
class UnitMoments:
    """Per record (one array entry each), what its per-unit means give: the mean and mean
    square of all values, the mean over units of the squared unit mean and of the unit
    variance, the fraction of units that are 0 on every example, and the count of non-finite
    unit mean squares."""

    mean: list[float]
    mean_sq: list[float]
    channel_mean_sq: list[float]
    channel_var: list[float]
    dead: list[float]
    nonfinite: list[float]


def unit_moments(values: np.ndarray[Any, Any], starts: list[int], units: list[int]) -> UnitMoments:
    r"""The :class:`UnitMoments` of every record at once (host, float64).

    Record :math:`r`'s unit means :math:`m_u` sit at ``values[starts[r]:]``, its unit mean
    squares :math:`q_u` right after them; with :math:`U` units,

    .. math:: \text{channel\_var} = \frac1U \sum_u \max(q_u - m_u^2, 0),
        \quad \text{channel\_mean\_sq} = \frac1U \sum_u m_u^2

    Every sum over units is one ``bincount`` over all records (a few array passes, not a
    few per record). NaN/inf unit values give NaN/inf statistics, quietly.
    """
    count = np.asarray(units, dtype=np.int64)
    record = np.repeat(np.arange(len(starts)), count)
    first = np.repeat(np.asarray(starts, dtype=np.int64) - (np.cumsum(count) - count), count)
    at = np.arange(int(count.sum())) + first
    unit_mean, unit_sq = values[at], values[at + np.repeat(count, count)]

    def per_record(column: np.ndarray[Any, Any]) -> list[float]:
        summed = np.bincount(record, weights=column, minlength=len(starts)) / count
        return [float(value) for value in summed]

    with np.errstate(all="ignore"):
        return UnitMoments(
            mean=per_record(unit_mean),
            mean_sq=per_record(unit_sq),
            channel_mean_sq=per_record(unit_mean**2),
            channel_var=per_record(np.maximum(unit_sq - unit_mean**2, 0.0)),
            dead=per_record((unit_sq == 0).astype(np.float64)),
            nonfinite=[
                float(n)
                for n in np.bincount(record, weights=~np.isfinite(unit_sq), minlength=len(starts))
            ],
        )


def forward_fields(
    reduced: Reduced,
    values: np.ndarray[Any, Any],
    input_std: float,
    units: UnitMoments,
    index: int,
) -> dict[str, float]:
    """The :data:`FORWARD_FIELDS` of record ``index`` (host, float64): its unit moments, and
    the counts, input moments and cosine pieces in ``values``, its share of the host copy.

    A unit is dead when it is 0 on every example: with a single example that says nothing
    about the unit, so the dead fraction is NaN then (as is the cosine).
    """
    at = reduced.moment_size
    zero_fraction = dead_fraction = saturated = cosine = NAN
    mean, mean_sq = units.mean[index], units.mean_sq[index]
    if reduced.zeros:
        zero_fraction = 1.0 - float(values[at]) / max(reduced.numel, 1)
        if reduced.examples > 1:
            dead_fraction = units.dead[index]
        at += 1
    if reduced.saturated:
        saturated = float(values[at]) / max(reduced.numel, 1)
        at += 1
    if reduced.input_numel:
        total, squares = float(values[at]), float(values[at + 1])
        input_std = std_rms(total, squares, reduced.input_numel)[0]
        at += 2
    if reduced.cosine_rows:
        n = reduced.cosine_rows
        norms = values[at : at + n]
        with np.errstate(all="ignore"):
            diagonal = float(((norms / np.maximum(norms, 1e-12)) ** 2).sum())
        cosine = (float(values[at + n]) ** 2 - diagonal) / (n * (n - 1))
    return {
        "mean": mean,
        "std": math.sqrt(max(mean_sq - mean * mean, 0.0)),
        "rms": math.sqrt(mean_sq),
        "input_std": input_std,
        "zero_fraction": zero_fraction,
        "dead_fraction": dead_fraction,
        "saturated_fraction": saturated,
        "channel_mean_sq": units.channel_mean_sq[index],
        "channel_var": units.channel_var[index],
        "cosine": cosine,
        "nonfinite": units.nonfinite[index],
    }
