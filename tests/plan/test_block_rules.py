"""Rules for some blocks of a stacked weight (``blocks=``) and declared blocks (``split=``):
which rule draws each block, the values each block gets, the dry-run table, plan files and the
errors that name the rule and the accepted block names."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import initlab
from initlab.errors import ConfigError
from initlab.plan.blocks import scaled_law
from initlab.scale import materialize
from initlab.schemes import Constant, Normal, TruncatedNormal, Uniform

WIDTH = 16


def _attention() -> nn.MultiheadAttention:
    return nn.MultiheadAttention(WIDTH, 2)


def _in_proj(plan: initlab.Plan, seed: int = 0) -> torch.Tensor:
    model = _attention()
    plan.apply(model, seed=seed)
    return model.in_proj_weight.detach().clone()


def _std_tolerance(n: int, kurtosis: float) -> float:
    # The sample std of n i.i.d. draws has relative standard error sqrt((kurtosis - 1) / (4n));
    # 5 standard errors keep a fixed-seed test far from flaky.
    return 5 * math.sqrt((kurtosis - 1) / (4 * n))


WHOLE = initlab.rule("in_proj_weight", "xavier_uniform")


def test_the_other_blocks_fall_through_to_the_next_rule_with_their_bits() -> None:
    """q and k falling through to the whole-parameter rule are the values that rule alone gives:
    each block is its box of the parameter's one counter stream."""
    alone = _in_proj(initlab.Plan([WHOLE]))
    with_v = _in_proj(initlab.Plan([initlab.rule("in_proj_weight", "zeros", blocks="v"), WHOLE]))
    assert torch.equal(with_v[: 2 * WIDTH], alone[: 2 * WIDTH])
    assert torch.count_nonzero(with_v[2 * WIDTH :]) == 0


def test_a_block_does_not_depend_on_the_rules_of_the_other_blocks() -> None:
    v_rule = initlab.rule("in_proj_weight", "normal", std=0.5, blocks="v")
    first = _in_proj(initlab.Plan([v_rule, WHOLE]), seed=3)
    second = _in_proj(initlab.Plan([v_rule, initlab.rule("in_proj_weight", "zeros")]), seed=3)
    assert torch.equal(first[2 * WIDTH :], second[2 * WIDTH :])
    assert not torch.equal(first[:WIDTH], second[:WIDTH])


def test_a_block_rule_that_names_every_block_is_the_whole_rule() -> None:
    every = initlab.rule("in_proj_weight", "xavier_uniform", blocks=("q", "k", "v"))
    table = initlab.Plan([every]).resolve(_attention())
    assert table["in_proj_weight"].source == "rule 0 ('in_proj_weight' blocks=q,k,v)"
    assert torch.equal(_in_proj(initlab.Plan([every])), _in_proj(initlab.Plan([WHOLE])))


def test_the_default_draws_the_blocks_no_rule_names() -> None:
    plan = initlab.Plan([initlab.rule("in_proj_weight", "zeros", blocks="q")])
    table = plan.resolve(_attention())
    row = table["in_proj_weight"]
    assert [str(part.scheme) for part in row.parts] == [
        "zeros()",
        "xavier_normal()",
        "xavier_normal()",
    ]
    assert [part.source for part in row.parts] == ["rule 0 ('in_proj_weight' blocks=q)"] + [
        "default auto"
    ] * 2
    assert row.rule_index == 0


def test_each_block_has_its_own_multiplier_and_std() -> None:
    plan = initlab.Plan(
        [initlab.rule("in_proj_weight", "xavier_uniform", blocks="v", multiplier=0.25), WHOLE]
    )
    table = plan.resolve(_attention())
    row = table["in_proj_weight"]
    square = math.sqrt(2 / (WIDTH + WIDTH))  # fans (d, d) per block
    assert [part.std for part in row.parts] == pytest.approx([square, square, square / 4])
    assert row.multiplier == 1.0
    assert row.std == pytest.approx(math.sqrt((2 * square**2 + (square / 4) ** 2) / 3))
    values = _in_proj(plan)
    assert float(values[2 * WIDTH :].abs().max()) <= math.sqrt(3) * square / 4
    n = WIDTH * WIDTH
    assert float(values[2 * WIDTH :].std()) == pytest.approx(
        square / 4, rel=_std_tolerance(n, kurtosis=1.8)
    )


def test_the_blocks_share_the_rows_multiplier_when_their_rules_agree_on_it() -> None:
    plan = initlab.Plan(
        [
            initlab.rule("in_proj_weight", "normal", std=1.0, blocks="v", multiplier=0.5),
            initlab.rule("in_proj_weight", "xavier_uniform", multiplier=0.5),
        ]
    )
    row = plan.resolve(_attention())["in_proj_weight"]
    assert row.multiplier == 0.5
    assert [part.multiplier for part in row.parts] == [1.0, 1.0, 1.0]
    assert row.parts[2].std == pytest.approx(0.5)


