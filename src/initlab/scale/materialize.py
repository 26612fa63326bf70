r"""`materialize`: build a model without its default init, allocate it once, apply a plan once.

``Model()`` runs every layer's ``reset_parameters`` on the CPU, and then a custom init writes
every parameter again. :func:`materialize` runs the factory with parameters on the meta device
(no storage, so the default init costs nothing), allocates the parameters on the target device
(``to_empty``) and fills each one once from the plan:

.. code-block:: python

    plan = initlab.preset("gpt2", n_layer=48)
    model = initlab.scale.materialize(GPT, plan, dtype=torch.bfloat16)

Buffers come out as an eager build makes them. During the build only *parameters* go to the
meta device (a parameter-registration hook moves each one there as the module registers it);
buffers and every other tensor are computed for real on the CPU, where they are small:
BatchNorm's running statistics, a rotary embedding's ``inv_freq`` and cos/sin tables, causal
masks. They are then cast like the parameters (``dtype``) and copied to ``device``: the same
values as ``Model().to(device, dtype)``. A buffer that a module computes *from* a parameter
would be meta too: it is recomputed by the module's ``reset_running_stats()`` or
``reset_parameters()``, or :class:`MaterializeError` names it.

A factory whose ``__init__`` reads parameter data (``float(self.weight.norm())``) cannot run on
the meta device: :class:`MaterializeError` names the module and the way out,
``materialize(..., meta=False)``, which builds normally (every default init runs once on the
CPU, nothing is skipped) and then applies the plan.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from initlab.arguments import check_device, check_float_dtype, check_seed, describe_value
from initlab.batches import map_inputs
from initlab.errors import ConfigError
from initlab.plan.apply import FillFunction, apply_table
from initlab.plan.assignments import Assignment, Assignments
from initlab.plan.plan import Plan
from initlab.plan.presets import as_plan
from initlab.progress import Steps, steps
from initlab.rng import Stream, check_stream
from initlab.scale.errors import MaterializeError
from initlab.scale.own_init import kept_parameters, own_init_request, run_own_init
from initlab.scale.shards import _fill_any as fill_any
from initlab.scale.shards import is_dtensor

__all__ = ["MaterializeError", "materialize", "parameters_on_meta"]

Factory = Callable[[], nn.Module]
_TORCH_DIR = os.path.dirname(torch.__file__)


@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Within the block, every ``nn.Parameter`` a module registers moves to the meta device.

    Tensors that are not parameters (buffers, tables, masks) are created as usual, and the
    ``torch.nn.init`` functions return meta tensors untouched. Both are process-wide while the
    block runs (``register_module_parameter_registration_hook``, ``torch.nn.init`` attributes):
    build other models in other threads outside it.
    """

    def to_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> nn.Parameter | None:
        if param is None or param.is_meta or type(param) is not nn.Parameter:
            return None
        return nn.Parameter(param.detach().to("meta"), requires_grad=param.requires_grad)

    # torch types the hook as returning None; it may return the parameter to register instead.
    hook: Callable[..., None] = to_meta  # type: ignore[assignment]
    handle = nn.modules.module.register_module_parameter_registration_hook(hook)
    originals = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS}
    for name, function in originals.items():
        setattr(nn.init, name, _skipping_meta(function))
    try:
        yield
    finally:
        handle.remove()
        for name, function in originals.items():
            setattr(nn.init, name, function)


# The default inits of torch's layers; on a meta tensor they are skipped outright (a random op
# on a meta tensor still costs a dispatch, and its first call imports torch._dynamo: ~1-2 s).
_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_",
                   "eye_", "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
                   "kaiming_normal_", "orthogonal_", "sparse_")  # fmt: skip


