"""LLM presets (torchtitan, OLMo, Megatron-LM, Mamba) against their reference code.

Each reference is mirrored by a tiny model with the reference's module names, and its own init
code is copied next to it (``reference_init``), so a test compares initlab's table and draws
against what the reference does, parameter by parameter.

Tolerances: for n i.i.d. draws of std sigma, the sample std has a standard error of about
sigma / sqrt(2 n) (exact for a normal law, an upper bound for the lighter-tailed truncated and
uniform laws used here); two independent samples differ by sigma * sqrt(1/(2 n1) + 1/(2 n2)).
The tests allow 5 of those (a false failure once in ~10^6 for a random seed; seeds are fixed).
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import initlab
from initlab.errors import ConfigError
from initlab.plan.recipes.role_rules import count_layers
from initlab.plan.recipes.transformer_layers import find_layers, role_regex
from initlab.schemes import Constant, MambaDtBias, Normal, Ones, S4DRealLog, TruncatedNormal, Zeros
from initlab.train.regularize import decay_split

SIGMAS = 5.0


def std_tolerance(std: float, *sizes: int) -> float:
    """SIGMAS standard errors of a sample std (one sample vs a law) or of a difference of two."""
    return SIGMAS * std * math.sqrt(sum(1.0 / (2 * n) for n in sizes))


def sample_std(tensor: torch.Tensor) -> float:
    return float(tensor.detach().double().std())


# --- torchtitan (pytorch/torchtitan torchtitan/models/llama3/model/model.py) -------------------
class TitanAttention(nn.Module):
    def __init__(self, dim: int, kv: int) -> None:
        super().__init__()
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, kv, bias=False)
        self.wv = nn.Linear(dim, kv, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)


class TitanFeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)


class TitanBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.attention = TitanAttention(dim, dim // 2)
        self.feed_forward = TitanFeedForward(dim, 3 * dim)
        self.attention_norm = nn.RMSNorm(dim)
        self.ffn_norm = nn.RMSNorm(dim)


class TitanLlama(nn.Module):
    """torchtitan's ``Transformer``: ``layers`` is a ModuleDict keyed by ``str(layer_id)``."""

    def __init__(self, n_layers: int = 4, dim: int = 64, vocab: int = 256) -> None:
        super().__init__()
        self.dim, self.n_layers = dim, n_layers
        self.tok_embeddings = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleDict({str(i): TitanBlock(dim) for i in range(n_layers)})
        self.norm = nn.RMSNorm(dim)
        self.output = nn.Linear(dim, vocab, bias=False)

    def reference_init(self, depth_init: bool = True) -> None:
        """torchtitan's ``init_weights`` (``Transformer``, ``TransformerBlock``, ...), verbatim."""
        nn.init.normal_(self.tok_embeddings.weight)
        for layer_id, block in self.layers.items():
            if depth_init:
                std = 0.02 / (2 * (int(layer_id) + 1)) ** 0.5
            else:
                std = 0.02 / (2 * self.n_layers) ** 0.5
            for linear in (block.attention.wq, block.attention.wk, block.attention.wv):
                nn.init.trunc_normal_(linear.weight, mean=0.0, std=0.02)
            nn.init.trunc_normal_(block.attention.wo.weight, mean=0.0, std=std)
            nn.init.trunc_normal_(block.feed_forward.w1.weight, mean=0.0, std=0.02)
            for linear in (block.feed_forward.w2, block.feed_forward.w3):
                nn.init.trunc_normal_(linear.weight, mean=0.0, std=std)
        final = self.dim**-0.5
        nn.init.trunc_normal_(self.output.weight, mean=0.0, std=final, a=-3 * final, b=3 * final)


def titan_law(name: str, depth_init: bool, n_layers: int = 4, dim: int = 64) -> object:
    """The reference's law for parameter ``name`` of ``TitanLlama``."""
    if name == "tok_embeddings.weight":
        return Normal(0.0, 1.0)
    if name == "output.weight":
        return TruncatedNormal(0.0, dim**-0.5, -3.0, 3.0, unit="std")
    if name.endswith("norm.weight"):
        return Ones()
    layer = int(name.split(".")[1])
    if re.search(r"\.(wo|w2|w3)\.weight$", name):
        depth = 2 * (layer + 1) if depth_init else 2 * n_layers
        return TruncatedNormal(0.0, 0.02 / math.sqrt(depth), -2.0, 2.0)
    return TruncatedNormal(0.0, 0.02, -2.0, 2.0)


