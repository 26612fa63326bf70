"""Plan files: lossless YAML/TOML/JSON round trips, and errors that name file, rule and field."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
import tomllib
import yaml
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import initlab
from initlab.errors import ConfigError
from initlab.plan import Plan, Rule, rule
from initlab.plan.plan_files import toml_document

FORMATS = ("yaml", "yml", "toml", "json")


def rich_plan() -> Plan:
    """A plan that uses every field a rule has, classes in ``types`` included."""
    return Plan(
        [
            rule("*.attn.c_proj.weight", "normal", std=0.004),
            rule(
                types=[nn.Conv2d, "Linear"],
                role="weight",
                depth=[0, 5],
                scheme="he_normal",
                mode="fan_out",
                multiplier=0.5,
                fans="torch",
            ),
            rule(regex=r'^blocks\.\d+\."odd"', depth=3, scheme="truncated_normal", a=-1.5),
            rule(role=["bias", "norm_bias"], scheme="zeros"),
            rule(types="Embedding", scheme="auto"),
            rule("head.*", "keep"),
            rule(role="norm_weight", scheme="uniform", a=-1, b=1e-5),
        ],
        default=initlab.get("lecun_uniform"),
        name='my plan: ünïcode \\ "quoted"',
    )


def by_class_name(item: Rule) -> Rule:
    names = tuple(t if isinstance(t, str) else t.__name__ for t in item.types)
    return dataclasses.replace(item, types=names)


@pytest.mark.parametrize("suffix", FORMATS)
def test_file_round_trip_gives_rules_with_equal_fields(tmp_path: Path, suffix: str) -> None:
    plan = rich_plan()
    path = plan.to_file(tmp_path / f"plan.{suffix}")
    loaded = Plan.from_file(path)
    assert loaded.name == plan.name
    assert loaded.default == plan.default
    assert loaded.rules == tuple(by_class_name(item) for item in plan.rules)
    assert loaded.to_config() == plan.to_config()


@pytest.mark.parametrize("default", ["auto", "keep", "he_normal", {"scheme": "orthogonal"}])
def test_dict_round_trip_and_default_forms(default: str | dict[str, Any]) -> None:
    plan = Plan.from_config({"default": default, "rules": [{"role": "bias", "scheme": "zeros"}]})
    again = Plan.from_config(plan.to_config())
    assert again.default == plan.default
    assert again.rules == plan.rules
    if isinstance(default, dict):
        assert plan.default == initlab.get("orthogonal")


def test_default_table_takes_the_schemes_parameters() -> None:
    plan = Plan.from_config({"default": {"scheme": "he_normal", "mode": "fan_out"}})
    assert plan.default == initlab.get("he_normal", mode="fan_out")


def test_a_loaded_plan_resolves_like_the_original() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 4))
    plan = Plan(
        [
            rule(types=nn.Conv2d, scheme="he_normal", mode="fan_out"),
            rule(role="bias", scheme="zeros"),
        ]
    )
    loaded = Plan.from_config(plan.to_config())
    assert [r.scheme for r in loaded.resolve(model)] == [r.scheme for r in plan.resolve(model)]


def test_yaml_file_reads_the_documented_shape(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        """
name: my-plan
default: {scheme: he_normal, mode: fan_out}
rules:
  - pattern: "*.attn.c_proj.weight"
    regex: null
    types: [Conv2d, Linear]
    role: weight
    depth: [0, 5]
    scheme: normal
    params: {std: 0.004}
    multiplier: 1.0
    fans: module
  - role: [bias, norm_bias]
    scheme: zeros
