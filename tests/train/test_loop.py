"""fit: deterministic, records every practice, stops diverged runs without raising."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from initlab.errors import ConfigError, ShapeError, UnknownNameError
from initlab.train import (
    MLP,
    Augment,
    Dataset,
    EarlyStopping,
    EpochRecord,
    Penalty,
    SmallCNN,
    TrainConfig,
    evaluate,
    fit,
    teacher_student,
)


def _mlp(seed: int = 0, **options: object) -> MLP:
    torch.manual_seed(seed)
    return MLP(64, 10, depth=2, width=32, **options)  # type: ignore[arg-type]


@pytest.fixture
def optimizer_steps() -> Iterator[list[list[torch.Tensor]]]:
    """The gradients every optimizer sees at its step, after fit's clipping."""
    seen: list[list[torch.Tensor]] = []

    def hook(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        seen.append(
            [
                p.grad.clone()
                for g in optimizer.param_groups
                for p in g["params"]
                if p.grad is not None
            ]
        )

    handle = register_optimizer_step_pre_hook(hook)
    yield seen
    handle.remove()


def test_same_seed_same_history_other_seed_other_history(small_digits: Dataset) -> None:
    config = TrainConfig(epochs=2, batch_size=32, lr=0.05, seed=3)
    runs = []
    for seed in (3, 3, 4):
        model = _mlp(dropout=0.2)
        history = fit(model, small_digits, dataclasses.replace(config, seed=seed))
        runs.append((history.rows(times=False), [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1], strict=True))
    assert runs[0][0] != runs[2][0]


def test_augmented_cnn_runs_are_reproducible(small_digits: Dataset) -> None:
    config = TrainConfig(epochs=1, batch_size=64, augment=Augment(rotate=10, hflip=0.5))
    histories = []
    for _ in range(2):
        torch.manual_seed(0)
        histories.append(fit(SmallCNN(1, 10, channels=(4, 8), dropout=0.3), small_digits, config))
    assert histories[0].rows(times=False) == histories[1].rows(times=False)


def test_fit_leaves_the_global_rng_as_it_was(small_digits: Dataset) -> None:
    model = _mlp(dropout=0.5)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    fit(model, small_digits, TrainConfig(epochs=1))
    assert torch.equal(torch.get_rng_state(), state)


def test_history_records_each_epoch(small_digits: Dataset) -> None:
    seen: list[EpochRecord] = []
    history = fit(
        _mlp(), small_digits, TrainConfig(epochs=3, batch_size=16, lr=0.05), on_epoch=seen.append
    )
    assert list(history.epochs) == seen
    assert history.status == "completed"
    assert [r.epoch for r in seen] == [0, 1, 2]
    first, last = history.epochs[0], history.final
    assert last.train_loss < first.train_loss
    assert last.val_accuracy > 0.5
    assert 0 <= last.train_accuracy <= 1
    assert last.grad_norm_max >= last.grad_norm > 0
    assert history.parameter_names[0] == "layers.0.linear.weight"
    assert len(last.weight_norms) == len(history.parameter_names) == 6
    assert history.test_accuracy is not None
    assert history.test_loss is not None
    assert "weight_norm/head.bias" in history.rows()[0]
    with pytest.raises(UnknownNameError, match="val_loss"):
        history.column("val_los")
    best = max(r.val_accuracy for r in history.epochs)
    assert history.best_val_accuracy == best
    lines = str(history).splitlines()
    assert lines[0].startswith("training run: completed, 3 epochs on cpu in ")
    assert lines[1].startswith(f"final epoch 2: train loss {last.train_loss:.4g}, ")
    assert f"val accuracy {last.val_accuracy:.4g}" in lines[1]
    assert f"best val accuracy {best:.4g} (epoch " in lines[2]
    assert lines[3] == (
        f"test loss {history.test_loss:.4g}, test accuracy {history.test_accuracy:.4g}"
    )


def test_losses_are_what_evaluate_reports(small_digits: Dataset) -> None:
    # With a learning rate of 1e-12 the weights stay put, so the epoch's train loss (mean over
    # its batches) must equal the loss of the whole train split, and the penalty its formula.
    model = _mlp()
    strength = 1e-3
    weights = [model.layers[0].linear.weight, model.layers[1].linear.weight, model.head.weight]
    expected_penalty = strength * sum(float(w.detach().square().sum()) for w in weights)
    config = TrainConfig(epochs=1, lr=1e-12, momentum=0.0, penalties=Penalty(l2=strength))
    history = fit(model, small_digits, config)
    loss_sum, correct = evaluate(model, small_digits, small_digits.train)
    record = history.final
    assert record.train_loss == pytest.approx(float(loss_sum) / len(small_digits.train), rel=1e-5)
    assert record.train_accuracy == pytest.approx(float(correct) / len(small_digits.train))
    assert record.penalty == pytest.approx(expected_penalty, rel=1e-5)
    assert history.test_loss == pytest.approx(
        float(evaluate(model, small_digits, small_digits.test)[0]) / len(small_digits.test)
    )


def test_clip_by_norm_bounds_the_global_norm(
    small_digits: Dataset, optimizer_steps: list[list[torch.Tensor]]
) -> None:
    history = fit(_mlp(), small_digits, TrainConfig(epochs=2, lr=0.01, clip_norm=0.05))
    norms = [
        float(torch.linalg.vector_norm(torch.stack([g.norm() for g in step])))
        for step in optimizer_steps
    ]
    assert len(norms) == 2 * math.ceil(len(small_digits.train) / 64)
    assert max(norms) <= 0.05 * (1 + 1e-5)
    # Every pre-clip norm was above 0.05 here, and the record says so.
    assert min(r.grad_norm for r in history.epochs) > 0.05
    assert [r.clip_fraction for r in history.epochs] == [1.0, 1.0]


def test_clip_fraction_counts_only_the_steps_that_clipped(small_digits: Dataset) -> None:
    history = fit(_mlp(), small_digits, TrainConfig(epochs=2, clip_norm=1e6))
    assert [r.clip_fraction for r in history.epochs] == [0.0, 0.0]


def test_clip_by_value_bounds_every_element(
    small_digits: Dataset, optimizer_steps: list[list[torch.Tensor]]
) -> None:
    history = fit(_mlp(), small_digits, TrainConfig(epochs=1, clip_value=1e-3, clip_norm=0.02))
    assert all(float(g.abs().max()) <= 1e-3 for step in optimizer_steps for g in step)
    assert all(
        float(torch.linalg.vector_norm(torch.stack([g.norm() for g in step]))) <= 0.02 * 1.00001
        for step in optimizer_steps
    )
    assert history.final.clip_fraction == 1.0


def test_diverging_run_is_recorded_not_raised(small_digits: Dataset) -> None:
    history = fit(_mlp(), small_digits, TrainConfig(epochs=5, lr=1e8))
    assert history.diverged
    assert history.status == "diverged"
    assert not history.final.finite
    assert history.diverged_step is not None
    assert history.diverged_step >= 0
    assert history.test_loss is None
    assert str(history).startswith(f"training run: diverged at step {history.diverged_step}, ")


def test_early_stopping_restores_the_best_weights(small_digits: Dataset) -> None:
    # A large learning rate makes val loss bounce; patience 1 stops at the first bounce.
    model = _mlp()
    stopping = EarlyStopping(monitor="val_loss", patience=1)
    history = fit(model, small_digits, TrainConfig(epochs=40, lr=0.3, early_stopping=stopping))
    assert history.status == "early_stopped"
    assert len(history.epochs) < 40
    best = history.best_epoch
    assert best is not None
    assert best == len(history.epochs) - 2
    val = [r.val_loss for r in history.epochs]
    assert val[best] == min(val)
    restored = float(evaluate(model, small_digits, small_digits.val)[0]) / len(small_digits.val)
    assert restored == pytest.approx(val[best], rel=1e-6)
    assert f"early stopping on val_loss: best epoch {best}" in str(history)


def test_regression_and_bfloat16() -> None:
    data = teacher_student(n=600, in_features=8, noise=0.05)
    torch.manual_seed(0)
    model = MLP(8, 1, depth=2, width=32, activation="tanh")
    history = fit(model, data, TrainConfig(epochs=6, lr=0.05, precision="bfloat16"))
    assert history.final.train_accuracy is None
    assert history.final.val_accuracy is None
    assert history.final.val_loss < history.epochs[0].val_loss
    assert all(r.finite for r in history.epochs)


def test_adam_and_adamw_with_weight_decay(small_digits: Dataset) -> None:
    for optimizer in ("adam", "adamw"):
        history = fit(
            _mlp(),
            small_digits,
            TrainConfig(epochs=3, batch_size=16, optimizer=optimizer, lr=3e-3, weight_decay=0.01),
        )
        assert history.final.val_accuracy > 0.5


def test_mismatched_model_and_monitor_errors(small_digits: Dataset) -> None:
    with pytest.raises(ShapeError, match="set the last layer's outputs to 10"):
        fit(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), small_digits, TrainConfig(epochs=1))
    no_val = teacher_student(n=100, val_fraction=0.0)
    with pytest.raises(ConfigError, match="no val split"):
        fit(MLP(16, 1), no_val, TrainConfig(epochs=1, early_stopping=EarlyStopping()))
    with pytest.raises(ConfigError, match="lr must be"):
        TrainConfig(lr=0)
    with pytest.raises(UnknownNameError, match="Did you mean 'adamw'"):
        TrainConfig(optimizer="adammw")  # type: ignore[arg-type]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_runs_are_reproducible(small_digits: Dataset) -> None:
    config = TrainConfig(epochs=2, device="cuda", augment=Augment(rotate=10), precision="bfloat16")
    histories = []
    for _ in range(2):
        torch.manual_seed(0)
        histories.append(fit(SmallCNN(1, 10, channels=(8, 16)), small_digits, config))
    assert histories[0].device.startswith("cuda")
    assert histories[0].rows(times=False) == histories[1].rows(times=False)