def test_recurrent_gates_take_block_rules_with_their_gate_gains() -> None:
    lstm = nn.LSTM(8, WIDTH)
    plan = initlab.Plan(
        [
            initlab.rule("bias_ih_l0", "ones", blocks="f"),
            initlab.rule("weight_ih_l0", "he_normal", blocks=("g",)),
        ],
        default="auto",
    )
    table = plan.resolve(lstm)
    bias = table["bias_ih_l0"]
    assert [str(part.scheme) for part in bias.parts] == ["zeros()", "ones()", "zeros()", "zeros()"]
    weight = {part.label: part for part in table["weight_ih_l0"].parts}
    assert weight["g"].scheme.nonlinearity == "tanh"  # the gate's activation, not ReLU
    assert weight["g"].std == pytest.approx((5 / 3) / math.sqrt(8))
    assert str(weight["i"].scheme) == "xavier_normal()"


def test_the_dry_run_says_which_rule_drew_each_block() -> None:
    plan = initlab.Plan([initlab.rule("in_proj_weight", "zeros", blocks="v"), WHOLE])
    table = plan.resolve(_attention())
    row = table["in_proj_weight"]
    assert row.scheme_label == "xavier_uniform() per q,k; zeros() per v"
    assert "blocks: q,k <- rule 1 ('in_proj_weight'); v <- rule 0 ('in_proj_weight' blocks=v)" in (
        row.notes
    )
    assert row.source == "rule 1 ('in_proj_weight'); rule 0 ('in_proj_weight' blocks=v)"
    assert "zeros() per v" in str(table)
    assert "blocks=v -> zeros()" in str(plan)


def test_the_json_table_lists_each_blocks_rule() -> None:
    plan = initlab.Plan([initlab.rule("in_proj_weight", "zeros", blocks="v"), WHOLE])
    record = json.loads(plan.resolve(_attention()).to_json())["parameters"][0]
    assert [(b["block"], b["scheme"]["scheme"], b["source"][:6]) for b in record["blocks"]] == [
        ("q", "xavier_uniform", "rule 1"), ("k", "xavier_uniform", "rule 1"),
        ("v", "zeros", "rule 0"),
    ]  # fmt: skip
    whole = json.loads(initlab.Plan([WHOLE]).resolve(_attention()).to_json())["parameters"][0]
    assert "blocks" not in whole  # one rule for every block: the record as before


def test_a_block_name_no_selected_parameter_holds_names_the_rule_and_the_accepted_names() -> None:
    plan = initlab.Plan([initlab.rule("*proj*", "zeros", blocks="V")])
    with pytest.raises(ConfigError, match=r"rule 0 .*'V'.*in_proj_weight: q, k, v"):
        plan.resolve(_attention())
    linear = initlab.Plan([initlab.rule("weight", "zeros", blocks="v")])
    with pytest.raises(ConfigError, match=r"rule 0 .*not stacked weights.*split=N"):
        linear.resolve(nn.Linear(4, 12))


def test_a_block_rule_skips_the_parameters_without_its_blocks() -> None:
    """A GPT-2 cross-attention c_attn holds k and v only; ``blocks="q"`` leaves it alone."""
    model = nn.ModuleDict({"attn": _attention(), "gru": nn.GRU(4, WIDTH)})
    plan = initlab.Plan([initlab.rule("*weight*", "zeros", blocks="q")])
    table = plan.resolve(model)
    assert table["attn.in_proj_weight"].parts[0].source.startswith("rule 0")
    assert table["gru.weight_ih_l0"].source == "default auto"


def test_a_block_cannot_be_kept_while_the_others_are_drawn() -> None:
    plan = initlab.Plan([initlab.rule("in_proj_weight", "zeros", blocks="q")], default="keep")
    with pytest.raises(ConfigError, match="block k takes default keep"):
        plan.resolve(_attention())


def test_a_whole_matrix_scheme_cannot_take_a_blocks_own_multiplier() -> None:
    plan = initlab.Plan(
        [initlab.rule("in_proj_weight", "orthogonal", blocks="v", multiplier=0.5), WHOLE]
    )
    with pytest.raises(ConfigError, match="builds the block as a whole"):
        plan.resolve(_attention())


def test_materialize_draws_per_block_rules_as_apply_does() -> None:
    plan = initlab.Plan([initlab.rule("in_proj_weight", "normal", std=0.1, blocks="k"), WHOLE])
    built = materialize(_attention, plan, seed=4)
    assert torch.equal(built.in_proj_weight, _in_proj(plan, seed=4))


