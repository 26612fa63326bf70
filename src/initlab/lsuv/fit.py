"""LSUV itself: the measuring passes and the per-layer rescaling (see :mod:`initlab.lsuv`)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.parameter import is_lazy

from initlab.arguments import check_module, check_seed
from initlab.batches import Batch, call_model, check_batch, describe
from initlab.doctor.probe import ForwardStopped, Probe
from initlab.errors import ConfigError, InitlabError
from initlab.lsuv.log import LsuvLog, LsuvRow, LsuvSkip
from initlab.lsuv.targets import NEVER_RAN, Target, classify, orthonormal, unmeasurable
from initlab.plan.buffers import buffers_restored

__all__ = ["lsuv"]

_EPS = 1e-8


def lsuv(
    model: nn.Module,
    batch: Batch,
    *,
    tol: float = 0.1,
    max_iter: int = 10,
    target_var: float = 1.0,
    orthogonal: bool = True,
    center_bias: bool = False,
    seed: int = 0,
) -> LsuvLog:
    """Initialize ``model`` in place by LSUV (see :mod:`initlab.lsuv`) and log what it did.

    Args:
        model: any module; its fitted layers (see :mod:`initlab.lsuv`) are initialized, in
            the order the forward pass calls them. Other modules are not touched.
        batch: one input batch on the model's device (a few hundred examples is plenty): a
            tensor (``model(batch)``; token ids are fine), a tuple of inputs
            (``model(*batch)``) or a mapping of keyword inputs (``model(**batch)``).
        tol: the tolerance on each layer's output variance.
        max_iter: the most rescalings per layer (``0``: pre-init and measure only).
        target_var: the output variance to reach.
        orthogonal: start from an orthonormal weight and a zero bias (else keep the weights).
        center_bias: also shift each layer's bias so its output has mean 0.
        seed: the run seed of the orthonormal pre-init (one stream per parameter name).

    Returns:
        The log: a row per fitted layer and the skipped layers with their reasons. A layer
        that does not converge is reported by a warning naming it, never by a longer loop;
        the skipped layers by one warning naming them all.

    Raises:
        InitlabError: a batch of another form or one holding NaN/inf, a model that fails on
            the batch, or a ``tol`` / ``max_iter`` / ``target_var`` out of range.

    Example:
        >>> model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
        >>> log = lsuv(model, torch.randn(128, 64))
        >>> [round(row.final_var, 1) for row in log.rows]
        [1.0, 1.0]
    """
    check_module("lsuv", model)
    _check_settings(tol, max_iter, target_var)
    seed = check_seed("lsuv", seed)
    check_batch(batch, "lsuv")
    messages: list[str] = []
    rows: list[LsuvRow] = []
    with buffers_restored(model), torch.no_grad():
        if any(is_lazy(parameter) for parameter in model.parameters()):
            _forward(model, batch)  # lazy modules take their shapes from a first call
        candidates, targets, reasons = classify(model)
        calls = _first_calls(model, batch, list(targets))
        for name in targets:
            if name not in calls:
                reasons[name] = NEVER_RAN
            elif calls[name]:
                reasons[name] = calls[name]
        layers = [targets[name] for name in calls if name not in reasons]
        if orthogonal:
            for target in layers:
                orthonormal(target, seed)
        # Each pass also measures the next layer: once the current one is final, that
        # record is the next layer's starting point, so a layer costs one pass per rescaling.
        known: dict[str, _Output] = {}
        for index, target in enumerate(layers):
            following = [layer.name for layer in layers[index + 1 : index + 2]]
            if target.name not in known:
                known = _measure(model, batch, [target.name, *following])
            row, known = _fit_layer(
                model, batch, target, following, known, target_var, tol, max_iter,
                center_bias, messages,
            )  # fmt: skip
            rows.append(row)
    modules = dict(model.named_modules())
    skipped = tuple(
        LsuvSkip(name, type(modules[name]).__name__, reasons[name])
        for name in candidates
        if name in reasons
    )
    if not candidates:
        messages.append(
            f"lsuv: {type(model).__name__} has no weight-bearing layer (a module owning a "
            "weight matrix or kernel); nothing was initialized."
        )
    elif skipped:
        messages.append(_skipped_message(skipped, len(candidates), fitted=len(rows)))
    for message in messages:
        warnings.warn(message, stacklevel=2)
    return LsuvLog(tuple(rows), target_var, tol, max_iter, seed if orthogonal else None, skipped)


def _check_settings(tol: float, max_iter: int, target_var: float) -> None:
    if isinstance(tol, bool) or not (
        isinstance(tol, int | float) and math.isfinite(tol) and tol > 0
    ):
        raise ConfigError(f"lsuv: tol must be a positive number, got {tol!r}; e.g. tol=0.1.")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 0:
        raise ConfigError(
            f"lsuv: max_iter must be an integer >= 0, got {max_iter!r}; e.g. max_iter=10."
        )
    if isinstance(target_var, bool) or not (
        isinstance(target_var, int | float) and math.isfinite(target_var) and target_var > 0
    ):
        raise ConfigError(
            f"lsuv: target_var must be a positive number, got {target_var!r}; e.g. target_var=1.0."
        )


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:5])
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return f"layer{'s' if len(names) > 1 else ''} {shown}{more}"


def _skipped_message(skipped: tuple[LsuvSkip, ...], candidates: int, fitted: int) -> str:
    """One warning for every skipped layer, grouped by reason."""
    groups: dict[str, list[LsuvSkip]] = {}
    for skip in skipped:
        groups.setdefault(skip.reason, []).append(skip)
    parts = []
    for reason, group in groups.items():
        kinds = ", ".join(dict.fromkeys(skip.kind for skip in group))
        parts.append(f"{_names([skip.layer for skip in group])} ({kinds}): {reason}")
    head = "no layer was fitted; " if not fitted else ""
    return (
        f"lsuv: {head}{len(skipped)} of {candidates} weight-bearing layers skipped and left as "
        f"they were (LsuvLog.skipped lists them): {'; '.join(parts)}."
    )


def _forward(model: nn.Module, batch: Batch) -> None:
    try:
        call_model(model, batch)
    except ForwardStopped:
        pass
    except Exception as error:
        raise InitlabError(
            f"lsuv: the model failed on the batch ({describe(batch)}): "
            f"{type(error).__name__}: {error}"
        ) from None


def _first_calls(model: nn.Module, batch: Batch, names: list[str]) -> dict[str, str]:
    """The modules in ``names`` that run, in the order of their first call's end (one
    forward pass), each with :func:`unmeasurable` of its first output."""
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
        _forward(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    return found


@dataclass(frozen=True)
class _Output:
    """One layer's output on the batch: mean, std, and whether every value was finite."""

    mean: float
    std: float
    finite: bool