@pytest.mark.parametrize("depth_init", [True, False])
def test_torchtitan_law_per_parameter(depth_init: bool) -> None:
    model = TitanLlama()
    table = initlab.preset("torchtitan-llama", model, depth_init=depth_init).resolve(model)
    for row in table:
        assert row.scheme == titan_law(row.name, depth_init), row.name
    # torchtitan: layer 3's wo std = 0.02 / sqrt(2 * 4) = 0.0070711 with depth_init.
    assert table["layers.3.attention.wo.weight"].std == pytest.approx(0.0070711, rel=1e-4)
    # The dry-run table names the rule: the layer's own, by its exact name.
    assert table["layers.3.attention.wo.weight"].source.endswith(
        "('layers.3.attention.wo.weight')"
    )


def test_torchtitan_without_model_lists_the_same_laws_by_block_index() -> None:
    model = TitanLlama()
    plan = initlab.preset("torchtitan-llama", n_layers=4, dim=64)
    for row in plan.resolve(model):
        assert row.scheme == titan_law(row.name, depth_init=True), row.name
    with pytest.raises(ConfigError, match="dim"):
        initlab.preset("torchtitan-llama", n_layers=4).resolve(model)


def test_torchtitan_draws_match_the_reference_statistically() -> None:
    torch.manual_seed(0)
    reference, ours = TitanLlama(), TitanLlama()
    reference.reference_init()
    table = initlab.init_model(ours, "torchtitan-llama", seed=0)
    drawn = dict(ours.named_parameters())
    for name, expected in reference.named_parameters():
        row = table[name]
        if row.std == 0:
            assert torch.equal(drawn[name], expected)
            continue
        n = expected.numel()
        assert abs(sample_std(drawn[name]) - sample_std(expected)) <= std_tolerance(
            row.std, n, n
        ), name
    bound = 3 * 64**-0.5
    assert float(drawn["output.weight"].detach().abs().max()) <= bound


