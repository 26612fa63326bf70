"""Stacked, strided, bilinear and reparametrized weights: fans, per-block laws, derived parts."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

import initlab
import initlab.fans
import initlab.layers.structure
import initlab.plan.plan
from initlab.layers import parameter_structure
from initlab.plan.sites import parameter_sites


def _row(table: initlab.Assignments, name: str) -> initlab.plan.Assignment:
    return table[name]


# --- transposed convolutions count their stride ---------------------------------------------
def test_transposed_conv_fan_in_counts_the_stride() -> None:
    layer = nn.ConvTranspose2d(16, 32, 4, stride=2, padding=1)
    structure = parameter_structure(layer, "weight", layer.weight)
    # each output position receives 16 channels x (4/2)^2 taps
    assert (structure.fans.fan_in, structure.fans.fan_out) == (64, 32 * 16)
    assert "stride" in structure.note
    odd = nn.ConvTranspose1d(8, 8, 3, stride=2)
    assert parameter_structure(odd, "weight", odd.weight).fans.fan_in == pytest.approx(12.0)


def test_transposed_conv_decoder_keeps_the_signal_under_kaiming() -> None:
    """The seen case: 5 x (ConvTranspose2d(16, 16, 4, stride 2, pad 1), ReLU) under kaiming.

    With stride-blind fans the RMS halved per layer (0.45 -> 0.021). Interior outputs of a
    stride-2, k=4 layer see exactly 2x2 taps per input channel, so He with the counted fan keeps
    E[h^2]; the borders (one row and column of 2x1 taps) lose a little. Over 5 layers the
    compound factor must stay above 0.5 (stride-blind fans give 0.25^5 ~ 1e-3 in variance).
    """
    torch.manual_seed(0)
    layers = [m for _ in range(5) for m in (nn.ConvTranspose2d(16, 16, 4, 2, 1), nn.ReLU())]
    model = nn.Sequential(*layers)
    initlab.init_model(model, "kaiming", seed=0)
    generator = torch.Generator().manual_seed(1)
    h = torch.randn(4, 16, 4, 4, generator=generator)
    rms = []
    with torch.no_grad():
        for module in model:
            h = module(h)
            if isinstance(module, nn.ReLU):
                rms.append(float(h.square().mean().sqrt()))
    assert rms[-1] / rms[0] > 0.5, rms


def test_one_transposed_layer_preserves_variance_in_its_interior() -> None:
    """LeCun (gain 1, fan_in) through ConvTranspose2d(64, 64, 4, stride 2, padding 1).

    An interior output sums 64 x 2 x 2 = 256 products: its variance is sum(w^2) over those taps,
    whose relative spread per output channel is sqrt(2/256) ~ 0.09, and ~0.011 over the 64
    channels; 5% is 4.5 of those standard errors.
    """
    layer = nn.ConvTranspose2d(64, 64, 4, stride=2, padding=1, bias=False)
    initlab.Plan([initlab.rule(role="weight", scheme="lecun_normal")]).apply(layer, seed=0)
    x = torch.randn(8, 64, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = layer(x)[:, :, 1:-1, 1:-1]
    assert float(y.var()) == pytest.approx(1.0, rel=0.05)


# --- recurrent layers: per gate ----------------------------------------------------------------
def test_lstm_auto_is_per_gate_xavier_orthogonal_and_forget_bias_one() -> None:
    lstm = nn.LSTM(32, 64, num_layers=2)
    table = initlab.Plan().apply(lstm, seed=0)
    hidden = 64
    # Xavier per gate: fans (in, h), not the stacked (in, 4h)
    assert _row(table, "weight_ih_l0").std == pytest.approx(math.sqrt(2 / (32 + hidden)))
    assert _row(table, "weight_ih_l1").std == pytest.approx(math.sqrt(2 / (hidden + hidden)))
    for layer in (0, 1):
        recurrent = getattr(lstm, f"weight_hh_l{layer}").detach()
        for gate in range(4):
            block = recurrent[gate * hidden : (gate + 1) * hidden]
            assert torch.allclose(block @ block.T, torch.eye(hidden), atol=1e-5)
        bias_ih = getattr(lstm, f"bias_ih_l{layer}").detach()
        bias_hh = getattr(lstm, f"bias_hh_l{layer}").detach()
        forget = slice(hidden, 2 * hidden)
        assert torch.equal(bias_ih[forget], torch.ones(hidden))
        assert torch.equal(bias_hh[forget], torch.zeros(hidden))
        assert not bias_ih[:hidden].any()
        assert not bias_ih[2 * hidden :].any()


def test_per_gate_xavier_std_matches_the_law() -> None:
    """The drawn std of each (64, 32) gate block against sqrt(2/96) = 0.144: 2048 values give
    a relative standard error of 1/sqrt(2*2048) ~ 1.6%; 6% is four of them."""
    lstm = nn.LSTM(32, 64)
    initlab.Plan().apply(lstm, seed=3)
    weight = lstm.weight_ih_l0.detach()
    for gate in range(4):
        block = weight[gate * 64 : (gate + 1) * 64]
        assert float(block.std()) == pytest.approx(math.sqrt(2 / 96), rel=0.06)


def test_gru_gates_have_no_forget_bias() -> None:
    gru = nn.GRU(8, 16)
    table = initlab.Plan().apply(gru, seed=0)
    assert [p.label for p in _row(table, "weight_ih_l0").parts] == ["r", "z", "n"]
    assert not gru.bias_ih_l0.detach().any()


def test_kaiming_preset_uses_each_gates_own_gain_never_relu() -> None:
    lstm = nn.LSTM(8, 16)
    table = initlab.preset("kaiming").resolve(lstm)
    row = _row(table, "weight_ih_l0")
    gains = {p.label: p.std * math.sqrt(8) for p in row.parts}
    assert gains == pytest.approx({"i": 1.0, "f": 1.0, "g": 5 / 3, "o": 1.0})
    assert "relu" not in row.scheme_label


def test_torch_default_preset_keeps_torchs_stacked_attention_fans() -> None:
    mha = nn.MultiheadAttention(16, 4)
    row = _row(initlab.preset("torch-default", mha).resolve(mha), "in_proj_weight")
    assert not row.parts
    assert row.bound == pytest.approx(math.sqrt(6 / (48 + 16)))


# --- attention: q, k, v each a (d, d) layer ---------------------------------------------------
def test_attention_in_proj_is_drawn_per_projection() -> None:
    mha = nn.MultiheadAttention(64, 4)
    table = initlab.Plan().resolve(mha)
    row = _row(table, "in_proj_weight")
    assert [p.label for p in row.parts] == ["q", "k", "v"]
    assert (row.fans.fan_in, row.fans.fan_out) == (64, 64)
    assert row.std == pytest.approx(1 / 8)  # xavier on (64, 64): sqrt(2 / 128)


def test_stacked_parts_come_from_one_counter_stream() -> None:
    """A shard of a stacked weight is reproducible alone: with the counter stream, the rows of
    a block equal a whole-tensor draw of the block's law at those element indices."""
    from initlab.counter import counter_fill_
    from initlab.rng import counter_stream
    from initlab.schemes import Normal

    mha = nn.MultiheadAttention(16, 2)
    initlab.Plan([initlab.rule("in_proj_weight", "normal", std=0.1)]).apply(mha, seed=5)
    expected = torch.empty(48, 16)
    counter_fill_(expected, Normal(0.0, 0.1), counter_stream(5, "in_proj_weight"))
    assert torch.equal(mha.in_proj_weight.detach(), expected)


