r"""Per-layer statistics of one forward (and backward) pass, collected on the device.

:class:`Probe` registers hooks on the layers of a model. Each hook reduces the tensor it sees
*on the device* to per-unit sums (a few kernels, no copy of the activation); :meth:`Probe.collect`
concatenates everything, copies it to the host once, and derives the statistics there in
float64, so a probe costs one host sync whatever the depth, and a handful of kernel launches
per module.

Every call of a probed module is recorded (a shared activation, a layer applied N times).
Forward statistics of a call's output :math:`h \in \mathbb R^{B \times C \times \dots}`:
mean, std, RMS, the std of its input, for hard rectifiers (:mod:`initlab.layers`: ReLU, ReLU6;
not leaky ones) the fraction of exactly-zero values and of *units* (channels) that are zero for
the whole batch, for saturating activations the fraction in saturation (outside the interval
:attr:`initlab.layers.ActivationKind.saturation`: :math:`|\tanh| \ge 0.99`, sigmoid and
hardsigmoid :math:`\le 0.01` or :math:`\ge 0.99`), the mean over channels of the
squared channel mean and of the channel variance (Brock et al., 2021, signal propagation plots),
the mean cosine similarity between the batch's examples (how far the inputs have collapsed to one
direction), and the count of NaN/inf values. Backward: the std of :math:`\partial L/\partial h`
(NaN/inf when the gradient holds NaN/inf).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import torch
from torch import nn

from initlab.doctor.model_io import first_floating_tensor
from initlab.doctor.signal_path import block_stacks
from initlab.errors import InitlabError
from initlab.layers import activation_kind, is_norm, module_activation
from initlab.plan.activations import layer_names

__all__ = ["FORWARD_FIELDS", "ForwardStopped", "LayerRecord", "Probe", "probed_modules"]

FORWARD_FIELDS = (
    "mean",
    "std",
    "rms",
    "input_std",
    "zero_fraction",
    "dead_fraction",
    "saturated_fraction",
    "channel_mean_sq",
    "channel_var",
    "cosine",
    "nonfinite",
)


class ForwardStopped(Exception):  # noqa: N818 (a control-flow signal, not an error)
    """Raised by a ``Probe(..., stop_early=True)`` hook once every probed module has run.

    The rest of the forward pass is skipped; catch it around the model call.
    """


@dataclass(frozen=True)
class LayerRecord:
    """The statistics of one call of a probed module, as host floats.

    Attributes:
        name: the module's qualified name.
        kind: its class name.
        index: position in forward-call order.
        forward: the values of :data:`FORWARD_FIELDS`.
        grad_std: std of the gradient of the loss w.r.t. the output (``None`` without backward).
        grad_rms: RMS of that gradient.
        call: which call of the module this is: 0 for the first, 1, 2... for later ones (a
            shared activation, a layer applied several times).
        values_per_example: how many values the output holds per example (units times
            positions), so per-value statistics can be compared across a pooling or a stride.
    """

    name: str
    kind: str
    index: int
    forward: dict[str, float]
    grad_std: float | None
    grad_rms: float | None
    call: int = 0
    values_per_example: int = 1

    @property
    def label(self) -> str:
        """The name (``(model)`` for the model itself), with ``(call n)`` after it for a
        module's second and later calls."""
        name = self.name or "(model)"
        return name if self.call == 0 else f"{name} (call {self.call + 1})"


def probed_modules(model: nn.Module) -> list[str]:
    """What the doctor measures, by name, in registration order.

    Layers (modules owning a weight), activation and normalization leaves (as
    :mod:`initlab.layers` knows them: GELU/SiLU classes of any library, RMSNorm by behaviour),
    and the blocks of each stack of repeated blocks
    (:func:`~initlab.doctor.signal_path.block_stacks`), whose outputs are the residual stream
    the doctor judges depth on.
    """
    layers = set(layer_names(model))
    blocks = {name for stack in block_stacks(model) for name in stack}
    names = []
    for name, module in model.named_modules():
        if not name:
            continue
        if name in layers or name in blocks:
            names.append(name)
            continue
        if any(True for _ in module.children()):
            continue
        found = module_activation(module)
        if (found is not None and activation_kind(found[0]).family != "linear") or is_norm(module):
            names.append(name)
    return names


def _measurable(tensor: torch.Tensor) -> bool:
    """A dense real floating-point tensor with values (what the reductions can read)."""
    return (
        tensor.is_floating_point()
        and tensor.layout == torch.strided
        and not tensor.is_nested
        and tensor.numel() > 0
    )


_COSINE_EXAMPLES = 64
_EXACT = (torch.float32, torch.float64)
_NAN = float("nan")

_Key = tuple[str, int]
"""A module's qualified name and the index of its call (0 for the first)."""


@dataclass(frozen=True)
class _Watch:
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


