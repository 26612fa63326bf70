"""LSUV: every layer reaches the target variance, measured afresh, on real data; the run is
reproducible, leaves BatchNorm statistics alone, and fails or warns in words that name things.
Every weight-bearing layer is fitted or listed as skipped with the reason, and "converged"
claims only what was fitted."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations

from initlab.errors import ConfigError, InitlabError
from initlab.layers import is_layer
from initlab.lsuv import LsuvLog, LsuvSkip, lsuv
from initlab.lsuv.targets import classify, orthonormal
from initlab.plan.buffers import buffers_restored


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


def measured(
    model: nn.Module, batch: Any, names: list[str] | None = None
) -> dict[str, tuple[float, float]]:
    """(variance, mean) of each named module's output at its first call (the first element of
    a tuple output), in one fresh forward with plain hooks; default: the Linear/Conv layers."""
    found: dict[str, tuple[float, float]] = {}
    modules = dict(model.named_modules())

    def recorder(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: object, out: Any) -> None:
            out = out[0] if isinstance(out, tuple) else out
            found.setdefault(name, (out.var(unbiased=False).item(), out.mean().item()))

        return hook

    handles = [
        modules[name].register_forward_hook(recorder(name))
        for name in (weight_layers(model) if names is None else names)
    ]
    with torch.no_grad():
        model(**batch) if isinstance(batch, dict) else model(batch)
    for handle in handles:
        handle.remove()
    return found


def parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.named_parameters()}


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
    with pytest.raises(InitlabError, match=r"lsuv: batch contains NaN"):
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
    with pytest.warns(UserWarning, match=r"layer 'unused' \(Linear\): never ran") as caught:
        log = lsuv(model, torch.randn(32, 8))
    assert len(caught) == 1
    assert [row.layer for row in log.rows] == ["used"]
    assert log.skipped == (
        LsuvSkip("unused", "Linear", "never ran as a module in the forward pass on this batch"),
    )
    assert log.converged  # the one fitted layer converged; the skipped one is listed, not hidden
    assert torch.equal(model.unused.weight, unused)


@pytest.mark.parametrize(
    ("option", "value"),
    [("tol", 0.0), ("tol", math.nan), ("max_iter", -1), ("max_iter", 2.5), ("target_var", -1)],
)
def test_settings_out_of_range(option: str, value: float) -> None:
    with pytest.raises(ConfigError, match=option):
        lsuv(nn.Linear(4, 4), torch.randn(8, 4), **{option: value})


def test_batch_must_be_a_tensor_tuple_or_mapping() -> None:
    with pytest.raises(InitlabError, match=r"batch must be a torch\.Tensor.*got a ndarray"):
        lsuv(nn.Linear(4, 4), np.zeros((8, 4)))  # type: ignore[arg-type]


def test_a_mapping_batch_is_passed_as_keywords() -> None:
    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(8, 16)

        def forward(self, features: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"hidden": self.proj(features) * mask}

    model = Gated()
    generator = torch.Generator().manual_seed(0)
    batch = {"features": torch.randn(64, 8, generator=generator), "mask": torch.ones(64, 16)}
    log = lsuv(model, batch)
    assert [row.layer for row in log.rows] == ["proj"]
    assert log.converged
    (variance, _) = measured(model, batch, ["proj"])["proj"]
    assert abs(variance - 1.0) < 0.1


def test_log_table_and_rows(digits: torch.Tensor) -> None:
    log = lsuv(relu_mlp(depth=3), digits)
    text = str(log)
    assert text.splitlines()[0] == (
        "LSUV: target variance 1 ± 0.1, max_iter 10: 3 of 3 fitted layers converged; 0 skipped"
    )
    assert len(text.splitlines()) == 2 + 3 + 1
    assert text.splitlines()[-1] == (
        "cost: 2 forward passes and 0 single-layer calls (2 forward passes' worth)"
    )
    rows = log.to_rows()
    assert [row["layer"] for row in rows] == ["0", "2", "4"]
    assert [row["weight"] for row in rows] == ["0.weight", "2.weight", "4.weight"]
    assert set(rows[0]) == {
        "layer", "kind", "weight", "iterations", "initial_var", "final_var", "final_mean",
        "converged",
    }  # fmt: skip


# --- real models: every weight-bearing layer fitted or skipped with its reason ---------------
def accounted_for(model: nn.Module, log: LsuvLog) -> None:
    """Every weight-bearing module is a row, a skip, or inside a fitted row's module (the
    out_proj of a MultiheadAttention, whose weight the row names) or a parametrized one."""
    fitted = {row.layer for row in log.rows}
    skipped = {skip.layer for skip in log.skipped}
    assert not fitted & skipped
    covering = fitted | skipped
    for name, module in model.named_modules():
        if not is_layer(module) or name in covering:
            continue
        assert any(name.startswith(f"{outer}.") for outer in covering if outer), name
    for row in log.rows:
        owner = row.weight.rsplit(".", 1)[0] if "." in row.weight else ""
        assert owner == row.layer or owner.startswith(f"{row.layer}."), row


def lsuv_recorded(model: nn.Module, batch: Any) -> tuple[LsuvLog, list[str]]:
    """``lsuv`` and the warnings it gave (all of them its own ``lsuv:`` reports)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log = lsuv(model, batch)
    messages = [str(item.message) for item in caught]
    assert all(message.startswith("lsuv: ") for message in messages), messages
    return log, messages


