"""Probe statistics against a direct computation from the tensors themselves (an oracle
written the plain way: full-size temporaries, one statistic at a time)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from initlab.doctor import fused
from initlab.doctor.probe import FORWARD_FIELDS, Probe, probed_modules
from initlab.doctor.reductions import batch_norm_terms, batch_norm_units
from initlab.plan.activations import ActivationDetection, detect_activations, layer_names

RECTIFIERS = (nn.ReLU,)  # hard rectifiers: the only activations whose units can die


class Scaled(nn.Module):
    """A layer whose input is changed in place after the module that produced it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(12, 12)
        self.act = nn.GELU()
        self.second = nn.Linear(12, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.act(self.first(x))
        hidden.mul_(3.0)
        out: torch.Tensor = self.second(hidden)
        return out


def models() -> list[tuple[str, nn.Module, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    mlp = nn.Sequential(
        nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 32),
        nn.Sigmoid(), nn.Linear(32, 32), nn.LeakyReLU(0.1), nn.Linear(32, 4),
    )  # fmt: skip
    with torch.no_grad():  # five dead units after the first ReLU
        mlp[0].weight[:5] = 0.0
        mlp[0].bias[:5] = -1.0
    cnn = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 3 * 3, 5),
    )  # fmt: skip
    return [
        ("mlp", mlp, torch.randn(40, 16, generator=generator)),
        ("cnn", cnn, torch.randn(12, 3, 8, 8, generator=generator)),
        ("in-place", Scaled(), torch.randn(20, 12, generator=generator)),
    ]


