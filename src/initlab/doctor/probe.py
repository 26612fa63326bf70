r"""Per-layer statistics of one forward (and backward) pass, collected on the device.

:class:`Probe` registers hooks on the layers of a model. Each hook reduces the tensor it sees
*on the device* to per-unit sums (a few kernels, no copy of the activation; on CPU in float32
one compiled pass, :mod:`initlab.doctor.fused`); :meth:`Probe.collect` concatenates
everything, copies it to the host once, and derives the statistics there in float64, so a
probe costs one host sync whatever the depth, and a handful of kernel launches per module.

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

A batch norm that normalized with the batch's own statistics (training mode, on CPU) is read
from them, not from its output: its unit means are its bias and its unit mean squares
:math:`\beta_c^2 + \gamma_c^2 (1 - \epsilon s_c^2)`, with :math:`s_c` the inverse std torch
kept for the backward pass (:func:`~initlab.doctor.reductions.batch_norm_terms`), the same
numbers to float rounding with no pass over the output.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import torch
from torch import nn

from initlab.batches import first_floating_tensor
from initlab.doctor.fused import ResultPool
from initlab.doctor.reductions import (
    NAN,
    Key,
    Piece,
    Reduced,
    Scratch,
    Watch,
    batch_norm_terms,
    batch_norm_units,
    forward_fields,
    measurable,
    moments,
    piece_size,
    reduce_output,
    std_rms,
    unit_moments,
    watch_for,
)
from initlab.doctor.signal_path import block_stacks
from initlab.layers import activation_kind, has_children, is_norm, module_activation
from initlab.plan.activations import layer_names
from initlab.plan.recording import unrecorded

__all__ = ["FORWARD_FIELDS", "LayerRecord", "Probe", "probed_modules"]

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
    return _probed_modules(model, set(layer_names(model)))


def _probed_modules(model: nn.Module, layers: set[str]) -> list[str]:
    blocks = {name for stack in block_stacks(model) for name in stack}
    names = []
    for name, module in model.named_modules():
        if not name:
            continue
        if name in layers or name in blocks:
            names.append(name)
            continue
        if has_children(module):
            continue
        found = module_activation(module)
        if (found is not None and activation_kind(found[0]).family != "linear") or is_norm(module):
            names.append(name)
    return names


class Probe:
    """Hooks that record per-layer statistics; use as a context manager.

    Every call of a probed module is recorded (a ReLU module applied twice, ALBERT's one layer
    applied N times): records come in forward-call order, each with its module's name and the
    index of the call (:attr:`LayerRecord.call`), and the gradient of each call's own output.
    A call whose output is, unchanged, the output of a call probed before it (a residual block
    returning its last activation's output) is read from that call's reductions, not reduced
    twice.

    Example:
        >>> with Probe(model) as probe:
        ...     loss = loss_fn(model(batch), target)
        ...     loss.backward()
        >>> records = probe.collect()      # one host sync

    Args:
        model: the model to observe (not modified).
        modules: qualified names to probe; default :func:`probed_modules`.
        gradients: also record :math:`\\partial L/\\partial h` when backward runs.
        cosine: compute the between-example cosine similarity (a second read of the first 64
            examples of each layer's output).

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
    ) -> None:
        self.model = model
        available = dict(model.named_modules())
        layers = set(layer_names(model))
        self.names = list(modules) if modules is not None else _probed_modules(model, layers)
        missing = [name for name in self.names if name not in available]
        if missing:
            raise KeyError(f"Probe: no module named {missing[0]!r} in the model.")
        self._modules = {name: available[name] for name in self.names}
        self._watches = {
            name: watch_for(module, name in layers) for name, module in self._modules.items()
        }
        self.gradients = gradients
        self.cosine = cosine
        self.unmeasured: list[str] = []
        self._calls: dict[str, int] = {}
        self._order: list[Key] = []
        self._forward: dict[Key, Reduced] = {}
        self._backward: dict[Key, tuple[list[Piece], int]] = {}
        # A call recorded from an earlier call's output: whose gradient it shares.
        self._same_gradient: dict[Key, Key] = {}
        # id(output) -> (the output, its version, its call): a layer fed by a probed call's
        # output, unchanged since (no in-place op bumped its version), reuses that output's std.
        self._outputs: dict[int, tuple[weakref.ref[torch.Tensor], int, Key]] = {}
        self._handles: list[Any] = []
        self._scratch = Scratch()
        self._pool = ResultPool()  # allocated here, before the pass's activations

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
        self._scratch.clear()

    def _make_hook(self, name: str) -> Any:
        watch = self._watches[name]

        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            # The reductions are no part of the model's data flow: an activation recording
            # running in the same pass (the doctor's) does not follow them.
            with unrecorded():
                tensor = first_floating_tensor(output)
                if tensor is None or not measurable(tensor):
                    return
                call = self._calls.get(name, 0)
                self._calls[name] = call + 1
                try:
                    self._record((name, call), watch, module, inputs, tensor)
                except Exception:  # a probe must never break the forward pass it observes
                    if name not in self.unmeasured:
                        self.unmeasured.append(name)

        return hook

    def _record(
        self, key: Key, watch: Watch, module: nn.Module, inputs: Any, tensor: torch.Tensor
    ) -> None:
        if self._record_again(key, watch, tensor):
            return
        terms = batch_norm_terms(module, tensor, self._pool) if watch.batch_norm else None
        if terms is not None:
            self._record_batch_norm(key, tensor, *terms)
            return
        cosine = self.cosine and watch.is_layer
        sums = reduce_output(watch, tensor, self._scratch, cosine=cosine, pool=self._pool)
        pieces = [sums.unit_mean, sums.unit_sq, *sums.counts]
        source = first_floating_tensor(inputs) if watch.is_layer else None
        input_from, input_numel = None, 0
        if source is not None and measurable(source) and source.numel() > 1:
            input_from = self._producer(source)
            if input_from is None:
                pieces.extend(moments(source, self._pool))
                input_numel = source.numel()
        pieces.extend(sums.cosine)
        self._order.append(key)
        self._forward[key] = Reduced(
            pieces=tuple(pieces),
            units=piece_size(pieces[0]),
            numel=tensor.numel(),
            examples=tensor.shape[0] if tensor.dim() > 1 else 1,
            zeros=watch.can_die,
            saturated=watch.saturation is not None,
            input_numel=input_numel,
            input_from=input_from,
            cosine_rows=piece_size(sums.cosine[0]) if sums.cosine else 0,
        )
        self._follow(key, tensor)

    def _record_batch_norm(
        self, key: Key, tensor: torch.Tensor, terms: np.ndarray[Any, Any], eps: float
    ) -> None:
        """Record a batch norm's call from its batch statistics (:func:`batch_norm_terms`):
        its output's unit moments follow from them exactly, with no pass over the output."""
        self._order.append(key)
        self._forward[key] = Reduced(
            pieces=(terms,),
            units=tensor.shape[1],
            numel=tensor.numel(),
            examples=tensor.shape[0],
            zeros=False,
            saturated=False,
            input_numel=0,
            input_from=None,
            cosine_rows=0,
            batch_norm_eps=eps,
        )
        self._follow(key, tensor)

    def _follow(self, key: Key, tensor: torch.Tensor) -> None:
        """Remember the call's output (a later call may read it unchanged) and, with
        gradients on, hook its gradient."""
        if not tensor.is_inference():  # inference tensors keep no version counter
            self._outputs[id(tensor)] = (weakref.ref(tensor), tensor._version, key)
        if self.gradients and tensor.requires_grad:
            tensor.register_hook(  # type: ignore[no-untyped-call]
                lambda grad: self._record_grad(key, grad)
            )

    def _record_again(self, key: Key, watch: Watch, tensor: torch.Tensor) -> bool:
        """Record a call whose output is, unchanged, the output of a probed call before it (a
        block returning its last activation's output) from that call's reductions: the same
        tensor gives the same statistics and the same gradient. Only for a module whose
        statistics are the moments alone (a block, a container)."""
        if watch.can_die or watch.saturation is not None or watch.is_layer:
            return False
        earlier = self._producer(tensor)
        if earlier is None:
            return False
        reduced = self._forward[earlier]
        self._order.append(key)
        self._forward[key] = Reduced(
            pieces=reduced.pieces[: reduced.moment_pieces],
            units=reduced.units,
            numel=reduced.numel,
            examples=reduced.examples,
            zeros=False,
            saturated=False,
            input_numel=0,
            input_from=None,
            cosine_rows=0,
            batch_norm_eps=reduced.batch_norm_eps,
        )
        self._same_gradient[key] = self._same_gradient.get(earlier, earlier)
        return True

    def _producer(self, source: torch.Tensor) -> Key | None:
        """The probed call whose (unchanged) output ``source`` is, if any."""
        if source.is_inference():
            return None
        known = self._outputs.get(id(source))
        if known is not None and known[0]() is source and known[1] == source._version:
            return known[2]
        return None

    def _record_grad(self, key: Key, grad: torch.Tensor) -> None:
        # NaN/inf entries make the statistics NaN/inf, as in the forward pass: the doctor
        # reports where the backward pass first goes non-finite.
        if measurable(grad):
            self._backward[key] = (moments(grad, self._pool), grad.numel())

    def reset(self) -> None:
        """Forget what was recorded (hooks stay), for another pass."""
        self.unmeasured.clear()
        self._calls.clear()
        self._order.clear()
        self._forward.clear()
        self._backward.clear()
        self._same_gradient.clear()
        self._outputs.clear()
        self._pool.rewind()

    def _host_values(self) -> np.ndarray[Any, Any]:
        """Every call's reductions (and its gradient's), in call order, in one float64 host
        array: one device-to-host copy (none on CPU, where the pieces are read in place)."""
        pieces: list[Piece] = []
        for key in self._order:
            pieces.extend(self._forward[key].pieces)
            if key in self._backward:
                pieces.extend(self._backward[key][0])
        on_host = [
            piece if isinstance(piece, np.ndarray) else piece.reshape(-1).numpy()
            for piece in pieces
            if isinstance(piece, np.ndarray) or piece.device.type == "cpu"
        ]
        if len(on_host) == len(pieces):
            return np.concatenate(on_host, dtype=np.float64)
        tensors = [torch.from_numpy(p) if isinstance(p, np.ndarray) else p for p in pieces]
        device = next(p.device for p in tensors if p.device.type != "cpu")
        # Every piece is a scalar or a vector, so hstack is a cat of them all (one call, not a
        # reshape per piece); mixed float dtypes are promoted.
        return torch.hstack([p.to(device) for p in tensors]).cpu().double().numpy()

    def _starts(self, values: np.ndarray[Any, Any]) -> list[int]:
        """Where each call's values start in ``values``; the batch norms read from their
        statistics get their unit moments there, in place of their terms."""
        starts, at = [], 0
        norms: tuple[list[int], list[int], list[float]] = ([], [], [])
        for key in self._order:
            starts.append(at)
            reduced = self._forward[key]
            if reduced.batch_norm_eps is not None:
                norms[0].append(at)
                norms[1].append(reduced.units)
                norms[2].append(reduced.batch_norm_eps)
            at += reduced.size + (2 if key in self._backward else 0)
        batch_norm_units(values, *norms)
        return starts

    def collect(self) -> list[LayerRecord]:
        """The records of every call of a probed module, in call order (one device-to-host
        copy)."""
        if not self._order:
            return []
        for key, earlier in self._same_gradient.items():
            if earlier in self._backward:
                self._backward[key] = self._backward[earlier]
        values = self._host_values()
        starts = self._starts(values)
        units = unit_moments(values, starts, [self._forward[key].units for key in self._order])
        records: list[LayerRecord] = []
        stds: dict[Key, float] = {}
        for index, key in enumerate(self._order):
            reduced = self._forward[key]
            at = starts[index]
            chunk = values[at : at + reduced.size]
            at += reduced.size
            input_std = stds.get(reduced.input_from, NAN) if reduced.input_from else NAN
            forward = forward_fields(reduced, chunk, input_std, units, index)
            stds[key] = forward["std"]
            grad_std = grad_rms = None
            if key in self._backward:
                total, squares = values[at], values[at + 1]
                at += 2
                count = self._backward[key][1]
                if count == 1:
                    grad_std = grad_rms = abs(float(total))
                else:
                    grad_std, grad_rms = std_rms(float(total), float(squares), count)
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