# --- split ----------------------------------------------------------------------------------
def test_split_draws_equal_row_blocks_with_the_fans_of_one() -> None:
    plan = initlab.Plan([initlab.rule("weight", "xavier_uniform", split=3)])
    table = plan.resolve(nn.Linear(8, 12))
    row = table["weight"]
    assert [(part.label, part.start, part.stop) for part in row.parts] == [
        ("0", 0, 4), ("1", 4, 8), ("2", 8, 12)
    ]  # fmt: skip
    assert (row.fans.fan_in, row.fans.fan_out) == (8, 4)
    assert row.bound == pytest.approx(math.sqrt(6 / (8 + 4)))
    assert "split in 3 blocks" in row.notes


def test_split_of_gpt2_conv1d_splits_its_output_columns() -> None:
    transformers = pytest.importorskip("transformers")
    conv = transformers.pytorch_utils.Conv1D(12, 8)  # weight (in 8, out 12)
    row = initlab.Plan([initlab.rule("weight", "xavier_uniform", split=3)]).resolve(conv)["weight"]
    assert {part.axis for part in row.parts} == {1}
    assert (row.fans.fan_in, row.fans.fan_out) == (8, 4)


@pytest.mark.parametrize(
    ("model", "pattern", "match"),
    [
        (nn.Linear(8, 10), "weight", "10 outputs, which do not split into 3"),
        (nn.MultiheadAttention(6, 2), "in_proj_weight", "stacked already"),
        (nn.Embedding(9, 3), "weight", "not the weight or bias"),
    ],
)
def test_split_refuses_what_it_cannot_split(model: nn.Module, pattern: str, match: str) -> None:
    plan = initlab.Plan([initlab.rule(pattern, "zeros", split=3)])
    with pytest.raises(ConfigError, match=match):
        plan.resolve(model)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"blocks": 3}, "blocks must be block labels"),
        ({"blocks": ("v", "v")}, "names a block twice"),
        ({"blocks": ("",)}, "blocks must be block labels"),
        ({"split": 1}, "split must be an integer >= 2"),
        ({"split": True}, "split must be an integer >= 2"),
        ({"split": 3, "blocks": "v"}, "not both"),
        ({"split": 3, "fans": "torch"}, "fans='module'"),
    ],
)
def test_bad_blocks_and_split_are_config_errors(options: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        initlab.rule("*", "zeros", **options)  # type: ignore[arg-type]


# --- plan files -------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".yaml", ".toml", ".json"])
def test_plan_files_keep_blocks_and_split(tmp_path: Path, suffix: str) -> None:
    plan = initlab.Plan(
        [
            initlab.rule("*.in_proj_weight", "xavier_uniform", blocks=("q", "v"), multiplier=0.5),
            initlab.rule("*qkv.weight", "xavier_uniform", split=3),
        ]
    )
    read = initlab.Plan.from_file(plan.to_file(tmp_path / f"plan{suffix}"))
    assert read.rules == plan.rules


@pytest.mark.parametrize(
    ("rule_config", "match"),
    [
        ({"scheme": "zeros", "blocks": ["v", "v"]}, r"rules\[0\]\.blocks: .*distinct"),
        ({"scheme": "zeros", "blocks": [3]}, r"rules\[0\]\.blocks\[0\]"),
        ({"scheme": "zeros", "split": 1}, r"rules\[0\]\.split: .*>= 2"),
        ({"scheme": "zeros", "split": "3"}, r"rules\[0\]\.split"),
        ({"scheme": "zeros", "blocks": "v", "split": 3}, r"rules\[0\]: .*not both"),
    ],
)
def test_bad_blocks_in_a_plan_file_name_the_rule(
    rule_config: dict[str, object], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        initlab.Plan.from_config({"rules": [rule_config]})


def test_a_plan_file_block_rule_reads_as_one_for_that_block() -> None:
    plan = initlab.Plan.from_config(
        {"rules": [{"pattern": "in_proj_weight", "scheme": "zeros", "blocks": "v"},
                   {"pattern": "in_proj_weight", "scheme": "xavier_uniform"}]}
    )  # fmt: skip
    values = _in_proj(plan)
    assert torch.count_nonzero(values[2 * WIDTH :]) == 0
    assert torch.count_nonzero(values[: 2 * WIDTH]) == 2 * WIDTH * WIDTH


# --- scaled laws --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("law", "factor", "scaled"),
    [
        (Uniform(-1.0, 3.0), -0.5, Uniform(-1.5, 0.5)),
        (Normal(1.0, 2.0), -2.0, Normal(-2.0, 4.0)),
        (Constant(3.0), 0.5, Constant(1.5)),
        (TruncatedNormal(0.0, 1.0, -2.0, 1.0), 2.0, TruncatedNormal(0.0, 2.0, -4.0, 2.0)),
    ],
)
def test_scaled_law_is_the_law_of_the_scaled_variable(law, factor, scaled) -> None:  # type: ignore[no-untyped-def]
    assert scaled_law(law, factor) == scaled
    assert scaled_law(law, factor).stats((100,)).std == pytest.approx(
        law.stats((100,)).std * abs(factor)
    )
