"""Presets against the formulas of the papers and the frameworks they reproduce."""

from __future__ import annotations

import math
import sys
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
import typer.testing
from rich.console import Console
from torch import nn

import initlab
from initlab.cli import application as cli
from initlab.errors import ConfigError, UnknownNameError
from initlab.plan import presets


class Block(nn.Module):
    """A GPT-2 block's parameter names (nanoGPT / Hugging Face)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.ModuleDict(
            {"c_attn": nn.Linear(width, 3 * width), "c_proj": nn.Linear(width, width)}
        )
        self.mlp = nn.ModuleDict(
            {"c_fc": nn.Linear(width, 4 * width), "c_proj": nn.Linear(4 * width, width)}
        )


class TinyGPT(nn.Module):
    def __init__(self, n_layer: int = 12, width: int = 32) -> None:
        super().__init__()
        self.wte = nn.Embedding(100, width)
        self.h = nn.ModuleList(Block(width) for _ in range(n_layer))
        self.lm_head = nn.Linear(width, 100, bias=False)


class BasicBlock(nn.Module):
    def __init__(self, channels: int, downsample: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = nn.Conv2d(channels, channels, 1, bias=False) if downsample else None


class TinyResNet(nn.Module):
    def __init__(self, blocks: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, bias=False)
        self.layer1 = nn.Sequential(*(BasicBlock(8, downsample=i == 0) for i in range(blocks)))
        self.fc = nn.Linear(8, 10)


def test_gpt2_scales_residual_projections_by_one_over_sqrt_two_n_layer() -> None:
    table = initlab.preset("gpt2", TinyGPT(n_layer=12)).resolve(TinyGPT(n_layer=12))
    # Radford et al. (2019) / nanoGPT: std 0.02 / sqrt(2 * 12) = 0.0040825.
    assert table["h.3.attn.c_proj.weight"].std == pytest.approx(0.0040825, abs=1e-7)
    assert table["h.3.mlp.c_proj.weight"].std == pytest.approx(0.0040825, abs=1e-7)
    assert table["h.3.attn.c_attn.weight"].std == pytest.approx(0.02)
    assert table["wte.weight"].std == pytest.approx(0.02)
    assert table["h.3.mlp.c_fc.bias"].scheme == initlab.get("zeros")
    assert table["h.0.ln_1.weight"].scheme == initlab.get("ones")


def test_gpt2_n_layer_explicit_and_missing() -> None:
    table = initlab.preset("gpt2", n_layer=48).resolve(TinyGPT(n_layer=2))
    assert table["h.0.mlp.c_proj.weight"].std == pytest.approx(0.02 / math.sqrt(96))
    with pytest.raises(ConfigError, match="n_layer"):
        initlab.preset("gpt2")


def test_torch_default_reproduces_reset_parameters_bounds() -> None:
    model = nn.Sequential(nn.Linear(1000, 50), nn.ConvTranspose2d(16, 32, 3, groups=4))
    table = initlab.init_model(model, "torch-default", seed=0)
    # nn.Linear: kaiming_uniform_(a=sqrt 5) -> bound 1/sqrt(fan_in), std 1/sqrt(3 fan_in).
    assert table["0.weight"].bound == pytest.approx(1 / math.sqrt(1000))
    assert table["0.weight"].std == pytest.approx(1 / math.sqrt(3000))
    assert table["0.bias"].bound == pytest.approx(1 / math.sqrt(1000))
    assert float(model[0].weight.detach().abs().max()) <= 1 / math.sqrt(1000)
    # ConvTranspose2d keeps torch's array fans: fan_in = weight.shape[1] * 9 = 8 * 9.
    assert table["1.weight"].bound == pytest.approx(1 / math.sqrt(72))
    assert table["1.bias"].bound == pytest.approx(1 / math.sqrt(72))


def test_torch_default_rnn_parameters_use_one_over_sqrt_hidden() -> None:
    model = nn.LSTM(4, 25)
    table = initlab.preset("torch-default", model).resolve(model)
    for row in table:
        assert row.bound == pytest.approx(0.2), row.name


@pytest.mark.parametrize(
    ("name", "expected_std"),
    [
        ("xavier", math.sqrt(2.0 / (64 + 32))),
        ("kaiming", math.sqrt(2.0 / 64)),
        ("lecun", math.sqrt(1.0 / 64)),
        ("orthogonal", 1.0 / math.sqrt(64)),
    ],
)
def test_simple_presets_match_their_formulas(name: str, expected_std: float) -> None:
    model = nn.Sequential(nn.Linear(64, 32))
    table = initlab.init_model(model, name, seed=0)
    assert table["0.weight"].std == pytest.approx(expected_std)
    assert torch.equal(model[0].bias, torch.zeros(32))


def test_zero_init_residual_zeroes_the_last_norm_of_every_branch() -> None:
    model = TinyResNet(blocks=3)
    initlab.init_model(model, "zero-init-residual", seed=0)
    for block in model.layer1:
        assert torch.equal(block.bn2.weight, torch.zeros(8))
        assert torch.equal(block.bn1.weight, torch.ones(8))
    table = initlab.preset("zero-init-residual", model).resolve(model)
    # torchvision ResNet: kaiming_normal_(mode="fan_out", nonlinearity="relu").
    assert table["layer1.0.conv1.weight"].std == pytest.approx(math.sqrt(2.0 / (8 * 9)))


def test_fixup_scales_branches_by_depth_and_zeroes_their_last_layer() -> None:
    model = TinyResNet(blocks=4)
    table = initlab.init_model(model, "fixup", seed=0)
    # Zhang et al. (2019): L = 4 branches of m = 2 layers -> scale L^(-1/(2m-2)) = 4^-0.5.
    he_fan_out = math.sqrt(2.0 / (8 * 9))
    assert table["layer1.2.conv1.weight"].std == pytest.approx(he_fan_out * 0.5)
    assert torch.equal(
        model.layer1[2].conv2.weight, torch.zeros_like(model.layer1[2].conv2.weight)
    )
    assert torch.equal(model.fc.weight, torch.zeros_like(model.fc.weight))
    assert table["layer1.0.downsample.weight"].std == pytest.approx(math.sqrt(2.0 / 8))


def test_unknown_preset_suggests_the_closest() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'kaiming'"):
        initlab.preset("kaiming2")


@pytest.mark.parametrize("name", initlab.PRESET_NAMES)
def test_as_plan_builds_every_preset_by_name(name: str) -> None:
    model = TinyResNet() if name in ("zero-init-residual", "fixup", "auto") else TinyGPT(2)
    options = {"n_layer": 2, "initializer_range": 0.02} if name == "hf-gpt2" else {}
    # TinyGPT has no Mamba mixer: the mamba preset says so (its generic rules only).
    warned = (
        pytest.warns(UserWarning, match="no Mamba mixer") if name == "mamba" else nullcontext()
    )
    with warned:
        plan = initlab.as_plan(name, model, **options)
        assert plan.to_config() == initlab.preset(name, model, **options).to_config()
    assert isinstance(plan, initlab.Plan)
    assert plan.name == name


def test_auto_is_a_preset_and_as_plan_accepts_it() -> None:
    assert "auto" in initlab.PRESET_NAMES
    plan = initlab.as_plan("auto")
    assert plan.to_config() == initlab.preset("auto").to_config()
    assert (plan.name, plan.default) == ("auto", "auto")


def test_as_plan_returns_a_plan_unchanged() -> None:
    plan = initlab.Plan([initlab.rule(role="bias", scheme="zeros")], name="mine")
    assert initlab.as_plan(plan) is plan
    with pytest.raises(ConfigError, match=r"\['std'\].*a Plan takes none"):
        initlab.as_plan(plan, std=0.1)


@pytest.mark.parametrize("value", [None, 3, ["kaiming"], nn.Linear(2, 2)])
def test_as_plan_refuses_what_is_neither_a_plan_nor_a_name(value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        initlab.as_plan(value)  # type: ignore[arg-type]
    message = str(caught.value)
    assert type(value).__name__ in message
    assert all(name in message for name in initlab.PRESET_NAMES)


def test_as_plan_unknown_name_and_bad_option() -> None:
    with pytest.raises(UnknownNameError, match=r"Did you mean 'kaiming'.*auto"):
        initlab.as_plan("kaimnig")
    with pytest.raises(ConfigError, match="bogus"):
        initlab.as_plan("kaiming", bogus=1)
    with pytest.raises(ConfigError, match="preset 'auto'"):
        initlab.as_plan("auto", std=0.1)


# --- preset options are checked before the builder runs -----------------------------------------
def test_an_unknown_option_is_named_with_the_options_the_preset_takes() -> None:
    megatron = r"'megatron': unknown option 'num_layer'. Options: init_method_std, num_layers"
    with pytest.raises(ConfigError, match=megatron):
        initlab.preset("megatron", None, num_layer=2)
    with pytest.raises(ConfigError, match=r"'zero': unknown option 'gain'. Options: none."):
        initlab.preset("zero", None, gain=2.0)


def test_a_type_error_inside_a_builder_is_not_reported_as_a_wrong_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def buggy(model: nn.Module | None, depth: int = 2) -> initlab.Plan:
        return initlab.Plan(None + depth)  # type: ignore[operator]  # a bug, not a user error

    monkeypatch.setitem(presets._PRESETS, "buggy", buggy)
    with pytest.raises(TypeError, match="unsupported operand"):
        initlab.preset("buggy", None, depth=3)
    with pytest.raises(ConfigError, match=r"'buggy': unknown option 'width'. Options: depth."):
        initlab.preset("buggy", None, width=3)


# --- `initlab plan --preset NAME --show` for every preset --------------------------------------
SHOW_FACTORY = """
from types import SimpleNamespace

