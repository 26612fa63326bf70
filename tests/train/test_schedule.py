"""Learning-rate schedules: each follows its formula, epoch by epoch or step by step."""

from __future__ import annotations

import math

import pytest
import torch

from initlab.errors import ConfigError, UnknownNameError
from initlab.train import (
    MLP,
    Dataset,
    Exponential,
    OneCycle,
    ReduceOnPlateau,
    StepDecay,
    TrainConfig,
    WarmupCosine,
    fit,
    schedule,
)


def _optimizer(lr: float = 0.1, momentum: float = 0.0) -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr, momentum=momentum)


def _rates(built, optimizer: torch.optim.SGD, steps: int) -> list[float]:
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        built.step()
    return rates


@pytest.mark.parametrize(("rate", "step"), [(0.5, 3), (0.1, 1), (0.9, 10)])
def test_step_decay_is_the_formula_epoch_by_epoch(rate: float, step: int) -> None:
    opt = _optimizer(0.2)
    rates = _rates(StepDecay(rate, step).build(opt, epochs=25, steps_per_epoch=4), opt, 25)
    assert rates == [
        pytest.approx(0.2 * rate ** math.floor((1 + e) / step), rel=1e-12) for e in range(25)
    ]


def test_fit_records_the_step_decay_rates(small_digits: Dataset) -> None:
    torch.manual_seed(0)
    config = TrainConfig(epochs=7, lr=0.05, schedule=StepDecay(rate=0.5, step=2))
    history = fit(MLP(64, 10, depth=1, width=32), small_digits, config)
    assert history.column("lr") == [
        pytest.approx(0.05 * 0.5 ** math.floor((1 + e) / 2)) for e in range(7)
    ]


def test_exponential() -> None:
    opt = _optimizer(0.1)
    rates = _rates(Exponential(0.8).build(opt, epochs=6, steps_per_epoch=1), opt, 6)
    assert rates == [pytest.approx(0.1 * 0.8**e) for e in range(6)]


def test_warmup_cosine_climbs_linearly_then_follows_the_cosine() -> None:
    opt = _optimizer(0.1)
    built = WarmupCosine(warmup_epochs=1, min_lr=0.01, start_factor=0.2).build(
        opt, epochs=5, steps_per_epoch=4
    )
    rates = _rates(built, opt, 20)
    warmup = [0.1 * (0.2 + 0.8 * t / 4) for t in range(4)]
    cosine = [0.01 + 0.09 * (1 + math.cos(math.pi * t / 16)) / 2 for t in range(16)]
    assert rates == pytest.approx(warmup + cosine, rel=1e-9)


def test_cosine_without_warmup_and_too_long_warmup() -> None:
    opt = _optimizer(0.1)
    rates = _rates(WarmupCosine().build(opt, epochs=2, steps_per_epoch=5), opt, 10)
    assert rates == pytest.approx([0.05 * (1 + math.cos(math.pi * t / 10)) for t in range(10)])
    with pytest.raises(ConfigError, match="covers the whole run"):
        WarmupCosine(warmup_epochs=3).build(_optimizer(), epochs=3, steps_per_epoch=2)


def test_one_cycle_peaks_after_pct_start_and_leaves_momentum_alone() -> None:
    opt = _optimizer(0.1, momentum=0.5)
    built = OneCycle(pct_start=0.25, div_factor=10, final_div_factor=100).build(
        opt, epochs=4, steps_per_epoch=5
    )
    rates = _rates(built, opt, 20)
    assert rates[0] == pytest.approx(0.01)
    assert max(rates) == pytest.approx(0.1, rel=1e-3)
    assert rates.index(max(rates)) in (4, 5)
    assert rates[-1] < 0.01
    assert rates[-1] == min(rates)
    assert opt.param_groups[0]["momentum"] == 0.5


def test_reduce_on_plateau_after_patience() -> None:
    opt = _optimizer(0.1)
    built = ReduceOnPlateau(monitor="val_loss", factor=0.5, patience=2).build(
        opt, epochs=10, steps_per_epoch=1
    )
    rates = []
    for _ in range(6):
        built.step(1.0)  # never improves after the first epoch
        rates.append(opt.param_groups[0]["lr"])
    assert rates == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05])
    accuracy = ReduceOnPlateau(monitor="val_accuracy").build(opt, epochs=1, steps_per_epoch=1)
    assert accuracy.mode == "max"


def test_schedule_by_name_and_validation() -> None:
    assert schedule("step_decay", rate=0.5, step=10) == StepDecay(0.5, 10)
    with pytest.raises(UnknownNameError, match="Did you mean 'one_cycle'"):
        schedule("onecycle")
    with pytest.raises(ConfigError, match="unexpected keyword"):
        schedule("exponential", rate=0.5)
    with pytest.raises(ConfigError, match="StepDecay: step must be an int >= 1"):
        StepDecay(0.5, 0)
    with pytest.raises(UnknownNameError, match="monitor"):
        ReduceOnPlateau(monitor="val_los")  # type: ignore[arg-type]