def test_torchtitan_tied_embedding_takes_the_output_law() -> None:
    model = TitanLlama()
    model.output.weight = model.tok_embeddings.weight
    table = initlab.preset("torchtitan-llama", model).resolve(model)
    assert table["tok_embeddings.weight"].scheme == titan_law("output.weight", True)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"depth_init": "yes"}, "depth_init"),
        ({"depth_init": False, "n_layers": 0}, "n_layers"),
        ({"n_layer": 4}, "n_layer"),
    ],
)
def test_torchtitan_bad_options_name_the_option(options: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        initlab.preset("torchtitan-llama", TitanLlama(), **options)


# --- OLMo (allenai/OLMo olmo/model.py) ---------------------------------------------------------
class OlmoBlock(nn.Module):
    """``OLMoSequentialBlock``: fused ``att_proj``, SwiGLU ``ff_proj`` (2 x hidden)."""

    def __init__(self, layer_id: int, d_model: int, hidden: int) -> None:
        super().__init__()
        self.layer_id = layer_id
        self.att_proj = nn.Linear(d_model, 3 * d_model, bias=False)
        self.attn_out = nn.Linear(d_model, d_model, bias=False)
        self.ff_proj = nn.Linear(d_model, 2 * hidden, bias=False)
        self.ff_out = nn.Linear(hidden, d_model, bias=False)
        self.attn_norm = nn.LayerNorm(d_model, bias=False)
        self.ff_norm = nn.LayerNorm(d_model, bias=False)


class Olmo(nn.Module):
    def __init__(self, n_layers: int = 4, d_model: int = 64, hidden: int = 96, group: int = 1):
        super().__init__()
        self.n_layers, self.d_model = n_layers, d_model
        blocks = [OlmoBlock(i, d_model, hidden) for i in range(n_layers)]
        self.transformer = nn.ModuleDict({"wte": nn.Embedding(256, d_model)})
        if group == 1:
            self.transformer["blocks"] = nn.ModuleList(blocks)
        else:  # OLMo's block groups: block_groups.G.I, the layer_id kept on the block
            self.transformer["block_groups"] = nn.ModuleList(
                nn.ModuleList(blocks[i : i + group]) for i in range(0, n_layers, group)
            )
        self.transformer["ln_f"] = nn.LayerNorm(d_model, bias=False)
        self.transformer["ff_out"] = nn.Linear(d_model, 256, bias=False)

    def reference_init(self, init_fn: str, init_std: float = 0.02, cutoff: float | None = None):
        """``OLMoBlock.reset_parameters`` / ``OLMo.reset_parameters`` (no emb_init_std)."""

        def init_normal(module: nn.Module, std: float, factor: float | None) -> None:
            if factor is None:
                nn.init.normal_(module.weight, mean=0.0, std=std)
            else:
                c = factor * std
                nn.init.trunc_normal_(module.weight, mean=0.0, std=std, a=-c, b=c)

        d, factor = self.d_model, cutoff if init_fn == "normal" else (cutoff or 3.0)
        wide = {"normal": init_std, "mitchell": 1 / math.sqrt(d), "full_megatron": init_std}
        head = {
            "normal": init_std,
            "mitchell": 1 / math.sqrt(d),
            "full_megatron": 1 / math.sqrt(d),
        }
        init_normal(self.transformer.wte, wide[init_fn], factor)
        init_normal(self.transformer.ff_out, head[init_fn], factor)
        for block in self.modules():
            if not isinstance(block, OlmoBlock):
                continue
            if init_fn == "normal":
                attn_std = ff_std = init_std
            elif init_fn == "mitchell":
                attn_std = 1 / math.sqrt(2 * d * (block.layer_id + 1))
                ff_std = 1 / math.sqrt(2 * block.ff_out.in_features * (block.layer_id + 1))
            else:
                attn_std = ff_std = init_std / math.sqrt(2.0 * self.n_layers)
            init_normal(block.attn_out, attn_std, factor)
            init_normal(block.ff_out, ff_std, factor)
            init_normal(block.att_proj, wide[init_fn], factor)
            init_normal(block.ff_proj, wide[init_fn], factor)


def cut(std: float, factor: float = 3.0) -> TruncatedNormal:
    return TruncatedNormal(0.0, std, -factor, factor, unit="std")


def test_olmo_mitchell_law_per_parameter() -> None:
    model = Olmo()
    table = initlab.preset("olmo", model, init_fn="mitchell").resolve(model)
    d = 64
    assert table["transformer.wte.weight"].scheme == cut(1 / math.sqrt(d))
    assert table["transformer.ff_out.weight"].scheme == cut(1 / math.sqrt(d))
    for layer in range(4):
        prefix = f"transformer.blocks.{layer}"
        assert table[f"{prefix}.att_proj.weight"].scheme == cut(1 / math.sqrt(d))
        assert table[f"{prefix}.ff_proj.weight"].scheme == cut(1 / math.sqrt(d))
        attn = 1 / math.sqrt(2 * d * (layer + 1))
        assert table[f"{prefix}.attn_out.weight"].scheme == cut(attn)
        assert table[f"{prefix}.ff_out.weight"].scheme == cut(1 / math.sqrt(2 * 96 * (layer + 1)))
        assert table[f"{prefix}.attn_norm.weight"].scheme == Ones()


def test_olmo_reads_layer_id_inside_block_groups() -> None:
    model = Olmo(group=2)
    table = initlab.preset("olmo", model, init_fn="mitchell").resolve(model)
    # block_groups.1.0 is layer 2 (its first integer is 1: the block's own layer_id decides).
    row = table["transformer.block_groups.1.0.attn_out.weight"]
    assert row.scheme == cut(1 / math.sqrt(2 * 64 * 3))


def test_olmo_normal_and_full_megatron_laws() -> None:
    model = Olmo()
    table = initlab.preset("olmo", model).resolve(model)  # OLMo's default: normal, no cutoff
    assert {row.scheme for row in table if row.site.role != "norm_weight"} == {Normal(0, 0.02)}
    table = initlab.preset("olmo", model, init_cutoff_factor=2.0).resolve(model)
    assert table["transformer.blocks.0.attn_out.weight"].scheme == cut(0.02, 2.0)
    table = initlab.preset("olmo", model, init_fn="full_megatron").resolve(model)
    assert table["transformer.blocks.2.ff_out.weight"].scheme == cut(0.02 / math.sqrt(8))
    assert table["transformer.blocks.2.ff_proj.weight"].scheme == cut(0.02)
    assert table["transformer.ff_out.weight"].scheme == cut(1 / 8)
    assert table["transformer.wte.weight"].scheme == cut(0.02)
    scaled = initlab.preset("olmo", model, init_fn="full_megatron", scale_emb_init=True)
    assert scaled.resolve(model)["transformer.wte.weight"].scheme == cut(0.02 * 8)
    small = initlab.preset("olmo", model, init_fn="full_megatron", emb_init_std=1e-4)
    assert small.resolve(model)["transformer.wte.weight"].scheme == cut(1e-4)


@pytest.mark.parametrize("init_fn", ["normal", "mitchell", "full_megatron"])
def test_olmo_draws_match_the_reference_statistically(init_fn: str) -> None:
    torch.manual_seed(1)
    reference, ours = Olmo(), Olmo()
    reference.reference_init(init_fn)
    table = initlab.init_model(ours, "olmo", seed=1, init_fn=init_fn)
    drawn = dict(ours.named_parameters())
    for name, expected in reference.named_parameters():
        row = table[name]
        if row.std == 0:
            assert torch.equal(drawn[name], expected), name
            continue
        n = expected.numel()
        gap = abs(sample_std(drawn[name]) - sample_std(expected))
        assert gap <= std_tolerance(row.std, n, n), name
        if row.bound is not None:
            assert float(drawn[name].detach().abs().max()) <= row.bound * (1 + 1e-6), name


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"init_fn": "mitchel"}, "init_fn"),
        ({"init_std": -1.0}, "init_std"),
        ({"init_cutoff_factor": 0}, "init_cutoff_factor"),
        ({"scale_emb_init": 1}, "scale_emb_init"),
        ({"init_fn": "full_megatron", "n_layers": 0}, "n_layers"),
    ],
)
def test_olmo_bad_options_name_the_option(options: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        initlab.preset("olmo", Olmo(), **options)


def test_olmo_mitchell_needs_the_model() -> None:
    with pytest.raises(ConfigError, match="pass the model"):
        initlab.preset("olmo", init_fn="mitchell")


# --- Megatron-LM (NVIDIA/Megatron-LM megatron/core/utils.py) -----------------------------------
class MegatronLayer(nn.Module):
    """A ``TransformerLayer`` of Megatron core, ``layer_number`` counting from 1."""

    def __init__(self, number: int, hidden: int, legacy: bool) -> None:
        super().__init__()
        self.layer_number = number
        self.input_layernorm = nn.LayerNorm(hidden)
        self.pre_mlp_layernorm = nn.LayerNorm(hidden)
        qkv, proj, fc1, fc2 = (
            ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")
            if legacy
            else ("linear_qkv", "linear_proj", "linear_fc1", "linear_fc2")
        )
        self.self_attention = nn.Module()
        self.self_attention.add_module(qkv, nn.Linear(hidden, 3 * hidden))
        self.self_attention.add_module(proj, nn.Linear(hidden, hidden))
        self.mlp = nn.Module()
        self.mlp.add_module(fc1, nn.Linear(hidden, 4 * hidden))
        self.mlp.add_module(fc2, nn.Linear(4 * hidden, hidden))


class MegatronGPT(nn.Module):
    def __init__(self, num_layers: int = 4, hidden: int = 64, legacy: bool = False) -> None:
        super().__init__()
        self.embedding = nn.Module()
        self.embedding.word_embeddings = nn.Embedding(256, hidden)
        self.embedding.position_embeddings = nn.Embedding(32, hidden)
        self.decoder = nn.Module()
        self.decoder.layers = nn.ModuleList(
            MegatronLayer(i + 1, hidden, legacy) for i in range(num_layers)
        )
        self.decoder.final_layernorm = nn.LayerNorm(hidden)
        self.output_layer = nn.Linear(hidden, 256, bias=False)

    def reference_init(self, sigma: float = 0.02, num_layers: int = 4) -> None:
        """``init_method_normal(sigma)`` everywhere but the outputs of attention and MLP,
        ``scaled_init_method_normal(sigma, num_layers)`` there; biases 0."""
        scaled = sigma / math.sqrt(2.0 * num_layers)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                is_output = name.endswith(("linear_proj", "linear_fc2", "dense", "dense_4h_to_h"))
                nn.init.normal_(module.weight, mean=0.0, std=scaled if is_output else sigma)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)