def oracle(
    model: nn.Module, batch: torch.Tensor
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Every forward field and the gradient std, computed directly with plain hooks."""
    names = probed_modules(model)
    modules = dict(model.named_modules())
    # Saturating activations are measured like layers (input std, cosine) by the probe.
    layers = set(layer_names(model)) | {
        name for name in names if isinstance(modules[name], nn.Tanh | nn.Sigmoid)
    }
    forward: dict[str, dict[str, float]] = {}
    grads: dict[str, float] = {}

    def record(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            h = out.detach().double()
            dims = (0, *range(2, h.dim()))
            unit_mean, unit_sq = h.mean(dim=dims), h.square().mean(dim=dims)
            rows = torch.nn.functional.normalize(h.reshape(h.shape[0], -1), dim=1)
            gram = rows @ rows.T
            n = rows.shape[0]
            rectifier = isinstance(module, RECTIFIERS)
            forward[name] = {
                "mean": h.mean().item(),
                "std": h.std(unbiased=False).item(),
                "rms": h.square().mean().sqrt().item(),
                "input_std": inputs[0].detach().double().std(unbiased=False).item()
                if name in layers
                else math.nan,
                "zero_fraction": (h == 0).double().mean().item() if rectifier else math.nan,
                "dead_fraction": (h.abs().amax(dim=dims) == 0).double().mean().item()
                if rectifier
                else math.nan,
                "saturated_fraction": (h.abs() > 0.99).double().mean().item()
                if isinstance(module, nn.Tanh)
                else ((h < 0.01) | (h > 0.99)).double().mean().item()
                if isinstance(module, nn.Sigmoid)
                else math.nan,
                "channel_mean_sq": unit_mean.square().mean().item(),
                "channel_var": (unit_sq - unit_mean.square()).mean().item(),
                "cosine": ((gram.sum() - gram.trace()) / (n * (n - 1))).item()
                if name in layers
                else math.nan,
                "nonfinite": 0.0,
            }
            if out.requires_grad:
                out.register_hook(
                    lambda g: grads.__setitem__(name, g.double().std(unbiased=False).item())
                )

        return hook

    handles = [modules[name].register_forward_hook(record(name)) for name in names]
    output = model(batch)
    cotangent = torch.randn(output.shape, generator=torch.Generator().manual_seed(1))
    (output * cotangent).sum().backward()
    for handle in handles:
        handle.remove()
    return forward, grads


def assert_matches_oracle(label: str, model: nn.Module, batch: torch.Tensor) -> None:
    """Every forward field and gradient std the probe records equals :func:`oracle`'s."""
    expected, expected_grads = oracle(model, batch)
    model.zero_grad()
    with Probe(model) as probe:
        output = model(batch)
        cotangent = torch.randn(output.shape, generator=torch.Generator().manual_seed(1))
        (output * cotangent).sum().backward()
        records = probe.collect()
    assert [r.name for r in records] == list(expected)
    for record in records:
        for field in FORWARD_FIELDS:
            want, got = expected[record.name][field], record.forward[field]
            if math.isnan(want):
                assert math.isnan(got), (label, record.name, field, got)
            else:
                assert got == pytest.approx(want, rel=1e-4, abs=1e-6), (record.name, field)
        assert record.grad_std == pytest.approx(expected_grads[record.name], rel=1e-4)


@pytest.mark.parametrize("path", ["compiled", "torch"])
@pytest.mark.parametrize(("label", "model", "batch"), models(), ids=[m[0] for m in models()])
def test_every_statistic_matches_the_direct_computation(
    label: str, model: nn.Module, batch: torch.Tensor, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if path == "torch":  # the reductions as torch ops (other devices and dtypes take them)
        monkeypatch.setattr(fused, "kernels", lambda: None)
    assert_matches_oracle(label, model, batch)


def test_dead_units_are_counted() -> None:
    _, model, batch = models()[0]
    with Probe(model, gradients=False) as probe:
        model(batch)
        first_relu = probe.collect()[1]
    assert first_relu.forward["dead_fraction"] == pytest.approx(5 / 32)


def test_nan_outputs_are_counted_not_raised() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight[1, 0] = math.nan
    with Probe(model) as probe:
        model(torch.randn(8, 4)).sum().backward()
        records = probe.collect()
    assert records[0].forward["nonfinite"] == 1
    assert records[0].grad_std is not None
    assert math.isfinite(records[0].grad_std)


class Block(nn.Module):
    """A residual-free block that returns its activation's output tensor itself."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 16)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(self.linear(x))
        return out


def test_a_block_returning_its_activations_output_reads_the_same_numbers() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(Block(), Block(), Block())
    batch = torch.randn(32, 16, generator=torch.Generator().manual_seed(1))

    def measured(names: list[str]) -> dict[str, tuple[float, float, float | None]]:
        with Probe(model, names) as probe:
            out = model(batch)
            out.backward(torch.ones_like(out))
            records = probe.collect()
        return {r.name: (r.forward["mean"], r.forward["std"], r.grad_std) for r in records}

    alone = measured(["1"])  # the block measured from its own output
    shared = measured(["1.act", "1"])  # the same tensor, measured once for both
    assert shared["1"] == alone["1"]
    assert shared["1"] == shared["1.act"]
    assert alone["1"][2] is not None


class Gated(nn.Module):
    """Functional activations behind data-dependent control flow (fx cannot trace it)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            x = -x
        x = torch.nn.functional.silu(self.a(x))
        return self.c(torch.tanh(self.b(x)).relu())


def test_a_probe_in_a_recorded_pass_does_not_change_the_activations_found() -> None:
    """The probe's reductions (squares, comparisons, products on each output) are no part of
    the model's data flow: a recording sharing the pass does not follow them."""
    model, example = Gated(), torch.ones(3, 4)
    expected = detect_activations(model, example=example)
    detection = ActivationDetection(model, example)
    # The recording's hooks first: the probe's hooks run after the recorder has left each
    # module, where the recorder follows every call.
    with detection.recording() as recording, Probe(model) as probe:
        assert recording is not None
        recording.leaving(model(example))
    assert detection.result().by_layer == expected.by_layer
    assert len(probe.collect()) == len(probed_modules(model))


@pytest.mark.parametrize(
    ("rows", "columns"), [(16, 27), (7, 5), (64, 576), (144, 144), (300, 900)]
)
def test_a_copied_row_is_one_duplicate_at_every_width(rows: int, columns: int) -> None:
    """A matrix product may round two equal rows differently (found on a 16x27 stem conv): a
    copied row must still read as exactly one duplicate, and distinct rows as none."""
    from initlab.doctor.metrics import weight_records

    layer = nn.Linear(columns, rows)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(rows, columns, generator=torch.Generator().manual_seed(1)))
        distinct = weight_records(nn.Sequential(layer))[0].duplicate_rows
        layer.weight[3] = layer.weight[1]
    copied = weight_records(nn.Sequential(layer))[0].duplicate_rows
    assert distinct == 0
    assert copied * rows == pytest.approx(1.0)


class Normalized(nn.Module):
    """Batch norms in the settings whose output moments follow from their batch statistics
    (affine or not, 1-d and 2-d, cumulative running averages, units far above and below
    the epsilon) and
    in those that must be read from the output (a constant unit, eval mode)."""

    def __init__(self, constant: bool) -> None:
        super().__init__()
        self.constant = constant
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.plain = nn.BatchNorm2d(6, affine=False, momentum=None)
        self.affine = nn.BatchNorm2d(6)
        self.flat = nn.Linear(6 * 16, 8)
        self.vector = nn.BatchNorm1d(8)
        self.frozen = nn.BatchNorm1d(8).eval()
        with torch.no_grad():
            self.affine.weight.copy_(torch.linspace(0.5, 2.0, 6))
            self.affine.bias.copy_(torch.linspace(-1.0, 1.0, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        last = h[:, 5:] * (0.0 if self.constant else 1.0) + 2.0
        h = torch.cat([h[:, :3], 3e-3 * h[:, 3:4], 1e3 * h[:, 4:5], last], dim=1)
        h = self.affine(self.plain(h).relu() + h)
        out: torch.Tensor = self.frozen(self.vector(self.flat(h.flatten(1))))
        return out


@pytest.mark.parametrize("path", ["compiled", "torch"])
@pytest.mark.parametrize("constant", [True, False])
def test_batch_norms_read_from_their_statistics_match_the_direct_computation(
    constant: bool, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if path == "torch":  # without numba: the terms checked and copied with NumPy
        monkeypatch.setattr(fused, "kernels", lambda: None)
    torch.manual_seed(0)
    model = Normalized(constant)
    batch = torch.randn(10, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    assert_matches_oracle(f"constant={constant}", model, batch)


@pytest.mark.parametrize(
    ("setting", "read_from_statistics"),
    [
        ("train", True),
        ("affine=False", True),
        ("no running statistics, eval", True),
        ("eval", False),
        ("half", False),
        ("bfloat16", False),
        ("no autograd", False),
    ],
)
def test_batch_norm_statistics_are_read_only_where_they_give_the_outputs_moments(
    setting: str, read_from_statistics: bool
) -> None:
    """The shortcut is taken where the moments follow from torch's batch statistics (else the
    oracle tests above could not tell it from the output pass) and only there: eval mode
    normalizes with running statistics, half precision rounds the output."""
    torch.manual_seed(0)
    norm = nn.BatchNorm2d(4, affine=setting != "affine=False")
    norm = nn.BatchNorm2d(4, track_running_stats=False) if "running" in setting else norm
    dtype = {"half": torch.half, "bfloat16": torch.bfloat16}.get(setting, torch.float32)
    norm = norm.to(dtype).train(setting == "train" or setting == "affine=False")
    batch = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(1)).to(dtype)
    with torch.set_grad_enabled(setting != "no autograd"):
        output = norm(batch.requires_grad_(setting != "no autograd"))
    terms = batch_norm_terms(norm, output)
    assert (terms is not None) == read_from_statistics
    if terms is not None:
        units = terms[0].copy()
        batch_norm_units(units, [0], [4], [terms[1]])
        direct = output.detach().double().transpose(0, 1).reshape(4, -1)
        assert units[:4] == pytest.approx(direct.mean(dim=1).numpy(), abs=1e-6)
        assert units[4:8] == pytest.approx(direct.square().mean(dim=1).numpy(), rel=1e-5)


def _records(probe: Probe, model: nn.Module, batch: torch.Tensor) -> list[tuple[object, ...]]:
    model.zero_grad(set_to_none=True)
    model(batch).square().sum().backward()
    return [(r.label, r.forward, r.grad_std, r.grad_rms) for r in probe.collect()]


def test_a_probe_reset_for_another_pass_gives_what_a_fresh_probe_gives() -> None:
    """reset() hands the probe's result buffer out again: the second pass must read only its
    own values."""
    _, model, batch = models()[1]
    other = batch.flip(0) * 2.0
    with Probe(model) as probe:
        first = _records(probe, model, batch)
        probe.reset()
        again = _records(probe, model, other)
    with Probe(model) as fresh:
        expected = _records(fresh, model, other)
    assert again == expected
    assert again != first  # the second batch does give other statistics


def test_the_result_pool_starts_a_block_for_what_does_not_fit() -> None:
    pool = fused.ResultPool()
    small = pool.take(10)
    small[:] = 1.0
    large = pool.take(fused.ResultPool.BLOCK + 5)  # bigger than a block: a block of its own
    large[:] = 2.0
    after = pool.take(fused.ResultPool.BLOCK - 20)  # what is left of the first block is too short
    after[:] = 3.0
    assert large.shape == (fused.ResultPool.BLOCK + 5,)
    assert (small == 1.0).all()
    assert (large == 2.0).all()
    assert not np.shares_memory(small, after)
    assert not np.shares_memory(large, after)
    pool.rewind()
    assert np.shares_memory(pool.take(10), small)
