"""The doctor on models it did not build: no false alarms at a stock init, the true ones kept,
depth judged on the residual stream of a stack of blocks, cloned layers found, and a fix that
is exactly the findings' own plans."""

from __future__ import annotations

import copy
import json
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import typer.testing
from rich.console import Console
from torch import nn

import initlab
from initlab.cli import application as cli
from initlab.doctor import DoctorReport, doctor
from initlab.train.models import MLP, ResNet, SmallCNN


def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def diagnose(model: nn.Module, batch: Any) -> DoctorReport:
    return doctor(model, batch, jacobian=False)


def summary(report: DoctorReport) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(f.severity, f.code, f.layers[:4]) for f in report.findings]


def codes(report: DoctorReport) -> set[str]:
    return {f.code for f in report.findings}


def with_weights(model: nn.Module, scheme: str, **params: float) -> nn.Module:
    initlab.Plan([initlab.rule(role="weight", scheme=scheme, **params)]).apply(model)
    return model


def tokens(vocabulary: int, batch: int = 8, length: int = 16) -> torch.Tensor:
    return torch.randint(0, vocabulary, (batch, length), generator=generator())


# --- stock Hugging Face models ----------------------------------------------------------------

TINY = {"hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
        "intermediate_size": 128}  # fmt: skip


def bert() -> tuple[nn.Module, Any]:
    from transformers import BertConfig, BertForSequenceClassification

    return BertForSequenceClassification(BertConfig(**TINY, vocab_size=100)), tokens(100)


def shallow_bart() -> tuple[nn.Module, Any]:
    from transformers import BartConfig, BartModel

    # Two layers a side: too shallow to judge as stacks, and still not a chain of q/k/v layers.
    config = BartConfig(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                        decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
                        vocab_size=100, max_position_embeddings=64)  # fmt: skip
    ids = tokens(100)
    return BartModel(config), {"input_ids": ids, "decoder_input_ids": ids}


def vit() -> tuple[nn.Module, Any]:
    from transformers import ViTConfig, ViTForImageClassification

    model = ViTForImageClassification(ViTConfig(**TINY, image_size=32, patch_size=8))
    return model, torch.randn(8, 3, 32, 32, generator=generator())


def gpt2() -> tuple[nn.Module, Any]:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_embd=64, n_layer=4, n_head=4, n_inner=128, vocab_size=100,
                        n_positions=64, bos_token_id=0, eos_token_id=0)  # fmt: skip
    return GPT2LMHeadModel(config), tokens(100)


def llama() -> tuple[nn.Module, Any]:
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(**TINY, num_key_value_heads=2, vocab_size=100)), tokens(
        100
    )


def mamba() -> tuple[nn.Module, Any]:
    from transformers import MambaConfig, MambaModel

    config = MambaConfig(hidden_size=64, num_hidden_layers=4, vocab_size=100, state_size=8)
    return MambaModel(config), tokens(100, batch=4)


def albert() -> tuple[nn.Module, Any]:
    from transformers import AlbertConfig, AlbertModel

    # One shared layer applied 6 times: a stack only its calls reveal.
    config = AlbertConfig(**{**TINY, "num_hidden_layers": 6}, vocab_size=100, embedding_size=32)
    return AlbertModel(config), tokens(100)


def t5() -> tuple[nn.Module, Any]:
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(d_model=64, d_ff=128, num_layers=4, num_heads=4, d_kv=16, vocab_size=100,
                      decoder_start_token_id=0)  # fmt: skip
    ids = tokens(100)
    # Two stacks (encoder, decoder) judged apart; ReLU after Xavier-scaled `wi` is no mismatch
    # in a pre-norm block: the next RMSNorm rescales the branch before anything compounds.
    return T5ForConditionalGeneration(config), {"input_ids": ids, "decoder_input_ids": ids}


@pytest.mark.parametrize("build", [bert, shallow_bart, vit, gpt2, llama, mamba, albert, t5])
def test_stock_hugging_face_models_are_healthy(build: Callable[[], tuple[nn.Module, Any]]) -> None:
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    model, batch = build()
    report = diagnose(model.eval(), batch)
    # BERT used to get a critical vanishing_gradients (dL/dh at the attention query/key is
    # tiny by construction) and Mamba a critical torch_default_relu (a depthwise conv SiLU
    # follows); both judged something other than the network's signal path.
    assert report.healthy, summary(report)