# --- Bilinear ----------------------------------------------------------------------------------
def test_bilinear_fans() -> None:
    layer = nn.Bilinear(16, 12, 8)
    site = next(s for s in parameter_sites(layer) if s.name == "weight")
    assert (site.fans.fan_in, site.fans.fan_out) == (16 * 12, 8)
    bias = next(s for s in parameter_sites(layer) if s.name == "bias")
    assert bias.fans == site.fans


# --- reparametrized weights --------------------------------------------------------------------
def test_weight_norm_is_initialized_through_its_direction() -> None:
    model = nn.Sequential(weight_norm(nn.Linear(64, 128)), nn.ReLU(), nn.Linear(128, 4))
    table = initlab.Plan().apply(model, seed=0)
    direction = _row(table, "0.parametrizations.weight.original1")
    magnitude = _row(table, "0.parametrizations.weight.original0")
    assert direction.site.role == "weight"
    assert direction.site.module_name == "0"
    assert direction.std == pytest.approx(math.sqrt(2 / 64))  # He: a ReLU follows
    assert magnitude.scheme is None
    assert "derived" in magnitude.source
    v = model[0].parametrizations.weight.original1.detach()
    assert torch.allclose(model[0].weight.detach(), v, atol=1e-6)


def test_rules_by_layer_type_reach_reparametrized_weights() -> None:
    model = nn.Sequential(spectral_norm(nn.Linear(8, 8)))
    plan = initlab.Plan([initlab.rule(types=nn.Linear, role="weight", scheme="zeros")], "keep")
    row = _row(plan.resolve(model), "0.parametrizations.weight.original")
    assert str(row.scheme) == "zeros()"
    assert "spectral" in row.site.fans_note.lower()