def assert_claims_hold(model: nn.Module, batch: Any, log: LsuvLog) -> None:
    """Each row claimed converged re-measures within tol (first call, first tuple element)."""
    stats = measured(model, batch, [row.layer for row in log.rows])
    for row in log.rows:
        assert row.converged, row
        assert abs(stats[row.layer][0] - log.target_var) < log.tol, (row.layer, stats[row.layer])


class TokenLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 32)
        self.lstm = nn.LSTM(32, 64, batch_first=True)
        self.head = nn.Linear(64, 100)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(self.embed(tokens))
        out: torch.Tensor = self.head(hidden)
        return out


def test_lstm_language_model_on_token_ids() -> None:
    torch.manual_seed(0)
    model = TokenLSTM()
    tokens = torch.randint(0, 100, (16, 12), generator=torch.Generator().manual_seed(0))
    before = parameters(model)
    log, messages = lsuv_recorded(model, tokens)
    assert [row.layer for row in log.rows] == ["head"]
    assert_claims_hold(model, tokens, log)
    assert log.converged
    assert [(skip.layer, skip.kind) for skip in log.skipped] == [("lstm", "LSTM")]
    assert log.skipped[0].reason.startswith("recurrent: its output variance depends")
    accounted_for(model, log)
    for name, value in model.named_parameters():  # the embedding and the LSTM: untouched
        if not name.startswith("head."):
            assert torch.equal(value, before[name]), name
    (message,) = messages
    assert "layer 'lstm' (LSTM): recurrent" in message
    text = str(log)
    assert "1 of 1 fitted layers converged; 1 skipped" in text.splitlines()[0]
    assert "lstm  LSTM  recurrent" in text


@pytest.mark.parametrize(
    ("model", "batch"),
    [
        (nn.GRU(8, 8, batch_first=True), torch.randn(4, 5, 8)),
        (nn.Sequential(nn.ReLU(), nn.Flatten()), torch.randn(4, 5)),
    ],
    ids=["only a GRU", "no weight at all"],
)
def test_nothing_fitted_is_not_converged(model: nn.Module, batch: torch.Tensor) -> None:
    log, messages = lsuv_recorded(model, batch)
    assert log.rows == ()
    assert not log.converged
    assert log.summary.endswith("(nothing was fitted)")
    assert len(messages) == 1
    assert "no layer was fitted" in messages[0] or "no weight-bearing layer" in messages[0]


def test_transformer_encoder_fits_attention_through_out_proj() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    batch = torch.randn(8, 16, 64, generator=torch.Generator().manual_seed(0))
    log, messages = lsuv_recorded(model, batch)
    assert messages == []  # in particular no false "out_proj never ran"
    assert log.skipped == ()
    assert [row.kind for row in log.rows] == ["MultiheadAttention", "Linear", "Linear"] * 2
    assert log.rows[0].weight == "layers.0.self_attn.out_proj.weight"
    assert (
        "(MultiheadAttention rows: the module's output is measured and its out_proj.weight "
        in (str(log))
    )
    assert_claims_hold(model, batch, log)
    accounted_for(model, log)
    in_proj = model.layers[0].self_attn.in_proj_weight.detach()
    for block in in_proj.chunk(3):  # q, k, v each an orthogonal (64, 64) map
        torch.testing.assert_close(block @ block.T, torch.eye(64), atol=1e-5, rtol=0)


