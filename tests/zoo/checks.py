"""The zoo's checks, one function each, shared by ``test_zoo.py`` (pytest, per architecture) and
``tried_on.py`` (the README table).

Each check builds what it needs from an :class:`~architectures.Architecture`, raises
``AssertionError`` listing *every* problem it found (parameter or layer, what was expected, what
came out), and returns what it measured for the table.

The expectations are independent of initlab's own tables: the layers a plan must reach and the
fans each must get are read here from the module types (:func:`layer_weights`).
"""

from __future__ import annotations

import copy
import fnmatch
import inspect
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from architectures import Architecture, Batch, run_forward
from torch import nn
from torch.nn.utils import parametrize

import initlab
from initlab.scale import materialize

__all__ = [
    "LayerWeight",
    "LsuvRun",
    "Materialized",
    "apply_auto",
    "build_materialized",
    "check_audit_after_auto",
    "check_audit_stock",
    "check_doctor",
    "check_lsuv_accounts_for_every_layer",
    "check_lsuv_claims",
    "check_materialize",
    "check_materialize_buffers",
    "check_plan_apply",
    "check_plan_covers_layers",
    "check_plan_fans",
    "check_plan_schemes",
    "fitted_layers",
    "layer_weights",
    "output_tensors",
    "resolve_auto",
    "run_lsuv",
    "skipped_layers",
]

SEED = 0
_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


# --- what the checks expect, read from the module types ------------------------------------
@dataclass(frozen=True)
class LayerWeight:
    """One weight matrix or kernel of a weight-bearing layer, as a plan should see it.

    Attributes:
        layer: the layer's qualified name.
        kind: the layer's class name.
        name: the qualified name of the parameter holding the values (for a weight-normed
            layer, its direction ``v``).
        effective: the attribute of the layer whose tensor the forward pass uses.
        fan_in: the expected fan_in (``None``: no expectation for this layer type).
        fan_out: the expected fan_out (``None``: no expectation).
    """

    layer: str
    kind: str
    name: str
    effective: str
    fan_in: float | None
    fan_out: float | None


def _is_hf_conv1d(module: nn.Module) -> bool:
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def _conv_fans(module: nn.modules.conv._ConvNd, shape: tuple[int, ...]) -> tuple[float, float]:
    groups = module.groups
    receptive_field = math.prod(shape[2:])
    if module.transposed:
        # Weight (in, out/g, *k). A stride-s transposed convolution spreads each input over k
        # outputs, and each output position receives in/g * prod(k_i / s_i) products: that
        # average is the forward fan_in.
        strides = math.prod(module.stride)
        fan_in = shape[0] / groups * receptive_field / strides
        return fan_in, shape[1] * receptive_field
    # Weight (out, in/g, *k): each input channel feeds only its group's out/g channels.
    return shape[1] * receptive_field, shape[0] / groups * receptive_field


def _direct_weights(
    module: nn.Module, parent: nn.Module | None, layer: str
) -> Iterator[tuple[str, float | None, float | None]]:
    """(attribute, fan_in, fan_out) of the weights a layer of a known type owns directly."""
    packed = (
        _is_hf_conv1d(module)
        and layer.rpartition(".")[2] == "c_attn"
        and type(parent).__name__ == "GPT2Attention"
    )
    if packed:
        # GPT2Attention.forward splits c_attn's output into split_size columns: q, k, v (k, v
        # in cross-attention), each a (d, d) projection of its own.
        yield "weight", module.weight.shape[0], parent.split_size  # type: ignore[union-attr]
    elif isinstance(module, nn.modules.conv._ConvNd):
        yield "weight", *_conv_fans(module, tuple(module.weight.shape))
    elif isinstance(module, nn.Linear):
        yield "weight", module.in_features, module.out_features
    elif isinstance(module, nn.Bilinear):
        # y_k = x1^T W_k x2 sums in1 * in2 products; fan_out is a convention (out or out*in2).
        yield "weight", module.in1_features * module.in2_features, None
    elif _is_hf_conv1d(module):
        nx, nf = module.weight.shape  # x @ W: (in, out)
        yield "weight", nx, nf
    elif isinstance(module, nn.MultiheadAttention):
        # in_proj_weight (3d, d) stacks three d -> d projections q, k, v: each has fans (d, d).
        if module.in_proj_weight is not None:
            yield "in_proj_weight", module.embed_dim, module.embed_dim
        else:
            yield "q_proj_weight", module.embed_dim, module.embed_dim
            yield "k_proj_weight", module.kdim, module.embed_dim
            yield "v_proj_weight", module.vdim, module.embed_dim
    elif isinstance(module, nn.RNNBase):
        # weight_ih (G h, in) and weight_hh (G h, h) stack one matrix per gate: fans (in, h)
        # and (h, h) per gate. An LSTM's projection weight_hr (p, h) is one plain matrix.
        gates = _GATES.get(module.mode.split("_")[0], 1)
        for attribute, tensor in module.named_parameters(recurse=False):
            if attribute.startswith("weight_hr"):
                yield attribute, tensor.shape[1], tensor.shape[0]
            elif attribute.startswith("weight_"):
                yield attribute, tensor.shape[1], tensor.shape[0] // gates


