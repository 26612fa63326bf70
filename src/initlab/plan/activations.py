"""Which nonlinearity follows each layer, so "auto" can pick He, LeCun or Xavier.

First choice: a ``torch.fx`` symbolic trace. From each layer's call, the data flow is followed
through shape-only and normalizing steps (dropout, norms, pooling, flatten/view, residual adds;
see :mod:`initlab.plan.dataflow`) to the first activation: ``nn.ReLU``-style modules,
``F.relu`` / ``torch.tanh`` calls and ``x.relu()`` methods all count. A layer that reaches
another layer, or the output, first is followed by ``linear``.

Layers, activation modules and norms are leaves of the trace, so a custom layer class (GPT-2's
``Conv1D``) or norm class (LLaMA's ``RMSNorm``) is seen as one call. When the whole model does
not trace (data-dependent control flow, unsupported constructs):

* with an ``example`` input, the model runs once on it and every call is recorded in the order
  it runs, functional ones included (:mod:`initlab.plan.recording`): source ``"recorded"``;
* without one (or for a layer the run never reached), its largest submodules that do trace are
  traced one by one (a transformer's MLP block usually does, while its attention does not), and
  what is still unknown falls back to module order: the first activation *module* registered
  after the layer and before the next layer. Functional activations are invisible to that.

Each layer's :class:`Activation` says which method found it; the map says which were used and,
in plain words, why the whole-model trace failed.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from torch import fx, nn

from initlab.batches import check_batch
from initlab.layers import ModuleActivation
from initlab.plan.dataflow import (
    Roles,
    call_activation,
    call_name,
    layer_names,
    passes_through,
)
from initlab.plan.recording import ActivationRecording, record_activations

__all__ = [
    "Activation",
    "ActivationDetection",
    "ActivationMap",
    "detect_activations",
    "layer_names",
    "untraceable_reason",
]

_LINEAR = ModuleActivation("linear", None)


@dataclass(frozen=True)
class Activation:
    """The nonlinearity after one layer.

    Attributes:
        name: canonical activation name (see :func:`initlab.gains.canonical_activation`).
        param: its parameter (leaky slope, ELU alpha, softplus beta), if any.
        source: how it was found: ``"fx"``, ``"fx, per submodule"``, ``"recorded"`` or
            ``"module order"``.
    """

    name: str
    param: float | None
    source: str

    def __str__(self) -> str:
        value = "" if self.param is None else f"({self.param:g})"
        return f"{self.name}{value} [{self.source}]"


@dataclass(frozen=True)
class ActivationMap:
    """Activation after each layer, by the layer's qualified module name.

    Attributes:
        by_layer: the activation after each layer.
        method: the methods used, first choice first: ``"fx"``, ``"recorded"``,
            ``"recorded, else fx per submodule, else module order"``,
            ``"fx per submodule, else module order"`` or ``"module order"``.
        fallback_reason: why the whole model did not trace, in plain words (``""`` if it did).
    """

    by_layer: dict[str, Activation]
    method: str
    fallback_reason: str = ""

    def get(self, module_name: str) -> Activation | None:
        """The activation after ``module_name``, ``None`` if it is not a layer."""
        return self.by_layer.get(module_name)


# Why torch.fx failed, in words a user can act on: (part of fx's message, sentence). Never the
# raw exception text, which names fx internals (Proxy, co_varnames) the user never wrote.
_UNTRACEABLE_REASONS: tuple[tuple[str, str], ...] = (
    (
        "cannot be used as inputs to control flow",
        "the forward pass has Python control flow that depends on the data, which torch.fx "
        "cannot trace",
    ),
    (
        "cannot be iterated",
        "the forward pass loops over or unpacks a tensor, which torch.fx cannot trace",
    ),
    (
        "'len' is not supported",
        "the forward pass takes len() of a tensor, which torch.fx cannot trace",
    ),
    (
        "does not support item assignment",
        "the forward pass assigns into a tensor by index, which torch.fx cannot trace",
    ),
)
_HUGGING_FACE_REASON = (
    "torch.fx cannot trace this model's forward (Hugging Face models use constructs it does "
    "not support)"
)
_GENERIC_REASON = "torch.fx cannot trace this model's forward pass"
_EXAMPLE_FAILED = "and the model could not be run on the example"


def untraceable_reason(model: nn.Module, error: BaseException) -> str:
    """Why ``torch.fx`` could not trace ``model``, as a plain sentence (no exception text).

    Example:
        >>> untraceable_reason(nn.Linear(2, 2), RuntimeError("'len' is not supported ..."))
        'the forward pass takes len() of a tensor, which torch.fx cannot trace'
    """
    if any(type(module).__module__.startswith("transformers.") for module in model.modules()):
        return _HUGGING_FACE_REASON
    message = str(error)
    for part, sentence in _UNTRACEABLE_REASONS:
        if part in message:
            return sentence
    return _GENERIC_REASON


def _follow(
    start: fx.Node,
    modules: dict[str, nn.Module],
    layers: set[str],
    roles: Roles,
    at_output: ModuleActivation | None = _LINEAR,
) -> ModuleActivation | None:
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
            found = roles.activation(module)
            if found:
                return found
            if str(node.target) in layers:
                return _LINEAR
            if roles.passes_through(module):
                queue.extend(node.users)
        elif node.op in ("call_function", "call_method"):
            name = call_name(node.target)
            found = call_activation(name, node.args, node.kwargs)
            if found:
                return found
            if passes_through(name, len(node.all_input_nodes)):
                queue.extend(node.users)
        elif node.op == "output":
            return at_output
    return _LINEAR


class _LayerTracer(fx.Tracer):
    """fx's tracer, with every layer, known activation module and norm a leaf: a custom class
    (GPT-2's ``Conv1D``, Hugging Face's ``NewGELUActivation``, LLaMA's ``RMSNorm``) is one node
    of the graph instead of the ops inside it."""

    def __init__(self, layers: set[str], roles: Roles) -> None:
        super().__init__()
        self.layers = layers
        self.roles = roles

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return (
            qualified_name in self.layers
            or id(module) in self.roles.pass_through
            or self.roles.activation(module) is not None  # e.g. HF's NewGELUActivation
            or super().is_leaf_module(module, qualified_name)
        )


@dataclass(frozen=True)
class _Traced:
    """What fx tracing found.

    Attributes:
        found: the activation after each layer it decided, by layer name.
        leaving: the layers whose output leaves the traced graph before any activation or
            layer, with the submodule it leaves (for a traced submodule; empty otherwise).
    """

    found: dict[str, Activation]
    leaving: dict[str, str]


def _trace(
    module: nn.Module,
    layers: set[str],
    roles: Roles,
    at_output: ModuleActivation | None,
    source: str,
) -> _Traced:
    """fx-trace ``module`` (layer names relative to it) and follow each layer's output.

    Returns the layers decided, and those whose output leaves the graph first (with
    ``at_output=None``, leaving ``module``, named ``""``; else they are decided as
    ``at_output``).
    """
    graph = _LayerTracer(layers, roles).trace(module)
    modules = dict(module.named_modules())
    found: dict[str, Activation] = {}
    leaving: dict[str, str] = {}
    for node in graph.nodes:
        target = str(node.target)
        if node.op == "call_module" and target in layers and target not in found:
            result = _follow(node, modules, layers, roles, at_output)
            if result is None:
                leaving[target] = ""
            else:
                found[target] = Activation(result.name, result.param, source)
    # A layer fx never calls (unused, or called through a non-traced path) is unknown to fx.
    return _Traced(found, leaving)


def _by_submodule_tracing(model: nn.Module, roles: Roles) -> _Traced:
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
        local = {name[len(prefix) :] for name in roles.layers if name.startswith(prefix)}
        try:
            traced = _trace(module, local, roles, None, "fx, per submodule")
        except Exception:  # fx raises many kinds of errors on untraceable code
            for name, child in children:
                visit(child, f"{prefix}{name}.")
            return
        found.update({prefix + name: activation for name, activation in traced.found.items()})
        leaving.update({prefix + name: prefix.rstrip(".") for name in traced.leaving})

    visit(model, "")
    return _Traced(found, leaving)


def _after_submodule(model: nn.Module, roles: Roles, submodule: str) -> Activation:
    """Module order from the end of ``submodule``: the first activation module registered
    after all of it, unless a layer comes first."""
    inside = False
    for name, module in model.named_modules():
        if name == submodule or name.startswith(submodule + "."):
            inside = True
            continue
        if not inside:
            continue
        if name in roles.layers:
            break
        activation = roles.activation(module) if not list(module.children()) else None
        if activation:
            return Activation(activation.name, activation.param, "module order")
    return Activation("linear", None, "module order")


def _by_module_order(model: nn.Module, roles: Roles) -> dict[str, Activation]:
    layer_set = set(roles.layers)
    found: dict[str, Activation] = {}
    pending: list[str] = []
    for name, module in model.named_modules():
        if name in layer_set:
            for layer in pending:
                found[layer] = Activation("linear", None, "module order")
            pending = [name]
            continue
        activation = roles.activation(module) if not list(module.children()) else None
        if activation and pending:
            for layer in pending:
                found[layer] = Activation(activation.name, activation.param, "module order")
            pending = []
    for layer in pending:
        found[layer] = Activation("linear", None, "module order")
    return found


def _without_an_example(model: nn.Module, roles: Roles) -> ActivationMap:
    """fx per submodule, else module order: what needs nothing but the model."""
    fallback = _by_module_order(model, roles)
    traced = _by_submodule_tracing(model, roles)
    if not traced.found:
        return ActivationMap(fallback, "module order")
    partial = dict(traced.found)
    for name, submodule in traced.leaving.items():
        partial[name] = _after_submodule(model, roles, submodule)
    merged = {name: partial.get(name, fallback[name]) for name in roles.layers}
    return ActivationMap(merged, "fx per submodule, else module order")


def _untraced(model: nn.Module, roles: Roles, example: Any, reason: str) -> ActivationMap:
    """The model does not trace as a whole: record a pass on ``example``, else trace parts."""
    if example is None:
        return _from_recorded(model, roles, None, reason)
    try:
        found = record_activations(model, example, roles)
    except Exception as error:  # the model's own error on this input, of any kind
        first_line = str(error).splitlines()[0] if str(error) else ""
        warnings.warn(
            "initlab could not run the model on the example to find its activations "
            f"({type(error).__name__}: {first_line}); found them without it. Pass an input "
            "the model's forward accepts as `example`.",
            stacklevel=3,
        )
        return _from_recorded(model, roles, None, f"{reason}, {_EXAMPLE_FAILED}")
    return _from_recorded(model, roles, found, reason)


def _from_recorded(
    model: nn.Module, roles: Roles, found: dict[str, ModuleActivation] | None, reason: str
) -> ActivationMap:
    """What a recorded pass found (``None``: no pass), the layers it did not reach from fx
    per submodule, else module order."""
    recorded = {
        name: Activation(found[name].name, found[name].param, "recorded")
        for name in roles.layers
        if found is not None and name in found
    }
    if recorded and len(recorded) == len(roles.layers):
        return ActivationMap(recorded, "recorded", reason)
    rest = _without_an_example(model, roles)
    method = f"recorded, else {rest.method}" if recorded else rest.method
    merged = {name: recorded.get(name, rest.by_layer[name]) for name in roles.layers}
    return ActivationMap(merged, method, reason)


def _traced(model: nn.Module, roles: Roles) -> ActivationMap:
    """The whole-model fx trace (raises what fx raises on an untraceable model)."""
    traced = _trace(model, set(roles.layers), roles, _LINEAR, "fx").found
    if len(traced) < len(roles.layers):  # layers the graph never calls: module order
        fallback = _by_module_order(model, roles)
        traced = {name: traced.get(name, fallback[name]) for name in roles.layers}
    return ActivationMap({name: traced[name] for name in roles.layers}, "fx")


class ActivationDetection:
    """:func:`detect_activations` for a caller that runs the model on the example anyway
    (the doctor's measured pass): the whole-model fx trace is tried at construction, and
    when the model does not trace, the caller's own forward pass is recorded (enter
    :meth:`recording` around it) instead of a pass of its own. One forward pass fewer for the
    models fx cannot trace (Hugging Face's), the same :class:`ActivationMap`.

    Example:
        >>> detection = ActivationDetection(model, batch)
        >>> with detection.recording() as recording:
        ...     output = model(batch)
        ...     if recording is not None:
        ...         recording.leaving(output)
        >>> detection.result().method
        'recorded'

    Args:
        model: any ``nn.Module``.
        example: the input the caller runs the model on (the forms of
            :func:`detect_activations`); used for a pass of its own only when no recorded
            pass completed.

    Raises:
        ConfigError: ``example`` is none of the accepted forms.
    """

    def __init__(self, model: nn.Module, example: Any) -> None:
        check_batch(example, "detect_activations: example")
        self._model = model
        self._example = example
        self._roles = Roles.of(model)
        self._reason = ""
        self._found: dict[str, ModuleActivation] | None = None
        self._traced: ActivationMap | None = None
        try:
            self._traced = _traced(model, self._roles)
        except Exception as error:  # fx raises many kinds of errors on untraceable models
            self._reason = untraceable_reason(model, error)

    @contextlib.contextmanager
    def recording(self) -> Iterator[ActivationRecording | None]:
        """Record the forward pass run inside (``None``: the model traced, nothing to
        record); the caller hands the pass's output to ``leaving``."""
        if self._traced is not None:
            yield None
            return
        recording = ActivationRecording(self._model, self._roles)
        with recording:
            yield recording
        self._found = recording.found()

    def result(self) -> ActivationMap:
        """The activation map: traced, else from the recorded pass, else as
        :func:`detect_activations` finds it (a pass of its own on the example)."""
        if self._traced is not None:
            return self._traced
        if self._found is not None:
            return _from_recorded(self._model, self._roles, self._found, self._reason)
        return _untraced(self._model, self._roles, self._example, self._reason)


def detect_activations(model: nn.Module, *, example: Any = None) -> ActivationMap:
    """The activation following every layer of ``model``, and how each was found.

    A whole-model ``torch.fx`` trace first. When the model does not trace: a recorded forward
    pass on ``example`` if one is given (it sees functional activations and every call as it
    runs), then fx per submodule, then module order, for the layers still unknown (see the
    module docstring).

    Args:
        model: any ``nn.Module``.
        example: an input batch, used only when fx cannot trace the whole model: a tensor
            (``model(example)``), a tuple or list of inputs (``model(*example)``) or a mapping
            of keyword inputs (``model(**example)``). The model runs on it once under
            ``torch.no_grad()`` and is left exactly as it was (buffers, train/eval mode, the
            global random streams).

    Returns:
        The :class:`ActivationMap`; its ``fallback_reason`` says in plain words why the whole
        model did not trace.

    Raises:
        ConfigError: ``example`` is none of the forms above.

    Warns:
        UserWarning: the model raised on ``example``; the activations are then found without it.

    Example:
        >>> found = detect_activations(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
        >>> found.method, found.by_layer["0"].name, found.by_layer["2"].name
        ('fx', 'relu', 'linear')
    """
    if example is not None:
        check_batch(example, "detect_activations: example")
    roles = Roles.of(model)
    try:
        return _traced(model, roles)
    except Exception as error:  # fx raises many kinds of errors on untraceable models
        return _untraced(model, roles, example, untraceable_reason(model, error))
