"""The coordinate check: build a model at several widths, train each a few steps, measure every
layer's output scale, and fit how it scales with width.

For each width :math:`n` the factory builds the model, :func:`initlab.parametrize.parametrize`
sets it up (its Plan initializes it; its parameter groups carry the per-parameter learning
rates), and a plain loop trains it ``steps`` steps on the same batches at every width. Before
the first step and after each one, a fixed probe batch (the first training batch) goes through
the model in eval mode and forward hooks record the output of every leaf module that holds
parameters, and the model's output. :class:`~initlab.width.coordinates.CoordCheck` holds the
scales and fits :math:`\\mathrm{rms} \\propto n^a` per layer and step.

Under the standard parametrization (std g/sqrt(fan_in), one learning rate) with Adam, the
output logits' change after one step grows like :math:`n`: every readout weight moves by about
the learning rate, coherently with the hidden activations, so
:math:`\\Delta y = \\Delta W h \\sim \\eta\\, n`. Under muP the readout's learning rate (or
multiplier) carries the :math:`1/n` and the curves are flat (Yang et al., "Tensor Programs V",
2022, Figure 5 and appendix D.1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
from torch import nn
from torch.nn import functional

from initlab.arguments import check_seed
from initlab.errors import ConfigError, UnknownNameError, did_you_mean
from initlab.parametrize import parametrize
from initlab.train.data import Dataset, Split
from initlab.train.datasets import load_dataset
from initlab.width.coordinates import CoordCheck, CoordinateRecord

__all__ = ["DEFAULT_LEARNING_RATES", "OUTPUT", "Optimizer", "coord_check"]

Optimizer = Literal["adam", "sgd"]
# Large enough that within a few steps the updates dominate what the initial weights do to them
# (under muP the readout's W_0 dh ~ n^-1/2 fades behind dW h ~ 1), so a flat line reads flat.
DEFAULT_LEARNING_RATES: dict[str, float] = {"adam": 1e-2, "sgd": 0.2}
OUTPUT = "output"  # the name of the model's output when no leaf module returns it


@dataclass(frozen=True)
class _Probe:
    """One forward pass on the probe batch: each layer's output (float64 copies) in the order
    the pass reached them, and which layer returned the model's output."""

    outputs: dict[str, torch.Tensor]
    output_layer: str


def _first_tensor(value: Any) -> torch.Tensor | None:
    """A module's output tensor: itself, or the first tensor of a tuple/list (an RNN's)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return next((v for v in value if isinstance(v, torch.Tensor)), None)
    return None


def _model_output(returned: Any) -> torch.Tensor:
    """The model's output tensor (the first of a tuple), or a one-line error."""
    output = _first_tensor(returned)
    if output is None:
        raise ConfigError(
            f"coord_check: the model returned a {type(returned).__name__}, not a tensor; wrap "
            "it so that forward returns the logits."
        )
    return output


def _measured_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf modules that hold parameters of their own (a Linear, a norm, an embedding...)."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if name
        and next(module.children(), None) is None
        and next(module.parameters(recurse=False), None) is not None
    ]