def _is_weight_layer(module: nn.Module) -> bool:
    known = (nn.modules.conv._ConvNd, nn.Linear, nn.Bilinear, nn.MultiheadAttention, nn.RNNBase)
    return isinstance(module, known) or _is_hf_conv1d(module)


def layer_weights(model: nn.Module) -> list[LayerWeight]:
    """Every weight of every layer of a known type (Linear, ConvNd, ConvTransposeNd, Bilinear,
    Hugging Face Conv1D, MultiheadAttention, RNN/LSTM/GRU), including weight-normed ones."""
    found = []
    modules = dict(model.named_modules())
    for layer, module in modules.items():
        if not _is_weight_layer(module):
            continue
        prefix = f"{layer}." if layer else ""
        parent = modules.get(layer.rpartition(".")[0])
        for attribute, fan_in, fan_out in _direct_weights(module, parent, layer):
            name = prefix + attribute
            if parametrize.is_parametrized(module, attribute):
                originals = getattr(module.parametrizations, attribute)
                # weight_norm: original0 is the magnitude g, original1 the direction v.
                original = "original" if hasattr(originals, "original") else "original1"
                name = f"{prefix}parametrizations.{attribute}.{original}"
            found.append(
                LayerWeight(layer, type(module).__name__, name, attribute, fan_in, fan_out)
            )
    return found


# --- plumbing ---------------------------------------------------------------------------------
def _takes(function: Callable[..., Any], parameter: str) -> bool:
    return parameter in inspect.signature(function).parameters


def resolve_auto(model: nn.Module, batch: Batch) -> initlab.Assignments:
    """``Plan(default="auto").resolve``, with the example batch where the API takes one."""
    plan = initlab.Plan(default="auto")
    if _takes(initlab.Plan.resolve, "example"):
        return plan.resolve(model, example=batch)
    return plan.resolve(model)


def apply_auto(model: nn.Module, batch: Batch, seed: int = SEED) -> initlab.Assignments:
    """``Plan(default="auto").apply``, with the example batch where the API takes one."""
    plan = initlab.Plan(default="auto")
    if _takes(initlab.Plan.apply, "example"):
        return plan.apply(model, seed=seed, example=batch)
    return plan.apply(model, seed=seed)


def _rows_by_name(model: nn.Module, table: initlab.Assignments) -> dict[str, Any]:
    """Every parameter name (tied names included) -> its row."""
    rows = {}
    for row in table:
        rows[row.name] = row
        for other in row.site.tied_to:
            rows[other] = row
    for name, _ in model.named_parameters(remove_duplicate=False):
        rows.setdefault(name, None)
    return rows


def output_tensors(output: Any) -> list[torch.Tensor]:
    """The floating tensors of a model's output (tensor, tuple, dict or ModelOutput)."""
    if isinstance(output, torch.Tensor):
        return [output] if output.is_floating_point() else []
    if isinstance(output, dict):
        return [t for value in output.values() for t in output_tensors(value)]
    if isinstance(output, tuple | list):
        return [t for value in output for t in output_tensors(value)]
    return []


