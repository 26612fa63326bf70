"""`initlab.parametrize`: each parametrization's init std and learning-rate multiplier per
parameter, against the papers' tables, on an MLP, a small transformer and GPT-2."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from initlab.errors import ConfigError, InitlabError, UnknownNameError
from initlab.parametrize import Parametrization, parametrize

SQRT2 = math.sqrt(2.0)


def mlp(width: int, inputs: int = 32) -> nn.Sequential:
    """Input, hidden and output layers with biases, ReLUs and a LayerNorm."""
    return nn.Sequential(
        nn.Linear(inputs, width),
        nn.ReLU(),
        nn.LayerNorm(width),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Linear(width, 3),
    )


class Transformer(nn.Module):
    """Embedding, pre-LN ``nn.TransformerEncoderLayer`` blocks (MultiheadAttention), readout."""

    def __init__(self, width: int, blocks: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, width)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(width, heads, 2 * width, batch_first=True, norm_first=True)
            for _ in range(blocks)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(tokens)
        for block in self.blocks:
            hidden = block(hidden)
        return self.head(self.norm(hidden))


def gpt2(width: int) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        n_embd=width, n_layer=2, n_head=4, vocab_size=50, n_positions=16,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def table(p: Parametrization) -> dict[str, tuple[str, float | None, float]]:
    return {row.name: (row.role, row.init_std, row.lr_multiplier) for row in p.rows}


# The MLP 32 -> w -> w -> 3 at w = 64 against its base at w = 16 (m = 4). sigma_b is the std at
# the base: He fan-in sqrt(2/fan_in) before a ReLU, 1/sqrt(fan_in) before the output.
# sp: sqrt(2/32) = 0.25 (input), sqrt(2/64) (hidden), 1/sqrt(64) (output); lr 1.
# mup, Tensor Programs V Table 3: input sigma_b, hidden sigma_b/sqrt(m), output sigma_b/m;
#   Adam lr: input/biases/norms 1, hidden 1/m, output 1/m; SGD lr: input/biases/norms m_out,
#   hidden 1, output 1/m.
# spectral: std ~ min(1, sqrt(fo/fi))/sqrt(fi) relative to the base: the input layer's
#   (32 -> 16 at the base, 32 -> 64 here) grows by 1/min(1, sqrt(16/32)) = sqrt(2); lr Adam
#   1/m_in, SGD m_out/m_in.
MLP_EXPECTED = {
    ("sp", "adam"): {
        "0.weight": ("input", 0.25, 1.0),
        "0.bias": ("bias", 0.0, 1.0),
        "2.weight": ("norm", 0.0, 1.0),
        "2.bias": ("norm", 0.0, 1.0),
        "3.weight": ("hidden", SQRT2 / 8, 1.0),
        "3.bias": ("bias", 0.0, 1.0),
        "5.weight": ("output", 1 / 8, 1.0),
        "5.bias": ("bias", 0.0, 1.0),
    },
    ("mup", "adam"): {
        "0.weight": ("input", 0.25, 1.0),
        "0.bias": ("bias", 0.0, 1.0),
        "2.weight": ("norm", 0.0, 1.0),
        "2.bias": ("norm", 0.0, 1.0),
        "3.weight": ("hidden", SQRT2 / 4 / 2, 1 / 4),
        "3.bias": ("bias", 0.0, 1.0),
        "5.weight": ("output", 1 / 4 / 4, 1 / 4),
        "5.bias": ("bias", 0.0, 1.0),
    },
    ("mup", "sgd"): {
        "0.weight": ("input", 0.25, 4.0),
        "0.bias": ("bias", 0.0, 4.0),
        "2.weight": ("norm", 0.0, 4.0),
        "2.bias": ("norm", 0.0, 4.0),
        "3.weight": ("hidden", SQRT2 / 4 / 2, 1.0),
        "3.bias": ("bias", 0.0, 4.0),
        "5.weight": ("output", 1 / 4 / 4, 1 / 4),
        "5.bias": ("bias", 0.0, 1.0),
    },
    ("spectral", "adam"): {
        "0.weight": ("input", 0.25 * SQRT2, 1.0),
        "0.bias": ("bias", 0.0, 1.0),
        "2.weight": ("norm", 0.0, 1.0),
        "2.bias": ("norm", 0.0, 1.0),
        "3.weight": ("hidden", SQRT2 / 8, 1 / 4),
        "3.bias": ("bias", 0.0, 1.0),
        "5.weight": ("output", 1 / 16, 1 / 4),
        "5.bias": ("bias", 0.0, 1.0),
    },
    ("spectral", "sgd"): {
        "0.weight": ("input", 0.25 * SQRT2, 4.0),
        "0.bias": ("bias", 0.0, 4.0),
        "2.weight": ("norm", 0.0, 4.0),
        "2.bias": ("norm", 0.0, 4.0),
        "3.weight": ("hidden", SQRT2 / 8, 1.0),
        "3.bias": ("bias", 0.0, 4.0),
        "5.weight": ("output", 1 / 16, 1 / 4),
        "5.bias": ("bias", 0.0, 1.0),
    },
}


@pytest.mark.parametrize(("name", "optimizer"), list(MLP_EXPECTED))
def test_mlp_rules_match_the_papers_tables(name: str, optimizer: str) -> None:
    p = parametrize(mlp(64), name, base=mlp(16), optimizer=optimizer)  # type: ignore[arg-type]
    got = table(p)
    assert set(got) == set(MLP_EXPECTED[name, optimizer])
    for parameter, (role, std, lr) in MLP_EXPECTED[name, optimizer].items():
        assert got[parameter][0] == role, parameter
        assert got[parameter][1] == pytest.approx(std, rel=1e-12), parameter
        assert got[parameter][2] == pytest.approx(lr, rel=1e-12), parameter
        assert p.row(parameter).weight_decay_multiplier == pytest.approx(1 / lr, rel=1e-12)


def test_every_parametrization_equals_the_base_model_at_the_base_width() -> None:
    """At the base shapes the rules coincide (mup's convention): what is tuned there is kept."""
    sp = table(parametrize(mlp(16), "sp"))
    for name in ("mup", "spectral"):
        for optimizer in ("adam", "sgd"):
            got = table(parametrize(mlp(16), name, base=mlp(16), optimizer=optimizer))  # type: ignore[arg-type]
            for parameter, (role, std, lr) in sp.items():
                assert got[parameter][0] == role
                assert got[parameter][1:] == pytest.approx((std, lr), rel=1e-12), parameter


def test_base_width_reads_the_same_widths_as_a_base_model() -> None:
    by_model = parametrize(mlp(64, inputs=10), "mup", base=mlp(16, inputs=10))
    by_width = parametrize(mlp(64, inputs=10), "mup", base_width=16)
    assert table(by_width) == table(by_model)
    assert any("width 64" in note for note in by_width.notes)


class RawParameters(nn.Module):
    """Tensors that are no layer's weight: a position table (1, T, d) and a matrix (d, d)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.position = nn.Parameter(torch.zeros(1, 8, width))
        self.mix = nn.Parameter(torch.randn(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.position) @ self.mix


def test_convolutions_and_tensors_outside_layers() -> None:
    def cnn(width: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(3, width, 3), nn.ReLU(), nn.Conv2d(width, width, 3), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10),
        )  # fmt: skip

    p = parametrize(cnn(32), "mup", base=cnn(8))
    # fans include the 3 x 3 kernel: the hidden conv's base fan_in is 8 * 9, its std
    # sqrt(2 / 72) / sqrt(4) = sqrt(2 / 288) = He at its own fan_in 32 * 9
    hidden = p.row("2.weight")
    assert (hidden.role, hidden.fan_in, hidden.lr_multiplier) == ("hidden", 288, 1 / 4)
    assert hidden.init_std == pytest.approx(math.sqrt(2 / 288))
    assert p.row("0.weight").role == "input"
    assert p.row("6.weight").role == "output"
    by_width = parametrize(cnn(32), "mup", base_width=8)
    assert table(by_width) == table(p)
    raw = parametrize(RawParameters(32), "mup", base=RawParameters(8), optimizer="sgd")
    assert (raw.row("position").role, raw.row("position").init) == ("vector", "keep")
    assert raw.row("position").lr_multiplier == 4.0  # SGD: vector-like, lr x m_out
    assert (raw.row("mix").role, raw.row("mix").lr_multiplier) == ("hidden", 1.0)


def test_zero_readout_and_constant_std() -> None:
    p = parametrize(mlp(64), "mup", base=mlp(16), readout="zero", std=0.02)
    assert p.row("5.weight").init == "zeros"
    assert p.row("5.weight").lr_multiplier == 1 / 4
    assert p.row("0.weight").init_std == 0.02  # input: constant in width
    assert p.row("3.weight").init_std == pytest.approx(0.01)  # hidden: 0.02 / sqrt(4)


def test_transformer_with_multihead_attention() -> None:
    model, base = Transformer(64), Transformer(16)
    adam = parametrize(model, "mup", base=base)
    sgd = parametrize(model, "mup", base=base, optimizer="sgd")
    expected = {  # (role, Adam lr, SGD lr) with m = 4
        "embed.weight": ("input", 1.0, 4.0),
        "blocks.0.self_attn.in_proj_weight": ("hidden", 1 / 4, 1.0),
        "blocks.0.self_attn.in_proj_bias": ("bias", 1.0, 4.0),
        "blocks.0.self_attn.out_proj.weight": ("hidden", 1 / 4, 1.0),
        "blocks.1.linear1.weight": ("hidden", 1 / 4, 1.0),
        "blocks.1.norm2.weight": ("norm", 1.0, 4.0),
        "head.weight": ("output", 1 / 4, 1 / 4),
        "head.bias": ("bias", 1.0, 1.0),
    }
    for name, (role, adam_lr, sgd_lr) in expected.items():
        assert adam.row(name).role == role, name
        assert (adam.row(name).lr_multiplier, sgd.row(name).lr_multiplier) == (adam_lr, sgd_lr)
    # q, k, v are (64, 64) layers each: fan_in 64, not the stacked (192, 64) array's
    assert adam.row("blocks.0.self_attn.in_proj_weight").fan_in == 64
    assert adam.row("embed.weight").init_std == 1.0  # nn.Embedding's N(0, 1), constant in width
    assert adam.row("head.weight").init_std == pytest.approx(1 / 4 / 4)  # 1/sqrt(16) / m
    attention = [note for note in adam.notes if "attention" in note]
    assert len(attention) == 2  # one per block: d_head 16 against 4 at the base
    assert "blocks.0.self_attn" in attention[0]
    assert "scale=0.125" in attention[0]


def test_gpt2_hidden_embedding_tied_readout_and_attention_scaling() -> None:
    p = parametrize(gpt2(64), "mup", base=gpt2(16), std=0.02)
    c_attn = p.row("transformer.h.0.attn.c_attn.weight")
    assert (c_attn.role, c_attn.fan_in, c_attn.fan_out) == ("hidden", 64, 64)  # per q/k/v
    assert c_attn.init_std == pytest.approx(0.01)  # 0.02 / sqrt(4)
    assert c_attn.lr_multiplier == 1 / 4
    wte = p.row("transformer.wte.weight")
    assert (wte.role, wte.init_std, wte.lr_multiplier) == ("input", 0.02, 1.0)
    assert p.row("transformer.h.1.ln_2.bias").role == "norm"
    notes = " ".join(p.notes)
    assert "tied to lm_head.weight" in notes
    assert "1/m = 0.25" in notes
    assert "transformer.h.0.attn.scaling = 0.125" in notes  # sqrt(4)/16


def test_bert_embeddings_and_settable_attention_scaling() -> None:
    transformers = pytest.importorskip("transformers")

    def bert(width: int) -> nn.Module:
        config = transformers.BertConfig(
            hidden_size=width, num_hidden_layers=1, num_attention_heads=4,
            intermediate_size=4 * width, vocab_size=50, max_position_embeddings=16,
        )  # fmt: skip
        return transformers.BertModel(config)

    p = parametrize(bert(64), "mup", base=bert(16), optimizer="sgd", std=0.02)
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        row = p.row(f"embeddings.{name}.weight")
        assert (row.role, row.init_std, row.lr_multiplier) == ("input", 0.02, 4.0), name
    intermediate = p.row("encoder.layer.0.intermediate.dense.weight")  # d -> 4d: both width
    assert (intermediate.role, intermediate.lr_multiplier) == ("hidden", 1.0)
    assert "set encoder.layer.0.attention.self.scaling = 0.125" in " ".join(p.notes)


def test_depth_mup_folds_the_branch_multiplier() -> None:
    """r = L_b/L = 2/8: branch outputs std x sqrt(r), lr x r; the rest of a block's lr x sqrt(r)
    under Adam, x 1 under SGD (Tensor Programs VI); outside the blocks as muP."""
    model, base = Transformer(16, blocks=8), Transformer(16, blocks=2)
    adam = parametrize(model, "depth-mup", base=base)
    sgd = parametrize(model, "depth-mup", base=base, optimizer="sgd")
    plain = parametrize(model, "sp")
    for block in (0, 7):
        for layer in ("self_attn.out_proj", "linear2"):
            name = f"blocks.{block}.{layer}.weight"
            assert adam.row(name).init_std == pytest.approx(plain.row(name).init_std * 0.5)  # type: ignore[operator]
            assert (adam.row(name).lr_multiplier, sgd.row(name).lr_multiplier) == (1 / 4, 1 / 4)
        name = f"blocks.{block}.linear1.weight"
        assert adam.row(name).init_std == plain.row(name).init_std
        assert (adam.row(name).lr_multiplier, sgd.row(name).lr_multiplier) == (1 / 2, 1.0)
    assert adam.row("head.weight").lr_multiplier == 1.0
    assert any("L = 8 residual blocks, base L_b = 2" in note for note in adam.notes)
    absolute = parametrize(model, "depth-mup")  # no base: multiplier 1/sqrt(L)
    assert absolute.row("blocks.3.linear2.bias").lr_multiplier == pytest.approx(1 / 8)


def test_the_plan_draws_the_tabled_std() -> None:
    """Each weight's sample std is its row's within 5 standard errors. For n i.i.d. normal
    values the sample std's relative standard error is about 1/sqrt(2(n - 1)): 0.14% for the
    512 x 512 hidden weight, 1.8% for the 3 x 512 readout."""
    model = mlp(512)
    p = parametrize(model, "mup", base=mlp(64))
    resolved = {row.name: row.std for row in p.plan.resolve(model).rows}
    p.plan.apply(model, seed=0)
    for row in p.rows:
        values = dict(model.named_parameters())[row.name].detach()
        assert resolved[row.name] == pytest.approx(row.init_std), row.name
        if row.init == "normal":
            tolerance = 5 / math.sqrt(2 * (values.numel() - 1))
            assert values.std().item() == pytest.approx(row.init_std, rel=tolerance), row.name
        else:
            assert torch.all(values == (1.0 if row.init == "ones" else 0.0)), row.name


def _one_step(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, torch.Tensor]:
    """Each parameter's change and gradient after one step on a fixed batch."""
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    loss = model(torch.randn(16, 32, generator=torch.Generator().manual_seed(1))).square().mean()
    loss.backward()
    optimizer.step()
    return {name: p.detach() - before[name] for name, p in model.named_parameters()}


def test_param_groups_give_each_parameter_lr_times_its_multiplier_under_sgd() -> None:
    model = mlp(64)
    p = parametrize(model, "mup", base=mlp(16), optimizer="sgd")
    p.plan.apply(model, seed=0)
    groups = p.param_groups(0.1, weight_decay=1e-2)
    names = [name for group in groups for name in group["param_names"]]
    assert sorted(names) == sorted(name for name, _ in model.named_parameters())
    optimizer = torch.optim.SGD(groups)
    params = dict(model.named_parameters())
    model.zero_grad()
    change = _one_step(optimizer, model)
    for row in p.rows:
        param = params[row.name]
        assert param.grad is not None
        before = param.detach() - change[row.name]
        decay = 1e-2 * row.weight_decay_multiplier
        expected = -0.1 * row.lr_multiplier * (param.grad + decay * before)
        # The change is read back as after - before in float32: an absolute error of about
        # eps * |p|; the norms compare the whole step, so a wrong multiplier (x4) shows.
        torch.testing.assert_close(change[row.name], expected, rtol=1e-4, atol=1e-6)
        ratio = change[row.name].norm() / expected.norm()
        assert ratio.item() == pytest.approx(1.0, abs=1e-3), row.name


def test_param_groups_give_each_parameter_lr_times_its_multiplier_under_adam() -> None:
    """Adam's first step is lr * g / (|g| + eps): -lr * sign(g) where |g| >> eps."""
    model = mlp(64)
    p = parametrize(model, "mup", base=mlp(16))
    p.plan.apply(model, seed=0)
    optimizer = torch.optim.Adam(p.param_groups(1e-3), eps=1e-12)
    params = dict(model.named_parameters())
    change = _one_step(optimizer, model)
    for row in p.rows:
        grad = params[row.name].grad
        assert grad is not None
        large = grad.abs() > 1e-6
        expected = -1e-3 * row.lr_multiplier * grad[large].sign()
        torch.testing.assert_close(change[row.name][large], expected, rtol=1e-4, atol=0.0)


def test_the_model_is_left_unmodified() -> None:
    model = Transformer(32)
    state = {name: value.clone() for name, value in model.state_dict().items()}
    types = [type(module) for module in model.modules()]
    parametrize(model, "depth-mup", base=Transformer(16))
    assert [type(module) for module in model.modules()] == types
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name


def test_str_shows_the_table_and_notes() -> None:
    text = str(parametrize(Transformer(32), "mup", base=Transformer(16)))
    assert text.startswith("parametrization 'mup' (adam): 29 parameters")
    assert "blocks.0.self_attn.in_proj_weight   hidden  2     2      normal  0.1768  0.5" in text
    assert "note: attention 'blocks.0.self_attn'" in text


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: parametrize(mlp(64), "mupp", base=mlp(16)), "Did you mean 'mup'"),
        (lambda: parametrize(mlp(64), "mup"), "pass base= (a smaller instance"),
        (lambda: parametrize(mlp(64), "mup", base=Transformer(16)), "parameter '0.weight'"),
        (
            lambda: parametrize(mlp(16), "mup", base=mlp(64)),
            "wider than the model at parameter '0.weight'",
        ),
        (lambda: parametrize(mlp(64), "mup", base=mlp(16, inputs=40)), "at parameter '0.weight'"),
        (lambda: parametrize(mlp(64), "mup", base=mlp(16), base_width=16), "not both"),
        (lambda: parametrize(mlp(64), "mup", base_width=128), "base_width 128 is wider"),
        (lambda: parametrize(mlp(64), "mup", base=mlp(16), optimizer="lion"), "'lion'"),
        (lambda: parametrize(mlp(64), "mup", base=mlp(16), std=-1.0), "std must be"),
        (lambda: parametrize(mlp(64), "mup", base=mlp(16), readout="tied"), "'tied'"),
        (lambda: parametrize(mlp(64), "depth-mup"), "no residual branch output"),
        (
            lambda: parametrize(Transformer(16, blocks=1), "depth-mup", base=Transformer(16)),
            "more than the model's 1",
        ),
        (lambda: parametrize(mlp(64), "sp").param_groups(0.0), "lr must be"),
        (lambda: parametrize(mlp(64), "sp").param_groups(True), "lr must be"),
        (lambda: parametrize(mlp(64), "sp").param_groups(0.1, math.nan), "weight_decay must be"),
        (lambda: parametrize(mlp(64), "sp").param_groups(0.1, -1e-2), "weight_decay must be"),
        (lambda: parametrize(mlp(64), "mup", base=mlp(16), std=math.inf), "std must be"),
        (lambda: parametrize(mlp(64), "mup", base_width=0), "base_width must be a positive"),
        (lambda: parametrize(mlp(64), "mup", base_width=16, width=True), "width must be"),
        (
            lambda: parametrize(nn.LayerNorm(64), "mup", base_width=16),
            "no layer weights to read its width from",
        ),
        (
            lambda: parametrize(Transformer(16), "depth-mup", base_depth=0),
            "base_depth must be a positive int",
        ),
        (lambda: parametrize(mlp(64), "sp").row("9.weight"), "parameter '9.weight'"),
        (
            lambda: parametrize(mlp(64), "mup", base=mlp(16), zero_query="yes"),
            "zero_query must be True or False",
        ),
    ],
)
def test_bad_input_names_the_problem(call: object, message: str) -> None:
    with pytest.raises(InitlabError, match=None) as caught:
        call()  # type: ignore[operator]
    assert message in str(caught.value)
    assert isinstance(caught.value, ConfigError | UnknownNameError)


