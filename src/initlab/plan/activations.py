"""Which nonlinearity follows each layer, so "auto" can pick He, LeCun or Xavier.

First choice: a ``torch.fx`` symbolic trace. From each layer's call, the data flow is followed
through shape-only and normalizing steps (dropout, norms, pooling, flatten/view, residual adds)
to the first activation: ``nn.ReLU``-style modules, ``F.relu`` / ``torch.tanh`` calls and
``x.relu()`` methods all count. A layer that reaches another layer, or the output, first is
followed by ``linear``.

Layers are leaves of the trace, so a custom layer class (GPT-2's ``Conv1D``) is seen as one call.
When the whole model does not trace (data-dependent control flow, unsupported ops), its largest
submodules that do trace are traced one by one (a transformer's MLP block usually does, while its
attention does not); what is still unknown falls back to module order: the first activation
*module* registered after the layer and before the next layer. Functional activations are
invisible to that; the table says which method was used, and why.
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
        source: ``"fx"``, ``"fx, per submodule"`` or ``"module order"``.
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


def _follow(
    start: fx.Node,
    modules: dict[str, nn.Module],
    layers: set[str],
    at_output: tuple[str, Any] | None = ("linear", None),
) -> tuple[str, Any] | None:
    """The activation the data flow from ``start`` reaches first; ``at_output`` when it leaves
    the traced graph through its output first (``None``: unknown, for a traced submodule)."""
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
        elif node.op == "output":
            return at_output
    return "linear", None


class _LayerTracer(fx.Tracer):
    """fx's tracer, with every layer and every known activation module a leaf: a custom class
    (GPT-2's ``Conv1D``, Hugging Face's ``NewGELUActivation``) is one node of the graph instead
    of the ops inside it."""

    def __init__(self, layers: set[str]) -> None:
        super().__init__()
        self.layers = layers

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        known_activation = _module_activation(module) is not None  # e.g. HF's NewGELU
        return (
            qualified_name in self.layers
            or known_activation
            or super().is_leaf_module(module, qualified_name)
        )


def _trace(
    module: nn.Module, layers: set[str], at_output: tuple[str, Any] | None, source: str
) -> tuple[dict[str, Activation], set[str]]:
    """fx-trace ``module`` (layer names relative to it) and follow each layer's output.

    Returns the layers decided, and those whose output leaves the graph first (with
    ``at_output=None``; else they are decided as ``at_output``).
    """
    graph = _LayerTracer(layers).trace(module)
    modules = dict(module.named_modules())
    found: dict[str, Activation] = {}
    leaving: set[str] = set()
    for node in graph.nodes:
        target = str(node.target)
        if node.op == "call_module" and target in layers and target not in found:
            result = _follow(node, modules, layers, at_output)
            if result is None:
                leaving.add(target)
            else:
                found[target] = Activation(result[0], result[1], source)
    # A layer fx never calls (unused, or called through a non-traced path) is unknown to fx.
    return found, leaving


def _by_tracing(model: nn.Module, layers: list[str]) -> dict[str, Activation]:
    return _trace(model, set(layers), ("linear", None), "fx")[0]


def _by_submodule_tracing(
    model: nn.Module, layers: list[str]
) -> tuple[dict[str, Activation], dict[str, str]]:
    """Trace the largest submodules that trace, when the whole model does not.

    Inside a traced submodule the data flow is known. A layer whose output leaves the
    submodule before reaching an activation or another layer is returned with the
    submodule's name: whatever follows it comes after the whole submodule.
    """
    found: dict[str, Activation] = {}
    leaving: dict[str, str] = {}

    def visit(module: nn.Module, prefix: str) -> None:
        children = list(module.named_children())
        if not children:
            return
        local = {name[len(prefix) :] for name in layers if name.startswith(prefix)}
        try:
            traced, left = _trace(module, local, None, "fx, per submodule")
        except Exception:  # fx raises many kinds of errors on untraceable code
            for name, child in children:
                visit(child, f"{prefix}{name}.")
            return
        found.update({prefix + name: activation for name, activation in traced.items()})
        leaving.update({prefix + name: prefix.rstrip(".") for name in left})

    visit(model, "")
    return found, leaving


def _after_submodule(model: nn.Module, layers: set[str], submodule: str) -> Activation:
    """Module order from the end of ``submodule``: the first activation module registered
    after all of it, unless a layer comes first."""
    inside = False
    for name, module in model.named_modules():
        if name == submodule or name.startswith(submodule + "."):
            inside = True
            continue
        if not inside:
            continue
        if name in layers:
            break
        activation = _module_activation(module) if not list(module.children()) else None
        if activation:
            return Activation(*activation, "module order")
    return Activation("linear", None, "module order")


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
        partial, leaving = _by_submodule_tracing(model, layers)
        if not partial:
            return ActivationMap(fallback, "module order", reason[:200])
        layer_set = set(layers)
        for name, submodule in leaving.items():
            partial[name] = _after_submodule(model, layer_set, submodule)
        merged = {name: partial.get(name, fallback[name]) for name in layers}
        return ActivationMap(merged, "fx per submodule, else module order", reason[:200])
    merged = {name: traced.get(name, fallback[name]) for name in layers}
    return ActivationMap(merged, "fx")