# --- other stock models -----------------------------------------------------------------------


def torch_encoder(distinct: bool) -> nn.Module:
    layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)
    if distinct:  # what the user must do: nn.TransformerEncoder deep-copies `layer`
        for block in encoder.layers:
            block.self_attn._reset_parameters()
            for linear in (block.self_attn.out_proj, block.linear1, block.linear2):
                linear.reset_parameters()
    return encoder


class LanguageModel(nn.Module):
    """Embedding -> 2-layer LSTM -> Linear, at PyTorch's default init."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 64)
        self.lstm = nn.LSTM(64, 64, num_layers=2, batch_first=True)
        self.head = nn.Linear(64, 100)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.embed(ids))[0])  # type: ignore[no-any-return]


def initialized(model: nn.Module, preset: str = "auto") -> nn.Module:
    initlab.init_model(model, preset)
    return model


STOCK = {
    "transformer encoder, distinct layers": lambda: (
        torch_encoder(distinct=True), torch.randn(8, 16, 64, generator=generator())),
    "LSTM language model": lambda: (LanguageModel(), tokens(100)),
    "initlab MLP, auto": lambda: (
        initialized(MLP(64, 10, depth=6, width=64)), torch.randn(64, 64, generator=generator())),
    "initlab SmallCNN, auto": lambda: (
        initialized(SmallCNN(1, 10)), torch.randn(32, 1, 8, 8, generator=generator())),
    "initlab ResNet with batch norm, as built": lambda: (
        ResNet(3, 10), torch.randn(16, 3, 16, 16, generator=generator())),
    "initlab ResNet without norm, fixup": lambda: (
        initialized(ResNet(3, 10, blocks=(3, 3, 3), norm=False), "fixup"),
        torch.randn(16, 3, 16, 16, generator=generator())),
    "initlab ResNet without norm, zero-init-residual": lambda: (
        initialized(ResNet(3, 10, blocks=(3, 3, 3), norm=False), "zero-init-residual"),
        torch.randn(16, 3, 16, 16, generator=generator())),
    # A zero head stops every gradient below it on purpose: no vanishing gradients.
    "MLP with a zero head": lambda: (
        zero_head(nn.Sequential(*(m for _ in range(5) for m in (nn.Linear(32, 32), nn.ReLU())),
                                nn.Linear(32, 10))),
        torch.randn(64, 32, generator=generator())),
}  # fmt: skip


def zero_head(model: nn.Sequential) -> nn.Sequential:
    initlab.init_model(model, "auto")
    with torch.no_grad():
        model[-1].weight.zero_()
    return model


def test_a_gradient_that_is_exactly_zero_at_the_first_layers_has_vanished() -> None:
    """A ReLU layer off for the whole batch cuts every path back to the input: the layers
    before it get no gradient at all, which the log-linear trend of the positive ones would
    not see."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(6):
        layers += [nn.Linear(32, 32), nn.ReLU()]
    model = initialized(nn.Sequential(*layers, nn.Linear(32, 10)))
    with torch.no_grad():
        model[4].bias.fill_(-100.0)  # the third ReLU is off for every example
        for index in (6, 8, 10):  # after it a constant signal, which biases keep nonzero
            model[index].bias.fill_(0.5)
    report = diagnose(model, torch.randn(64, 32, generator=generator()))
    [finding] = [f for f in report.findings if f.code == "vanishing_gradients"]
    assert finding.severity == "critical"
    assert "exactly 0 at the first 3 layers (up to '4')" in finding.evidence


def test_residual_stream_growth_without_norm_is_a_warning_naming_the_cure() -> None:
    """He in every branch of a ResNet without norm adds the branch's variance at each block
    (Zhang et al., 2019): x1.3 per block, tenfold over 9. That is a warning, not an alarm."""
    model = initialized(ResNet(3, 10, blocks=(3, 3, 3), norm=False))
    report = diagnose(model, torch.randn(16, 3, 16, 16, generator=generator()))
    [finding] = report.findings
    assert (finding.code, finding.severity) == ("exploding_forward", "warning")
    assert "fixup" in finding.fix


