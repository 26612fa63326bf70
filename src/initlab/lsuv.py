r"""Layer-sequential unit-variance initialization (LSUV; Mishkin & Matas, 2016).

.. code-block:: python

    log = initlab.lsuv(model, batch)          # model changed in place
    print(log)                                # per-layer table: iterations, variances
    assert log.converged

Data-driven init in two steps. First every Linear, Conv1d/2d/3d and ConvTranspose1d/2d/3d
weight gets an orthonormal init (:class:`initlab.schemes.Orthogonal`, drawn from the
parameter's own stream :func:`initlab.rng.parameter_generator`, so the result depends only on
the seed and the parameter's name) and its bias is set to 0. Then, layer by layer in forward
order, one batch is pushed through the model and the layer's output :math:`h` measured; its
weight is rescaled

.. math::

    W \leftarrow W \cdot \frac{\sqrt{v^\ast}}{\operatorname{std}(h) + 10^{-8}}

until :math:`|\operatorname{Var}(h) - v^\ast| < \text{tol}` (the paper's test, with
:math:`v^\ast = 1`) or ``max_iter`` rescalings were made. The variance is over every element
of the output (batch, units and positions). The layers before the current one are already
final, so a measuring pass stops right after the current layer and the next one
(:class:`initlab.doctor.Probe` with ``stop_early``, one host sync per pass); the next layer's
record of the current layer's last pass is its starting point, so a layer costs one partial
forward pass per rescaling.

With ``center_bias`` the bias also removes the output's mean, :math:`b \leftarrow
c\,(b - \bar h)` with :math:`c` the weight's factor, so the new output is exactly
:math:`c\,(h - \bar h)`. The reference LSUV-pytorch adds :math:`-c\,\bar h` to the bias,
which is the same when :math:`b = 0`; the PyPI package ``lsuv`` 0.3.0 corrects the std only.

The model keeps its train/eval mode; its buffers (BatchNorm running statistics) are restored
afterwards, so the many measuring passes leave no trace but the new weights. Call
``model.eval()`` first if it has dropout: in training mode every pass draws a new mask.

Reference: D. Mishkin and J. Matas, "All you need is a good init", ICLR 2016.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from initlab.doctor.probe import ForwardStopped, Probe
from initlab.errors import ConfigError, InitlabError
from initlab.rng import parameter_generator
from initlab.schemes.structured import Orthogonal

__all__ = ["LSUV_LAYER_TYPES", "LsuvLog", "LsuvRow", "lsuv"]

LSUV_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
_EPS = 1e-8


@dataclass(frozen=True)
class LsuvRow:
    """What LSUV did to one layer.

    Attributes:
        layer: the module's qualified name.
        kind: its class name.
        iterations: how many times its weight was rescaled.
        initial_var: the output variance before the first rescaling (after the pre-init and
            the earlier layers' rescaling).
        final_var: the output variance after the last rescaling.
        final_mean: the output mean after the last rescaling.
        converged: ``|final_var - target_var| < tol``.
    """

    layer: str
    kind: str
    iterations: int
    initial_var: float
    final_var: float
    final_mean: float
    converged: bool


@dataclass(frozen=True)
class LsuvLog:
    """The per-layer log of one :func:`lsuv` run, in forward order.

    Attributes:
        rows: one :class:`LsuvRow` per layer.
        target_var: the variance aimed at.
        tol: the tolerance on the variance.
        max_iter: the most rescalings a layer was allowed.
        seed: the seed of the orthonormal pre-init (``None`` without it).
    """

    rows: tuple[LsuvRow, ...]
    target_var: float
    tol: float
    max_iter: int
    seed: int | None

    @property
    def converged(self) -> bool:
        """Every layer ended within the tolerance."""
        return all(row.converged for row in self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def to_rows(self) -> list[dict[str, Any]]:
        """The rows as plain dicts (for a table, JSON or pandas)."""
        return [asdict(row) for row in self.rows]

    def __str__(self) -> str:
        done = sum(row.converged for row in self.rows)
        header = (
            f"LSUV: target variance {self.target_var:g} ± {self.tol:g}, "
            f"{done}/{len(self.rows)} layers converged (max_iter {self.max_iter})"
        )
        width = max([len("layer"), *(len(row.layer) for row in self.rows)])
        kind_width = max([len("kind"), *(len(row.kind) for row in self.rows)])
        lines = [
            header,
            f"{'layer':<{width}}  {'kind':<{kind_width}}  iterations  initial var  "
            "final var  final mean  converged",
        ]
        for row in self.rows:
            lines.append(
                f"{row.layer:<{width}}  {row.kind:<{kind_width}}  {row.iterations:>10}  "
                f"{row.initial_var:>11.4g}  {row.final_var:>9.4g}  {row.final_mean:>10.3g}  "
                f"{'yes' if row.converged else 'NO':>9}"
            )
        return "\n".join(lines)


def lsuv(
    model: nn.Module,
    batch: torch.Tensor,
    *,
    tol: float = 0.1,
    max_iter: int = 10,
    target_var: float = 1.0,
    orthogonal: bool = True,
    center_bias: bool = False,
    seed: int = 0,
) -> LsuvLog:
    """Initialize ``model`` in place by LSUV (see the module docstring) and log what it did.

    Args:
        model: any module; its Linear / Conv / ConvTranspose layers are initialized, in the
            order the forward pass calls them. Other modules are not touched.
        batch: one input batch on the model's device (a few hundred examples is plenty).
        tol: the tolerance on each layer's output variance.
        max_iter: the most rescalings per layer (``0``: pre-init and measure only).
        target_var: the output variance to reach.
        orthogonal: start from an orthonormal weight and a zero bias (else keep the weights).
        center_bias: also shift each layer's bias so its output has mean 0.
        seed: the run seed of the orthonormal pre-init (one stream per parameter name).

    Returns:
        The per-layer log. A layer that does not converge is reported by a warning naming it,
        never by a longer loop.

    Raises:
        InitlabError: a batch that is not a tensor or holds NaN/inf, a model that fails on the
            batch, or a ``tol`` / ``max_iter`` / ``target_var`` out of range.

    Example:
        >>> model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
        >>> log = lsuv(model, torch.randn(128, 64))
        >>> [round(row.final_var, 1) for row in log.rows]
        [1.0, 1.0]
    """
    _check_settings(tol, max_iter, target_var)
    _check_batch(batch)
    candidates = [
        name
        for name, module in model.named_modules()
        if isinstance(module, LSUV_LAYER_TYPES) and isinstance(module.weight, torch.Tensor)
    ]
    saved = {name: value.detach().clone() for name, value in model.named_buffers()}
    messages: list[str] = []
    rows: list[LsuvRow] = []
    try:
        with torch.no_grad():
            order = _call_order(model, batch, candidates)
            modules = dict(model.named_modules())
            not_called = [name for name in candidates if name not in order]
            if not_called:
                messages.append(
                    f"lsuv: {_names(not_called)} never ran in the forward pass; left as they were."
                )
            reparametrized = [name for name in order if _reparametrized(modules[name])]
            if reparametrized:
                messages.append(
                    f"lsuv: {_names(reparametrized)} compute their weight from other "
                    "parameters (weight norm / parametrization); LSUV cannot rescale them and "
                    "left them as they were."
                )
            layers = [name for name in order if name not in reparametrized]
            if orthogonal:
                for name in layers:
                    _orthonormal(modules[name], name, seed)
            # Each pass also measures the next layer: once the current one is final, that
            # record is the next layer's starting point, so a layer costs one pass per rescaling.
            known: dict[str, _Output] = {}
            for index, name in enumerate(layers):
                following = layers[index + 1 : index + 2]
                if name not in known:
                    known = _measure(model, batch, [name, *following])
                row, known = _fit_layer(
                    model, batch, name, modules[name], following, known, target_var, tol,
                    max_iter, center_bias, messages,
                )  # fmt: skip
                rows.append(row)
    finally:
        _restore(model, saved)
    if not candidates:
        messages.append(
            f"lsuv: {type(model).__name__} has no Linear, Conv or ConvTranspose layer; "
            "nothing was initialized."
        )
    for message in messages:
        warnings.warn(message, stacklevel=2)
    return LsuvLog(tuple(rows), target_var, tol, max_iter, seed if orthogonal else None)


def _check_settings(tol: float, max_iter: int, target_var: float) -> None:
    if not (isinstance(tol, int | float) and math.isfinite(tol) and tol > 0):
        raise ConfigError(f"lsuv: tol must be a positive number, got {tol!r}; e.g. tol=0.1.")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 0:
        raise ConfigError(
            f"lsuv: max_iter must be an integer >= 0, got {max_iter!r}; e.g. max_iter=10."
        )
    if not (isinstance(target_var, int | float) and math.isfinite(target_var) and target_var > 0):
        raise ConfigError(
            f"lsuv: target_var must be a positive number, got {target_var!r}; e.g. target_var=1.0."
        )


def _check_batch(batch: Any) -> None:
    if not isinstance(batch, torch.Tensor):
        raise InitlabError(
            f"lsuv: batch must be a torch.Tensor, got {type(batch).__name__}. "
            "Pass one input batch, e.g. next(iter(loader))[0]."
        )
    if batch.is_floating_point() and not bool(torch.isfinite(batch).all()):
        bad = int((~torch.isfinite(batch)).sum())
        raise InitlabError(
            f"lsuv: the input batch (shape {tuple(batch.shape)}) holds {bad} NaN/inf "
            "value(s); clean or impute the data before LSUV."
        )


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:5])
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return f"layer{'s' if len(names) > 1 else ''} {shown}{more}"


def _forward(model: nn.Module, batch: torch.Tensor) -> None:
    try:
        model(batch)
    except ForwardStopped:
        pass
    except Exception as error:
        raise InitlabError(
            f"lsuv: the model failed on a batch of shape {tuple(batch.shape)}: "
            f"{type(error).__name__}: {error}"
        ) from None


def _call_order(model: nn.Module, batch: torch.Tensor, candidates: list[str]) -> list[str]:
    """The candidates that run, in the order of their first call (one forward pass)."""
    if not candidates:
        return []
    with Probe(model, candidates, gradients=False, cosine=False) as probe:
        _forward(model, batch)
        return [record.name for record in probe.collect()]


def _reparametrized(module: nn.Module) -> bool:
    return parametrize.is_parametrized(module, "weight") or hasattr(module, "weight_g")


def _orthonormal(module: nn.Module, name: str, seed: int) -> None:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    generator = parameter_generator(seed, f"{name}.weight" if name else "weight", weight.device)
    Orthogonal().fill_(weight, generator)
    bias = getattr(module, "bias", None)
    if isinstance(bias, torch.Tensor):
        bias.zero_()


@dataclass(frozen=True)
class _Output:
    """One layer's output on the batch: mean, std, and whether every value was finite."""

    mean: float
    std: float
    finite: bool


_MISSING = _Output(math.nan, math.nan, False)


def _measure(model: nn.Module, batch: torch.Tensor, names: list[str]) -> dict[str, _Output]:
    """One forward pass, stopped once every layer in ``names`` has run (one host sync)."""
    with Probe(model, names, gradients=False, cosine=False, stop_early=True) as probe:
        _forward(model, batch)
        return {
            record.name: _Output(
                record.forward["mean"], record.forward["std"], record.forward["nonfinite"] == 0
            )
            for record in probe.collect()
        }


def _fit_layer(
    model: nn.Module,
    batch: torch.Tensor,
    name: str,
    module: nn.Module,
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
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    bias = getattr(module, "bias", None)
    center = center_bias and isinstance(bias, torch.Tensor)
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
            assert isinstance(bias, torch.Tensor)
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
        kind=type(module).__name__,
        iterations=iterations,
        initial_var=initial_var,
        final_var=variance,
        final_mean=output.mean,
        converged=converged,
    )
    return row, known


def _restore(model: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for name, value in saved.items():
            buffers[name].copy_(value)
