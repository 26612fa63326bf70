"""Which nonlinearity follows each layer, so "auto" can pick He, LeCun or Xavier.

First choice: a ``torch.fx`` symbolic trace. From each layer's call, the data flow is followed
through shape-only and normalizing steps (dropout, norms, pooling, flatten/view, residual adds)
to the first activation: ``nn.ReLU``-style modules, ``F.relu`` / ``torch.tanh`` calls and
``x.relu()`` methods all count. A layer that reaches another layer, or the output, first is
followed by ``linear``.

When tracing fails (data-dependent control flow, unsupported ops), the fallback is module order:
the first activation *module* registered after the layer and before the next layer. Functional
activations are invisible to it; the table says which method was used, and why.
"""

from __future__ import annotations

import operator
from collections import deque
from dataclasses import dataclass
from typing import Any

from torch import fx, nn

from initlab.errors import InitlabError
from initlab.gains import canonical_activation

__all__ = ["Activation", "ActivationMap", "detect_activations", "layer_names"]

_TRANSPARENT_MODULES: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
)
_TRANSPARENT_CALLS = {
    "dropout",
    "flatten",
    "view",
    "reshape",
    "permute",
    "transpose",
    "contiguous",
    "getitem",
    "add",
    "iadd",
    "cat",
    "squeeze",
    "unsqueeze",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "batch_norm",
    "layer_norm",
    "group_norm",
}
_PARAMETER_NAMES = {
    "leaky_relu": "negative_slope",
    "elu": "alpha",
    "celu": "alpha",
    "softplus": "beta",
}


@dataclass(frozen=True)
class Activation:
    """The nonlinearity after one layer.

    Attributes:
        name: canonical activation name (see :func:`initlab.gains.canonical_activation`).
        param: its parameter (leaky slope, ELU alpha, softplus beta), if any.
        source: ``"fx"`` or ``"module order"``.
    """

    name: str
    param: float | None
    source: str

    def __str__(self) -> str:
        value = "" if self.param is None else f"({self.param:g})"
        return f"{self.name}{value} [{self.source}]"


@dataclass(frozen=True)
class ActivationMap:
    """Activation after each layer, by the layer's qualified module name."""

    by_layer: dict[str, Activation]
    method: str
    fallback_reason: str = ""

    def get(self, module_name: str) -> Activation | None:
        """The activation after ``module_name``, ``None`` if it is not a layer."""
        return self.by_layer.get(module_name)


def _module_activation(module: nn.Module) -> tuple[str, float | None] | None:
    type_name = type(module).__name__
    if type_name == "GELU" and getattr(module, "approximate", "none") == "tanh":
        return "gelu_tanh", None
    try:
        name = canonical_activation(type_name)
    except InitlabError:
        return None
    attribute = _PARAMETER_NAMES.get(name)
    param = getattr(module, attribute, None) if attribute else None
    return name, None if param is None else float(param)


def _call_name(target: Any) -> str:
    if isinstance(target, str):
        return target.rstrip("_")
    if target in (operator.add, operator.iadd, operator.getitem):
        return str(target.__name__).strip("_")
    return str(getattr(target, "__name__", "")).rstrip("_")


def _call_activation(node: fx.Node) -> tuple[str, float | None] | None:
    name = _call_name(node.target)
    if name == "gelu" and node.kwargs.get("approximate") == "tanh":
        return "gelu_tanh", None
    try:
        canonical = canonical_activation(name)
    except InitlabError:
        return None
    if canonical == "linear":
        return None
    attribute = _PARAMETER_NAMES.get(canonical)
    param = node.kwargs.get(attribute) if attribute else None
    if attribute and param is None and len(node.args) > 1:
        param = node.args[1]
    return canonical, float(param) if isinstance(param, int | float) else None


def layer_names(model: nn.Module) -> list[str]:
    """Modules that own a weight matrix or kernel directly (the layers an activation follows)."""
    names = []
    for name, module in model.named_modules():
        if any(p.dim() >= 2 for p in module.parameters(recurse=False)) and not isinstance(
            module, nn.Embedding | nn.EmbeddingBag
        ):
            names.append(name)
    return names


def _follow(start: fx.Node, modules: dict[str, nn.Module], layers: set[str]) -> tuple[str, Any]:
    queue: deque[fx.Node] = deque(start.users)
    seen: set[fx.Node] = set()
    while queue:
        node = queue.popleft()
        if node in seen:
            continue
        seen.add(node)
        if node.op == "call_module":
            module = modules[str(node.target)]
            found = _module_activation(module)
            if found:
                return found
            if str(node.target) in layers:
                return "linear", None
            if isinstance(module, _TRANSPARENT_MODULES):
                queue.extend(node.users)
        elif node.op in ("call_function", "call_method"):
            found = _call_activation(node)
            if found:
                return found
            if _call_name(node.target) in _TRANSPARENT_CALLS:
                queue.extend(node.users)
    return "linear", None


def _by_tracing(model: nn.Module, layers: list[str]) -> dict[str, Activation]:
    graph = fx.symbolic_trace(model).graph
    modules = dict(model.named_modules())
    layer_set = set(layers)
    found: dict[str, Activation] = {}
    for node in graph.nodes:
        if node.op == "call_module" and str(node.target) in layer_set:
            target = str(node.target)
            if target not in found:
                name, param = _follow(node, modules, layer_set)
                found[target] = Activation(name, param, "fx")
    # A layer fx never calls (unused, or called through a non-traced path) is unknown to fx.
    return found


def _by_module_order(model: nn.Module, layers: list[str]) -> dict[str, Activation]:
    layer_set = set(layers)
    found: dict[str, Activation] = {}
    pending: list[str] = []
    for name, module in model.named_modules():
        if name in layer_set:
            for layer in pending:
                found[layer] = Activation("linear", None, "module order")
            pending = [name]
            continue
        activation = _module_activation(module) if not list(module.children()) else None
        if activation and pending:
            for layer in pending:
                found[layer] = Activation(*activation, "module order")
            pending = []
    for layer in pending:
        found[layer] = Activation("linear", None, "module order")
    return found


def detect_activations(model: nn.Module) -> ActivationMap:
    """The activation following every layer of ``model`` (fx trace, else module order)."""
    layers = layer_names(model)
    fallback = _by_module_order(model, layers)
    try:
        traced = _by_tracing(model, layers)
    except Exception as error:  # fx raises many kinds of errors on untraceable models
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        return ActivationMap(fallback, "module order", reason[:200])
    merged = {name: traced.get(name, fallback[name]) for name in layers}
    return ActivationMap(merged, "fx")