@pytest.mark.parametrize("name", list(STOCK))
def test_stock_models_are_healthy(name: str) -> None:
    torch.manual_seed(0)
    model, batch = STOCK[name]()
    report = diagnose(model, batch)
    assert report.healthy, summary(report)


# --- depth on the signal path -----------------------------------------------------------------


def test_a_stack_of_blocks_is_judged_on_what_the_blocks_output() -> None:
    model = with_weights(MLP(64, 10, depth=12, width=64), "normal", std=0.01)
    report = diagnose(model, torch.randn(64, 64, generator=generator()))
    blocks = tuple(f"layers.{i}" for i in range(12))
    vanishing = {f.code: f for f in report.findings if f.code.startswith("vanishing")}
    assert set(vanishing) == {"vanishing_forward", "vanishing_gradients"}
    assert vanishing["vanishing_forward"].layers == blocks
    assert "over 12 blocks" in vanishing["vanishing_forward"].evidence
    assert vanishing["vanishing_gradients"].layers == blocks
    assert "at the last block" in vanishing["vanishing_gradients"].evidence
    fix = report.fix
    assert fix.rules
    fix.apply(model, seed=0)
    after = diagnose(model, torch.randn(64, 64, generator=generator()))
    assert not {"vanishing_forward", "vanishing_gradients"} & codes(after)


class Repeated(nn.Module):
    """One block applied ``times`` times (ALBERT's weight sharing, a universal transformer)."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(64, 64), nn.ReLU())])
        self.times = times

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.times):
            x = self.blocks[0](x)
        return x


def test_one_block_applied_many_times_is_judged_over_its_calls() -> None:
    model = with_weights(Repeated(10), "normal", std=0.01)
    report = diagnose(model, torch.randn(64, 64, generator=generator()))
    vanishing = next(f for f in report.findings if f.code == "vanishing_forward")
    assert vanishing.layers == ("blocks.0",)
    assert "over 10 blocks" in vanishing.evidence


class OneStage(nn.Module):
    """A list holding one stage of eight blocks: the stage runs once, its blocks in a chain."""

    def __init__(self) -> None:
        super().__init__()
        blocks = (nn.Sequential(nn.Linear(64, 64), nn.ReLU()) for _ in range(8))
        self.stages = nn.ModuleList([nn.Sequential(*blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages[0](x)  # type: ignore[no-any-return]


def test_a_stack_inside_a_list_that_runs_once_is_judged_on_its_blocks() -> None:
    model = with_weights(OneStage(), "normal", std=0.01)
    report = diagnose(model, torch.randn(64, 64, generator=generator()))
    vanishing = next(f for f in report.findings if f.code == "vanishing_forward")
    assert vanishing.layers == tuple(f"stages.0.{i}" for i in range(8))


def mlp(depth: int, activation: Callable[[], nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(64, 64), activation()]
    return nn.Sequential(*layers, nn.Linear(64, 10))


@pytest.mark.parametrize(
    ("activation", "rectifier"),
    [(nn.ReLU, True), (nn.LeakyReLU, True), (nn.SiLU, False), (nn.GELU, False)],
)
def test_relu_mismatches_are_for_rectifiers_only(
    activation: Callable[[], nn.Module], rectifier: bool
) -> None:
    batch = torch.randn(128, 64, generator=generator())
    torch.manual_seed(0)
    default = codes(diagnose(mlp(10, activation), batch))  # PyTorch's own reset_parameters
    xavier = codes(diagnose(initialized(mlp(10, activation), "xavier"), batch))
    assert ("torch_default_relu" in default) is rectifier
    assert ("xavier_before_relu" in xavier) is rectifier
    # What the smooth nets lose is still measured and reported, as a trend.
    assert "vanishing_gradients" in default


class ResidualReLUBranch(nn.Module):
    """Six weights, one of them before a ReLU, in a residual MLP branch (PyTorch's init)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(16, 64)
        self.attention = nn.MultiheadAttention(64, num_heads=4, batch_first=True)
        self.norm = nn.LayerNorm(64)
        self.mlp = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64))
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        attended, _ = self.attention(h, h, h, need_weights=False)
        h = self.norm(h + attended)
        return self.head(h + self.mlp(h))  # type: ignore[no-any-return]