""",
        encoding="utf-8",
    )
    plan = Plan.from_file(path)
    assert plan.name == "my-plan"
    assert plan.rules[0] == Rule(
        scheme=initlab.get("normal", std=0.004),
        pattern="*.attn.c_proj.weight",
        types=("Conv2d", "Linear"),
        roles=("weight",),
        depth=(0, 5),
    )
    assert plan.rules[1].roles == ("bias", "norm_bias")


def test_written_yaml_is_block_style_with_inline_leaves(tmp_path: Path) -> None:
    text = rich_plan().to_file(tmp_path / "plan.yaml").read_text(encoding="utf-8")
    assert "\nrules:\n- pattern: '*.attn.c_proj.weight'\n" in text
    assert "\n- types: [Conv2d, Linear]\n  role: weight\n" in text
    assert "  params: {mean: 0.0, std: 0.004}\n" in text


def test_written_toml_is_read_by_tomllib_and_json_by_json(tmp_path: Path) -> None:
    plan = rich_plan()
    as_toml = tomllib.loads(plan.to_file(tmp_path / "p.toml").read_text(encoding="utf-8"))
    as_json = json.loads(plan.to_file(tmp_path / "p.json").read_text(encoding="utf-8"))
    assert as_toml == as_json == plan.to_config()


# TOML is written by tomli-w; the round trip is checked on arbitrary text all the same.
@given(
    text=st.text(),
    number=st.floats(allow_nan=False),
    integer=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    key=st.text(min_size=1),
)
def test_toml_writer_round_trips_any_text_and_number(
    text: str, number: float, integer: int, key: str
) -> None:
    config = {"name": text, "rules": [{key: [number, integer, True], "params": {key: text}}]}
    assert tomllib.loads(toml_document(config)) == config


def test_toml_writer_keeps_non_finite_floats() -> None:
    parsed = tomllib.loads(toml_document({"a": [math.inf, -math.inf, math.nan]}))
    assert parsed["a"][:2] == [math.inf, -math.inf]
    assert math.isnan(parsed["a"][2])


def test_toml_writer_refuses_what_toml_cannot_hold() -> None:
    with pytest.raises(ConfigError, match=r"TOML cannot hold .*NoneType.*YAML or JSON"):
        toml_document({"rules": [{"x": None}]})


# --- errors that name the file, the rule and the field -----------------------------------------
GOOD = {"scheme": "zeros"}


@pytest.mark.parametrize(
    ("bad_rule", "field", "says"),
    [
        (
            {"scheme": "he_normall"},
            "scheme",
            "Unknown scheme 'he_normall'. Did you mean 'he_normal'?",
        ),
        (
            {"scheme": "normal", "params": {"sdt": 1}},
            "params.sdt",
            "Did you mean 'std'? Known: mean, std",
        ),
        ({"scheme": "normal", "params": {"std": -1}}, "params", "std must be >= 0, got -1"),
        (
            {"scheme": "he_normal", "params": {"mode": "fan_ot"}},
            "params",
            "Did you mean 'fan_out'?",
        ),
        ({"scheme": "keep", "params": {"a": 1}}, "params", "'keep' takes no parameters"),
        (
            {"scheme": "zeros", "role": "wieght"},
            "role",
            "Unknown role 'wieght'. Did you mean 'weight'?",
        ),
        (
            {"scheme": "zeros", "depth": [5, 1]},
            "depth",
            "inclusive [low, high] with low <= high, got [5, 1]",
        ),
        ({"scheme": "zeros", "depth": "3"}, "depth", "got '3'"),
        (
            {"scheme": "zeros", "fans": "modul"},
            "fans",
            "Input should be 'module' or 'torch', got 'modul'",
        ),
        ({"scheme": "zeros", "multiplier": "x"}, "multiplier", "valid number, got 'x'"),
        ({"scheme": "zeros", "multiplier": math.inf}, "multiplier", "finite"),
        ({"scheme": "zeros", "regex": "(("}, "regex", "regex '((' does not compile"),
        ({"scheme": "zeros", "types": "nn.Linear"}, "types", "write the bare class name"),
        (
            {"scheme": "zeros", "patern": "x"},
            "patern",
            "Unknown field 'patern'. Did you mean 'pattern'?",
        ),
        ({"pattern": "*.weight"}, "scheme", "required (auto, keep or a scheme name)"),
        ({"scheme": "checkpoint", "params": {"path": "w.txt"}}, "params", "Known: .safetensors"),
    ],
)
@pytest.mark.parametrize("suffix", ["yaml", "toml", "json"])
def test_each_rule_error_names_the_file_the_rule_index_and_the_field(
    tmp_path: Path, bad_rule: dict[str, Any], field: str, says: str, suffix: str
) -> None:
    path = tmp_path / f"plan.{suffix}"
    config = {"rules": [GOOD, GOOD, bad_rule]}
    if suffix == "yaml":
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
    elif suffix == "json":
        path.write_text(json.dumps(config), encoding="utf-8")
    else:
        path.write_text(toml_document(config), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        Plan.from_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: rules[2].{field}: ")
    assert says in message


@pytest.mark.parametrize(
    ("config", "starts", "says"),
    [
        ({"defualt": "auto"}, "defualt", "Unknown field 'defualt'. Did you mean 'default'?"),
        ({"default": "he_normall"}, "default", "Did you mean 'he_normal'? Known:"),
        ({"default": {"scheme": "he_normal", "mod": 1}}, "default.mod", "Did you mean 'mode'?"),
        ({"default": {"mode": "fan_in"}}, "default.scheme", "needs scheme: NAME"),
        ({"default": 3}, "default", "'auto', 'keep', a scheme name, or a table"),
        ({"name": 3}, "name", "valid string, got 3"),
        ({"rules": {"scheme": "zeros"}}, "rules", "rules is a list of rules"),
        ({"rules": [3]}, "rules[0]", "a rule is a mapping such as"),
    ],
)
def test_top_level_errors_name_the_field(config: dict[str, Any], starts: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Plan.from_config(config, source="plan.yaml")
    assert str(caught.value).startswith(f"plan.yaml: {starts}: ")
    assert says in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    config = {
        "nme": "x",
        "rules": [{"scheme": "he_normall"}, GOOD, {"scheme": "normal", "params": {"sdt": 1}}],
    }
    with pytest.raises(ConfigError) as caught:
        Plan.from_config(config)
    parts = str(caught.value).split("; plan config: ")
    assert len(parts) == 3
    assert parts[0].startswith("plan config: nme: ")
    assert parts[1].startswith("rules[0].scheme: ")
    assert parts[2].startswith("rules[2].params.sdt: ")


@pytest.mark.parametrize(
    ("suffix", "text", "where"),
    [
        (
            "yaml",
            "name: x\nrules:\n  - scheme: zeros\n   pattern: x\n",
            "line 4, column 4: invalid YAML",
        ),
        ("yaml", "rules: [\n", "line 2, column 1: invalid YAML"),
        ("toml", 'name = "x"\n[[rules]\nscheme = "zeros"\n', "invalid TOML: Expected ']]'"),
        ("json", '{"name": "x",\n "rules": [}\n', "line 2, column 12: invalid JSON"),
    ],
)
def test_a_syntax_error_names_the_file_and_the_line(
    tmp_path: Path, suffix: str, text: str, where: str
) -> None:
    path = tmp_path / f"plan.{suffix}"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        Plan.from_file(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert where in str(caught.value)
    if suffix == "toml":
        assert "line 2" in str(caught.value)


def test_yaml_tags_that_would_build_python_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("name: !!python/object/apply:os.getcwd []\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"plan\.yaml: line 1, column 7: invalid YAML"):
        Plan.from_file(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"plan file '.*nope\.yaml' does not exist"):
        Plan.from_file(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "says"), [("", "the file is empty"), ("- 1\n", "a plan is a mapping")]
)
def test_empty_or_non_mapping_file(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "plan.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=says):
        Plan.from_file(path)


def test_unknown_suffix_is_refused_both_ways(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown format '\.txt'. Known: \.yaml, \.yml"):
        Plan.from_file(tmp_path / "plan.txt")
    with pytest.raises(ConfigError, match="unknown format"):
        rich_plan().to_file(tmp_path / "plan")


def test_checkpoint_rules_round_trip(tmp_path: Path) -> None:
    plan = Plan(
        [rule(scheme="checkpoint", path="w.safetensors", strip_prefix="module.", add_prefix="")]
    )
    loaded = Plan.from_file(plan.to_file(tmp_path / "plan.toml"))
    assert loaded.rules == plan.rules


def test_written_toml_has_a_table_per_rule(tmp_path: Path) -> None:
    text = rich_plan().to_file(tmp_path / "plan.toml").read_text(encoding="utf-8")
    assert text.count("\n[[rules]]\n") == len(rich_plan().rules)
    assert '\n[[rules]]\npattern = "*.attn.c_proj.weight"\nscheme = "normal"\n' in text
    assert "\n[rules.params]\nmean = 0.0\nstd = 0.004\n" in text
    assert '\n[default]\nscheme = "lecun_uniform"\n' in text