def _probe(model: nn.Module, batch: torch.Tensor) -> _Probe:
    """Run ``batch`` through ``model`` (eval mode, no gradients) recording every measured
    layer's output.

    A layer called twice keeps its last output. Outputs are copied as they are produced, so an
    in-place activation after a layer does not change what was recorded.
    """
    produced: dict[str, torch.Tensor] = {}  # the tensors themselves, alive for the `is` below
    copies: dict[str, torch.Tensor] = {}

    def recorder(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def record(module: nn.Module, inputs: Any, output: Any) -> None:
            tensor = _first_tensor(output)
            if tensor is not None and tensor.is_floating_point():
                produced[name] = tensor
                copies[name] = tensor.detach().to(torch.float64, copy=True)

        return record

    handles = [m.register_forward_hook(recorder(n)) for n, m in _measured_modules(model)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            returned = model(batch)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    output = _model_output(returned)
    layer = next((name for name, tensor in produced.items() if tensor is output), None)
    if layer is None:
        layer = OUTPUT
        copies[OUTPUT] = output.detach().to(torch.float64, copy=True)
    return _Probe(copies, layer)


def _rms(tensor: torch.Tensor) -> float:
    return float(torch.sqrt(torch.mean(tensor.square())))


@dataclass(frozen=True)
class _Setup:
    """What is the same at every width: the training split, the batches, the settings."""

    split: Split
    batches: list[torch.Tensor]
    steps: int
    optimizer: Optimizer
    lr: float
    parametrization: str
    seed: int


def _loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for class indices, mean squared error for float targets."""
    if target.is_floating_point():
        return functional.mse_loss(prediction, target)
    return functional.cross_entropy(prediction, target)


def _build(factory: Callable[[int], nn.Module], width: int, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # a factory's own init draws from torch's global stream
        model = factory(width)
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"coord_check: the factory returned a {type(model).__name__} for width {width}, "
            "not a torch.nn.Module."
        )
    return model


def _optimizer(model: nn.Module, base: nn.Module, setup: _Setup) -> torch.optim.Optimizer:
    """Initialize ``model`` by its parametrization's Plan; the optimizer on its groups."""
    chosen = parametrize(model, setup.parametrization, base=base, optimizer=setup.optimizer)
    chosen.plan.apply(model, seed=setup.seed)
    groups: Any = chosen.param_groups(setup.lr)
    if setup.optimizer == "adam":
        return torch.optim.Adam(groups, lr=setup.lr)
    return torch.optim.SGD(groups, lr=setup.lr)


def _trace_width(model: nn.Module, base: nn.Module, setup: _Setup) -> list[_Probe]:
    """The probe at init and after each of ``setup.steps`` training steps."""
    optimizer = _optimizer(model, base, setup)
    probe_batch = setup.split.x[setup.batches[0]]
    probes = [_probe(model, probe_batch)]
    model.train()
    for indices in setup.batches:
        optimizer.zero_grad(set_to_none=True)
        prediction = _model_output(model(setup.split.x[indices]))
        loss = _loss(prediction, setup.split.y[indices])
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        probes.append(_probe(model, probe_batch))
    return probes


def _records(width: int, layers: Sequence[str], probes: list[_Probe]) -> list[CoordinateRecord]:
    start = probes[0].outputs
    missing = [layer for layer in layers if any(layer not in p.outputs for p in probes)]
    if missing:
        raise ConfigError(
            f"coord_check: at width {width} the model has no layer {missing[0]!r} (its forward "
            "did not reach it), which the smallest width has; the factory must build the "
            "same layers at every width."
        )
    return [
        CoordinateRecord(
            layer=layer,
            width=width,
            step=step,
            rms=_rms(probe.outputs[layer]),
            delta_rms=_rms(probe.outputs[layer] - start[layer]),
        )
        for step, probe in enumerate(probes)
        for layer in layers
    ]


def _training_split(data: Dataset | Split | str) -> Split:
    if isinstance(data, str):
        return load_dataset(data).train
    if isinstance(data, Dataset):
        return data.train
    if isinstance(data, Split):
        return data
    raise ConfigError(
        f"coord_check: data must be a Dataset, a Split or a built-in dataset's name such as "
        f"'digits', got a {type(data).__name__}."
    )


def _batches(examples: int, steps: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    """``steps`` batches of indices, shuffled from ``seed`` (reshuffled after each pass)."""
    generator = torch.Generator().manual_seed(seed)
    passes = -(-steps * batch_size // examples)
    order = torch.cat([torch.randperm(examples, generator=generator) for _ in range(passes)])
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(steps)]


def _check_widths(widths: Sequence[int]) -> tuple[int, ...]:
    values = list(widths)
    if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in values):
        raise ConfigError(f"coord_check: widths must be integers >= 1, got {values!r}.")
    if len(set(values)) < 2 or len(set(values)) != len(values):
        raise ConfigError(
            f"coord_check: give at least two different widths, each once (a slope needs two "
            f"points), e.g. [64, 128, 256]; got {values!r}."
        )
    return tuple(sorted(values))


def _check_settings(steps: int, batch_size: int, optimizer: str, lr: float) -> None:
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"coord_check: {name} must be an integer >= 1, got {value!r}.")
    if optimizer not in get_args(Optimizer):
        raise UnknownNameError(did_you_mean("optimizer", optimizer, get_args(Optimizer)))
    if not lr > 0:
        raise ConfigError(f"coord_check: lr must be > 0, got {lr!r}.")


def coord_check(
    factory: Callable[[int], nn.Module],
    widths: Sequence[int],
    data: Dataset | Split | str,
    *,
    steps: int = 5,
    optimizer: Optimizer = "adam",
    lr: float | None = None,
    parametrization: str = "sp",
    seed: int = 0,
    batch_size: int = 64,
) -> CoordCheck:
    """Measure every layer's output scale across ``widths`` for the first ``steps`` steps.

    .. math::

        \\mathrm{rms}(h_t) = \\sqrt{\\operatorname{mean}(h_t^2)},\\quad
        \\Delta_t = \\mathrm{rms}(h_t - h_0),\\quad
        \\log \\mathrm{rms} \\approx a \\log n + c

    Example:
        >>> check = coord_check(lambda n: MLP(64, 10, width=n), [64, 128, 256], "digits")
        >>> print(check)                 # which layers grow or shrink with width
        >>> check.findings               # the same, as data

    Args:
        factory: builds the model of width ``n`` (called as ``factory(n)``), the same layers
            at every width.
        widths: at least two widths; the smallest is the parametrization's base.
        data: a :class:`~initlab.train.Dataset`, a :class:`~initlab.train.Split` or a built-in
            dataset's name (``"digits"``); its train split feeds the steps.
        steps: optimizer steps per width.
        optimizer: ``"adam"`` or ``"sgd"`` (also chooses the parametrization's rules).
        lr: the learning rate at the base width (default :data:`DEFAULT_LEARNING_RATES`).
        parametrization: a name :func:`initlab.parametrize.parametrize` knows (``"sp"``,
            ``"mup"``...).
        seed: the model's build, its Plan and the batch order (the same at every width).
        batch_size: examples per step; the first batch is also the probe.

    Returns:
        The scales, their slopes against width and the findings (Yang et al., "Tensor
        Programs V", 2022, appendix D.1).

    Raises:
        ConfigError: bad widths or settings, or a factory that builds different layers at
            different widths.
    """
    ordered = _check_widths(widths)
    rate = DEFAULT_LEARNING_RATES.get(optimizer, 0.0) if lr is None else lr
    _check_settings(steps, batch_size, optimizer, rate)
    seed = check_seed("coord_check", seed)
    split = _training_split(data)
    setup = _Setup(split, _batches(len(split), steps, batch_size, seed), steps, optimizer,
                   rate, parametrization, seed)  # fmt: skip
    base = _build(factory, ordered[0], seed)
    records: list[CoordinateRecord] = []
    layers: list[str] = []
    output_layer = OUTPUT
    for width in ordered:
        probes = _trace_width(_build(factory, width, seed), base, setup)
        if not layers:
            layers, output_layer = list(probes[0].outputs), probes[0].output_layer
        records.extend(_records(width, layers, probes))
    return CoordCheck(ordered, steps, tuple(layers), output_layer, tuple(records),
                      parametrization, optimizer, rate, seed)  # fmt: skip
