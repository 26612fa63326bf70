"""Deep and normalization-free presets (T-Fixup, DeepNet, ReZero/SkipInit, ZerO, SmallInitEmb):
the law per parameter on models of the shape their references target, the constants against the
papers' formulas, the drawn values, options and bad options."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import initlab
from initlab.errors import ConfigError
from initlab.plan.recipes.deep_transformers import deepnet_constants, t_fixup_scales
from initlab.schemes.hadamard import PartialHadamard, hadamard_sum

WIDTH = 16
ENCODER_LAYERS, DECODER_LAYERS = 6, 3


class Attention(nn.Module):
    """fairseq's / torchscale's MultiheadAttention: separate q, k, v and output projections."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)


class EncoderLayer(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.self_attn = Attention(width)
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)


class DecoderLayer(EncoderLayer):
    def __init__(self, width: int) -> None:
        super().__init__(width)
        self.encoder_attn = Attention(width)


class Encoder(nn.Module):
    def __init__(self, layers: int) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(50, WIDTH)
        self.embed_positions = nn.Embedding(20, WIDTH)
        self.layers = nn.ModuleList(EncoderLayer(WIDTH) for _ in range(layers))


class Decoder(nn.Module):
    def __init__(self, layers: int) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(50, WIDTH)
        self.layers = nn.ModuleList(DecoderLayer(WIDTH) for _ in range(layers))
        self.output_projection = nn.Linear(WIDTH, 50, bias=False)