def _forward_is_finite(model: nn.Module, batch: Batch) -> list[str]:
    with torch.no_grad():
        outputs = output_tensors(run_forward(model, batch))
    if not outputs:
        return ["the forward pass returned no floating tensor"]
    bad = [i for i, t in enumerate(outputs) if not bool(torch.isfinite(t).all())]
    return [f"output tensor(s) {bad} hold NaN/inf"] if bad else []


def _fail(what: str, problems: list[str], limit: int = 12) -> None:
    if problems:
        shown = problems[:limit]
        more = [f"... and {len(problems) - limit} more"] if len(problems) > limit else []
        raise AssertionError(f"{what}:\n  " + "\n  ".join(shown + more))


def _recorded(call: Callable[[], Any], own: str) -> tuple[Any, list[str]]:
    """Run ``call``, recording the warnings initlab issues with the prefix ``own`` (its
    documented soft reports: a layer that did not converge, a kept parameter); any other
    warning is re-issued, so the suite's warnings-as-errors still sees it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    reports = []
    for item in caught:
        text = str(item.message)
        if text.startswith(own):
            reports.append(text)
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
    return result, reports


# --- 1. plan ----------------------------------------------------------------------------------
def check_plan_schemes(architecture: Architecture) -> initlab.Assignments:
    """Every weight-role parameter gets a scheme and a finite, positive std."""
    model, batch = architecture.model(), architecture.batch()
    table = resolve_auto(model, batch)
    problems = [
        f"{row.name} {row.site.shape}: scheme {row.scheme_label}, std {row.std} ({row.source})"
        for row in table
        if row.site.role == "weight"
        and (row.scheme is None or row.std is None or not (math.isfinite(row.std) and row.std > 0))
    ]
    _fail("auto left weights without a scheme or a finite positive std", problems)
    return table


def check_plan_covers_layers(architecture: Architecture) -> None:
    """Every weight of every known layer type (weight-normed ones through their direction) is
    a weight-role row with a scheme."""
    model, batch = architecture.model(), architecture.batch()
    rows = _rows_by_name(model, resolve_auto(model, batch))
    problems = []
    for weight in layer_weights(model):
        row = rows.get(weight.name)
        if row is None:
            problems.append(f"{weight.name} ({weight.kind} {weight.layer}): no row")
        elif row.site.role != "weight" or row.scheme is None:
            problems.append(
                f"{weight.name} ({weight.kind}): role {row.site.role!r}, scheme "
                f"{row.scheme_label} ({row.source})"
            )
    _fail("layer weights the auto plan does not initialize as weights", problems)


def check_plan_fans(architecture: Architecture) -> None:
    """The fans of every known layer's weight match the layer (see :func:`layer_weights`)."""
    model, batch = architecture.model(), architecture.batch()
    rows = _rows_by_name(model, resolve_auto(model, batch))
    problems = []
    for weight in layer_weights(model):
        row = rows.get(weight.name)
        if row is None or row.site.role != "weight" or row.scheme is None:
            continue  # check_plan_covers_layers reports these
        if not row.scheme.uses_fans:
            continue
        fans = row.fans
        got = (None, None) if fans is None else (fans.fan_in, fans.fan_out)
        expected = (weight.fan_in, weight.fan_out)
        if any(
            want is not None and (have is None or not math.isclose(have, want))
            for want, have in zip(expected, got, strict=True)
        ):
            problems.append(
                f"{weight.name} ({weight.kind}, shape {row.site.shape}): fans {got}, expected "
                f"{expected} ({row.scheme_label})"
            )
    _fail("fans that do not match the layer", problems)


def _std_tolerance(count: int) -> float:
    # The sample std of n i.i.d. draws has a relative standard error of sqrt((kurtosis-1)/4n):
    # 0.71/sqrt(n) for a normal, less for uniform and truncated laws. Six of those.
    return 6 * 0.71 / math.sqrt(count)