def test_one_mis_scaled_relu_layer_is_no_mismatch() -> None:
    torch.manual_seed(0)
    report = diagnose(ResidualReLUBranch(), torch.randn(8, 16, 16, generator=generator()))
    # 1/6 of He's variance, lost once: nothing compounds (a chain of them is flagged above).
    assert "torch_default_relu" not in codes(report)


def test_depthwise_convs_are_judged_by_their_trend_not_their_gain() -> None:
    torch.manual_seed(0)  # before the layers: their init draws from the global generator
    layers: list[nn.Module] = []
    for _ in range(10):  # fan_in 3 per unit: the gain of one channel is mostly sampling luck
        layers += [nn.Conv1d(16, 16, 3, groups=16, padding=1), nn.ReLU()]
    report = diagnose(nn.Sequential(*layers), torch.randn(32, 16, 50, generator=generator()))
    assert "torch_default_relu" not in codes(report)
    assert "vanishing_gradients" in codes(report)


# --- the fix is the findings' own plans -------------------------------------------------------


def saturated_tanh_net() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                          nn.Linear(64, 10))  # fmt: skip
    torch.manual_seed(0)
    for module in model:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight)
    return model


def test_the_fix_draws_what_the_findings_propose() -> None:
    model = saturated_tanh_net()
    batch = torch.randn(128, 64, generator=generator())
    report = diagnose(model, batch)
    saturated = next(f for f in report.findings if f.code == "saturated")
    assert saturated.layers == ("1", "3")  # the tanh modules
    fix = report.fix
    assert fix.rules
    proposed = [r for f in report.findings if f.plan is not None for r in f.plan.rules]
    assert set(fix.rules) == set(proposed)
    drawn = {row.name for row in fix.resolve(model) if row.scheme is not None}
    assert drawn == {"0.weight", "0.bias", "2.weight", "2.bias"}  # the Linears before each tanh
    last = model[4].weight.detach().clone()
    fix.apply(model, seed=0)
    assert torch.equal(model[4].weight, last)
    assert "saturated" not in codes(diagnose(model, batch))


CLI_FACTORIES = """
import torch
from torch import nn


def tanh_net() -> nn.Module:
    model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                          nn.Linear(64, 10))
    for module in model:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight)
    return model
"""


