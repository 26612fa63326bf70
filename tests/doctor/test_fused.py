"""The compiled reductions (one pass per output, gradient and weight) against torch's ops on
the same tensors: the doctor gives the same statistics whichever path ran.

Tolerances: both paths sum float32 values in float32 over blocks (torch's vectorized
reductions, the kernels' blocks of 1024) and differ only in the order of the additions, so
each sum differs by at most about (values per block) * 2**-24 relative to the sum of the
magnitudes: 1024 * 6e-8 = 6e-5 in the worst case; the tests use 1e-4. Counts (zeros,
saturation) are exact on both paths.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pytest
import torch
from torch import nn

from initlab.doctor import fused
from initlab.doctor.metrics import weight_records
from initlab.doctor.probe import Probe
from initlab.doctor.reductions import Scratch, Watch, moments, reduce_output

WATCHES = {
    "layer": Watch("Linear", can_die=False, saturation=None, is_layer=True),
    "relu": Watch("ReLU", can_die=True, saturation=None, is_layer=False),
    "tanh": Watch("Tanh", can_die=False, saturation=(-0.99, 0.99), is_layer=True),
    "hardsigmoid": Watch("Hardsigmoid", can_die=False, saturation=(0.01, 0.99), is_layer=True),
    # No activation initlab knows is both, but the two counts must not exclude each other.
    "clipped": Watch("Clipped", can_die=True, saturation=(-1.0, 1.5), is_layer=True),
}
SHAPES = [
    (7,),  # a vector: one unit
    (5, 3),
    (70, 130),  # more examples than the cosine's 64 and the kernel's 64-row blocks
    (4, 3, 2),  # short rows: read as columns, folded per unit
    (3, 2, 70),  # rows under fused._SHORT values: columns too
    (3, 2, 300),  # rows of one block
    (2, 3, 40, 40),  # rows of two blocks (1600 values)
]


def values(shape: tuple[int, ...], kind: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(len(shape) * 100 + shape[0])
    h = torch.randn(shape, generator=generator) * 2.0
    if kind in ("relu", "clipped"):
        h = h.clamp_min(0.0)
        h[..., :1] = 0.0  # a dead unit where the layout has one
    elif kind in ("tanh", "hardsigmoid"):
        h = torch.tanh(h) if kind == "tanh" else torch.sigmoid(h)
    return h


Result = TypeVar("Result")


def on_both_paths(
    compute: Callable[[], Result], monkeypatch: pytest.MonkeyPatch
) -> tuple[Result, Result]:
    """``compute()`` with the kernels, then with torch's ops (the kernels unavailable)."""
    compiled = compute()
    monkeypatch.setattr(fused, "kernels", lambda: None)
    reference = compute()
    monkeypatch.undo()
    return compiled, reference


def flat(sums: Any) -> np.ndarray[Any, Any]:
    pieces = [sums.unit_mean, sums.unit_sq, *sums.counts, *sums.cosine]
    return np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1) for p in pieces])


def test_the_kernels_are_there() -> None:
    """numba is a dependency: the compiled path is the one CPU users get."""
    assert fused.kernels() is not None


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kind", list(WATCHES))
def test_output_sums_equal_torch(
    shape: tuple[int, ...], kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = values(shape, kind)
    watch = WATCHES[kind]
    compiled, reference = on_both_paths(
        lambda: flat(reduce_output(watch, h, Scratch(), cosine=watch.is_layer)), monkeypatch
    )
    assert compiled.shape == reference.shape
    assert compiled == pytest.approx(reference, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("poison", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_reach_the_sums_as_on_the_torch_path(
    poison: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = values((6, 3, 8, 8), "relu")
    h[2, 1, 3, 4] = poison
    watch = WATCHES["relu"]
    compiled, reference = on_both_paths(
        lambda: flat(reduce_output(watch, h, Scratch(), cosine=True)), monkeypatch
    )
    np.testing.assert_array_equal(np.isnan(compiled), np.isnan(reference))
    np.testing.assert_array_equal(np.isinf(compiled), np.isinf(reference))
    finite = np.isfinite(reference)
    assert compiled[finite] == pytest.approx(reference[finite], rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("shape", [(1,), (3000,), (8, 3, 5, 5)], ids=str)
def test_moments_equal_torch(shape: tuple[int, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    x = values(shape, "layer")
    compiled, reference = on_both_paths(
        lambda: [float(v) for p in moments(x) for v in np.asarray(p).reshape(-1)], monkeypatch
    )
    assert compiled == pytest.approx(reference, rel=1e-4)


class _Weights(nn.Module):
    """Weights with every case the weight records tell apart."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3)
        self.wide = nn.Linear(1500, 4)  # rows of two blocks
        self.constant = nn.Linear(5, 5)
        self.copied = nn.Linear(8, 6)
        with torch.no_grad():
            self.constant.weight.fill_(0.25)
            self.copied.weight[3:] = self.copied.weight[:3]
            self.copied.weight[5] = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.conv(x).mean(dim=(2, 3))
        hidden = torch.cat([hidden, hidden.new_ones(hidden.shape[0], 1494)], dim=1)
        hidden = self.wide(hidden)
        hidden = self.constant(torch.cat([hidden, hidden[:, :1]], dim=1))
        return self.copied(torch.cat([hidden, hidden[:, :3]], dim=1))  # type: ignore[no-any-return]


@pytest.mark.parametrize("with_gradients", [False, True])
def test_weight_records_equal_torch(with_gradients: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _Weights()
    if with_gradients:
        model(torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(1))).sum().backward()
    compiled, reference = on_both_paths(lambda: weight_records(model), monkeypatch)
    assert [r.name for r in compiled] == [r.name for r in reference]
    for got, want in zip(compiled, reference, strict=True):
        for field in ("duplicate_rows", "zero_rows", "symmetric_rows"):
            assert getattr(got, field) == getattr(want, field), (got.name, field)
        for field in ("mean", "std", "gain_sq", "grad_std", "grad_to_weight"):
            a, b = getattr(got, field), getattr(want, field)
            assert (a is None) == (b is None), (got.name, field)
            if a is not None:
                assert a == pytest.approx(b, rel=1e-4, abs=1e-7), (got.name, field)
    constant = next(r for r in compiled if r.name == "constant.weight")
    assert constant.std == pytest.approx(0.0, abs=1e-7)  # a constant weight reads 0
    copied = next(r for r in compiled if r.name == "copied.weight")
    assert copied.duplicate_rows == pytest.approx(2 / 6)  # rows 3, 4 copy rows 0, 1
    assert copied.zero_rows == pytest.approx(1 / 6)


def test_the_probe_takes_the_compiled_path_on_cpu_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    compiled = fused.kernels()
    assert compiled is not None

    class Counting:
        def __getattr__(self, name: str) -> Any:
            calls.append(name)
            return getattr(compiled, name)

    counting = Counting()
    monkeypatch.setattr(fused, "kernels", lambda: counting)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 324, 3))
    with Probe(model) as probe:
        model(torch.randn(5, 3, 20, 20)).sum().backward()  # rows of 324
        probe.collect()
    assert {"channel_rows", "columns", "flat_moments"} <= set(calls)
    calls.clear()
    double = nn.Linear(4, 4).to(torch.float64)
    with Probe(double) as probe:  # float64: torch's ops
        double(torch.randn(3, 4, dtype=torch.float64)).sum().backward()
        probe.collect()
    assert calls == []