class Seq2Seq(nn.Module):
    """fairseq's transformer names: 6 encoder and 3 decoder layers, no LayerNorm (T-Fixup)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder(ENCODER_LAYERS)
        self.decoder = Decoder(DECODER_LAYERS)


class Layer(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.self_attn = Attention(width)
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)


class OneStack(nn.Module):
    """A stack named neither encoder nor decoder (``blocks.N`` of ``Layer``)."""

    def __init__(self, layers: int = 4) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Layer(WIDTH) for _ in range(layers))


def _xavier_std(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    return gain * math.sqrt(2 / (fan_in + fan_out))


def _assert_std(values: torch.Tensor, expected: float, kurtosis: float = 3.0) -> None:
    # The sample std of n i.i.d. draws has relative standard error sqrt((kurtosis - 1) / (4n))
    # (normal: kurtosis 3; uniform: 1.8); 5 standard errors keep a fixed-seed test far from flaky.
    tolerance = 5 * math.sqrt((kurtosis - 1) / (4 * values.numel()))
    assert float(values.std()) == pytest.approx(expected, rel=tolerance)


def _applied(name: str, model: nn.Module, **options: object) -> initlab.Assignments:
    return initlab.preset(name, model, **options).apply(model, seed=0)


# --- T-Fixup ------------------------------------------------------------------------------------
def test_t_fixup_scales_are_the_papers() -> None:
    scales = t_fixup_scales(6, 3)
    assert scales["encoder"] == pytest.approx(0.67 * 6**-0.25)
    assert scales["decoder"] == pytest.approx((9 * 3) ** -0.25)
    assert scales["encoder_embedding"] == pytest.approx((9 * 6) ** -0.25)
    assert "decoder" not in t_fixup_scales(4, 0)


def test_t_fixup_law_per_parameter_on_an_encoder_decoder() -> None:
    model = Seq2Seq()
    table = _applied("t-fixup", model)
    encoder, decoder = 0.67 * ENCODER_LAYERS**-0.25, (9 * DECODER_LAYERS) ** -0.25
    square = _xavier_std(WIDTH, WIDTH)
    for part in ("self_attn.v_proj", "self_attn.out_proj"):
        assert table[f"encoder.layers.2.{part}.weight"].std == pytest.approx(square * encoder)
    for part in ("self_attn.v_proj", "encoder_attn.v_proj", "encoder_attn.out_proj"):
        assert table[f"decoder.layers.1.{part}.weight"].std == pytest.approx(square * decoder)
    mlp = _xavier_std(WIDTH, 4 * WIDTH)
    assert table["encoder.layers.0.fc2.weight"].std == pytest.approx(mlp * encoder)
    assert table["decoder.layers.2.fc1.weight"].std == pytest.approx(mlp * decoder)
    for name in ("encoder.layers.3.self_attn.q_proj.weight", "decoder.layers.0.encoder_attn."
                 "k_proj.weight"):  # fmt: skip
        assert table[name].std == pytest.approx(square / math.sqrt(2))  # fairseq's gain, unscaled
    # Embeddings N(0, 1/d) times (9 N)^(-1/4) of their side; learned positions unscaled.
    assert table["encoder.embed_tokens.weight"].std == pytest.approx(
        WIDTH**-0.5 * (9 * ENCODER_LAYERS) ** -0.25
    )
    assert table["decoder.embed_tokens.weight"].std == pytest.approx(
        WIDTH**-0.5 * (9 * DECODER_LAYERS) ** -0.25
    )
    assert table["encoder.embed_positions.weight"].std == pytest.approx(WIDTH**-0.5)
    assert table["decoder.output_projection.weight"].std == pytest.approx(_xavier_std(WIDTH, 50))
    values = dict(model.named_parameters())
    _assert_std(values["encoder.layers.0.fc1.weight"].detach(), mlp * encoder, kurtosis=1.8)
    _assert_std(values["decoder.embed_tokens.weight"].detach(),
                WIDTH**-0.5 * (9 * DECODER_LAYERS) ** -0.25)  # fmt: skip
    assert torch.count_nonzero(values["decoder.layers.0.fc1.bias"]) == 0


def test_t_fixup_on_torch_transformer_encoder_scales_only_the_v_block_of_packed_qkv() -> None:
    layer = nn.TransformerEncoderLayer(WIDTH, 2, dim_feedforward=32)
    model = nn.TransformerEncoder(layer, num_layers=4, enable_nested_tensor=False)
    table = initlab.preset("t-fixup", model).apply(model, seed=0)
    scale = 0.67 * 4**-0.25
    row = table["layers.1.self_attn.in_proj_weight"]
    square = _xavier_std(WIDTH, WIDTH)  # fans (d, d) per q, k, v block
    stds = {part.label: part.std for part in row.parts}
    assert stds["v"] == pytest.approx(square * scale)
    assert stds["q"] == stds["k"] == pytest.approx(square * 2**-0.5)  # like fairseq's q_proj
    assert "v <- rule 0" in row.notes
    assert "q,k <- rule" in row.notes
    weight = dict(model.named_parameters())["layers.1.self_attn.in_proj_weight"].detach()
    _assert_std(weight[2 * WIDTH :], square * scale, kurtosis=1.8)
    _assert_std(weight[: 2 * WIDTH], square * 2**-0.5, kurtosis=1.8)
    assert table["layers.1.linear2.weight"].std == pytest.approx(_xavier_std(32, WIDTH) * scale)


def test_deepnet_on_gpt2_gives_beta_to_the_v_columns_of_c_attn_only() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_embd=WIDTH, n_layer=4, n_head=2, vocab_size=50,
                                     n_positions=16)  # fmt: skip
    model = transformers.GPT2LMHeadModel(config)
    table = initlab.preset("deepnet", model).resolve(model)
    beta = deepnet_constants(4).encoder_beta  # one stack: (8N)^-1/4
    parts = {part.label: part for part in table["transformer.h.2.attn.c_attn.weight"].parts}
    assert parts["v"].std == pytest.approx(beta * _xavier_std(WIDTH, WIDTH))
    assert parts["q"].std == parts["k"].std == pytest.approx(_xavier_std(WIDTH, WIDTH))
    assert parts["v"].axis == 1  # GPT-2's Conv1D stores (in, out): v is the last columns


def test_t_fixup_one_stack_uses_the_stack_option() -> None:
    model = OneStack(layers=4)
    square = _xavier_std(WIDTH, WIDTH)
    as_encoder = initlab.preset("t-fixup", model).resolve(model)
    as_decoder = initlab.preset("t-fixup", model, stack="decoder").resolve(model)
    name = "blocks.3.self_attn.out_proj.weight"
    assert as_encoder[name].std == pytest.approx(square * 0.67 * 4**-0.25)
    assert as_decoder[name].std == pytest.approx(square * (9 * 4) ** -0.25)
    given = initlab.preset("t-fixup", model, encoder_layers=16).resolve(model)
    assert given[name].std == pytest.approx(square * 0.67 * 16**-0.25)


# --- DeepNet ------------------------------------------------------------------------------------
def test_deepnet_constants_are_table_one() -> None:
    encoder_only = deepnet_constants(encoder_layers=18)
    assert encoder_only.encoder_alpha == pytest.approx(36**0.25)
    assert encoder_only.encoder_beta == pytest.approx(144**-0.25)
    decoder_only = deepnet_constants(decoder_layers=12)
    assert (decoder_only.decoder_alpha, decoder_only.decoder_beta) == pytest.approx(
        (24**0.25, 96**-0.25)
    )
    both = deepnet_constants(6, 3)
    assert both.encoder_alpha == pytest.approx(0.81 * (6**4 * 3) ** (1 / 16))
    assert both.encoder_beta == pytest.approx(0.87 * (6**4 * 3) ** (-1 / 16))
    assert both.decoder_alpha == pytest.approx(9**0.25)
    assert both.decoder_beta == pytest.approx(36**-0.25)


def test_deepnet_law_per_parameter_on_an_encoder_decoder() -> None:
    model = Seq2Seq()
    table = _applied("deepnet", model)
    constants = deepnet_constants(ENCODER_LAYERS, DECODER_LAYERS)
    square = _xavier_std(WIDTH, WIDTH)
    assert table["encoder.layers.4.self_attn.v_proj.weight"].std == pytest.approx(
        square * constants.encoder_beta
    )
    assert table["decoder.layers.2.fc2.weight"].std == pytest.approx(
        _xavier_std(4 * WIDTH, WIDTH) * constants.decoder_beta
    )
    assert table["decoder.layers.2.self_attn.q_proj.weight"].std == pytest.approx(square)
    assert table["encoder.embed_tokens.weight"].scheme is None  # kept: not DeepNet's
    values = dict(model.named_parameters())
    _assert_std(values["encoder.layers.0.fc1.weight"].detach(),
                _xavier_std(WIDTH, 4 * WIDTH) * constants.encoder_beta)  # fmt: skip
    assert torch.count_nonzero(values["encoder.layers.0.self_attn.v_proj.bias"]) == 0


def test_deepnet_counts_torch_transformers_encoder_and_decoder() -> None:
    model = nn.Transformer(WIDTH, 2, num_encoder_layers=5, num_decoder_layers=2,
                           dim_feedforward=32, batch_first=True)  # fmt: skip
    table = initlab.preset("deepnet", model).resolve(model)
    constants = deepnet_constants(5, 2)
    assert table["decoder.layers.1.multihead_attn.out_proj.weight"].std == pytest.approx(
        _xavier_std(WIDTH, WIDTH) * constants.decoder_beta
    )
    assert table["encoder.layers.4.linear1.weight"].std == pytest.approx(
        _xavier_std(WIDTH, 32) * constants.encoder_beta
    )


@pytest.mark.parametrize("name", ["t-fixup", "deepnet"])
def test_transformer_presets_need_a_model_with_projections(name: str) -> None:
    with pytest.raises(ConfigError, match="needs the model"):
        initlab.preset(name)
    with pytest.raises(ConfigError, match="found no attention or MLP projections"):
        initlab.preset(name, nn.Sequential(nn.Conv2d(3, 4, 3)))


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("t-fixup", {"encoder_layers": 0}),
        ("t-fixup", {"stack": "middle"}),
        ("deepnet", {"decoder_layers": 2.5}),
        ("deepnet", {"alpha": 2.0}),
    ],
)
def test_bad_options_are_config_errors(name: str, options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        initlab.preset(name, Seq2Seq(), **options)


# --- ReZero / SkipInit --------------------------------------------------------------------------
class ReZeroBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(WIDTH, WIDTH)
        self.resweight = nn.Parameter(torch.ones(()))


class SkipInitBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3)
        self.skip_gain = nn.Parameter(torch.ones(1))


@pytest.mark.parametrize("name", ["rezero", "skipinit"])
def test_rezero_zeroes_every_residual_gain_and_keeps_the_rest(name: str) -> None:
    model = nn.Sequential(ReZeroBlock(), ReZeroBlock(), SkipInitBlock())
    before = model[0].fc.weight.detach().clone()
    table = _applied(name, model)
    assert float(model[1].resweight.detach()) == 0.0
    assert float(model[2].skip_gain.detach()) == 0.0
    assert torch.equal(model[0].fc.weight, before)
    assert table["0.fc.weight"].source == "default keep"


def test_rezero_names_option_and_a_model_whose_gains_it_does_not_know() -> None:
    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.branch_scale = nn.Parameter(torch.ones(()))

    model = Custom()
    table = initlab.preset("rezero", model).resolve(model)  # not recognized: the table says so
    assert [row.source for row in table] == ["default keep"]
    assert len(table.unused_rules) == 1
    _applied("rezero", model, names=["branch_scale"])
    assert float(model.branch_scale.detach()) == 0.0
    with pytest.raises(ConfigError, match="non-empty"):
        initlab.preset("rezero", model, names=[])


# --- ZerO ---------------------------------------------------------------------------------------
def _sylvester(size: int) -> torch.Tensor:
    matrix = torch.ones(1, 1)
    while matrix.shape[0] < size:
        matrix = torch.cat([torch.cat([matrix, matrix], 1), torch.cat([matrix, -matrix], 1)], 0)
    return matrix


def test_zero_is_identity_narrowing_and_hadamard_widening() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 16), nn.Linear(16, 12), nn.Linear(12, 4))
    table = _applied("zero", model)
    assert torch.equal(model[0].weight, torch.eye(8))
    assert str(table["0.weight"].scheme) == "identity()"
    # Widening 8 -> 16: 2^(-k/2) H_16[:16, :8], k = 4; its columns orthonormal.
    assert str(table["1.weight"].scheme) == "partial_hadamard()"
    assert torch.equal(model[1].weight, _sylvester(16)[:16, :8] / 4)
    assert torch.allclose(model[1].weight.T @ model[1].weight, torch.eye(8))
    # Widening 16 -> ... no: 16 -> 12 narrows: the first 12 rows of the identity.
    assert torch.equal(model[2].weight, torch.eye(12, 16))
    assert torch.equal(model[3].weight, torch.eye(4, 12))
    assert all(torch.count_nonzero(model[i].bias) == 0 for i in range(4))


def test_zero_widening_to_a_non_power_of_two_uses_the_next_hadamard() -> None:
    model = nn.Sequential(nn.Linear(4, 12))
    _applied("zero", model)
    assert torch.equal(model[0].weight, _sylvester(16)[:12, :4] / 4)


def test_zero_convolutions_put_the_matrix_on_the_centre_tap() -> None:
    model = nn.Sequential(nn.Conv2d(4, 8, 3), nn.Conv2d(8, 8, 3, groups=2), nn.Conv2d(8, 2, 1))
    _applied("zero", model)
    widening = torch.zeros(8, 4, 3, 3)
    widening[:, :, 1, 1] = _sylvester(8)[:8, :4] / 8**0.5
    assert torch.equal(model[0].weight, widening)
    grouped = torch.zeros(8, 4, 3, 3)
    torch.nn.init.dirac_(grouped, groups=2)
    assert torch.equal(model[1].weight, grouped)
    assert torch.equal(model[2].weight[:, :, 0, 0], torch.eye(2, 8))


def test_zero_table_statistics_equal_the_values() -> None:
    model = nn.Sequential(nn.Linear(3, 13), nn.Conv2d(2, 6, 3))
    table = _applied("zero", model)
    for name, values in model.named_parameters():
        if name.endswith("weight"):
            assert table[name].std == pytest.approx(float(values.detach().std(unbiased=False)))


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (3, 2), (5, 5), (12, 7), (16, 16), (9, 3)])
def test_hadamard_sum_equals_the_brute_force_sum(rows: int, cols: int) -> None:
    size = 2 ** math.ceil(math.log2(rows))
    assert hadamard_sum(rows, cols, size) == int(_sylvester(size)[:rows, :cols].sum())


def test_zero_needs_the_model_and_refuses_grouped_widening() -> None:
    with pytest.raises(ConfigError, match="needs the model"):
        initlab.preset("zero")
    with pytest.raises(ConfigError, match="widens each group"):
        initlab.preset("zero", nn.Sequential(nn.Conv2d(4, 16, 3, groups=2)))
    assert PartialHadamard().stats((16, 8)).bound == pytest.approx(0.25)


# --- SmallInitEmb -------------------------------------------------------------------------------
def test_small_init_emb_draws_embeddings_uniform_one_e_minus_four() -> None:
    model = Seq2Seq()
    before = model.encoder.layers[0].fc1.weight.detach().clone()
    table = _applied("small-init-emb", model)
    values = model.encoder.embed_tokens.weight.detach()
    assert float(values.abs().max()) <= 1e-4
    _assert_std(values, 1e-4 / math.sqrt(3), kurtosis=1.8)
    assert table["decoder.embed_tokens.weight"].bound == pytest.approx(1e-4)
    assert torch.equal(model.encoder.layers[0].fc1.weight, before)  # the rest kept
    wider = initlab.preset("small-init-emb", model, bound=1e-3).resolve(model)
    assert wider["encoder.embed_tokens.weight"].bound == pytest.approx(1e-3)


@pytest.mark.parametrize("bound", [0.0, -1e-4, float("inf"), "small", True])
def test_small_init_emb_refuses_a_bad_bound(bound: object) -> None:
    with pytest.raises(ConfigError, match="bound must be a number > 0"):
        initlab.preset("small-init-emb", bound=bound)


@pytest.mark.parametrize("name", ["t-fixup", "deepnet", "rezero", "skipinit", "zero",
                                  "small-init-emb"])  # fmt: skip
def test_every_deep_preset_is_registered(name: str) -> None:
    assert name in initlab.PRESET_NAMES
