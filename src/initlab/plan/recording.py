"""Activations recorded from one forward pass on an example, for models ``torch.fx`` cannot trace.

The model runs once on the example under ``torch.no_grad()``, and a recorder sees every call in
the order it runs: forward hooks on the layers, the activation modules and the norms, and a
:class:`torch.overrides.TorchFunctionMode` for everything functional (``F.silu``,
``torch.tanh``, ``x.relu()``, ``F.gelu(approximate="tanh")``, views, sums...).

Each call of a layer marks its output tensors. A mark travels through the calls that pass data on
(:func:`initlab.plan.dataflow.passes_through`: views, casts, dropout, residual sums, norms,
pooling) and decides that call's activation at the first of:

* an activation call or module: that activation;
* another layer (called as a module, or its weight used by a function: Mamba's
  ``self.dt_proj.weight @ x``): ``linear``;
* the model's output: ``linear``.

A mark that reaches any other call (a product of two signals such as LLaMA's
``silu(gate) * up``, attention, a reduction) ends there, undecided. A layer's first decided call
gives its activation, and ``linear`` when none is decided. What runs inside a layer, an
activation module or a norm is its own business and is not followed (``F.linear`` inside
``nn.Linear``; ``F.silu`` inside Hugging Face's ``SiLUActivation``).

The model is left as it was: hooks are removed even on error, buffers (BatchNorm's running
statistics) are restored, the train/eval mode is not touched, and the global random streams are
forked so that dropout in the pass does not advance them.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, Literal, TypeVar

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from initlab.batches import call_model
from initlab.layers import ModuleActivation
from initlab.plan.buffers import buffers_restored
from initlab.plan.dataflow import (
    Roles,
    call_activation,
    call_name,
    is_leaf_layer,
    passes_through,
)

__all__ = ["ActivationRecording", "record_activations", "unrecorded"]

_LINEAR = ModuleActivation("linear", None)
# Calls that read a layer's weight without applying the layer (a tied input embedding).
_NOT_A_LAYER_CALL = frozenset({"embedding", "embedding_bag"})
_NO_MARKS: frozenset[int] = frozenset()

UnitKind = Literal["layer", "activation", "pass"]
Label = TypeVar("Label", int, str)


class _Labels(Generic[Label]):
    """Labels on tensors, by identity (a tensor's ``==`` is elementwise). A label goes when its
    tensor is freed, so the pass keeps no tensor alive and a reused ``id`` starts clean."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref[torch.Tensor], frozenset[Label]]] = {}

    def get(self, tensor: torch.Tensor) -> frozenset[Label]:
        entry = self._entries.get(id(tensor))
        return entry[1] if entry is not None and entry[0]() is tensor else frozenset()

    def union(self, tensors: list[torch.Tensor]) -> frozenset[Label]:
        found = [labels for tensor in tensors if (labels := self.get(tensor))]
        return found[0] if len(found) == 1 else frozenset().union(*found)

    def set(self, tensors: list[torch.Tensor], labels: frozenset[Label]) -> None:
        for tensor in tensors:
            key = id(tensor)
            if not labels:
                self._entries.pop(key, None)
                continue
            entry = self._entries.get(key)
            if entry is None or entry[0]() is not tensor:
                entry = (weakref.ref(tensor, partial(self._forget, key)), labels)
            self._entries[key] = (entry[0], labels)

    def _forget(self, key: int, reference: weakref.ref[torch.Tensor]) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry[0] is reference:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()


def _tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in a call's arguments or result (nested tuples, lists and mappings)."""
    found: list[torch.Tensor] = []
    _collect(value, found, 4)
    return found


def _collect(value: Any, found: list[torch.Tensor], depth: int) -> None:
    # Runs for every call of the recorded pass: the common cases are tested first.
    if isinstance(value, torch.Tensor):
        found.append(value)
    elif not depth:
        return
    elif isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, torch.Tensor):
                found.append(item)
            elif isinstance(item, list | tuple | dict):
                _collect(item, found, depth - 1)
    elif isinstance(value, dict | Mapping):
        for item in value.values():
            _collect(item, found, depth - 1)


@dataclass
class _Call:
    """One call of a layer: through its module, or by a function given its weight."""

    layer: str
    through_module: bool
    found: ModuleActivation | None = None


