"""Plans on real models: matching, auto choice, reproducibility, tied and meta parameters."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import initlab
import initlab.plan
from initlab.errors import ConfigError, InitlabError
from initlab.plan import Plan, detect_activations, rule
from initlab.schemes import Normal, Uniform


def deep_mlp(depth: int, width: int, activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width, bias=False), activation()]
    return nn.Sequential(*layers)


def linear_output_stds(model: nn.Sequential, batch: torch.Tensor) -> list[float]:
    stds = []
    signal = batch
    with torch.no_grad():
        for module in model:
            signal = module(signal)
            if isinstance(module, nn.Linear):
                stds.append(float(signal.std()))
    return stds


GAUSSIAN = torch.randn(512, 256, generator=torch.Generator().manual_seed(0))


def test_kaiming_keeps_a_30_layer_relu_mlp_at_scale() -> None:
    model = deep_mlp(30, 256)
    initlab.init_model(model, "kaiming", seed=0)
    ratios = [s / float(GAUSSIAN.std()) for s in linear_output_stds(model, GAUSSIAN)]
    assert all(0.5 <= r <= 2.0 for r in ratios), ratios


def test_xavier_vanishes_through_a_30_layer_relu_mlp() -> None:
    model = deep_mlp(30, 256)
    initlab.init_model(model, "xavier", seed=0)
    stds = linear_output_stds(model, GAUSSIAN)
    # Glorot with gain 1 halves the second moment per ReLU layer: (1/sqrt 2)^29 ~ 4e-5.
    assert stds[-1] / stds[0] < 1e-3


def test_auto_picks_by_the_following_activation() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(8, 8)
            self.b = nn.Linear(8, 8)
            self.c = nn.Linear(8, 8)
            self.d = nn.Linear(8, 8)
            self.leaky = nn.LeakyReLU(0.2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.relu(self.a(x))
            x = torch.tanh(self.b(x))
            x = self.leaky(self.c(x))
            return F.selu(self.d(x)).softmax(-1)

    table = Plan(default="auto").resolve(Net())
    assert table.activation_method == "fx"
    assert table["a.weight"].scheme == initlab.get("he_normal", nonlinearity="relu")
    assert table["b.weight"].scheme == initlab.get("xavier_normal", gain=5.0 / 3.0)
    assert table["c.weight"].scheme == initlab.get("he_normal", a=0.2, nonlinearity="leaky_relu")
    assert table["d.weight"].scheme == initlab.get("lecun_normal")
    assert table["a.bias"].scheme == initlab.get("zeros")


def test_untraceable_model_falls_back_to_module_order_and_says_why() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first = nn.Linear(4, 4)
            self.squash = nn.Tanh()
            self.last = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # data-dependent control flow: fx cannot trace this
                x = -x
            return self.last(self.squash(self.first(x)))

    found = detect_activations(Branchy())
    assert found.method == "module order"
    assert found.fallback_reason
    assert found.by_layer["first"].name == "tanh"
    assert found.by_layer["last"].name == "linear"
    table = Plan().resolve(Branchy())
    assert table.activation_method == "module order"
    assert "module order" in str(table)


def test_first_matching_rule_wins_and_later_matches_are_reported() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    plan = Plan([rule("0.weight", "zeros"), rule(role="weight", scheme="orthogonal")])
    table = plan.resolve(model)
    assert table["0.weight"].scheme == initlab.get("zeros")
    assert table["0.weight"].also_matched == (1,)
    assert table["2.weight"].scheme == initlab.get("orthogonal")


def test_rule_that_matches_nothing_is_warned_about_and_listed() -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.warns(UserWarning, match="matched no parameter"):
        table = Plan([rule("*.nothing", "zeros")]).resolve(model)
    assert table.unused_rules == ((0, "'*.nothing'"),)


def test_matching_by_type_name_regex_and_depth() -> None:
    model = nn.Sequential(*(nn.Sequential(nn.Linear(4, 4), nn.Conv1d(2, 2, 3)) for _ in range(4)))
    plan = Plan(
        [
            rule(types="Conv1d", depth=range(2, 4), role="weight", scheme="dirac"),
            rule(regex=r"^1\.0\.", scheme="ones"),
        ],
        default="keep",
    )
    table = plan.resolve(model)
    assert table["2.1.weight"].scheme == initlab.get("dirac")
    assert table["3.1.weight"].scheme == initlab.get("dirac")
    assert table["0.1.weight"].scheme is None
    assert table["1.0.weight"].scheme == initlab.get("ones")
    assert table["1.0.bias"].scheme == initlab.get("ones")


def test_values_depend_only_on_seed_name_scheme_and_shape() -> None:
    class Small(nn.Module):
        def __init__(self, extra: bool) -> None:
            super().__init__()
            self.encoder = nn.Linear(16, 32)
            if extra:
                self.inserted = nn.Linear(32, 32)
            self.decoder = nn.Linear(32, 4)

    plain, grown = Small(extra=False), Small(extra=True)
    initlab.init_model(plain, "kaiming", seed=7)
    initlab.init_model(grown, "kaiming", seed=7)
    for name in ("encoder.weight", "decoder.weight"):
        assert torch.equal(plain.get_parameter(name), grown.get_parameter(name))
    again = Small(extra=False)
    initlab.init_model(again, "kaiming", seed=7)
    assert torch.equal(again.encoder.weight, plain.encoder.weight)
    initlab.init_model(again, "kaiming", seed=8)
    assert not torch.equal(again.encoder.weight, plain.encoder.weight)


def test_tied_parameters_are_initialized_once_by_their_first_name() -> None:
    class TiedLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(50, 16)
            self.head = nn.Linear(16, 50, bias=False)
            self.head.weight = self.embed.weight

    model = TiedLM()
    plan = Plan([rule(role="embedding", scheme="normal", std=0.02), rule("head.weight", "zeros")])
    with pytest.warns(UserWarning, match="matched no parameter"):
        table = plan.apply(model, seed=0)
    assert len(table) == 1
    assert table["embed.weight"].site.tied_to == ("head.weight",)
    assert "tied: head.weight" in table["embed.weight"].notes
    assert model.head.weight is model.embed.weight
    # 800 draws of N(0, 0.02^2): the sample std is within 5 standard errors (0.02/sqrt(1600)).
    assert abs(float(model.embed.weight.detach().std()) - 0.02) < 5 * 0.02 / math.sqrt(1600)


def test_meta_built_model_gets_the_same_values_after_to_empty() -> None:
    def build() -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 4))

    eager = build()
    initlab.init_model(eager, "kaiming", seed=3)
    with torch.device("meta"):
        lazy = build()
    assert initlab.Plan().resolve(lazy)["0.weight"].std is not None  # dry run on meta works
    lazy.to_empty(device="cpu")
    initlab.init_model(lazy, "kaiming", seed=3)
    for (name, a), (_, b) in zip(eager.named_parameters(), lazy.named_parameters(), strict=True):
        assert torch.equal(a, b), name


def test_module_aware_fans_for_transposed_and_grouped_convolutions() -> None:
    model = nn.Sequential(nn.ConvTranspose2d(16, 32, 3, groups=4), nn.Conv2d(32, 64, 3, groups=4))
    table = Plan([rule(role="weight", scheme="he_normal", mode="fan_out")]).resolve(model)
    transposed, grouped = table["0.weight"], table["1.weight"]
    # ConvTranspose2d(16, 32, 3, groups=4): weight (16, 8, 3, 3); each output sees 16/4 * 9.
    assert transposed.fans is not None
    assert transposed.fans.fan_in == 36
    assert transposed.fans.fan_out == 72
    assert "torch's array rule" in transposed.notes
    assert grouped.fans is not None
    assert grouped.fans.fan_out == 16 * 9
    assert grouped.std == pytest.approx(math.sqrt(2.0 / (16 * 9)))


def test_scheme_that_does_not_fit_names_the_parameter() -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(InitlabError, match=r"0\.bias"):
        Plan([rule(role="bias", scheme="orthogonal")], default="keep").resolve(model)


def test_rule_validation_errors_are_clear() -> None:
    with pytest.raises(InitlabError, match="Did you mean 'weight'"):
        rule(role="wieght", scheme="zeros")
    with pytest.raises(ConfigError, match="give a scheme"):
        rule("*.weight")
    with pytest.raises(ConfigError, match="depth"):
        rule(depth=[3, 1], scheme="zeros")


def test_buffers_are_never_touched() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    model[1].running_mean.fill_(3.0)
    initlab.init_model(model, "xavier", seed=0)
    assert torch.equal(model[1].running_mean, torch.full((4,), 3.0))
    assert torch.equal(model[1].weight, torch.ones(4))


def test_audit_reports_unreached_contested_and_identical() -> None:
    layer = nn.Linear(8, 8)
    model = nn.Sequential(layer, nn.ReLU(), copy.deepcopy(layer), nn.PReLU())
    plan = Plan([rule("0.*", "keep"), rule(role="bias", scheme="zeros")], default="keep")
    report = initlab.audit(model, plan)
    assert "3.weight" in report.unreached
    assert ("0.bias", 0, (1,)) in report.contested
    assert ("0.weight", "2.weight") in report.identical
    assert not report.clean


def test_the_table_says_the_law_each_parameter_is_drawn_from() -> None:
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.MultiheadAttention(8, 2))
    table = Plan([rule(role="bias", scheme="uniform", a=-0.5, b=0.5)]).resolve(model)
    weight = table["0.weight"]  # he_normal for the ReLU after it: N(0, 2 / fan_in)
    assert weight.law == Normal(0.0, math.sqrt(2.0 / 16))
    assert table["0.bias"].law == Uniform(-0.5, 0.5)
    stacked = table["2.in_proj_weight"]  # drawn block by block: a law per block
    assert stacked.law is None
    assert [part.law for part in stacked.parts] == [Normal(0.0, math.sqrt(2.0 / (8 + 8)))] * 3


def test_init_model_and_the_presets_are_part_of_initlab_plan() -> None:
    assert initlab.plan.init_model is initlab.init_model
    assert initlab.plan.preset("kaiming").name == "kaiming"
    assert rule("*.weight", "normal", std=0.5, multiplier=2.0).scheme_label == (
        "normal(std=0.5) x 2"
    )


def test_a_plan_and_its_table_print_as_text() -> None:
    plan = Plan([rule("0.*", "zeros"), rule(role="bias", scheme="zeros")], default="keep",
                name="mine")  # fmt: skip
    assert str(plan).splitlines() == [
        "plan 'mine': 2 rules",
        "  '0.*' -> zeros()",
        "  role=bias -> zeros()",
        "  everything else -> keep",
    ]
    assert plan.lines() == [line.strip() for line in str(plan).splitlines()[1:]]
    assert str(Plan([], default="keep")).splitlines() == [
        "plan 'plan': 0 rules",
        "  everything else -> keep",
    ]
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    lines = str(Plan().resolve(model)).splitlines()
    assert lines[0].split() == ["parameter", "shape", "role", "scheme", "std", "source"]
    first = lines[1].split()
    assert first[:4] == ["0.weight", "3x4", "weight", "he_normal(nonlinearity='relu')"]
    assert float(first[4]) == pytest.approx(math.sqrt(2 / 4), rel=1e-3)
