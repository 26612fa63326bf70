r"""Per-layer statistics of one forward (and backward) pass, collected on the device.

:class:`Probe` registers hooks on the layers of a model. Each hook reduces the tensor it sees to
a handful of numbers *on the device* and keeps them as a small tensor; :meth:`Probe.collect`
stacks everything and copies it to the host once, so a probe costs one host sync whatever the
depth.

Forward statistics of a layer's output :math:`h \in \mathbb R^{B \times C \times \dots}`:
mean, std, RMS, the std of its input, the fraction of exactly-zero values, the fraction of
*units* (channels) that are zero for the whole batch, the fraction in saturation
(:math:`|\tanh| > 0.99`, sigmoid :math:`< 0.01` or :math:`> 0.99`), the mean over channels of the
squared channel mean and of the channel variance (Brock et al., 2021, signal propagation plots),
the mean cosine similarity between the batch's examples (how far the inputs have collapsed to one
direction), and the count of NaN/inf values. Backward: the std of :math:`\partial L/\partial h`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch
from torch import nn

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
_SATURATING = {"Tanh": "tanh", "Sigmoid": "sigmoid", "Hardtanh": "tanh", "Softsign": "tanh"}
_RECTIFIERS = ("ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "Threshold")


class ForwardStopped(Exception):  # noqa: N818 (a control-flow signal, not an error)
    """Raised by a ``Probe(..., stop_early=True)`` hook once every probed module has run.

    The rest of the forward pass is skipped; catch it around the model call.
    """


@dataclass(frozen=True)
class LayerRecord:
    """The statistics of one probed module, as host floats.

    Attributes:
        name: the module's qualified name.
        kind: its class name.
        index: position in forward-call order.
        forward: the values of :data:`FORWARD_FIELDS`.
        grad_std: std of the gradient of the loss w.r.t. the output (``None`` without backward).
        grad_rms: RMS of that gradient.
    """

    name: str
    kind: str
    index: int
    forward: dict[str, float]
    grad_std: float | None
    grad_rms: float | None


def probed_modules(model: nn.Module) -> list[str]:
    """Layers (modules owning a weight) and activation / normalization leaves, by name."""
    layers = set(layer_names(model))
    names = []
    for name, module in model.named_modules():
        if not name:
            continue
        leaf = not any(True for _ in module.children())
        kind = type(module).__name__
        if name in layers or (leaf and (kind in _SATURATING or _is_activation_or_norm(kind))):
            names.append(name)
    return names


def _is_activation_or_norm(kind: str) -> bool:
    lowered = kind.lower()
    return (
        kind in _RECTIFIERS
        or "norm" in lowered
        or lowered in ("gelu", "silu", "mish", "elu", "selu", "celu", "softplus", "hardswish")
    )


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, tuple | list) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


_COSINE_EXAMPLES = 64


def _forward_stats(
    kind: str, inputs: Any, output: torch.Tensor, cosine: bool, is_layer: bool
) -> torch.Tensor:
    """The :data:`FORWARD_FIELDS` of one output, as a float32 vector on its device.

    Everything is derived from per-unit (per-channel) reductions, so an output is read a few
    times at most; the cosine similarity uses the first 64 examples (its standard error is
    then about 1/64 of its spread, plenty for a collapse diagnosis).
    """
    h = output.detach()
    if not h.is_floating_point():
        h = h.float()
    batch = h.shape[0] if h.dim() > 1 else 1
    dims = (0, *range(2, h.dim())) if h.dim() > 1 else (0,)
    unit_mean = h.mean(dim=dims, dtype=torch.float32)
    unit_sq = h.square().mean(dim=dims, dtype=torch.float32)
    nan = torch.full((), float("nan"), device=h.device)
    nonfinite = (~torch.isfinite(unit_sq)).sum().float()
    mean = unit_mean.mean()
    mean_sq = unit_sq.mean()
    std = (mean_sq - mean.square()).clamp_min(0).sqrt()
    channel_var = (unit_sq - unit_mean.square()).clamp_min(0).mean()
    source = _first_tensor(inputs)
    if is_layer and source is not None and source.is_floating_point() and source.numel() > 1:
        input_std = source.detach().float().std(unbiased=False)
    else:
        input_std = nan
    if kind in _RECTIFIERS:
        zero_fraction = (h == 0).float().mean()
        dead_fraction = (h.abs().amax(dim=dims) == 0).float().mean()
    else:
        zero_fraction = dead_fraction = nan
    saturating = _SATURATING.get(kind)
    if saturating == "tanh":
        saturated = (h.abs() > 0.99).float().mean()
    elif saturating == "sigmoid":
        saturated = ((h < 0.01) | (h > 0.99)).float().mean()
    else:
        saturated = nan
    if cosine and batch > 1:
        rows = h[:_COSINE_EXAMPLES].reshape(min(batch, _COSINE_EXAMPLES), -1).float()
        rows = torch.nn.functional.normalize(rows, dim=1)
        gram = rows @ rows.T
        n = rows.shape[0]
        similarity = (gram.sum() - gram.diagonal().sum()) / (n * (n - 1))
    else:
        similarity = nan
    values = (mean, std, mean_sq.sqrt(), input_std, zero_fraction, dead_fraction, saturated,
              unit_mean.square().mean(), channel_var, similarity, nonfinite)  # fmt: skip
    return torch.stack([v.reshape(()).float() for v in values])


def _grad_stats(grad: torch.Tensor) -> torch.Tensor:
    g = grad.detach().float()
    g = torch.where(torch.isfinite(g), g, torch.zeros((), device=g.device))
    std = g.std(unbiased=False) if g.numel() > 1 else g.abs().reshape(-1)[0]
    return torch.stack([std, g.square().mean().sqrt()])


class Probe:
    """Hooks that record per-layer statistics; use as a context manager.

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
        self._layers = set(layer_names(model)) | {
            name for name in self.names if type(available[name]).__name__ in _SATURATING
        }
        self.gradients = gradients
        self.cosine = cosine
        self.stop_early = stop_early
        self._order: list[str] = []
        self._forward: dict[str, torch.Tensor] = {}
        self._backward: dict[str, torch.Tensor] = {}
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
        kind = type(self._modules[name]).__name__

        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            tensor = _first_tensor(output)
            if tensor is None or name in self._forward:
                return
            self._order.append(name)
            self._forward[name] = _forward_stats(
                kind, inputs, tensor, self.cosine and name in self._layers, name in self._layers
            )
            if self.gradients and tensor.requires_grad:
                tensor.register_hook(  # type: ignore[no-untyped-call]
                    lambda grad: self._record_grad(name, grad)
                )
            if self.stop_early and len(self._forward) == len(self._modules):
                raise ForwardStopped

        return hook

    def _record_grad(self, name: str, grad: torch.Tensor) -> None:
        self._backward[name] = _grad_stats(grad)

    def reset(self) -> None:
        """Forget what was recorded (hooks stay), for another pass."""
        self._order.clear()
        self._forward.clear()
        self._backward.clear()

    def collect(self) -> list[LayerRecord]:
        """The records of every module that ran, in call order (one device-to-host copy)."""
        if not self._order:
            return []
        nan = torch.full((2,), float("nan"))
        rows = []
        for name in self._order:
            statistics = self._forward[name]
            backward = self._backward.get(name, nan.to(statistics.device))
            rows.append(torch.cat([statistics, backward]))
        table = torch.stack(rows).cpu().tolist()
        records = []
        for index, (name, values) in enumerate(zip(self._order, table, strict=True)):
            forward = dict(zip(FORWARD_FIELDS, values[: len(FORWARD_FIELDS)], strict=True))
            grad_std, grad_rms = values[len(FORWARD_FIELDS) :]
            records.append(
                LayerRecord(
                    name=name,
                    kind=type(self._modules[name]).__name__,
                    index=index,
                    forward=forward,
                    grad_std=None if grad_std != grad_std else grad_std,
                    grad_rms=None if grad_rms != grad_rms else grad_rms,
                )
            )
        return records