class Branches(nn.Module):
    """A fitted Linear before one layer of each kind LSUV must skip, named by its reason."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.first = nn.Linear(8, 8)
        self.kind = kind
        if kind == "weight norm":
            self.layer: nn.Module = parametrizations.weight_norm(nn.Linear(8, 8))
        elif kind == "tied":
            self.layer = nn.Linear(8, 8)
            self.twin = nn.Linear(8, 8)
            self.twin.weight = self.layer.weight
        elif kind == "integer output":
            self.layer = ArgmaxLinear(8, 8)
        elif kind == "recurrent cell":
            self.layer = nn.LSTMCell(8, 8)
        elif kind == "unknown":
            self.layer = Scaled()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.first(x))
        out = self.layer(h)
        if self.kind == "tied":
            out = self.twin(torch.tanh(out))
        tensor: torch.Tensor = out[0] if isinstance(out, tuple) else out
        return tensor.float()


class ArgmaxLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).argmax(dim=-1)


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.ones(8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.table.sum(dim=0)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("weight norm", r"computed from other parameters \(weight norm"),
        ("tied", r"tied to 'twin'"),
        ("integer output", r"its output \(a torch.int64 tensor of shape \(64,\)\) holds no float"),
        ("recurrent cell", r"recurrent: "),
        ("unknown", r"not known to be linear in one weight \(its parameters: table \(8, 8\)\)"),
    ],
)
def test_a_layer_lsuv_cannot_fit_is_skipped_with_the_reason(kind: str, reason: str) -> None:
    torch.manual_seed(0)
    model = Branches(kind)
    batch = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    before = parameters(model)
    log, messages = lsuv_recorded(model, batch)
    assert log.rows[0].layer == "first"
    assert log.rows[0].converged
    (skip,) = [skip for skip in log.skipped if skip.layer == "layer"]
    assert skip.kind == type(model.layer).__name__
    assert re.search(reason, skip.reason), skip.reason
    skipped_names = {s.layer for s in log.skipped}
    for name, value in model.named_parameters():
        if name.split(".")[0] in skipped_names:
            assert torch.equal(value, before[name]), name
    accounted_for(model, log)
    (message,) = [m for m in messages if "skipped" in m]
    assert "layer 'layer'" in message


def test_bilinear_is_fitted() -> None:
    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.left = nn.Linear(8, 16)
            self.mix = nn.Bilinear(16, 8, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.mix(torch.relu(self.left(x)), x)
            return out

    model = Pair()
    batch = torch.randn(128, 8, generator=torch.Generator().manual_seed(0))
    log, messages = lsuv_recorded(model, batch)
    assert messages == []
    assert [(row.layer, row.kind) for row in log.rows] == [("left", "Linear"), ("mix", "Bilinear")]
    assert_claims_hold(model, batch, log)


def test_a_layer_called_twice_is_fitted_on_its_first_call() -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = nn.Linear(16, 16)
            self.head = nn.Linear(16, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.head(self.block(torch.tanh(self.block(x))))
            return out

    model = Shared()
    batch = torch.randn(128, 16, generator=torch.Generator().manual_seed(0))
    log, messages = lsuv_recorded(model, batch)
    assert messages == []
    assert [row.layer for row in log.rows] == ["block", "head"]
    assert_claims_hold(model, batch, log)  # measured() keeps each module's first call


def test_one_pass_finds_the_layers_and_one_fits_them_all() -> None:
    # Linear layers are measured once each and rescaled exactly (their output is proportional
    # to the weight at zero bias): every layer runs in two passes, whatever the depth.
    model = relu_mlp(depth=8, width=32)
    calls = {"first": 0, "last": 0}
    log = lsuv(model, torch.randn(64, 64, generator=torch.Generator().manual_seed(0)))
    assert len(log.rows) == 8
    assert log.converged
    assert all(row.iterations <= 1 for row in log.rows)
    assert (log.forward_passes, log.layer_calls, log.forward_equivalents) == (2, 0, 2.0)
    counted = relu_mlp(depth=8, width=32)
    counted[0].register_forward_pre_hook(lambda *_: calls.__setitem__("first", calls["first"] + 1))
    counted[14].register_forward_pre_hook(lambda *_: calls.__setitem__("last", calls["last"] + 1))
    lsuv(counted, torch.randn(64, 64, generator=torch.Generator().manual_seed(0)))
    assert calls == {"first": 2, "last": 2}


def tiny_bert() -> tuple[nn.Module, torch.Tensor]:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        vocab_size=100,
    )  # fmt: skip
    tokens = torch.randint(0, 100, (8, 16), generator=torch.Generator().manual_seed(0))
    return transformers.BertModel(config).eval(), tokens


def tiny_vit() -> tuple[nn.Module, torch.Tensor]:
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128,
    )  # fmt: skip
    images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return transformers.ViTModel(config).eval(), images


@pytest.mark.parametrize(
    ("build", "skipped"),
    [(tiny_bert, []), (tiny_vit, ["embeddings"])],
    ids=["BertModel", "ViTModel"],
)
def test_hugging_face_models(
    build: Callable[[], tuple[nn.Module, torch.Tensor]], skipped: list[str]
) -> None:
    # Their outputs are ModelOutput dicts: LSUV measures layers by hooks, so that is fine.
    torch.manual_seed(0)
    model, batch = build()
    log, messages = lsuv_recorded(model, batch)
    assert [skip.layer for skip in log.skipped] == skipped
    assert len(messages) == (1 if skipped else 0)
    assert len(log.rows) >= 13
    assert log.converged
    assert_claims_hold(model, batch, log)
    accounted_for(model, log)


# --- one fitting pass: the same result as the algorithm as written, at a fraction of the cost -
def reference_lsuv(
    model: nn.Module,
    batch: Any,
    *,
    orthogonal: bool = True,
    center_bias: bool = False,
    tol: float = 0.1,
    max_iter: int = 10,
) -> list[tuple[str, int, float, float]]:
    """LSUV as the paper writes it: pre-init, then layer by layer in forward order, a fresh
    full forward pass for every measurement. Per layer: (name, iterations, initial var, final
    var)."""
    _, targets, _ = classify(model)
    with buffers_restored(model), torch.no_grad():
        order = list(measured(model, batch, list(targets)))  # first-call end order
        if orthogonal:
            for name in order:
                orthonormal(targets[name], 0)
        results = []
        for name in order:
            target = targets[name]
            center = center_bias and target.bias is not None
            variance, mean = measured(model, batch, [name])[name]
            initial, iterations = variance, 0
            while iterations < max_iter and variance > 0:
                if abs(variance - 1.0) < tol and not (center and iterations == 0):
                    break
                factor = 1.0 / (math.sqrt(variance) + 1e-8)
                target.weight.mul_(factor)
                if center:
                    assert target.bias is not None
                    target.bias.sub_(mean).mul_(factor)
                iterations += 1
                variance, mean = measured(model, batch, [name])[name]
            results.append((name, iterations, initial, variance))
    return results


class SoftNormLinear(nn.Linear):
    """A Linear whose output is divided by (1 + its RMS) inside the layer: not proportional to
    the weight, so LSUV calls it again after each rescaling (each brings the RMS half way to
    1, the fixed point of variance 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = super().forward(x)
        return 2 * h / (1 + h.square().mean().sqrt())


class SharedBlock(nn.Module):
    """One Linear called twice (fitted on its first call), between two others."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(64, 32)
        self.block = nn.Linear(32, 32)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block(torch.relu(self.stem(x)))
        out: torch.Tensor = self.head(torch.tanh(self.block(torch.relu(h))))
        return out


def biased_mlp() -> nn.Sequential:
    model = relu_mlp(depth=4, width=32)
    with torch.no_grad():
        for layer in model[::2]:
            layer.bias.uniform_(-1.0, 1.0, generator=torch.Generator().manual_seed(1))
    return model


def soft_norm_mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), SoftNormLinear(32, 32), nn.Linear(32, 10))


def inplace_cnn() -> nn.Sequential:
    """Every conv's output is overwritten in place by the ReLU after it (as in torchvision)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(inplace=True),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Flatten(),
        nn.Linear(16 * 8 * 8, 10),
    )