def _watch(module: nn.Module, is_layer: bool) -> _Watch:
    found = module_activation(module)
    try:
        activation = activation_kind(found[0]) if found is not None else None
    except (InitlabError, KeyError):  # a name gains.py knows but kinds.py does not judge
        activation = None
    saturation = activation.saturation if activation is not None else None
    return _Watch(
        kind=type(module).__name__,
        can_die=activation is not None and activation.can_die,
        saturation=saturation,
        is_layer=is_layer or saturation is not None,
    )


def _widened(tensor: torch.Tensor) -> torch.Tensor:
    """float32 for half precision (squares of fp16 overflow past 256), the tensor otherwise."""
    return tensor if tensor.dtype in _EXACT else tensor.float()


@dataclass(frozen=True)
class _Reduced:
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
    input_from: _Key | None
    cosine_rows: int

    @property
    def size(self) -> int:
        inputs = 2 if self.input_numel else 0
        cosine = self.cosine_rows + 1 if self.cosine_rows else 0
        return 2 * self.units + self.zeros + self.saturated + inputs + cosine


def _reduce_output(watch: _Watch, output: torch.Tensor) -> list[torch.Tensor]:
    """The device-side reductions of one output (see :class:`_Reduced`).

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


def _cosine_pieces(output: torch.Tensor) -> list[torch.Tensor]:
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


def _moments(tensor: torch.Tensor) -> torch.Tensor:
    """Sum and 2-norm of all of ``tensor``: two read-only, vectorized passes."""
    x = _widened(tensor.detach())
    return torch.stack([x.sum(), torch.linalg.vector_norm(x)])


def _std_rms(total: float, norm: float, count: int) -> tuple[float, float]:
    r"""Population std and RMS from a sum and a 2-norm.

    .. math:: \sigma^2 = \lVert x\rVert_2^2/n - \bar x^2,
        \quad \text{rms} = \lVert x\rVert_2/\sqrt n
    """
    count = max(count, 1)
    mean = total / count
    mean_sq = norm * norm / count
    variance = mean_sq - mean * mean
    return math.sqrt(max(variance, 0.0)), math.sqrt(mean_sq)  # max keeps NaN: NaN stays NaN


def _forward_fields(
    reduced: _Reduced, values: np.ndarray[Any, Any], input_std: float
) -> dict[str, float]:
    """The :data:`FORWARD_FIELDS` from one module's reduced values (host, float64).

    A unit is dead when it is 0 on every example: with a single example that says nothing
    about the unit, so the dead fraction is NaN then (as is the cosine).
    """
    units = reduced.units
    unit_mean, unit_sq = values[:units], values[units : 2 * units]
    at = 2 * units
    zero_fraction = dead_fraction = saturated = cosine = _NAN
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
            input_std = _std_rms(total, norm, reduced.input_numel)[0]
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


class Probe:
    """Hooks that record per-layer statistics; use as a context manager.

    Every call of a probed module is recorded (a ReLU module applied twice, ALBERT's one layer
    applied N times): records come in forward-call order, each with its module's name and the
    index of the call (:attr:`LayerRecord.call`), and the gradient of each call's own output.

    Example:
        >>> with Probe(model) as probe:
        ...     loss = loss_fn(model(batch), target)
        ...     loss.backward()
        >>> records = probe.collect()      # one host sync

    Args:
        model: the model to observe (not modified).
        modules: qualified names to probe; default :func:`probed_modules`.
        gradients: also record :math:`\\partial L/\\partial h` when backward runs.
        cosine: compute the between-example cosine similarity (an extra B x B product).
        stop_early: raise :class:`ForwardStopped` as soon as every probed module has run, so
            the layers after them are not computed (for forward-only measurements of a few
            early modules, as LSUV makes).

    Attributes:
        unmeasured: names of modules whose output could not be reduced (a hook never breaks
            the model's forward pass; those calls are left out of the records).
    """

    def __init__(
        self,
        model: nn.Module,
        modules: Iterable[str] | None = None,
        *,
        gradients: bool = True,
        cosine: bool = True,
        stop_early: bool = False,
    ) -> None:
        self.model = model
        available = dict(model.named_modules())
        self.names = list(modules) if modules is not None else probed_modules(model)
        missing = [name for name in self.names if name not in available]
        if missing:
            raise KeyError(f"Probe: no module named {missing[0]!r} in the model.")
        self._modules = {name: available[name] for name in self.names}
        layers = set(layer_names(model))
        self._watches = {
            name: _watch(module, name in layers) for name, module in self._modules.items()
        }
        self.gradients = gradients
        self.cosine = cosine
        self.stop_early = stop_early
        self.unmeasured: list[str] = []
        self._calls: dict[str, int] = {}
        self._order: list[_Key] = []
        self._forward: dict[_Key, _Reduced] = {}
        self._backward: dict[_Key, tuple[torch.Tensor, int]] = {}
        # id(output) -> (the output, its version, its call): a layer fed by a probed call's
        # output, unchanged since (no in-place op bumped its version), reuses that output's std.
        self._outputs: dict[int, tuple[weakref.ref[torch.Tensor], int, _Key]] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> Probe:
        for name, module in self._modules.items():
            self._handles.append(module.register_forward_hook(self._make_hook(name)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook (the context manager does this on exit)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _make_hook(self, name: str) -> Any:
        watch = self._watches[name]

        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            tensor = first_floating_tensor(output)
            if tensor is not None and _measurable(tensor):
                call = self._calls.get(name, 0)
                self._calls[name] = call + 1
                try:
                    self._record((name, call), watch, inputs, tensor)
                except Exception:  # a probe must never break the forward pass it observes
                    if name not in self.unmeasured:
                        self.unmeasured.append(name)
            if self.stop_early and len(self._calls) == len(self._modules):
                raise ForwardStopped

        return hook

    def _record(self, key: _Key, watch: _Watch, inputs: Any, tensor: torch.Tensor) -> None:
        pieces = _reduce_output(watch, tensor)
        source = first_floating_tensor(inputs) if watch.is_layer else None
        input_from, input_numel = None, 0
        if source is not None and _measurable(source) and source.numel() > 1:
            input_from = self._producer(source)
            if input_from is None:
                pieces.append(_moments(source))
                input_numel = source.numel()
        cosine = _cosine_pieces(tensor) if self.cosine and watch.is_layer else []
        pieces.extend(cosine)
        self._order.append(key)
        self._forward[key] = _Reduced(
            pieces=tuple(pieces),
            units=pieces[0].numel(),
            numel=tensor.numel(),
            examples=tensor.shape[0] if tensor.dim() > 1 else 1,
            zeros=watch.can_die,
            saturated=watch.saturation is not None,
            input_numel=input_numel,
            input_from=input_from,
            cosine_rows=cosine[0].numel() if cosine else 0,
        )
        if not tensor.is_inference():  # inference tensors keep no version counter
            self._outputs[id(tensor)] = (weakref.ref(tensor), tensor._version, key)
        if self.gradients and tensor.requires_grad:
            tensor.register_hook(  # type: ignore[no-untyped-call]
                lambda grad: self._record_grad(key, grad)
            )

    def _producer(self, source: torch.Tensor) -> _Key | None:
        """The probed call whose (unchanged) output ``source`` is, if any."""
        if source.is_inference():
            return None
        known = self._outputs.get(id(source))
        if known is not None and known[0]() is source and known[1] == source._version:
            return known[2]
        return None

    def _record_grad(self, key: _Key, grad: torch.Tensor) -> None:
        # NaN/inf entries make the statistics NaN/inf, as in the forward pass: the doctor
        # reports where the backward pass first goes non-finite.
        if _measurable(grad):
            self._backward[key] = (_moments(grad), grad.numel())

    def reset(self) -> None:
        """Forget what was recorded (hooks stay), for another pass."""
        self.unmeasured.clear()
        self._calls.clear()
        self._order.clear()
        self._forward.clear()
        self._backward.clear()
        self._outputs.clear()

    def collect(self) -> list[LayerRecord]:
        """The records of every call of a probed module, in call order (one device-to-host
        copy)."""
        if not self._order:
            return []
        pieces: list[torch.Tensor] = []
        for key in self._order:
            pieces.extend(self._forward[key].pieces)
            if key in self._backward:
                pieces.append(self._backward[key][0])
        device = pieces[0].device
        flat = torch.cat([piece.reshape(-1).float().to(device) for piece in pieces])
        values = flat.cpu().double().numpy()
        records: list[LayerRecord] = []
        stds: dict[_Key, float] = {}
        at = 0
        for index, key in enumerate(self._order):
            reduced = self._forward[key]
            chunk = values[at : at + reduced.size]
            at += reduced.size
            input_std = stds.get(reduced.input_from, _NAN) if reduced.input_from else _NAN
            forward = _forward_fields(reduced, chunk, input_std)
            stds[key] = forward["std"]
            grad_std = grad_rms = None
            if key in self._backward:
                total, norm = values[at], values[at + 1]
                at += 2
                count = self._backward[key][1]
                if count == 1:
                    grad_std = grad_rms = abs(float(total))
                else:
                    grad_std, grad_rms = _std_rms(float(total), float(norm), count)
            name, call = key
            records.append(
                LayerRecord(
                    name=name,
                    kind=self._watches[name].kind,
                    index=index,
                    forward=forward,
                    grad_std=grad_std,
                    grad_rms=grad_rms,
                    call=call,
                    values_per_example=max(reduced.numel // max(reduced.examples, 1), 1),
                )
            )
        return records
