"""Search spaces: YAML loading, validation errors that name the field, grids."""

from __future__ import annotations

from pathlib import Path

import pytest

from initlab.errors import ConfigError
from initlab.experiments.space import Range, SearchSpace


def test_yaml_space_loads_lists_and_ranges(tmp_path: Path) -> None:
    file = tmp_path / "space.yaml"
    file.write_text(
        "init: [kaiming, xavier]\nlr: {low: 0.001, high: 0.1, log: true}\nclip: [null, 1.0]\n"
        "seeds: 3\nsampler: tpe\n"
    )
    space = SearchSpace.from_file(file)
    assert space.init == ["kaiming", "xavier"]
    assert space.lr == Range(low=0.001, high=0.1, log=True)
    assert space.clip == [None, 1.0]
    assert space.seeds == 3


def test_grid_is_the_product_of_the_lists_times_seeds() -> None:
    space = SearchSpace.from_dict(
        {"init": ["kaiming", "xavier", "zeros"], "dropout": [0.0, 0.1], "seeds": 2}
    )
    assert space.grid_size() == 3 * 2 * 2
    assert space.choices()["seed"] == [0, 1]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sampler": "bayes"}, "sampler"),
        ({"init": []}, "init"),
        ({"lr": {"low": 1.0, "high": 0.1}}, "lr"),
        ({"epochs": 0}, "epochs"),
        ({"learning_rate": [0.1]}, "learning_rate"),
    ],
)
def test_errors_name_the_source_and_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=rf"space.yaml: {message}"):
        SearchSpace.from_dict(data, source="space.yaml")


def test_grid_refuses_ranges_at_construction() -> None:
    with pytest.raises(ConfigError, match="grid search needs lists, but lr is a range"):
        SearchSpace.from_dict({"lr": {"low": 0.01, "high": 0.1}, "sampler": "grid"})


def test_missing_file_and_bad_yaml_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        SearchSpace.from_file(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("init: [kaiming\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        SearchSpace.from_file(bad)
