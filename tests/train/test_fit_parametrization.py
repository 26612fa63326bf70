"""`fit(..., parametrization=...)`: each parameter trains at the learning rate and weight decay
its parametrization gives it, schedules keep the ratios, and mismatches are refused."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional

from initlab.errors import ConfigError
from initlab.parametrize import Parametrization, parametrize
from initlab.train import (
    MLP,
    ConstantRate,
    Dataset,
    Exponential,
    OneCycle,
    ReduceOnPlateau,
    Schedule,
    StepDecay,
    TrainConfig,
    WarmupCosine,
    decay_split,
    fit,
)

LR = 0.1


def _mup(optimizer: str, width: int = 64) -> tuple[MLP, Parametrization]:
    """A muP-initialized float64 MLP; the base width 24 makes multipliers like 8/3 and 3/8,
    which no power-of-two rounding hides."""
    model = MLP(64, 10, depth=2, width=width).double()
    base = MLP(64, 10, depth=2, width=24)
    mup = parametrize(model, "mup", base=base, optimizer=optimizer)  # type: ignore[arg-type]
    mup.plan.apply(model, seed=0)
    return model, mup


def _one_step(model: MLP, data: Dataset, config: TrainConfig, mup: Parametrization) -> dict:
    """Each parameter's change over one full-batch step of ``fit``."""
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    fit(model, data, config, parametrization=mup, progress=False)
    return {name: p.detach() - before[name] for name, p in model.named_parameters()}


def _full_batch_gradients(model: nn.Module, data: Dataset) -> dict[str, torch.Tensor]:
    """The gradient of the mean loss over the whole train split, by name."""
    train = data.to("cpu", torch.float64).train
    model.zero_grad()
    functional.cross_entropy(model(train.x), train.y).backward()
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}  # type: ignore[union-attr]