def check_plan_apply(architecture: Architecture) -> initlab.Assignments:
    """After ``apply``: every parameter finite, each layer's effective weight with the planned
    std (weight-normed ones included), and a forward pass with finite outputs."""
    model, batch = architecture.model(), architecture.batch()
    table = apply_auto(model, batch)
    problems = [
        f"{name}: {int((~torch.isfinite(p)).sum())} NaN/inf values"
        for name, p in model.named_parameters()
        if not bool(torch.isfinite(p).all())
    ]
    rows = _rows_by_name(model, table)
    modules = dict(model.named_modules())
    for weight in layer_weights(model):
        row = rows.get(weight.name)
        if row is None or row.scheme is None or row.std is None:
            continue
        with torch.no_grad():
            effective = getattr(modules[weight.layer], weight.effective).detach().float()
        # A stacked weight (q/k/v, gates) is checked block by block where the plan gives each
        # block's std, and whole against the row's std (the std over the whole parameter).
        blocks = [
            (part.label, getattr(part, "axis", 0), part.start, part.stop, part.std)
            for part in getattr(row, "parts", ())
        ]
        for label, axis, start, stop, planned in [("", 0, 0, len(effective), row.std), *blocks]:
            values = effective.narrow(axis, start, stop - start)
            std = float(values.std(correction=0))
            if (
                planned is not None
                and abs(std - planned) > _std_tolerance(values.numel()) * planned
            ):
                where = f"{weight.layer}.{weight.effective}" + (f"[{label}]" if label else "")
                problems.append(
                    f"{where} ({weight.kind}): std {std:.4g} after apply, the plan says "
                    f"{planned:.4g} ({row.scheme_label})"
                )
    problems += _forward_is_finite(model, batch)
    _fail("the auto plan, applied", problems)
    return table


# --- 2. audit ---------------------------------------------------------------------------------
def check_audit_stock(architecture: Architecture) -> initlab.Audit:
    """``audit(model)`` on the stock init reports exactly the parameters the architecture
    makes identical by construction (``stock_identical``), and nothing else.

    No plan is given: the stock init is no initlab plan, so only the plan-free part of the
    audit (identical tensors) applies; "unreached" and "contested" describe a plan.
    """
    model = architecture.model()
    report = initlab.audit(model)
    expected = architecture.stock_identical
    reported = [name for group in report.identical for name in group]
    problems = [f"unreached without a plan: {name}" for name in report.unreached]
    problems += [f"contested without a plan: {name}" for name, _, _ in report.contested]
    problems += [
        f"identical values reported for {name}, which the stock init draws on its own"
        for name in reported
        if not any(fnmatch.fnmatchcase(name, pattern) for pattern in expected)
    ]
    problems += [
        f"no identical values reported for {pattern}, identical by construction"
        for pattern in expected
        if not any(fnmatch.fnmatchcase(name, pattern) for name in reported)
    ]
    _fail("audit on the stock init", problems)
    return report


def check_audit_after_auto(architecture: Architecture) -> initlab.Audit:
    """``audit(model, plan)`` after ``apply``: no identical tensors (every drawn parameter has
    its own stream; only kept ones the architecture makes identical may stay so), no contested
    rules, and every parameter it calls unreached is role ``other`` (the only role ``auto``
    keeps) and really unchanged by ``apply``."""
    model, batch = architecture.model(), architecture.batch()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    table = apply_auto(model, batch)
    report = initlab.audit(model, initlab.Plan(default="auto"))
    rows = _rows_by_name(model, table)
    parameters = dict(model.named_parameters())
    # Only parameters auto keeps may still hold values the architecture makes identical.
    problems = [
        "identical values: " + ", ".join(group)
        for group in report.identical
        if not all(
            rows.get(name) is not None
            and rows[name].scheme is None
            and any(fnmatch.fnmatchcase(name, p) for p in architecture.stock_identical)
            for name in group
        )
    ]
    problems += [
        f"{name}: rule {winner} contested by {others}" for name, winner, others in report.contested
    ]
    for name in report.unreached:
        row = rows.get(name)
        if row is not None and row.site.role != "other":
            problems.append(f"{name}: unreached but its role is {row.site.role!r}")
        if name in parameters and not torch.equal(parameters[name], before[name]):
            problems.append(f"{name}: called unreached (kept as it was), but apply changed it")
    _fail("audit after the auto plan", problems)
    return report


