r"""A model's own initialization, run once on allocated tensors, reproducibly per module.

``Model()`` runs every layer's default init, and a Hugging Face model then runs its
``_init_weights`` over every module again: the same parameters are drawn twice (transformers
#9205, #21913, #26258; PyTorch #104187). ``materialize(factory, plan="own")`` builds on the
meta device (no draw), allocates, and then runs each module's own init exactly once:

* a Hugging Face model (a ``PreTrainedModel`` ancestor): ``owner._init_weights(module)`` for
  every module, children before parents, ``owner`` the nearest ``PreTrainedModel`` at or above
  the module (a composite model's sub-models use their own, as
  ``PreTrainedModel.initialize_weights`` dispatches them);
* any other module: its own ``reset_parameters()`` (``_reset_parameters()`` for
  ``nn.MultiheadAttention``), children before parents, as the constructors run them.

Reproducible per module: before each module's init, the global torch generators (CPU and the
CUDA devices the parameters live on) are seeded with :func:`initlab.rng.parameter_seed` of
(seed, the module's qualified name), and restored afterwards. So a module's values depend only
on the seed, its name and its own init: not on the order modules were built or registered in,
not on which other modules exist, and the same on any number of devices for tensors that are
not sharded. They differ between CPU and CUDA (different generators), as ``torch.manual_seed``
values do.

Where it cannot be per module:

* an init that draws a parameter of *another* module: Hugging Face's GPT-2 draws each
  ``c_proj.weight`` again in ``_init_weights(GPT2Attention)``, after the ``Conv1D``'s own draw.
  Children run before their parents, so the parent's draw wins, as in ``transformers``; the
  value then depends on the parent's name;
* a tied tensor is drawn by the module of its first name (GPT-2's ``transformer.wte``, not
  ``lm_head``), as ``transformers`` does; a later owner that holds other parameters too runs
  and draws it again (the later wins, as in torch);
* a parameter sharded as a DTensor is drawn by DTensor's own random-number tracker, which
  does not see these seeds: use a plan (counter streams) for sharded parameters;
* an init that writes through ``.data`` bypasses autograd's version counter, by which a
  written parameter is recognized: such a parameter is reported as not written.

A parameter that no own init writes (a bare ``nn.Parameter`` whose model initializes it
elsewhere, e.g. in a top-level ``init_weights()``) raises :class:`OwnInitError` naming it:
give it a rule (``Plan([rule(...)], default="keep")`` with ``own_init=True``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from initlab.errors import ConfigError
from initlab.plan.assignments import Assignments
from initlab.plan.plan import Plan
from initlab.rng import parameter_seed
from initlab.scale.errors import OwnInitError

__all__ = [
    "OWN_INIT",
    "OwnInitError",
    "OwnInitRun",
    "kept_parameters",
    "own_init_request",
    "own_plan",
    "run_own_init",
]

OWN_INIT = "own"


@dataclass(frozen=True)
class OwnInitRun:
    """What :func:`run_own_init` did.

    Attributes:
        modules: the qualified names of the modules whose own init ran, in the order they ran
            (children before parents); ``""`` is the model itself.
        parameters: the parameters it was asked to initialize.
    """

    modules: tuple[str, ...]
    parameters: tuple[str, ...]


def own_plan() -> Plan:
    """The plan of ``plan="own"``: no rule, every parameter kept for its module's own init."""
    return Plan([], default="keep", name=OWN_INIT, warn_unused=False)


def own_init_request(plan: Plan | str, own_init: Any) -> tuple[Plan | str, bool]:
    """``(plan, own)`` for :func:`initlab.scale.materialize`: ``"own"`` is :func:`own_plan`
    with the own init on; any other plan runs it for its kept parameters when ``own_init``."""
    if not isinstance(own_init, bool):
        raise ConfigError(f"materialize: own_init must be True or False, got {own_init!r}.")
    if plan == OWN_INIT:
        return own_plan(), True
    return plan, own_init