def _full_batch(small_digits: Dataset, **options: object) -> TrainConfig:
    size = len(small_digits.train)
    return TrainConfig(epochs=1, batch_size=size, device="cpu", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_one_sgd_step_moves_each_parameter_at_lr_times_its_multiplier(
    small_digits: Dataset, weight_decay: float
) -> None:
    model, mup = _mup("sgd")
    grads = _full_batch_gradients(copy.deepcopy(model), small_digits)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    config = _full_batch(small_digits, lr=LR, momentum=0.0, weight_decay=weight_decay)
    change = _one_step(model, small_digits, config, mup)
    decays = set(decay_split(model)[0])
    assert decays == {"layers.0.linear.weight", "layers.1.linear.weight", "head.weight"}
    multipliers = {row.lr_multiplier for row in mup.rows}
    assert len(multipliers) == 3  # input/bias, hidden, output: three different rates
    for row in mup.rows:
        decay = weight_decay * row.weight_decay_multiplier if row.name in decays else 0.0
        step = grads[row.name] + decay * before[row.name]
        expected = -LR * row.lr_multiplier * step
        # float64 throughout; fit sums the batch in another order, an error of ~1e-16 relative
        # per example, far below the 1e-9 checked (a wrong multiplier is off by x8/3 or more).
        torch.testing.assert_close(change[row.name], expected, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_first_adam_step_has_magnitude_lr_times_multiplier(
    small_digits: Dataset, optimizer: str
) -> None:
    """Adam's first step is :math:`-\\eta_p g / (|g| + \\epsilon)`, size :math:`\\eta_p`."""
    model, mup = _mup("adam")
    grads = _full_batch_gradients(copy.deepcopy(model), small_digits)
    lr = 1e-3
    change = _one_step(
        model, small_digits, _full_batch(small_digits, optimizer=optimizer, lr=lr), mup
    )
    for row in mup.rows:
        grad = grads[row.name]
        expected = -lr * row.lr_multiplier * grad / (grad.abs() + 1e-8)
        torch.testing.assert_close(change[row.name], expected, rtol=1e-9, atol=1e-14)
        large = grad.abs() > 1e-4  # |g| / (|g| + 1e-8) = 1 within 1e-4 there
        magnitude = change[row.name][large].abs() / (lr * row.lr_multiplier)
        torch.testing.assert_close(magnitude, torch.ones_like(magnitude), rtol=1e-4, atol=0.0)


def test_optimizer_groups_carry_rates_and_decay_per_parameter() -> None:
    model, mup = _mup("adam")
    config = TrainConfig(optimizer="adamw", lr=1e-3, weight_decay=0.1)
    optimizer = config.build_optimizer(model, mup)
    decays = set(decay_split(model)[0])
    seen = []
    for group in optimizer.param_groups:
        for name in group["param_names"]:
            row = mup.row(name)
            seen.append(name)
            assert group["lr"] == 1e-3 * row.lr_multiplier
            assert group["lr_multiplier"] == row.lr_multiplier
            wanted = 0.1 * row.weight_decay_multiplier if name in decays else 0.0
            assert group["weight_decay"] == wanted
    assert sorted(seen) == sorted(name for name, _ in model.named_parameters())


SCHEDULES: list[Schedule] = [
    ConstantRate(),
    StepDecay(rate=0.5, step=1),
    Exponential(0.7),
    WarmupCosine(warmup_epochs=1),
    WarmupCosine(warmup_epochs=1, min_lr=0.01),
    WarmupCosine(min_lr=0.02),
    OneCycle(pct_start=0.4),
    OneCycle(max_lr=0.3, pct_start=0.4),
    ReduceOnPlateau(monitor="train_loss", factor=0.5, patience=0, min_lr=0.02),
]


@pytest.mark.parametrize("chosen", SCHEDULES, ids=lambda s: repr(s))
def test_schedules_keep_each_groups_ratio_to_the_plain_rate(chosen: Schedule) -> None:
    """Every group's rate is its multiplier times the rate of the same schedule without one."""
    model, mup = _mup("sgd")
    config = TrainConfig(lr=LR, weight_decay=0.01, schedule=chosen)
    optimizer = config.build_optimizer(model, mup)
    plain = config.build_optimizer(MLP(64, 10, depth=2, width=64).double())
    built = [c.schedule.build(o, epochs=4, steps_per_epoch=3) for c, o in
             ((config, optimizer), (config, plain))]  # fmt: skip
    multipliers = [group["lr_multiplier"] for group in optimizer.param_groups]
    assert len(set(multipliers)) == 3
    rates = []
    for _ in range(12):
        rate = plain.param_groups[0]["lr"]
        rates.append(rate)
        got = [group["lr"] for group in optimizer.param_groups]
        # A rate and its multiple follow the same float operations: a few ulps apart.
        assert got == pytest.approx([rate * m for m in multipliers], rel=1e-12)
        for stepped in (optimizer, plain):
            stepped.step()  # no gradients: nothing moves, but torch wants a step first
        for scheduler in built:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(1.0)  # never improves: halves every epoch down to min_lr
            elif scheduler is not None:
                scheduler.step()
    if not isinstance(chosen, ConstantRate):
        assert len(set(rates)) > 2  # the schedule did move the rate


def test_history_logs_the_base_rate(small_digits: Dataset) -> None:
    chosen = Exponential(0.5)
    model, mup = _mup("sgd")
    assert mup.param_groups(LR)[0]["lr_multiplier"] == pytest.approx(64 / 24)
    config = TrainConfig(epochs=3, lr=LR, schedule=chosen, device="cpu")
    history = fit(model, small_digits, config, parametrization=mup, progress=False)
    # lr * m / m: one rounding off lr.
    assert history.column("lr") == [pytest.approx(LR * 0.5**e, rel=1e-15) for e in range(3)]


def test_an_optimizer_of_another_family_is_refused(small_digits: Dataset) -> None:
    model, adam = _mup("adam")
    with pytest.raises(ConfigError, match=r"optimizer='sgd'.*optimizer='adam'"):
        fit(model, small_digits, TrainConfig(optimizer="sgd"), parametrization=adam)
    model, sgd = _mup("sgd")
    with pytest.raises(ConfigError, match=r"optimizer='adamw'.*optimizer='sgd'"):
        TrainConfig(optimizer="adamw").build_optimizer(model, sgd)


def test_a_parametrization_of_another_model_is_refused(small_digits: Dataset) -> None:
    model, mup = _mup("sgd")
    config = TrainConfig(epochs=1, device="cpu")
    deeper = MLP(64, 10, depth=3, width=64).double()
    with pytest.raises(ConfigError, match=r"another model.*layers\.2\.linear\.weight"):
        fit(deeper, small_digits, config, parametrization=mup)
    twin = copy.deepcopy(model)
    with pytest.raises(ConfigError, match="other tensors than this model"):
        fit(twin, small_digits, config, parametrization=mup)
    narrower = MLP(64, 10, depth=2, width=32).double()
    with pytest.raises(ConfigError, match="another instance"):
        TrainConfig().build_optimizer(narrower, mup)
    for name, p in twin.named_parameters():
        assert torch.equal(p, dict(model.named_parameters())[name]), "trained before refusing"
