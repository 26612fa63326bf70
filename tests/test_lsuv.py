"""LSUV: every layer reaches the target variance, measured afresh, on real data; the run is
reproducible, leaves BatchNorm statistics alone, and fails or warns in words that name things."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from initlab.doctor.probe import ForwardStopped, Probe
from initlab.errors import ConfigError, InitlabError
from initlab.lsuv import LsuvLog, lsuv


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    """scikit-learn's 8x8 digits, standardized per pixel (constant pixels left at 0)."""
    datasets = pytest.importorskip("sklearn.datasets")
    images = datasets.load_digits().data.astype(np.float32)
    std = images.std(axis=0)
    standardized = (images - images.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return torch.from_numpy(standardized[:512])


def relu_mlp(depth: int = 10, width: int = 64) -> nn.Sequential:
    layers: list[nn.Module] = []
    features = 64
    for _ in range(depth - 1):
        layers += [nn.Linear(features, width), nn.ReLU()]
        features = width
    layers.append(nn.Linear(features, 10))
    return nn.Sequential(*layers)


def digit_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.ConvTranspose2d(32, 16, 2, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 8 * 8, 10),
    )


def weight_layers(model: nn.Module) -> list[str]:
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear | nn.modules.conv._ConvNd)
    ]


def measured(model: nn.Module, batch: torch.Tensor) -> dict[str, tuple[float, float]]:
    """(variance, mean) of each layer's output in one fresh forward, with plain hooks."""
    found: dict[str, tuple[float, float]] = {}
    modules = dict(model.named_modules())

    def recorder(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: object, out: torch.Tensor) -> None:
            found.setdefault(name, (out.var(unbiased=False).item(), out.mean().item()))

        return hook

    handles = [
        modules[name].register_forward_hook(recorder(name)) for name in weight_layers(model)
    ]
    with torch.no_grad():
        model(batch)
    for handle in handles:
        handle.remove()
    return found


def test_mlp_reaches_unit_variance_on_every_layer(digits: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = relu_mlp()
    log = lsuv(model, digits)
    assert isinstance(log, LsuvLog)
    assert [row.layer for row in log.rows] == weight_layers(model)
    assert log.converged
    stats = measured(model, digits)
    assert len(stats) == 10
    for name, (variance, _) in stats.items():
        assert abs(variance - 1.0) < 0.1, (name, variance)


def test_cnn_with_batchnorm_and_transposed_conv(digits: torch.Tensor) -> None:
    torch.manual_seed(0)
    images = digits.reshape(-1, 1, 8, 8)
    model = digit_cnn().train()
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    log = lsuv(model, images)
    assert model.training
    assert [row.kind for row in log.rows] == ["Conv2d", "Conv2d", "ConvTranspose2d", "Linear"]
    for name, value in model.named_buffers():
        assert torch.equal(value, buffers[name]), f"{name} changed"
    for name, (variance, _) in measured(model, images).items():
        assert abs(variance - 1.0) < 0.1, (name, variance)


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (nn.Conv1d(4, 8, 3), (64, 4, 16)),
        (nn.Conv3d(2, 4, 3), (16, 2, 6, 6, 6)),
        (nn.ConvTranspose1d(4, 8, 3, stride=2), (64, 4, 16)),
        (nn.ConvTranspose3d(2, 4, 2, stride=2), (16, 2, 4, 4, 4)),
    ],
)
def test_every_conv_kind(layer: nn.Module, shape: tuple[int, ...]) -> None:
    model = nn.Sequential(layer, nn.ReLU())
    batch = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    log = lsuv(model, batch, target_var=2.0)
    assert log.converged
    (variance, _) = measured(model, batch)["0"]
    assert abs(variance - 2.0) < 0.1


def test_reproducible_per_seed(digits: torch.Tensor) -> None:
    # The pre-init replaces every weight and bias LSUV touches, so the models' own (different)
    # default init must not matter: same seed -> the same bits.
    torch.manual_seed(1)
    first = relu_mlp(depth=4)
    torch.manual_seed(2)
    second = relu_mlp(depth=4)
    torch.manual_seed(3)
    third = relu_mlp(depth=4)
    log_first = lsuv(first, digits, seed=7)
    log_second = lsuv(second, digits, seed=7)
    lsuv(third, digits, seed=8)
    assert log_first == log_second
    for (name, a), b, c in zip(
        first.state_dict().items(),
        second.state_dict().values(),
        third.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b), name
        if name.endswith("weight"):
            assert not torch.equal(a, c), name


def test_nan_in_the_batch_is_an_error_naming_the_input(digits: torch.Tensor) -> None:
    batch = digits[:32].clone()
    batch[3, 5] = float("nan")
    with pytest.raises(InitlabError, match=r"input batch \(shape \(32, 64\)\).*NaN"):
        lsuv(relu_mlp(depth=2), batch)