class _Recorder(TorchFunctionMode):
    """Follows each layer call's output to its activation while the model runs."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[_Call] = []
        self.marks: _Labels[int] = _Labels()  # tensor -> the layer calls it comes from
        self.owners: _Labels[str] = _Labels()  # a weight (or its view) -> its layers
        self.depth = 0  # > 0 inside a layer, activation module or norm: not followed

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if self.depth:  # inside a layer, activation module or norm
            return func(*args, **kwargs)
        result = func(*args, **kwargs)
        self._follow(func, args, kwargs, result)
        return result

    def _follow(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], result: Any
    ) -> None:
        inputs = _tensors((args, kwargs))
        marks = self.marks.union(inputs)
        owners = self.owners.union(inputs)
        if not marks and not owners:
            return
        name = call_name(func)
        outputs = _tensors(result)
        activation = call_activation(name, args, kwargs)
        if activation is not None:
            self._decide(marks, activation)
            self.marks.set(outputs, _NO_MARKS)
        elif passes_through(name, len(inputs)):
            self.marks.set(outputs, marks)
            if owners and len(inputs) == 1:  # a view or cast of a weight is still the weight
                self.owners.set(outputs, owners)
        elif owners and name not in _NOT_A_LAYER_CALL:  # a layer applied through its weight
            self._decide(marks, _LINEAR)
            calls = frozenset(self._new_call(layer, through_module=False) for layer in owners)
            self.marks.set(outputs, calls)
        else:
            self.marks.set(outputs, _NO_MARKS)

    def _decide(self, marks: frozenset[int], found: ModuleActivation) -> None:
        for index in marks:
            if self.calls[index].found is None:
                self.calls[index].found = found

    def _new_call(self, layer: str, *, through_module: bool) -> int:
        self.calls.append(_Call(layer, through_module))
        return len(self.calls) - 1

    def before_unit(
        self,
        kind: UnitKind,
        activation: ModuleActivation | None,
        module: nn.Module,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        """Forward pre-hook of a layer, an activation module or a norm (or identity)."""
        if self.depth == 0 and kind != "pass":
            self._decide(self.marks.union(_tensors((args, kwargs))), activation or _LINEAR)
        self.depth += 1

    def after_unit(
        self,
        kind: UnitKind,
        layer: str,
        module: nn.Module,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        output: Any,
    ) -> None:
        """Forward hook of a layer (marks its output), an activation module (the path ends) or
        a norm or identity (passes the marks on)."""
        self.depth -= 1
        if self.depth:
            return
        outputs = _tensors(output)
        if kind == "layer":
            self.marks.set(outputs, frozenset({self._new_call(layer, through_module=True)}))
        elif kind == "pass":
            self.marks.set(outputs, self.marks.union(_tensors((args, kwargs))))
        else:
            self.marks.set(outputs, _NO_MARKS)

    def after_container(
        self, layer: str, module: nn.Module, args: tuple[Any, ...], output: Any
    ) -> None:
        """Forward hook of a layer that has submodules (``nn.MultiheadAttention``, Mamba's
        mixer): its inside was followed; its output is also one call of it."""
        if self.depth:
            return
        call = self._new_call(layer, through_module=True)
        for tensor in _tensors(output):
            self.marks.set([tensor], self.marks.get(tensor) | {call})

    def leaving(self, output: Any) -> None:
        """The model's output: what reaches it undecided is followed by ``linear``."""
        self._decide(self.marks.union(_tensors(output)), _LINEAR)

    def found(self, leaf_layers: set[str]) -> dict[str, ModuleActivation]:
        """Each called layer's activation: its first decided call.

        A leaf layer's own calls come before uses of its weight elsewhere (a tied weight): the
        weight counts as a call only for a layer that is never called itself.
        """
        calls_of: dict[str, list[_Call]] = {}
        for call in self.calls:
            calls_of.setdefault(call.layer, []).append(call)
        result: dict[str, ModuleActivation] = {}
        for layer, calls in calls_of.items():
            own = [call for call in calls if call.through_module]
            if layer in leaf_layers and own:
                calls = own
            result[layer] = next((call.found for call in calls if call.found), _LINEAR)
        return result


@contextlib.contextmanager
def _hooked(model: nn.Module, roles: Roles, recorder: _Recorder) -> Iterator[set[str]]:
    """Hooks on the layers, activation modules and norms; yields the leaf layers' names."""
    layer_set = set(roles.layers)
    handles: list[RemovableHandle] = []
    leaf_layers: set[str] = set()

    def hook_unit(
        module: nn.Module, kind: UnitKind, name: str, found: ModuleActivation | None
    ) -> None:
        before = partial(recorder.before_unit, kind, found)
        after = partial(recorder.after_unit, kind, name)
        handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
        handles.append(module.register_forward_hook(after, with_kwargs=True))

    try:
        for name, module in model.named_modules():
            if name in layer_set:
                for parameter in module.parameters(recurse=False):
                    if parameter.dim() >= 2:
                        owners = recorder.owners.get(parameter) | {name}
                        recorder.owners.set([parameter], owners)
                if not is_leaf_layer(module):
                    after = partial(recorder.after_container, name)  # reads the output only
                    handles.append(module.register_forward_hook(after))
                else:
                    leaf_layers.add(name)
                    hook_unit(module, "layer", name, None)
            elif (activation := roles.activation(module)) is not None:
                hook_unit(module, "activation", name, activation)
            elif id(module) in roles.pass_through:
                hook_unit(module, "pass", name, None)
        yield leaf_layers
    finally:
        for handle in handles:
            handle.remove()


