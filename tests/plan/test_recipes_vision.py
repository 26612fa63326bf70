"""``timm-vit``: timm's ``VisionTransformer.init_weights(mode)`` law per parameter, on a model with
timm's module names (``patch_embed.proj``, ``blocks.N.attn.qkv``, ``attn.proj``, ``mlp.fc1/fc2``,
``head``), checked in the table and on the drawn values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import initlab
from initlab.errors import ConfigError

WIDTH, DEPTH, CLASSES, PATCH = 32, 3, 10, 4
FAN_IN_PATCH = 3 * PATCH * PATCH  # the patch embedding's Conv2d: 3 channels x 4 x 4


class Attention(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)


class Mlp(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)


class LayerScale(nn.Module):
    def __init__(self, width: int, init_values: float = 1e-5) -> None:
        super().__init__()
        self.init_values = init_values
        self.gamma = nn.Parameter(init_values * torch.ones(width))


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width)
        self.ls1 = LayerScale(width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = Mlp(width)


class PatchEmbed(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, width, PATCH, PATCH)


class VisionTransformer(nn.Module):
    """timm's parameter names, 3 blocks of width 32, 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(WIDTH)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.reg_token = nn.Parameter(torch.zeros(1, 4, WIDTH))
        self.pos_embed = nn.Parameter(torch.zeros(1, 17, WIDTH))
        self.blocks = nn.Sequential(*(Block(WIDTH) for _ in range(DEPTH)))
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, CLASSES)


def _applied(mode: str, **options: object) -> tuple[initlab.Assignments, dict[str, torch.Tensor]]:
    model = VisionTransformer()
    plan = initlab.preset("timm-vit", model, mode=mode, **options)
    table = plan.apply(model, seed=0)
    return table, {name: p.detach() for name, p in model.named_parameters()}


def _assert_std(values: torch.Tensor, expected: float, kurtosis: float = 3.0) -> None:
    # The sample std of n i.i.d. draws has relative standard error sqrt((kurtosis - 1) / (4n))
    # (normal: kurtosis 3; uniform: 1.8); 5 standard errors keep a fixed-seed test far from flaky.
    n = values.numel()
    tolerance = 5 * math.sqrt((kurtosis - 1) / (4 * n))
    assert float(values.std()) == pytest.approx(expected, rel=tolerance)


UNIFORM = 1.8  # kurtosis of a uniform law


def test_default_mode_is_trunc_normal_002_linears_and_torch_default_patch_embedding() -> None:
    table, values = _applied("")
    for name in ("blocks.0.attn.qkv.weight", "blocks.2.mlp.fc1.weight", "head.weight"):
        assert str(table[name].scheme) == "truncated_normal(std=0.02)"  # cut at +-2, absolute
        _assert_std(values[name], 0.02)
    for name in ("blocks.0.attn.qkv.bias", "head.bias"):
        assert torch.count_nonzero(values[name]) == 0
    # timm keeps Conv2d's constructor init: U(+-1/sqrt(fan_in)), weight and bias alike.
    bound = 1 / math.sqrt(FAN_IN_PATCH)
    for name in ("patch_embed.proj.weight", "patch_embed.proj.bias"):
        assert table[name].bound == pytest.approx(bound)
        assert float(values[name].abs().max()) <= bound
    _assert_std(values["patch_embed.proj.weight"], bound / math.sqrt(3), UNIFORM)


@pytest.mark.parametrize("mode", ["", "jax", "jax_nlhb", "moco"])
def test_tokens_layer_scale_and_norms_are_the_same_in_every_mode(mode: str) -> None:
    table, values = _applied(mode)
    assert str(table["pos_embed"].scheme) == "truncated_normal(std=0.02)"
    _assert_std(values["pos_embed"], 0.02)
    assert str(table["cls_token"].scheme) == "normal(std=1e-06)"
    _assert_std(values["reg_token"], 1e-6)
    assert torch.equal(values["blocks.1.ls1.gamma"], torch.full((WIDTH,), 1e-5))
    assert torch.equal(values["blocks.1.norm1.weight"], torch.ones(WIDTH))
    assert torch.count_nonzero(values["norm.bias"]) == 0
    # Every parameter of a timm-shaped model is recognized: none falls to the default.
    assert [row.name for row in table if row.rule_index is None] == []


def test_jax_mode_xavier_linears_lecun_conv_zero_head_and_tiny_mlp_biases() -> None:
    table, values = _applied("jax")
    assert torch.count_nonzero(values["head.weight"]) == 0
    assert torch.count_nonzero(values["head.bias"]) == 0
    qkv = math.sqrt(6 / (WIDTH + 3 * WIDTH))  # xavier_uniform's bound, the whole (3d, d)
    assert float(values["blocks.0.attn.qkv.weight"].abs().max()) <= qkv
    _assert_std(values["blocks.0.attn.qkv.weight"], qkv / math.sqrt(3), UNIFORM)
    _assert_std(values["blocks.1.mlp.fc1.bias"], 1e-6)  # 'mlp' in the module's name
    _assert_std(values["blocks.1.mlp.fc2.bias"], 1e-6)
    assert torch.count_nonzero(values["blocks.1.attn.proj.bias"]) == 0
    # lecun_normal: std 1/sqrt(fan_in) after truncation at +-2 sigma, sigma = std / 0.8796.
    std = 1 / math.sqrt(FAN_IN_PATCH)
    assert table["patch_embed.proj.weight"].std == pytest.approx(std)
    assert float(values["patch_embed.proj.weight"].abs().max()) <= 2 * std / 0.87962566103423978
    # A normal cut at +-2 sigma has kurtosis E[x^4] / E[x^2]^2 = 1.4162 / 0.7737^2 = 2.366.
    _assert_std(values["patch_embed.proj.weight"], std, kurtosis=2.366)
    assert torch.count_nonzero(values["patch_embed.proj.bias"]) == 0