def _skipping_meta(function: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    @functools.wraps(function)
    def init(tensor: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return tensor if tensor.is_meta else function(tensor, *args, **kwargs)

    return init


def materialize(
    factory_or_model: Factory | nn.Module,
    plan: Plan | str,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    seed: int = 0,
    *,
    meta: bool = True,
    stream: Stream = "counter",
    example: Any = None,
    progress: bool | None = None,
    own_init: bool = False,
) -> nn.Module:
    """Build a model with no default init, allocate it on ``device`` and apply ``plan`` once.

    Args:
        factory_or_model: a zero-argument callable returning the model (``GPT`` or
            ``lambda: GPT(config)``), or a model whose parameters are on the meta device (for
            instance built under ``torch.device("meta")`` and sharded with ``fully_shard``).
        plan: the plan to apply (:class:`initlab.Plan`), or a preset name (``"kaiming"``,
            built for the model as :func:`initlab.init_model` does) or ``"auto"``, or
            ``"own"``: the model's own init, once (:mod:`initlab.scale.own_init`).
        device: where the parameters live.
        dtype: floating dtype for parameters and floating buffers (as ``Module.to(dtype)``).
        seed: the run's seed; with ``stream="counter"`` the values equal ``plan.apply(Model(),
            seed)`` on an eagerly built model, on any device count.
        meta: ``False`` builds eagerly instead (the fallback for factories that read parameter
            data in ``__init__``): every default init runs once, then the plan.
        stream: ``"counter"`` or ``"generator"`` (see :meth:`initlab.Plan.apply`).
        example: an input batch for the plan's activation detection (see
            :meth:`initlab.Plan.resolve`); on a meta-device build the model runs on a meta copy
            of it (shapes only, nothing computed), so pass the same batch as to ``apply`` for
            the same table.
        progress: a bar of the parameters filled, on standard error: ``None`` when it is a
            terminal (see :func:`initlab.progress.set_default`), ``True`` always, ``False``
            never.
        own_init: the parameters ``plan`` keeps get the model's own init, once, seeded per
            module (:mod:`initlab.scale.own_init`); the plan's rules override the rest.

    Returns:
        The model, on ``device``, initialized.

    Raises:
        MaterializeError: the factory failed on the meta device (the message names the module
            and suggests ``meta=False``), or a kept parameter or a buffer has no way to get a
            value.
        OwnInitError: with the own init, a kept parameter that no module's own init writes.

    Example:
        >>> model = materialize(lambda: nn.Linear(4, 2), initlab.preset("kaiming"), seed=0)
    """
    check_stream(stream)
    target = check_device("materialize", device)
    check_float_dtype("materialize", dtype)
    seed = check_seed("materialize", seed)
    if not isinstance(plan, Plan | str):
        raise ConfigError(
            f"materialize: plan must be an initlab.Plan or a preset name such as 'kaiming', "
            f"got {describe_value(plan)}."
        )
    plan, own = own_init_request(plan, own_init)
    model = _model(factory_or_model, meta)
    plan = as_plan(plan, model)
    if dtype is not None:
        model.to(dtype=dtype)
    on_meta = any(p.is_meta for p in model.parameters())
    retry = False
    if not on_meta:
        table = plan.resolve(model, example=example)
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            table = plan.resolve(model, example=_to_meta(example))
        recorded = table.activation_method == "fx" or table.activation_method.startswith(
            "recorded"
        )
        retry = example is not None and not recorded
        for warning in [] if retry else caught:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    if any(p.is_meta for p in model.parameters()) or any(b.is_meta for b in model.buffers()):
        _allocate(model, target, table, reset_kept=not own)
        if retry:
            # The model did not run on a meta copy of the example (it reads values: .item(),
            # a tensor made on the CPU): run the recording on the allocated model instead, its
            # parameters zeroed first so that no uninitialized memory reaches its forward.
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.zero_()
            table = plan.resolve(model, example=example)
    else:
        model.to(device=target)
    if own:
        run_own_init(model, seed, parameters=kept_parameters(table))
    drawn = sum(row.scheme is not None for row in table)
    with steps("materialize: filling parameters", drawn, enabled=progress) as bar:
        apply_table(model, table, seed, stream=stream, fill=_counted_fill(bar))
    return model


def _counted_fill(bar: Steps) -> FillFunction:
    """:func:`~initlab.scale.shards.initialize`'s fill (a DTensor's shard, or a tensor
    whole), each parameter counted on ``bar``."""
    if not bar.shown:
        return fill_any

    def fill(
        tensor: torch.Tensor, row: Assignment, seed: int, *, stream: Stream = "counter"
    ) -> None:
        fill_any(tensor, row, seed, stream=stream)
        bar.advance()

    return fill


def _model(factory_or_model: Factory | nn.Module, meta: bool) -> nn.Module:
    """The model to fill: the one given, or the factory's, built on the meta device if asked."""
    if isinstance(factory_or_model, nn.Module):
        return factory_or_model
    if not callable(factory_or_model):
        raise ConfigError(
            "materialize: factory_or_model must be a zero-argument callable returning the "
            f"model (a class, or lambda: GPT(config)) or a meta-device model, got "
            f"{describe_value(factory_or_model)}."
        )
    return _build_on_meta(factory_or_model) if meta else factory_or_model()


def _to_meta(example: Any) -> Any:
    """``example`` with every tensor input replaced by a meta tensor of its shape and dtype."""
    if example is None:
        return None
    return map_inputs(example, lambda value: value.to("meta") if torch.is_tensor(value) else value)


def _build_on_meta(factory: Factory) -> nn.Module:
    try:
        with parameters_on_meta():
            model = factory()
    except Exception as error:
        _raise_if_factory_fails(factory, error)
        raise MaterializeError(
            f"Building the model on the meta device failed in {_failing_module(error)}: "
            f"{type(error).__name__}: {error}. The module reads parameter data while it is "
            "built, which the meta device does not hold. Build it normally with "
            "materialize(..., meta=False): every default init then runs once, then the plan."
        ) from error
    if not isinstance(model, nn.Module):
        raise MaterializeError(
            f"The factory returned a {type(model).__name__}, not an nn.Module. Pass the model "
            "class or a function that builds the model, e.g. lambda: GPT(config)."
        )
    return model


def _raise_if_factory_fails(factory: Factory, error: Exception) -> None:
    """Raise the factory's own error when the failure has nothing to do with the meta device.

    A meta-device build fails either because a module reads parameter data while it is built
    (torch's errors then speak of meta tensors: ``Tensor.item() cannot be called on meta
    tensors``, ``Cannot copy out of meta tensor``) or because the factory itself is broken (a
    wrong argument, a typo). Building again off the meta device would tell the two apart for
    sure, at the cost of a full eager build of what may be a very large model, so the error's
    own words decide.
    """
    if "meta" in str(error).lower():
        return
    name = getattr(factory, "__qualname__", type(factory).__name__)
    raise MaterializeError(
        f"materialize: the factory raised {type(error).__name__}: {error} (in "
        f"{_failing_module(error)}; the factory is {name}). Nothing in it concerns the meta "
        "device, so the fault is most likely in the factory or its arguments: fix the call so "
        f"that {name}() builds the model (or try materialize(..., meta=False))."
    ) from error


def _failing_module(error: BaseException) -> str:
    """The innermost module method outside torch on the traceback: ``Class.method (file:line)``."""
    where = "the factory"
    trace = error.__traceback__
    while trace is not None:
        frame = trace.tb_frame
        owner = frame.f_locals.get("self")
        code = frame.f_code
        if isinstance(owner, nn.Module) and not code.co_filename.startswith(_TORCH_DIR):
            file = os.path.basename(code.co_filename)
            where = f"{type(owner).__name__}.{code.co_name} ({file}:{trace.tb_lineno})"
        trace = trace.tb_next
    return where


def _allocate(
    model: nn.Module, device: torch.device, table: Assignments, *, reset_kept: bool = True
) -> None:
    """Parameters get storage on ``device``; buffers keep the values the build computed; kept
    parameters get their modules' defaults unless ``reset_kept`` is off (the own init)."""
    modules = dict(model.named_modules(remove_duplicate=False))
    kept = [
        row.name
        for row in table
        if row.scheme is None and not row.site.magnitude_of and _is_meta(model, row.name)
    ]
    if any(is_dtensor(p) for p in model.parameters()):
        lost = _to_empty(model, modules, device)  # FSDP2 allocates its shards in to_empty
    else:
        lost = _move(modules, device)
    with torch.no_grad():
        _reset(modules, lost, ("reset_running_stats", "reset_parameters"), "buffer")
        _reset(modules, kept if reset_kept else [], ("reset_parameters",), "parameter")
    if kept and reset_kept:
        warnings.warn(
            f"materialize: the plan keeps {', '.join(kept)}, which have no value after a "
            "meta-device build; they got their module's own init (its reset_parameters(), or "
            "the model's _init_weights for Hugging Face models). Add a rule for them to choose "
            "their values.",
            stacklevel=3,
        )


def _move(modules: dict[str, nn.Module], device: torch.device) -> list[str]:
    """Empty storage for meta parameters (ties kept), buffers copied; returns lost buffers."""
    moved: dict[int, torch.Tensor] = {}
    lost: list[str] = []
    for owner, module in modules.items():
        for name, param in module._parameters.items():
            if param is not None and id(param) not in moved:
                data = _empty_like(param, device) if param.is_meta else param.detach().to(device)
                moved[id(param)] = nn.Parameter(data, requires_grad=param.requires_grad)
            if param is not None:
                module._parameters[name] = moved[id(param)]  # type: ignore[assignment]
        for name, buffer in module._buffers.items():
            if buffer is not None and id(buffer) not in moved:
                if buffer.is_meta:
                    lost.append(f"{owner}.{name}" if owner else name)
                moved[id(buffer)] = (
                    _empty_like(buffer, device) if buffer.is_meta else buffer.to(device)
                )
            if buffer is not None:
                module._buffers[name] = moved[id(buffer)]
    return lost


def _empty_like(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    # torch.empty_like on a meta tensor runs a Python reference that imports sympy (~1 s).
    return torch.empty(tuple(tensor.shape), dtype=tensor.dtype, device=device)


def _to_empty(model: nn.Module, modules: dict[str, nn.Module], device: torch.device) -> list[str]:
    """``model.to_empty`` (which FSDP2 hooks), then ties and buffer values restored."""
    buffers = {
        (owner, name): tensor
        for owner, module in modules.items()
        for name, tensor in module._buffers.items()
        if tensor is not None
    }
    shared: dict[int, list[tuple[nn.Module, str]]] = {}
    for module in modules.values():
        for name, param in module._parameters.items():
            if param is not None:
                shared.setdefault(id(param), []).append((module, name))
    model.to_empty(device=device)
    for places in shared.values():  # to_empty gives each place its own tensor: tie them again
        first, name = places[0]
        for module, other in places[1:]:
            module._parameters[other] = first._parameters[name]
    lost: list[str] = []
    for (owner, name), saved in buffers.items():
        current = modules[owner]._buffers[name]
        if saved.is_meta:
            lost.append(f"{owner}.{name}" if owner else name)
        elif current is not None:
            current.copy_(saved)
    return lost


def _is_meta(model: nn.Module, name: str) -> bool:
    return bool(model.get_parameter(name).is_meta)


def _reset(
    modules: dict[str, nn.Module], names: list[str], hooks: tuple[str, ...], kind: str
) -> None:
    """Compute the values of ``names`` again: each owning module's first available ``hooks``
    method, else the ``_init_weights(module)`` of its nearest ancestor that has one (Hugging
    Face models initialize their own parameters so, e.g. ViT's ``cls_token``, Mamba's
    ``A_log``); none at all is an error."""
    owners = {name.rpartition(".")[0] for name in names}
    for owner in sorted(owners):
        module = modules[owner]
        reset = next((getattr(module, h) for h in hooks if hasattr(module, h)), None)
        if reset is None:
            reset = _ancestor_init(modules, owner)
        if reset is None:
            inside = [name for name in names if name.rpartition(".")[0] == owner]
            raise MaterializeError(
                f"{kind.capitalize()} {', '.join(inside)} has no value after a meta-device "
                f"build and module {owner or 'the model'} ({type(module).__name__}) has no "
                f"{' or '.join(h + '()' for h in hooks)} to compute it. Add a rule for it, or "
                "build normally with materialize(..., meta=False)."
            )
        reset()


def _ancestor_init(modules: dict[str, nn.Module], owner: str) -> Callable[[], object] | None:
    """``ancestor._init_weights(module)`` for the nearest ancestor of ``owner`` defining it."""
    parts = owner.split(".") if owner else []
    for depth in range(len(parts), -1, -1):
        ancestor = modules.get(".".join(parts[:depth]))
        init_weights = getattr(ancestor, "_init_weights", None)
        if callable(init_weights):
            module = modules[owner]
            return lambda: init_weights(module)
    return None