@pytest.mark.parametrize("legacy", [False, True])
def test_megatron_scales_the_residual_outputs(legacy: bool) -> None:
    model = MegatronGPT(legacy=legacy)
    table = initlab.preset("megatron", model).resolve(model)  # num_layers counted: 4
    proj, fc2 = ("dense", "dense_4h_to_h") if legacy else ("linear_proj", "linear_fc2")
    qkv, fc1 = ("query_key_value", "dense_h_to_4h") if legacy else ("linear_qkv", "linear_fc1")
    for layer in range(4):
        prefix = f"decoder.layers.{layer}"
        assert table[f"{prefix}.self_attention.{proj}.weight"].scheme == Normal(0, 0.02 / 8**0.5)
        assert table[f"{prefix}.mlp.{fc2}.weight"].scheme == Normal(0, 0.02 / 8**0.5)
        assert table[f"{prefix}.self_attention.{qkv}.weight"].scheme == Normal(0, 0.02)
        assert table[f"{prefix}.mlp.{fc1}.weight"].scheme == Normal(0, 0.02)
        assert table[f"{prefix}.mlp.{fc1}.bias"].scheme == Zeros()
    assert table["output_layer.weight"].scheme == Normal(0, 0.02)
    assert table["embedding.word_embeddings.weight"].scheme == Normal(0, 0.02)