from torch import nn


class Layer(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.self_attn = nn.ModuleDict(
            {name: nn.Linear(width, width) for name in ("q_proj", "k_proj", "v_proj", "out_proj")}
        )
        self.fc1 = nn.Linear(width, 2 * width)
        self.fc2 = nn.Linear(2 * width, width)
        self.norm = nn.LayerNorm(width)


class Encoder(nn.Module):
    def __init__(self, width: int = 8, depth: int = 2) -> None:
        super().__init__()
        self.config = SimpleNamespace(n_layer=depth, initializer_range=0.02)
        self.embed = nn.Embedding(16, width)
        self.layers = nn.ModuleList(Layer(width) for _ in range(depth))
        self.head = nn.Linear(width, 3)
"""
# Presets that read the model's structure get it; the depth-scaled ones get their depth.
SHOW_NEEDS_MODEL = {"zero-init-residual", "fixup", "t-fixup", "deepnet", "zero"}
SHOW_OPTIONS: dict[str, dict[str, object]] = {
    "gpt2": {"n_layer": 2},
    "hf-gpt2": {"n_layer": 2, "initializer_range": 0.02},
    "torchtitan-llama": {"n_layers": 2, "dim": 8},
    "megatron": {"num_layers": 2},
    "mamba": {"n_layer": 2},
}


@pytest.mark.parametrize("name", initlab.PRESET_NAMES)
def test_cli_show_prints_every_rule_of_every_preset(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "initlab_show_models.py").write_text(SHOW_FACTORY, encoding="utf-8")
    monkeypatch.delitem(sys.modules, "initlab_show_models", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "console", Console(width=1000, color_system=None))
    args = ["plan", "--preset", name, "--show"]
    model = None
    if name in SHOW_NEEDS_MODEL:
        args.insert(1, "initlab_show_models:Encoder")
        from initlab_show_models import Encoder  # type: ignore[import-not-found]

        model = Encoder()
    options = SHOW_OPTIONS.get(name, {})
    for key, value in options.items():
        args += ["--option", f"{key}={value}"]
    result = typer.testing.CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    plan = initlab.preset(name, model, **options)
    assert f"plan {plan.name!r}" in result.stdout
    for item in plan.rules:
        assert item.describe() in result.stdout, item.describe()
    assert f"default: {plan.default}" in result.stdout