_MISSING = _Output(math.nan, math.nan, False)


def _measure(model: nn.Module, batch: Batch, names: list[str]) -> dict[str, _Output]:
    """One forward pass, stopped once every layer in ``names`` has run (one host sync); a
    layer called more than once is measured on its first call."""
    found: dict[str, _Output] = {}
    with Probe(model, names, gradients=False, cosine=False, stop_early=True) as probe:
        _forward(model, batch)
        for record in probe.collect():
            if record.name not in found:
                forward = record.forward
                found[record.name] = _Output(
                    forward["mean"], forward["std"], forward["nonfinite"] == 0
                )
    return found


def _fit_layer(
    model: nn.Module,
    batch: Batch,
    target: Target,
    following: list[str],
    known: dict[str, _Output],
    target_var: float,
    tol: float,
    max_iter: int,
    center_bias: bool,
    messages: list[str],
) -> tuple[LsuvRow, dict[str, _Output]]:
    """Rescale one layer; returns its row and the last measurement (which the next layer
    may start from)."""
    name, weight, bias = target.name, target.weight, target.bias
    center = center_bias and bias is not None
    target_std = math.sqrt(target_var)
    output = known.get(name, _MISSING)
    initial_var = output.std * output.std
    iterations = 0
    while iterations < max_iter and output.finite and output.std > 0:
        within = abs(output.std * output.std - target_var) < tol
        if within and not (center and iterations == 0):
            break
        factor = target_std / (output.std + _EPS)
        weight.mul_(factor)
        if center:
            assert bias is not None
            bias.sub_(output.mean).mul_(factor)
        iterations += 1
        known = _measure(model, batch, [name, *following])
        output = known.get(name, _MISSING)
    variance = output.std * output.std
    converged = output.finite and abs(variance - target_var) < tol
    if output is _MISSING:
        messages.append(
            f"lsuv: layer {name!r} stopped running in the forward pass (data-dependent "
            "control flow?); it was left where it stood."
        )
    elif not output.finite:
        messages.append(
            f"lsuv: layer {name!r} gives NaN/inf outputs on this batch; its weight was left "
            "unscaled. Check the layers before it and the input's scale."
        )
    elif output.std == 0:
        messages.append(
            f"lsuv: layer {name!r} outputs a constant on this batch (std 0), so it cannot be "
            "rescaled; check for dead units before it or use a more varied batch."
        )
    elif not converged and max_iter > 0:
        messages.append(
            f"lsuv: layer {name!r} did not reach variance {target_var:g} ± {tol:g} in "
            f"{max_iter} iteration(s): final variance {variance:.4g}. Raise max_iter or tol, "
            "or check what follows the weight inside the layer (a fixed bias, a clamp)."
        )
    row = LsuvRow(
        layer=name,
        kind=type(target.module).__name__,
        weight=target.weight_name,
        iterations=iterations,
        initial_var=initial_var,
        final_var=variance,
        final_mean=output.mean,
        converged=converged,
    )
    return row, known