def test_megatron_options() -> None:
    model = MegatronGPT()
    plan = initlab.preset(
        "megatron", model, init_method_std=0.01, num_layers=16, embedding_init_method_std=1.0,
        multiplier=1.0,
    )  # fmt: skip
    table = plan.resolve(model)
    assert table["decoder.layers.0.mlp.linear_fc2.weight"].scheme == Normal(0, 0.01 / 4)
    assert table["embedding.position_embeddings.weight"].scheme == Normal(0, 1.0)
    assert table["output_layer.weight"].scheme == Normal(0, 0.01)
    with pytest.raises(ConfigError, match="init_method_std"):
        initlab.preset("megatron", model, init_method_std=0)
    with pytest.raises(ConfigError, match="num_layers"):
        initlab.preset("megatron")


def test_megatron_draws_match_the_reference_statistically() -> None:
    torch.manual_seed(2)
    reference, ours = MegatronGPT(), MegatronGPT()
    reference.reference_init()
    table = initlab.init_model(ours, "megatron", seed=2)
    drawn = dict(ours.named_parameters())
    for name, expected in reference.named_parameters():
        if table[name].std == 0 or "layernorm" in name:
            assert torch.equal(drawn[name], expected) or "layernorm" in name, name
            continue
        n = expected.numel()
        gap = abs(sample_std(drawn[name]) - sample_std(expected))
        assert gap <= std_tolerance(table[name].std, n, n), name


# --- Mamba (state-spaces/mamba mamba_ssm/modules/mamba_simple.py) ------------------------------
class MambaMixer(nn.Module):
    """``Mamba.__init__`` of the reference, verbatim where it initializes."""

    def __init__(self, d_model: int, d_state: int = 16, expand: int = 2, layer_idx: int = 0):
        super().__init__()
        self.layer_idx = layer_idx
        d_inner = expand * d_model
        dt_rank = math.ceil(d_model / 16)
        dt_min, dt_max, dt_init_floor = 0.001, 0.1, 1e-4
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, 4, groups=d_inner, padding=3)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        dt_init_std = dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
        dt = torch.exp(
            torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=dt_init_floor)
        inv_dt = dt + torch.log(-torch.expm1(-dt))
        with torch.no_grad():
            self.dt_proj.bias.copy_(inv_dt)
        self.dt_proj.bias._no_reinit = True  # type: ignore[attr-defined]
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
        self.A_log = nn.Parameter(torch.log(a))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)


