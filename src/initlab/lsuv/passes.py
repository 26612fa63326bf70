"""The two forward passes of an LSUV run (see :mod:`initlab.lsuv`).

The first finds the layers that run, in the order their first calls end, and whether their
outputs can be measured, before anything is changed. The second fits every layer inside the
forward itself: a hook on each layer's first call rescales its weight on the output that call
just produced (:func:`~initlab.lsuv.rescale.fit_layer`) and hands the rescaled output on, so
every later layer sees the final outputs of the layers before it, as a fresh pass would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn
from torch.utils.hooks import RemovableHandle

from initlab.batches import Batch, call_model, describe
from initlab.errors import InitlabError
from initlab.lsuv.rescale import Fitted, Settings, fit_layer
from initlab.lsuv.targets import Target, unmeasurable

__all__ = ["first_calls", "fit_in_one_pass", "run_model"]


def run_model(model: nn.Module, batch: Batch) -> None:
    """One forward pass on the batch; a model that fails on it is the user's error."""
    try:
        call_model(model, batch)
    except Exception as error:
        raise InitlabError(
            f"lsuv: the model failed on the batch ({describe(batch)}): "
            f"{type(error).__name__}: {error}"
        ) from None


def first_calls(model: nn.Module, batch: Batch, names: list[str]) -> dict[str, str]:
    """The modules in ``names`` that run, in the order of their first call's end (one
    forward pass), each with :func:`~initlab.lsuv.targets.unmeasurable` of its first output."""
    found: dict[str, str] = {}
    if not names:
        return found
    modules = dict(model.named_modules())

    def recorder(name: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if name not in found:
                found[name] = unmeasurable(output)

        return hook

    handles = [modules[name].register_forward_hook(recorder(name)) for name in names]
    try:
        run_model(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    return found


class _FittingPass:
    """The hooks of the fitting pass and what they fitted."""

    def __init__(self, settings: Settings, on_fitted: Callable[[str], None] | None) -> None:
        self.settings = settings
        self.on_fitted = on_fitted
        self.fitted: dict[str, Fitted] = {}
        self._inputs: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}
        self._calling: set[str] = set()  # layers being called again by their own fit

    def hooks(self, target: Target) -> list[RemovableHandle]:
        """A pre-hook keeping the inputs of the layer's first call (as the caller gave them,
        before any pre-hook of the user's) and a hook fitting the layer on its output."""
        name, module = target.name, target.module

        def keep_inputs(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if name not in self.fitted and name not in self._calling:
                self._inputs[name] = (args, kwargs)

        def fit(_module: nn.Module, _args: Any, output: Any) -> Any:
            if name in self.fitted or name in self._calling or unmeasurable(output):
                return None
            args, kwargs = self._inputs.pop(name)
            self._calling.add(name)
            try:
                result = fit_layer(target, output, lambda: module(*args, **kwargs), self.settings)
            finally:
                self._calling.discard(name)
            self.fitted[name] = result
            if self.on_fitted is not None:
                self.on_fitted(name)
            return result.output

        return [
            module.register_forward_pre_hook(keep_inputs, prepend=True, with_kwargs=True),
            module.register_forward_hook(fit),
        ]


def fit_in_one_pass(
    model: nn.Module,
    batch: Batch,
    layers: list[Target],
    settings: Settings,
    *,
    on_fitted: Callable[[str], None] | None = None,
) -> dict[str, Fitted]:
    """Fit ``layers`` in one forward pass, each on its first call; a layer the pass did not
    reach (data-dependent control flow) is missing from the result. ``on_fitted(name)`` is
    called after each layer is fitted."""
    fitting = _FittingPass(settings, on_fitted)
    handles = [handle for target in layers for handle in fitting.hooks(target)]
    try:
        run_model(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    return fitting.fitted