# --- 3. doctor --------------------------------------------------------------------------------
def check_doctor(architecture: Architecture) -> initlab.DoctorReport:
    """The doctor runs on the stock init, its critical findings are exactly those the stock
    init deserves (``stock_critical``: none for all but a few), and it reports the warnings
    the stock init deserves (``stock_warnings``)."""
    model, batch = architecture.model(), architecture.batch()
    report = initlab.doctor(model, batch)
    expected = set(architecture.stock_critical)
    critical = [finding for finding in report.findings if finding.severity == "critical"]
    problems = [
        f"{finding.code}: {finding.title} layers {', '.join(finding.layers[:6])}"
        f"{' ...' if len(finding.layers) > 6 else ''}; {finding.evidence}"
        for finding in critical
        if finding.code not in expected
    ]
    problems += [
        f"{code} not reported, which this stock init deserves (see architectures.py)"
        for code in sorted(expected - {finding.code for finding in critical})
    ]
    reported = {finding.code for finding in report.findings}
    problems += [
        f"warning {code} not reported, which this stock init deserves (see architectures.py)"
        for code in sorted(set(architecture.stock_warnings) - reported)
    ]
    _fail("critical findings on the stock init", problems)
    return report


# --- 4. LSUV ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LsuvRun:
    """One LSUV run on a copy of the stock model."""

    model: nn.Module
    log: initlab.LsuvLog
    reports: tuple[str, ...]


def run_lsuv(architecture: Architecture) -> LsuvRun:
    """``lsuv`` on a deep copy of the stock model, its own warnings recorded."""
    model, batch = architecture.model(), architecture.batch()
    fitted = copy.deepcopy(model)
    log, reports = _recorded(lambda: initlab.lsuv(fitted, batch, seed=SEED), "lsuv:")
    return LsuvRun(fitted, log, tuple(reports))