def test_jax_nlhb_sets_the_head_bias_to_minus_log_classes() -> None:
    _, values = _applied("jax_nlhb")
    assert torch.allclose(values["head.bias"], torch.full((CLASSES,), -math.log(CLASSES)))
    assert torch.count_nonzero(values["head.weight"]) == 0


def test_moco_draws_qkv_with_the_fans_of_one_projection() -> None:
    table, values = _applied("moco")
    bound = math.sqrt(6 / (WIDTH + WIDTH))  # fans (d, d) of q, k or v, not (d, 3d)
    assert table["blocks.2.attn.qkv.weight"].bound == pytest.approx(bound)
    assert float(values["blocks.2.attn.qkv.weight"].abs().max()) <= bound
    _assert_std(values["blocks.2.attn.qkv.weight"], bound / math.sqrt(3), UNIFORM)
    row = table["blocks.2.attn.qkv.weight"]  # split=3: three (d, d) row blocks
    assert [(part.start, part.stop) for part in row.parts] == [(0, 32), (32, 64), (64, 96)]
    assert "split=3" in row.source
    head = math.sqrt(6 / (WIDTH + CLASSES))  # moco has no zero head: xavier like the rest
    _assert_std(values["head.weight"], head / math.sqrt(3), UNIFORM)
    assert torch.count_nonzero(values["blocks.2.mlp.fc1.bias"]) == 0
    assert table["patch_embed.proj.weight"].bound == pytest.approx(1 / math.sqrt(FAN_IN_PATCH))


@pytest.mark.parametrize("mode", ["", "jax"])
def test_fix_init_divides_attn_proj_and_fc2_by_sqrt_two_times_the_layer(mode: str) -> None:
    plain, _ = _applied(mode)
    fixed, values = _applied(mode, fix_init=True)
    for layer in range(DEPTH):
        for part in ("attn.proj", "mlp.fc2"):
            name = f"blocks.{layer}.{part}.weight"
            expected = plain[name].std / math.sqrt(2 * (layer + 1))
            assert fixed[name].std == pytest.approx(expected)
            _assert_std(values[name], expected, 3.0 if mode == "" else UNIFORM)
    assert fixed["blocks.1.mlp.fc1.weight"].std == plain["blocks.1.mlp.fc1.weight"].std


def test_moco_needs_no_model_and_keeps_the_values_of_the_bound_rule() -> None:
    """timm's moco bound sqrt(6 / (out // 3 + in)) as one uniform rule (the preset before
    split=3) draws the same values as xavier_uniform per row block: the counter stream numbers
    each element by its place in the whole weight."""
    bound = math.sqrt(6.0 / (3 * WIDTH // 3 + WIDTH))
    by_bound = initlab.Plan(
        [initlab.rule(regex=r"qkv\.weight$", scheme="uniform", a=-bound, b=bound)], "keep"
    )
    first, second = VisionTransformer(), VisionTransformer()
    by_bound.apply(first, seed=5)
    initlab.preset("timm-vit", mode="moco").apply(second, seed=5)
    assert torch.equal(first.blocks[1].attn.qkv.weight, second.blocks[1].attn.qkv.weight)


def test_the_dry_run_names_each_parameters_rule() -> None:
    model = VisionTransformer()
    table = initlab.preset("timm-vit", model, mode="jax").resolve(model)
    assert "'^head'" in table["head.weight"].source
    assert "types=Conv2d" in table["patch_embed.proj.weight"].source
    assert "mlp" in table["blocks.0.mlp.fc2.bias"].source


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"mode": "jx"}, "mode must be one of"),
        ({"fix_init": "yes"}, "fix_init must be True or False"),
        ({"head_bias": 1.0}, "head_bias"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        initlab.preset("timm-vit", VisionTransformer(), **options)


@pytest.mark.parametrize("options", [{"mode": "jax_nlhb"}, {"fix_init": True}])
def test_modes_that_read_the_model_say_so_without_one(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="model"):
        initlab.preset("timm-vit", **options)


def test_a_swiglu_gate_starts_near_zero_with_bias_one_in_every_mode() -> None:
    class SwiGLU(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1_g = nn.Linear(WIDTH, 64)
            self.fc1_x = nn.Linear(WIDTH, 64)
            self.fc2 = nn.Linear(64, WIDTH)

    for mode in ("", "jax"):
        model = VisionTransformer()
        model.blocks[0].mlp = SwiGLU()
        initlab.preset("timm-vit", model, mode=mode).apply(model, seed=0)
        gate = model.blocks[0].mlp.fc1_g
        _assert_std(gate.weight.detach(), 1e-6)
        assert torch.equal(gate.bias.detach(), torch.ones(64))