class MambaBlock(nn.Module):
    def __init__(self, d_model: int, layer_idx: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.mixer = MambaMixer(d_model, layer_idx=layer_idx)
        self.layer_idx = layer_idx


class MambaLM(nn.Module):
    """``MambaLMHeadModel``: backbone (embedding, layers, norm_f), tied lm_head."""

    def __init__(self, n_layer: int = 4, d_model: int = 64, vocab: int = 256) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.embedding = nn.Embedding(vocab, d_model)
        self.backbone.layers = nn.ModuleList(MambaBlock(d_model, i) for i in range(n_layer))
        self.backbone.norm_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab, bias=False)
        self.lm_head.weight = self.backbone.embedding.weight
        self.n_layer = n_layer

    def reference_init(self) -> None:
        """``_init_weights`` as ``MambaLMHeadModel`` applies it last (n_residuals_per_layer 1)."""

        def init_weights(module: nn.Module) -> None:
            if isinstance(module, nn.Linear) and module.bias is not None:
                if not getattr(module.bias, "_no_reinit", False):
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            for name, p in module.named_parameters():
                if name in ["out_proj.weight", "fc2.weight"]:
                    nn.init.kaiming_uniform_(p, a=math.sqrt(5))
                    with torch.no_grad():
                        p /= math.sqrt(1 * self.n_layer)

        self.apply(init_weights)


def test_mamba_law_per_parameter() -> None:
    model = MambaLM()
    table = initlab.preset("mamba", model).resolve(model)  # n_layer counted: 4
    mixer = "backbone.layers.2.mixer"
    dt_rank, d_inner = 4, 128
    assert table[f"{mixer}.dt_proj.weight"].bound == pytest.approx(dt_rank**-0.5)
    assert table[f"{mixer}.dt_proj.weight"].law.a == pytest.approx(-(dt_rank**-0.5))
    assert table[f"{mixer}.dt_proj.bias"].scheme == MambaDtBias(0.001, 0.1, 1e-4)
    assert table[f"{mixer}.A_log"].scheme == S4DRealLog()
    assert table[f"{mixer}.D"].scheme == Ones()
    # torch's Linear bound 1/sqrt(d_inner), divided by sqrt(n_layer)
    assert table[f"{mixer}.out_proj.weight"].bound == pytest.approx(1 / math.sqrt(d_inner) / 2)
    assert table[f"{mixer}.in_proj.weight"].bound == pytest.approx(1 / math.sqrt(64))
    assert table[f"{mixer}.conv1d.bias"].bound == pytest.approx(1 / math.sqrt(4))
    assert table["backbone.embedding.weight"].scheme == Normal(0.0, 0.02)
    assert table["backbone.norm_f.bias"].scheme == Zeros()


def test_mamba_draws_match_the_reference() -> None:
    torch.manual_seed(3)
    reference, ours = MambaLM(), MambaLM()
    reference.reference_init()
    table = initlab.init_model(ours, "mamba", seed=3)
    drawn = dict(ours.named_parameters())
    for name, expected in reference.named_parameters():
        if name.endswith(("A_log", ".D")) or table[name].std == 0:
            assert torch.equal(drawn[name], expected), name  # deterministic
            continue
        n = expected.numel()
        gap = abs(sample_std(drawn[name]) - sample_std(expected))
        assert gap <= std_tolerance(table[name].std, n, n), name
        bound = table[name].bound
        if bound is not None:
            assert float(drawn[name].detach().abs().max()) <= bound * (1 + 1e-6), name


def test_mamba_dt_bias_gives_log_uniform_steps() -> None:
    # softplus(bias) = dt, log dt ~ U(log 1e-3, log 0.1): mean and std of log dt from n draws.
    n = 20000
    bias = MambaDtBias().sample((n,), torch.Generator().manual_seed(4))
    log_dt = torch.log(F.softplus(bias.double()))
    low, high = math.log(0.001), math.log(0.1)
    spread = (high - low) / math.sqrt(12)
    assert float(log_dt.min()) >= low - 1e-5
    assert float(log_dt.max()) <= high + 1e-5
    assert abs(float(log_dt.mean()) - (low + high) / 2) <= SIGMAS * spread / math.sqrt(n)
    assert abs(float(log_dt.std()) - spread) <= std_tolerance(spread, n)
    stats = MambaDtBias().stats((n,))
    assert abs(float(bias.double().std()) - stats.std) <= std_tolerance(stats.std, n)
    assert abs(float(bias.double().mean()) - stats.mean) <= SIGMAS * stats.std / math.sqrt(n)