def kept_parameters(table: Assignments) -> list[str]:
    """The parameters ``table`` leaves to the model: no scheme, not derived (weight norm)."""
    return [row.name for row in table if row.scheme is None and not row.site.magnitude_of]


def _post_order(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Every module once, children before their parent (``torch.nn.Module.apply``'s order)."""
    seen: set[int] = set()

    def visit(prefix: str, module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
        seen.add(id(module))
        for name, child in module.named_children():
            if id(child) not in seen:
                yield from visit(f"{prefix}.{name}" if prefix else name, child)
        yield prefix, module

    yield from visit("", model)


def _is_hf_model(module: nn.Module) -> bool:
    return any(cls.__name__ == "PreTrainedModel" for cls in type(module).__mro__)


def _own_init(
    name: str, module: nn.Module, modules: dict[str, nn.Module]
) -> Callable[[], object] | None:
    """The module's own init: the nearest HF model's ``_init_weights(module)``, else its own
    ``reset_parameters``/``_reset_parameters``; ``None`` if it has none."""
    parts = name.split(".") if name else []
    for depth in range(len(parts), -1, -1):
        owner = modules.get(".".join(parts[:depth]))
        if owner is not None and _is_hf_model(owner):
            init_weights = cast(Callable[[nn.Module], object], owner._init_weights)
            return lambda: init_weights(module)
    for method in ("reset_parameters", "_reset_parameters"):
        reset = getattr(module, method, None)
        if callable(reset):
            return reset  # type: ignore[no-any-return]
    return None


@contextmanager
def _restored_generators(cuda_devices: list[int]) -> Iterator[None]:
    """The global CPU generator and those of ``cuda_devices`` as they were, after the block."""
    with torch.random.fork_rng(devices=cuda_devices):
        yield


def _seed(value: int, cuda_devices: Iterable[int]) -> None:
    torch.default_generator.manual_seed(value)
    for index in cuda_devices:
        torch.cuda.default_generators[index].manual_seed(value)


def run_own_init(
    model: nn.Module, seed: int = 0, *, parameters: Iterable[str] | None = None
) -> OwnInitRun:
    """Run the model's own init (see the module docstring) for ``parameters``, once.

    Args:
        model: the model, its parameters allocated.
        seed: the run's seed; each module's generators start at ``parameter_seed(seed, name)``.
        parameters: qualified names (default: every parameter). Only the modules that hold one
            of them, and their ancestors (whose init may draw a child's parameter), run.

    Returns:
        The modules that ran and the parameters asked for.

    Raises:
        OwnInitError: a parameter asked for that no module's own init writes.
    """
    named = dict(model.named_parameters())
    wanted = tuple(named) if parameters is None else tuple(dict.fromkeys(parameters))
    before = {name: named[name]._version for name in wanted}
    modules = dict(model.named_modules())
    cuda = sorted({p.device.index or 0 for p in named.values() if p.device.type == "cuda"})
    holders = {".".join(p.split(".")[:depth]) for p in wanted for depth in range(p.count(".") + 1)}
    ran: list[str] = []
    with torch.no_grad(), _restored_generators(cuda):
        for name, module in _post_order(model):
            if name not in holders:
                continue
            init = _own_init(name, module, modules)
            if init is not None:
                _seed(parameter_seed(seed, name), cuda)
                init()
                ran.append(name)
    unwritten = [name for name in wanted if named[name]._version == before[name]]
    if unwritten:
        shown = ", ".join(unwritten[:6]) + (", ..." if len(unwritten) > 6 else "")
        raise OwnInitError(
            f"The own init of {type(model).__name__} leaves {len(unwritten)} parameter(s) "
            f"unwritten: {shown}. No module's reset_parameters() or the model's _init_weights() "
            "draws them (or it writes through .data). Give them rules: "
            "materialize(factory, Plan([rule(...)], default='keep'), own_init=True)."
        )
    return OwnInitRun(tuple(ran), wanted)