def _first_outputs(model: nn.Module, batch: Batch, layers: list[str]) -> dict[str, torch.Tensor]:
    """Each layer's output at its first call, from plain forward hooks (no initlab code).

    Gradients stay enabled: without them torch's TransformerEncoderLayer and
    MultiheadAttention take their fused inference path, which calls no submodule and so no
    hook (the values are the same either way).
    """
    seen: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())

    def hook(name: str) -> Callable[..., None]:
        def record(module: nn.Module, inputs: Any, output: Any) -> None:
            first = output[0] if isinstance(output, tuple | list) and output else output
            if name not in seen and isinstance(first, torch.Tensor):
                seen[name] = first.detach().clone()

        return record

    handles = [modules[name].register_forward_hook(hook(name)) for name in layers]
    try:
        with torch.enable_grad():
            run_forward(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def check_lsuv_claims(architecture: Architecture) -> LsuvRun:
    """LSUV runs, and every layer it calls converged really is within ``tol`` of the target,
    both in its own log and re-measured afterwards with plain hooks."""
    run = run_lsuv(architecture)
    log = run.log
    claimed = [row for row in log.rows if row.converged]
    measured = _first_outputs(run.model, architecture.batch(), [row.layer for row in claimed])
    problems = []
    for row in claimed:
        if not abs(row.final_var - log.target_var) < log.tol:
            problems.append(f"{row.layer}: converged with final_var {row.final_var:.4g}")
        output = measured.get(row.layer)
        if output is None:
            problems.append(f"{row.layer}: converged, but it did not run when re-measured")
            continue
        variance = float(output.double().var(correction=0))
        if not abs(variance - log.target_var) < log.tol:
            problems.append(
                f"{row.layer} ({row.kind}): converged with final_var {row.final_var:.4g}, "
                f"re-measured {variance:.4g} (target {log.target_var:g} ± {log.tol:g})"
            )
    _fail("LSUV over-claims convergence", problems)
    return run


def fitted_layers(log: initlab.LsuvLog) -> set[str]:
    """The layers LSUV fitted: each row's measured module, and the layer owning the weight it
    rescaled (a MultiheadAttention's ``out_proj``)."""
    return {row.layer for row in log.rows} | {row.weight.rpartition(".")[0] for row in log.rows}


def skipped_layers(log: initlab.LsuvLog) -> set[str]:
    """The layers ``log.skipped`` names."""
    return {skip.layer for skip in log.skipped}


def check_lsuv_accounts_for_every_layer(architecture: Architecture) -> LsuvRun:
    """Every weight-bearing layer (:func:`layer_weights`) is either fitted or named, with its
    reason, in ``log.skipped``: none is left out silently."""
    run = run_lsuv(architecture)
    accounted = fitted_layers(run.log) | skipped_layers(run.log)
    layers = dict.fromkeys(w.layer for w in layer_weights(architecture.model()))
    _fail(
        "layers neither fitted nor skipped by LSUV",
        [layer for layer in layers if layer not in accounted],
    )
    return run


# --- 5. materialize ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Materialized:
    """A meta-device build materialized with the auto plan, and the eager reference."""

    model: nn.Module
    eager: nn.Module
    table: initlab.Assignments
    reports: tuple[str, ...]


def build_materialized(architecture: Architecture) -> Materialized:
    """``materialize(factory, auto)`` and an eager build with ``Plan.apply`` at the same seed,
    both with the same example batch for activation detection."""
    plan = initlab.Plan(default="auto")
    batch = architecture.batch()
    model, reports = _recorded(
        lambda: materialize(architecture.factory, plan, seed=SEED, example=batch), "materialize:"
    )
    eager = architecture.model()
    table = apply_auto(eager, architecture.batch())
    return Materialized(model, eager, table, tuple(reports))


def check_materialize(architecture: Architecture) -> Materialized:
    """The materialized model has the eager model's parameters (names, shapes), finite and on
    the CPU; each parameter the plan draws (or derives: a weight norm's magnitude) equals
    ``Plan.apply`` on the eager build (the counter stream's promise; kept parameters have no
    value to compare); and it runs forward with finite outputs."""
    built = build_materialized(architecture)
    lazy = dict(built.model.named_parameters())
    eager = dict(built.eager.named_parameters())
    problems = []
    if list(lazy) != list(eager):
        problems.append(f"parameter names differ: {sorted(set(lazy) ^ set(eager))[:8]}")
    for name, tensor in lazy.items():
        if tensor.is_meta or tensor.device.type != "cpu":
            problems.append(f"{name}: on {tensor.device}")
            continue
        if not bool(torch.isfinite(tensor).all()):
            problems.append(f"{name}: NaN/inf values")
        reference = eager.get(name)
        if reference is None:
            continue
        if tensor.shape != reference.shape:
            problems.append(f"{name}: shape {tuple(tensor.shape)}, eager {tuple(reference.shape)}")
            continue
        row = built.table[name]
        # Drawn parameters, and weight-norm magnitudes derived from their drawn direction.
        planned = row.scheme is not None or bool(getattr(row.site, "magnitude_of", ""))
        if planned and not torch.equal(tensor, reference):
            difference = float((tensor - reference).detach().abs().max())
            problems.append(
                f"{name}: differs from Plan.apply on an eager build by up to {difference:.3g} "
                f"({row.scheme_label})"
            )
    if not problems:
        problems += _forward_is_finite(built.model, architecture.batch())
    _fail("materialize with the auto plan", problems)
    return built


def check_materialize_buffers(architecture: Architecture) -> None:
    """Buffers come out as the eager build makes them (names, dtypes, values)."""
    built = build_materialized(architecture)
    lazy = dict(built.model.named_buffers())
    eager = dict(built.eager.named_buffers())
    problems = []
    if list(lazy) != list(eager):
        problems.append(f"buffer names differ: {sorted(set(lazy) ^ set(eager))[:8]}")
    for name, reference in eager.items():
        tensor = lazy.get(name)
        if tensor is None:
            continue
        if tensor.is_meta or tensor.dtype != reference.dtype or tensor.shape != reference.shape:
            problems.append(
                f"{name}: {tensor.dtype} {tuple(tensor.shape)} on {tensor.device}, eager "
                f"{reference.dtype} {tuple(reference.shape)}"
            )
        elif not torch.equal(tensor, reference):
            problems.append(f"{name}: values differ from the eager build")
    _fail("buffers after materialize", problems)
