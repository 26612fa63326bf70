"""LSUV itself: find the layers, pre-init them, fit them in one pass, log it (see
:mod:`initlab.lsuv`)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parameter import is_lazy

from initlab.arguments import check_module, check_seed
from initlab.batches import Batch, check_batch
from initlab.errors import ConfigError
from initlab.lsuv.log import LsuvLog, LsuvRow, LsuvSkip
from initlab.lsuv.passes import first_calls, fit_in_one_pass, run_model
from initlab.lsuv.rescale import MISSING, Fitted, Settings, row_for
from initlab.lsuv.targets import NEVER_RAN, Target, classify, orthonormal
from initlab.plan.buffers import buffers_restored
from initlab.progress import Steps, steps

__all__ = ["lsuv"]

_STOPPED = (
    "lsuv: layer {!r} stopped running in the forward pass (data-dependent control flow?); it "
    "was left where it stood."
)


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
    progress: bool | None = None,
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
        progress: a bar of the layers (pre-initialized, then fitted) on standard error:
            ``None`` when it is a terminal (see :func:`initlab.progress.set_default`),
            ``True`` always, ``False`` never.

    Returns:
        The log: a row per fitted layer, the skipped layers with their reasons, and what the
        run cost (:attr:`LsuvLog.forward_passes`: two, one to find the layers and one to fit
        them all; :attr:`LsuvLog.layer_calls`: calls of a single layer). A layer
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
    settings = Settings(target_var, tol, max_iter, center_bias)
    with buffers_restored(model), torch.no_grad():
        found = _find_layers(model, batch)
        total = len(found.layers) * (2 if orthogonal else 1)
        with steps("lsuv: layers", total, enabled=progress) as bar:
            fitted = _fit_layers(
                model,
                batch,
                found.layers,
                settings,
                pre_init_seed=seed if orthogonal else None,
                bar=bar,
            )
    rows = [_row(target, fitted, settings) for target in found.layers]
    messages = [
        fitted[target.name].problem if target.name in fitted else _STOPPED.format(target.name)
        for target in found.layers
    ]
    modules = dict(model.named_modules())
    skipped = tuple(
        LsuvSkip(name, type(modules[name]).__name__, found.reasons[name])
        for name in found.candidates
        if name in found.reasons
    )
    if not found.candidates:
        messages.append(
            f"lsuv: {type(model).__name__} has no weight-bearing layer (a module owning a "
            "weight matrix or kernel); nothing was initialized."
        )
    elif skipped:
        messages.append(_skipped_message(skipped, len(found.candidates), fitted=len(rows)))
    for message in filter(None, messages):
        warnings.warn(message, stacklevel=2)
    return LsuvLog(
        tuple(rows), target_var, tol, max_iter, seed if orthogonal else None, skipped,
        forward_passes=found.passes + (1 if found.layers else 0),
        layer_calls=sum(result.calls for result in fitted.values()),
    )  # fmt: skip


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


@dataclass(frozen=True)
class _Layers:
    """What the model's first passes found.

    Attributes:
        candidates: every weight-bearing layer, in module order.
        layers: the layers to fit, in the order their first calls end.
        reasons: why each of the other candidates is skipped.
        passes: the forward passes this took.
    """

    candidates: list[str]
    layers: list[Target]
    reasons: dict[str, str]
    passes: int


def _find_layers(model: nn.Module, batch: Batch) -> _Layers:
    """The layers to fit and the reasons for the others, from one forward pass (two for a
    model with lazy modules, which take their shapes from a first call)."""
    passes = 0
    if any(is_lazy(parameter) for parameter in model.parameters()):
        run_model(model, batch)
        passes += 1
    candidates, targets, reasons = classify(model)
    calls = first_calls(model, batch, list(targets))
    passes += 1 if targets else 0
    for name in targets:
        if name not in calls:
            reasons[name] = NEVER_RAN
        elif calls[name]:
            reasons[name] = calls[name]
    layers = [targets[name] for name in calls if name not in reasons]
    return _Layers(candidates, layers, reasons, passes)


def _fit_layers(
    model: nn.Module,
    batch: Batch,
    layers: list[Target],
    settings: Settings,
    *,
    pre_init_seed: int | None,
    bar: Steps,
) -> dict[str, Fitted]:
    """The orthonormal pre-init of ``layers`` (with a seed), then their fit in one pass; each
    layer's every step counted on ``bar``."""
    if pre_init_seed is not None:
        bar.describe("lsuv: orthonormal pre-init")
        for target in layers:
            orthonormal(target, pre_init_seed)
            bar.advance()
    if not layers:
        return {}
    bar.describe("lsuv: fitting")
    return fit_in_one_pass(model, batch, layers, settings, on_fitted=lambda _: bar.advance())


def _row(target: Target, fitted: dict[str, Fitted], settings: Settings) -> LsuvRow:
    """The layer's row; one the fitting pass did not reach keeps what it was."""
    if target.name in fitted:
        return fitted[target.name].row
    return row_for(target, 0, MISSING.std, MISSING, settings)