def test_non_convergence_warns_with_the_layer_and_stops() -> None:
    # A fixed per-unit bias of +-5 keeps the output variance >= 25 whatever the weight's scale.
    model = nn.Sequential(nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 4))
    with torch.no_grad():
        model[2].bias.copy_(torch.tensor([5.0, -5.0, 5.0, -5.0]))
    batch = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match=r"layer '2' did not reach variance 1 ± 0.1 in 1 "):
        log = lsuv(model, batch, orthogonal=False, max_iter=1)
    last = log.rows[-1]
    assert (last.layer, last.iterations, last.converged) == ("2", 1, False)
    assert last.final_var > 20
    assert log.rows[0].converged
    assert not log.converged
    assert log.seed is None


def test_parameter_free_and_other_modules_are_skipped(digits: torch.Tensor) -> None:
    model = nn.Sequential(
        nn.Identity(),
        nn.Linear(64, 32),
        nn.LayerNorm(32),
        nn.ReLU(),
        nn.Dropout(0.0),
        nn.Unflatten(1, (1, 32)),
        nn.MaxPool1d(2),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    norm_weight = model[2].weight.clone()
    log = lsuv(model, digits)
    assert [row.layer for row in log.rows] == ["1", "8"]
    assert torch.equal(model[2].weight, norm_weight)


def test_center_bias_zeroes_the_output_mean(digits: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = relu_mlp(depth=5)
    log = lsuv(model, digits, center_bias=True)
    assert all(row.iterations >= 1 for row in log.rows)
    for name, (variance, mean) in measured(model, digits).items():
        assert abs(mean) < 1e-4, (name, mean)
        assert abs(variance - 1.0) < 0.1, (name, variance)


def test_keeps_eval_mode_and_weights_without_orthogonal(digits: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = relu_mlp(depth=3).eval()
    before = model[0].weight.clone()
    log = lsuv(model, digits, orthogonal=False)
    assert not model.training
    # Without the pre-init the weight keeps its direction: only its scale changed.
    ratio = model[0].weight / before
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio))
    assert log.rows[0].iterations >= 1


def test_constant_output_warns_and_is_left_alone() -> None:
    model = nn.Linear(8, 4)
    with pytest.warns(UserWarning, match=r"layer '' outputs a constant"):
        log = lsuv(model, torch.zeros(16, 8))
    assert log.rows[0].iterations == 0
    assert not log.rows[0].converged


def test_a_layer_the_forward_never_calls_is_reported() -> None:
    class Partial(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(8, 8)
            self.unused = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.used(x)
            return out

    model = Partial()
    unused = model.unused.weight.clone()
    with pytest.warns(UserWarning, match=r"layer 'unused' never ran"):
        log = lsuv(model, torch.randn(32, 8))
    assert [row.layer for row in log.rows] == ["used"]
    assert torch.equal(model.unused.weight, unused)


@pytest.mark.parametrize(
    ("option", "value"),
    [("tol", 0.0), ("tol", math.nan), ("max_iter", -1), ("max_iter", 2.5), ("target_var", -1)],
)
def test_settings_out_of_range(option: str, value: float) -> None:
    with pytest.raises(ConfigError, match=option):
        lsuv(nn.Linear(4, 4), torch.randn(8, 4), **{option: value})


def test_batch_must_be_a_tensor() -> None:
    with pytest.raises(InitlabError, match=r"torch\.Tensor, got list"):
        lsuv(nn.Linear(4, 4), [[0.0] * 4])  # type: ignore[arg-type]


def test_log_table_and_rows(digits: torch.Tensor) -> None:
    log = lsuv(relu_mlp(depth=3), digits)
    text = str(log)
    assert text.splitlines()[0].startswith("LSUV: target variance 1 ± 0.1, 3/3 layers converged")
    assert len(text.splitlines()) == 2 + 3
    rows = log.to_rows()
    assert [row["layer"] for row in rows] == ["0", "2", "4"]
    assert set(rows[0]) == {
        "layer", "kind", "iterations", "initial_var", "final_var", "final_mean", "converged"
    }  # fmt: skip


def test_probe_stop_early_skips_the_rest_of_the_forward() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    ran: list[str] = []
    model[2].register_forward_hook(lambda *_: ran.append("2"))
    with Probe(model, ["0"], gradients=False, cosine=False, stop_early=True) as probe:
        with pytest.raises(ForwardStopped):
            model(torch.randn(8, 4))
        records = probe.collect()
    assert [record.name for record in records] == ["0"]
    assert ran == []