@dataclass(frozen=True)
class _Accelerators:
    """The accelerator devices whose random streams a forward pass may use.

    Attributes:
        device_type: ``"cuda"`` or ``"xpu"`` (``"cuda"`` when there are none).
        indices: the device indices.
    """

    device_type: str
    indices: list[int]


def _accelerators(model: nn.Module, example: Any) -> _Accelerators:
    """The accelerator type and device indices whose random streams the pass may use."""
    tensors = [*model.parameters(), *model.buffers(), *_tensors(example)]
    for device_type in ("cuda", "xpu"):
        indices = sorted({t.device.index or 0 for t in tensors if t.device.type == device_type})
        if indices:
            return _Accelerators(device_type, indices)
    return _Accelerators("cuda", [])


@contextlib.contextmanager
def _left_as_it_was(model: nn.Module, example: Any) -> Iterator[None]:
    """Restores every module's buffers (the tensors and their values) and train/eval flags, and
    forks the random streams, around a forward pass."""
    modules = list(model.modules())
    modes = [module.training for module in modules]
    accelerators = _accelerators(model, example)
    try:
        with (
            buffers_restored(model),
            torch.random.fork_rng(
                devices=accelerators.indices, device_type=accelerators.device_type
            ),
        ):
            yield
    finally:
        for module, training in zip(modules, modes, strict=True):
            module.training = training


class ActivationRecording:
    """Records the activation after each layer during a forward pass its caller runs.

    For a caller that runs the model anyway (the doctor's measured pass): entering installs
    the hooks and the function mode, leaving removes them; :meth:`leaving` marks the model's
    output, :meth:`found` gives what :func:`record_activations` returns. The model is not
    otherwise touched: restoring buffers and random streams is the caller's business. Torch
    calls the caller makes inside hooks of its own are followed too, unless made inside
    :func:`unrecorded`.

    Example:
        >>> with ActivationRecording(model) as recording:
        ...     output = model(batch)
        ...     recording.leaving(output)
        >>> recording.found()["fc1"].name
        'gelu'

    Args:
        model: the model.
        roles: ``Roles.of(model)``, when the caller has it already.
    """

    def __init__(self, model: nn.Module, roles: Roles | None = None) -> None:
        self._model = model
        self._roles = Roles.of(model) if roles is None else roles
        self._recorder = _Recorder()
        self._leaf_layers: set[str] = set()
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> ActivationRecording:
        with contextlib.ExitStack() as stack:
            hooked = _hooked(self._model, self._roles, self._recorder)
            self._leaf_layers = stack.enter_context(hooked)
            stack.enter_context(self._recorder)
            _ACTIVE.append(self._recorder)
            stack.callback(_ACTIVE.remove, self._recorder)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def leaving(self, output: Any) -> None:
        """The model's output: what reaches it undecided is followed by ``linear``."""
        self._recorder.leaving(output)

    def found(self) -> dict[str, ModuleActivation]:
        """``(canonical activation, parameter)`` by layer name, for the layers the pass
        called (as modules or through their weight); a layer it never reached is absent."""
        found = self._recorder.found(self._leaf_layers)
        self._recorder.marks.clear()
        self._recorder.owners.clear()
        return found


# The recorders of the passes running now (unrecorded() pauses them).
_ACTIVE: list[_Recorder] = []


class _Paused:
    """Raises the depth of every running recorder while open (see :func:`unrecorded`)."""

    def __enter__(self) -> None:
        for recorder in _ACTIVE:
            recorder.depth += 1

    def __exit__(self, *exc_info: object) -> None:
        for recorder in _ACTIVE:
            recorder.depth -= 1


_PAUSED = _Paused()


def unrecorded() -> contextlib.AbstractContextManager[None]:
    """A context in which torch calls are not followed by any :class:`ActivationRecording`
    running now: the reductions a probe's hook makes on the outputs it observes are no part
    of the model's data flow. Cheap (no generator) when nothing is recorded."""
    return _PAUSED


def record_activations(
    model: nn.Module, example: Any, roles: Roles | None = None
) -> dict[str, ModuleActivation]:
    """Run ``model`` once on ``example`` and record the activation after each layer it calls.

    Args:
        model: the model, left exactly as it was (see the module docstring).
        example: a tensor (``model(example)``), a tuple or list (``model(*example)``) or a
            mapping (``model(**example)``).
        roles: ``Roles.of(model)``, when the caller has it already.

    Returns:
        ``(canonical activation, parameter)`` by layer name, for the layers the pass called
        (as modules or through their weight); a layer it never reached is absent.

    Raises:
        Whatever the model raises on the example.
    """
    recording = ActivationRecording(model, roles)
    with _left_as_it_was(model, example):
        with torch.no_grad(), recording:
            output = call_model(model, example)
        recording.leaving(output)
    return recording.found()