def test_mamba_options_and_bad_options() -> None:
    model = MambaLM()
    table = initlab.preset("mamba", model, dt_init="constant", n_residuals_per_layer=2).resolve(
        model
    )
    assert table["backbone.layers.0.mixer.dt_proj.weight"].scheme == Constant(0.5)
    bound = 1 / math.sqrt(128) / math.sqrt(8)
    assert table["backbone.layers.0.mixer.out_proj.weight"].bound == pytest.approx(bound)
    for options, named in [
        ({"dt_init": "rand"}, "dt_init"),
        ({"dt_min": 0.5}, "dt_min"),
        ({"n_residuals_per_layer": 3}, "n_residuals_per_layer"),
        ({"dt_scale": -1}, "dt_scale"),
    ]:
        with pytest.raises(ConfigError, match=named):
            initlab.preset("mamba", model, **options)


def test_mamba_state_parameters_are_not_weight_decayed() -> None:
    # Mamba marks A_log, D (and dt_proj.bias) _no_weight_decay; initlab's decay groups agree.
    decay, no_decay = decay_split(MambaLM(n_layer=1))
    for name in ("A_log", "D", "dt_proj.bias"):
        assert f"backbone.layers.0.mixer.{name}" in no_decay
        assert f"backbone.layers.0.mixer.{name}" not in decay


def test_mamba_plan_round_trips_through_its_config() -> None:
    plan = initlab.preset("mamba", MambaLM())
    again = initlab.Plan.from_config(plan.to_config())
    assert again.rules == plan.rules


# --- roles and unrecognized models ------------------------------------------------------------
def test_roles_tell_bert_attention_output_from_mlp_output_and_olmo_head_from_block() -> None:
    attention, mlp = (
        re.compile(role_regex("attention_output")),
        re.compile(role_regex("mlp_output")),
    )
    assert attention.search("encoder.layer.0.attention.output.dense.weight")
    assert not mlp.search("encoder.layer.0.attention.output.dense.weight")
    assert mlp.search("encoder.layer.0.output.dense.weight")
    head = re.compile(role_regex("head"))
    assert head.search("transformer.ff_out.weight")
    assert not head.search("transformer.blocks.0.ff_out.weight")
    assert mlp.search("transformer.blocks.0.ff_out.weight")
    assert count_layers(MegatronGPT(num_layers=3), None, preset="t", option="n") == 3
    assert [layer.layer for layer in find_layers(MegatronGPT(num_layers=2), "mlp_output")] == [
        0,
        1,
    ]


class Unknown(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"mix": nn.Linear(8, 8), "out": nn.Linear(8, 8)}) for _ in range(2)
        )


def test_an_unrecognized_model_is_reported_by_warning_and_in_the_table() -> None:
    model = Unknown()
    with pytest.warns(UserWarning, match="no attention output or mlp output layer recognized"):
        plan = initlab.preset("megatron", model, num_layers=2)
    table = plan.resolve(model)
    # Every weight fell to the generic init_method rule: none was scaled as a residual output.
    sources = {row.source for row in table if row.site.role == "weight"}
    assert len(sources) == 1
    assert sources.pop().endswith("(role=weight)")
    with pytest.warns(UserWarning, match="weights are kept"):
        plan = initlab.preset("torchtitan-llama", model)
    assert {row.source for row in plan.resolve(model) if row.site.role == "weight"} == {
        "default keep"
    }


def test_mamba_on_a_model_without_a_mixer_shows_generic_rules_in_the_table() -> None:
    model = TitanLlama()
    with pytest.warns(UserWarning, match="no Mamba mixer .* in TitanLlama"):
        table = initlab.preset("mamba", model, n_layer=4).resolve(model)
    # No dt_proj / A_log / out_proj: every weight is under the generic torch-default rule.
    sources = {row.source for row in table if row.site.role == "weight"}
    assert len(sources) == 1
    assert sources.pop().endswith("(types=Linear,Conv1d role=weight)")