# --- zero query (Tensor Programs V, D.2) --------------------------------------------------------
def test_zero_query_zeroes_the_q_block_of_multihead_attention_only() -> None:
    model, base = Transformer(64), Transformer(16)
    plain = parametrize(model, "mup", base=base)
    zeroed = parametrize(model, "mup", base=base, zero_query=True)
    name = "blocks.0.self_attn.in_proj_weight"
    assert "zero query" in zeroed.row(name).source
    assert zeroed.row(name).lr_multiplier == plain.row(name).lr_multiplier
    first, second = Transformer(64), Transformer(64)
    plain.plan.apply(first, seed=0)
    table = zeroed.plan.apply(second, seed=0)
    before = dict(first.named_parameters())[name].detach()
    after = dict(second.named_parameters())[name].detach()
    assert torch.count_nonzero(after[:64]) == 0
    assert torch.equal(after[64:], before[64:])  # k and v: the values without zero_query
    assert "q <- rule" in table[name].notes
    assert torch.equal(second.head.weight, first.head.weight)


def test_zero_query_zeroes_the_q_columns_of_gpt2_c_attn() -> None:
    model = gpt2(64)
    p = parametrize(model, "mup", base=gpt2(16), std=0.02, zero_query=True)
    p.plan.apply(model, seed=0)
    weight = model.transformer.h[1].attn.c_attn.weight.detach()  # (in, out): q is columns 0:64
    assert torch.count_nonzero(weight[:, :64]) == 0
    # k and v: std 0.02 / sqrt(4); the sample std of n normals has relative error 1/sqrt(2n).
    tolerance = 5 / math.sqrt(2 * weight[:, 64:].numel())
    assert float(weight[:, 64:].std()) == pytest.approx(0.01, rel=tolerance)


class _SeparateAttention(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)


class _FusedAttention(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)


def test_zero_query_zeroes_a_separate_q_proj_and_notes_a_fused_qkv() -> None:
    def model(width: int) -> nn.Module:
        return nn.ModuleDict({"attn": _SeparateAttention(width), "fused": _FusedAttention(width)})

    p = parametrize(model(64), "mup", base=model(16), zero_query=True)
    row = p.row("attn.q_proj.weight")
    assert (row.init, row.init_std) == ("zeros", 0.0)
    assert p.row("attn.k_proj.weight").init == "normal"
    assert any("'fused.qkv.weight'" in note and "not zeroed" in note for note in p.notes)
    built = model(64)
    p.plan.apply(built, seed=0)
    assert torch.count_nonzero(built["attn"].q_proj.weight) == 0