def transformer() -> nn.Module:
    layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


REFERENCE_CASES = {
    "mlp": (lambda: relu_mlp(depth=6), {}),
    "cnn, batchnorm in training mode": (lambda: digit_cnn().train(), {}),
    "cnn, in-place ReLU, eval mode": (lambda: inplace_cnn().eval(), {}),
    "shared block": (SharedBlock, {}),
    "fixed biases, no pre-init": (biased_mlp, {"orthogonal": False}),
    "centred biases, no pre-init": (biased_mlp, {"orthogonal": False, "center_bias": True}),
    "norm inside a layer": (soft_norm_mlp, {}),
    "transformer encoder": (transformer, {}),
}


@pytest.mark.parametrize("case", list(REFERENCE_CASES))
def test_one_pass_equals_the_algorithm_as_written(case: str, digits: torch.Tensor) -> None:
    build, options = REFERENCE_CASES[case]
    torch.manual_seed(0)
    model = build()
    batch: torch.Tensor = digits
    if case.startswith("cnn"):
        batch = digits.reshape(-1, 1, 8, 8)
    elif case == "transformer encoder":
        batch = digits[:64].reshape(8, 8, 64)
    reference = build()
    reference.load_state_dict(model.state_dict())
    expected = reference_lsuv(reference, batch, **options)
    log = lsuv(model, batch, **options)
    assert [(row.layer, row.iterations) for row in log.rows] == [e[:2] for e in expected]
    # Both measure the same tensors up to float32 rounding (one pass rescales an output where
    # the reference recomputes it): 1e-4 relative is ~1000 roundings of 1.2e-7.
    for row, (_, _, initial, final) in zip(log.rows, expected, strict=True):
        assert row.initial_var == pytest.approx(initial, rel=1e-4), row.layer
        assert row.final_var == pytest.approx(final, rel=1e-4), row.layer
    for (name, value), other in zip(
        model.state_dict().items(), reference.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(value, other, rtol=1e-4, atol=1e-6, msg=name)
    assert_claims_hold(model, batch, log)


def test_a_norm_inside_a_layer_is_iterated_on_that_layer_alone(digits: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = soft_norm_mlp()
    ran = {"first": 0}
    model[0].register_forward_pre_hook(lambda *_: ran.__setitem__("first", ran["first"] + 1))
    log = lsuv(model, digits)
    soft = log.rows[1]
    assert (soft.layer, soft.converged) == ("2", True)
    assert soft.iterations >= 2  # an affine layer needs one; this one moves half way each time
    # Only the soft-norm layer is called again, once per rescaling; the layers before it ran
    # in the two passes only.
    assert log.layer_calls == soft.iterations
    assert ran["first"] == 2
    assert log.forward_passes == 2
    assert log.forward_equivalents == pytest.approx(2 + soft.iterations / 3)
    assert f"2 forward passes and {soft.iterations} single-layer calls" in str(log)
    assert_claims_hold(model, digits, log)


def test_a_shared_module_is_fitted_once_and_reused(digits: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = SharedBlock()
    calls = {"block": 0}
    model.block.register_forward_pre_hook(
        lambda *_: calls.__setitem__("block", calls["block"] + 1)
    )
    log = lsuv(model, digits)
    assert [row.layer for row in log.rows] == ["stem", "block", "head"]
    assert calls["block"] == 4  # twice per pass, two passes: never run on its own
    assert (log.forward_passes, log.layer_calls) == (2, 0)
    assert_claims_hold(model, digits, log)


def test_hooks_of_the_users_are_kept_on_every_call(digits: torch.Tensor) -> None:
    # A forward hook of the user's on a fitted layer changes what is measured (it runs before
    # LSUV's), so the layer is called again after each rescaling, its pre-hook applied once
    # per call as in the forward pass, not twice.
    torch.manual_seed(0)
    model = relu_mlp(depth=3)
    reference = relu_mlp(depth=3)
    for net in (model, reference):
        net[2].register_forward_pre_hook(lambda _m, args: (args[0] * 2.0,))
        net[2].register_forward_hook(lambda _m, _args, out: out * 0.5 + 1.0)
    reference.load_state_dict(model.state_dict())
    expected = reference_lsuv(reference, digits)
    log = lsuv(model, digits)
    assert [(row.layer, row.iterations) for row in log.rows] == [e[:2] for e in expected]
    assert log.layer_calls == log.rows[1].iterations >= 1
    torch.testing.assert_close(model[2].weight, reference[2].weight, rtol=1e-4, atol=1e-6)
    assert_claims_hold(model, digits, log)


def test_fixed_biases_cost_one_layer_call_per_rescaling(digits: torch.Tensor) -> None:
    torch.manual_seed(0)
    log = lsuv(biased_mlp(), digits, orthogonal=False)
    assert log.converged
    assert log.layer_calls == sum(row.iterations for row in log.rows) > 0
    assert log.forward_equivalents == pytest.approx(2 + log.layer_calls / 4)
    centred = lsuv(biased_mlp(), digits, orthogonal=False, center_bias=True)
    assert centred.layer_calls == 0  # a centred bias keeps the output proportional


def test_lazy_modules_take_one_more_pass(digits: torch.Tensor) -> None:
    model = nn.Sequential(nn.LazyLinear(32), nn.ReLU(), nn.LazyLinear(10))
    log = lsuv(model, digits)
    assert log.converged
    assert (log.forward_passes, log.layer_calls) == (3, 0)