def test_cli_fix_diagnoses_the_fixed_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = "initlab_findings_real_cli_models"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(CLI_FACTORIES), encoding="utf-8")
    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "console", Console(width=240, color_system=None))
    result = typer.testing.CliRunner().invoke(
        cli.app,
        ["doctor", f"{module}:tanh_net", "--input-shape", "128,64", "--fix", "--json", "r.json",
         "--no-jacobian"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output  # the model as built is unhealthy
    document = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert "saturated" in [f["code"] for f in document["findings"]]
    assert "saturated" not in [f["code"] for f in document["after_fix"]["findings"]]


# --- layers cloned across depth ---------------------------------------------------------------


def test_torch_transformer_encoder_layers_are_clones_and_the_fix_redraws_the_copies() -> None:
    torch.manual_seed(0)
    model = torch_encoder(distinct=False)
    batch = torch.randn(8, 16, 64, generator=generator())
    report = diagnose(model, batch)
    cloned = next(f for f in report.findings if f.code == "cloned_layers")
    assert cloned.severity == "warning"
    assert {f"layers.{i}.linear1" for i in range(4)} <= set(cloned.layers)
    assert "deepcopy" in cloned.title
    assert cloned.plan is not None
    drawn = {row.name for row in cloned.plan.resolve(model) if row.scheme is not None}
    # Every weight layer of the copies, with its bias; the first layer and the norms kept.
    copies = {
        name
        for name, _ in model.named_parameters()
        if not name.startswith("layers.0.") and ".norm" not in name
    }
    assert drawn == copies
    first = model.layers[0].linear1.weight.detach().clone()
    cloned.plan.apply(model, seed=0)
    assert torch.equal(model.layers[0].linear1.weight, first)
    assert "cloned_layers" not in codes(diagnose(model, batch))


def test_deepcopy_in_a_loop_is_a_clone() -> None:
    block = nn.Sequential(nn.Linear(64, 64), nn.Tanh())
    model = nn.Sequential(*(copy.deepcopy(block) for _ in range(4)), nn.Linear(64, 10))
    report = diagnose(model, torch.randn(32, 64, generator=generator()))
    cloned = next(f for f in report.findings if f.code == "cloned_layers")
    assert cloned.layers == ("0.0", "1.0", "2.0", "3.0")


class TeacherStudent(nn.Module):
    """A network and its EMA teacher: a copy held side by side, identical on purpose."""

    def __init__(self) -> None:
        super().__init__()
        self.student = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
        self.teacher = copy.deepcopy(self.student)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x) - self.teacher(x).detach()  # type: ignore[no-any-return]


def shared_layer() -> nn.Module:
    layer = nn.Linear(64, 64)
    return nn.Sequential(*[layer] * 4)  # one module, four times: deliberate weight sharing


def identity_layers() -> nn.Module:
    model = nn.Sequential(*(nn.Linear(64, 64) for _ in range(4)))
    for linear in model:
        nn.init.eye_(linear.weight)  # a deterministic pattern, the same by design
    return model


def repeated_row_layers() -> nn.Module:
    model = nn.Sequential(*(nn.Linear(64, 64) for _ in range(4)))
    with torch.no_grad():
        for linear in model:  # Mamba's S4D-real A_log: log(1..N) in every row of every layer
            linear.weight.copy_(torch.arange(1.0, 65.0).log().expand(64, 64))
    return model


NOT_CLONES = {
    "shared layer": shared_layer,
    "EMA teacher": TeacherStudent,
    "identity init": identity_layers,
    "S4D-real rows": repeated_row_layers,
    "per-layer random init": lambda: nn.Sequential(*(nn.Linear(64, 64) for _ in range(4))),
    "transformer encoder, distinct layers": lambda: torch_encoder(distinct=True),
}


@pytest.mark.parametrize("name", list(NOT_CLONES))
def test_shared_or_deliberately_equal_weights_are_not_clones(name: str) -> None:
    torch.manual_seed(0)
    model = NOT_CLONES[name]()
    batch = torch.randn(8, 16, 64, generator=generator())
    assert "cloned_layers" not in codes(diagnose(model, batch))


def test_norm_scales_drawn_like_weights_are_a_warning() -> None:
    """A weight rule that reached the norms (scales ~ N(0, 0.02)) is said; scales of 1, of 0
    (zero-init residual) or learned away from 0 are not."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(16, 32), nn.LayerNorm(32), nn.ReLU(), nn.Linear(32, 32), nn.LayerNorm(32)
    )
    batch = torch.randn(64, 16)
    assert "random_norm_scales" not in {f.code for f in doctor(model, batch).findings}
    with torch.no_grad():
        model[4].weight.zero_()
    assert "random_norm_scales" not in {f.code for f in doctor(model, batch).findings}
    with torch.no_grad():
        model[1].weight.normal_(0.0, 0.02)
    report = doctor(model, batch)
    finding = next(f for f in report.findings if f.code == "random_norm_scales")
    assert finding.layers == ("1",)
    assert finding.severity == "warning"
    report.fix.apply(model)
    assert torch.equal(model[1].weight.detach(), torch.ones(32))


def test_a_signal_halving_per_layer_is_said() -> None:
    """The seen case: ConvTranspose2d(16, 16, 4, stride 2, padding 1) x 5 with ReLU, He drawn
    with stride-blind fans (torch's kaiming_normal_): the RMS halves per layer, 20-fold over
    the stack. Below the hundredfold of a vanishing signal, but a warning, not "healthy";
    the plan's stride-aware fans keep it."""
    torch.manual_seed(0)
    layers = [m for _ in range(5) for m in (nn.ConvTranspose2d(16, 16, 4, 2, 1), nn.ReLU())]
    model = nn.Sequential(*layers)
    for module in model:
        if isinstance(module, nn.ConvTranspose2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)
    batch = torch.randn(4, 16, 4, 4, generator=generator())
    codes = {(f.code, f.severity) for f in diagnose(model, batch).findings}
    assert ("vanishing_forward", "warning") in codes
    initlab.init_model(model, "kaiming")
    assert diagnose(model, batch).healthy