def test_old_style_weight_norm_parts() -> None:
    with pytest.warns(FutureWarning):
        layer = torch.nn.utils.weight_norm(nn.Linear(8, 16))
    table = initlab.Plan().apply(layer, seed=0)
    assert _row(table, "weight_v").site.role == "weight"
    assert _row(table, "weight_g").scheme is None
    assert torch.allclose(layer.weight_g.detach().squeeze(), layer.weight_v.detach().norm(dim=1))


# --- PReLU -------------------------------------------------------------------------------------
def test_prelu_gain_comes_from_its_slope() -> None:
    model = nn.Sequential(nn.Linear(32, 32), nn.PReLU(init=0.25), nn.Linear(32, 4))
    row = _row(initlab.Plan().resolve(model), "0.weight")
    assert row.std == pytest.approx(math.sqrt(2 / (1 + 0.25**2)) / math.sqrt(32))


# --- the same on the meta device ---------------------------------------------------------------
class _Structured(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 16)
        self.lstm = nn.LSTM(16, 16)
        self.attention = nn.MultiheadAttention(16, 2)
        self.up = nn.ConvTranspose1d(16, 8, 4, stride=2)
        self.head = weight_norm(nn.Linear(8, 4))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.embed(ids))
        h, _ = self.attention(h, h, h)
        return self.head(self.up(h.transpose(1, 2)).transpose(1, 2))


def test_materialize_equals_apply_on_structured_layers() -> None:
    from initlab.scale import materialize

    plan = initlab.Plan()
    built = materialize(_Structured, plan, seed=4)
    eager = _Structured()
    plan.apply(eager, seed=4)
    for name, value in eager.state_dict().items():
        assert torch.equal(built.state_dict()[name], value), name
    assert torch.allclose(built.head.weight, built.head.parametrizations.weight.original1)


# --- each layer's fans are computed once per resolution ---------------------------------------
def test_a_bias_reads_its_weights_fans_and_a_torch_rule_the_array_fans() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, groups=1), nn.ConvTranspose2d(8, 4, 4, stride=2))
    sites = {site.name: site for site in parameter_sites(model)}
    assert sites["0.bias"].fans is sites["0.weight"].fans
    assert sites["1.bias"].fans is sites["1.weight"].fans
    transposed = sites["1.weight"]
    assert transposed.torch_fans == initlab.compute_fans(transposed.shape, layout="torch")
    table = initlab.Plan([initlab.rule(role="weight", scheme="he_normal", fans="torch")]).resolve(
        model
    )
    assert table["1.weight"].fans == transposed.torch_fans


def test_fans_are_computed_once_per_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A weight's fans: once for the layer (shared by its bias), once by torch's array rule
    where the layer reads it otherwise; none again when the plan is resolved and applied."""
    calls: list[tuple[int, ...]] = []
    original = initlab.fans.compute_fans

    def counting(shape: tuple[int, ...], **options: object) -> initlab.Fans:
        calls.append(tuple(shape))
        return original(shape, **options)  # type: ignore[arg-type]

    for module in (initlab.layers.structure, initlab.plan.plan):
        monkeypatch.setattr(module, "compute_fans", counting)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Conv1d(8, 8, 3, groups=2), nn.LSTM(8, 4))
    initlab.init_model(model, "torch-default", seed=0)
    # Linear: 1 (torch's rule is the layer's); grouped conv: 2; LSTM weight_ih, weight_hh: 2
    # each (the gate block's fans, the stacked matrix's); the biases: 0.
    assert len(calls) == 1 + 2 + 2 + 2
