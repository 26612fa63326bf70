"""The coordinate check: what it records, the slopes it fits, and SP against muP with Adam."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from initlab.errors import ConfigError, UnknownNameError
from initlab.train.datasets import load_digits
from initlab.train.models import MLP
from initlab.width import SLOPE_THRESHOLD, CoordCheck, coord_check, width_slope

WIDTHS = (64, 128, 256, 512)


def mlp(width: int) -> nn.Module:
    return MLP(64, 10, depth=2, width=width)


@pytest.fixture(scope="module")
def digits() -> object:
    return load_digits(seed=0)


def check(parametrization: str, digits: object, **options: object) -> CoordCheck:
    settings: dict[str, object] = {"steps": 3, "optimizer": "adam", **options}
    return coord_check(mlp, WIDTHS, digits, parametrization=parametrization, **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_sp_logits_change_grows_with_width_and_mup_is_flat(digits: object, optimizer: str) -> None:
    sp, mup = check("sp", digits, optimizer=optimizer), check("mup", digits, optimizer=optimizer)
    assert sp.output_layer == mup.output_layer == "head"
    # The scales a parametrization gives are powers width^a with a a multiple of 1/2. SP with
    # Adam: every readout weight moves by about lr, coherently with h, so the logits' change
    # is ~ lr * width (a = 1); 0.75 is halfway between 1 and the next law, 1/2. muP: a = 0;
    # SLOPE_THRESHOLD (0.25) is halfway to +-1/2. SGD: the readout's update is lr * g h^T,
    # its effect on the logits lr * g |h|^2 ~ lr * width under SP. Measured at seed 0 with
    # the default learning rates: Adam SP +0.94, muP -0.11; SGD SP +0.96, muP -0.14.
    sp_slope = sp.slope("head", 3, "delta").slope
    mup_slope = mup.slope("head", 3, "delta").slope
    assert sp_slope is not None
    assert sp_slope > 0.75
    assert mup_slope is not None
    assert abs(mup_slope) < SLOPE_THRESHOLD
    assert sp.grows
    assert any(f.layer == "head" and f.quantity == "delta" for f in sp.findings)
    assert not mup.grows
    assert "grows with width" in str(sp)


def test_records_cover_every_layer_width_and_step(digits: object) -> None:
    result = check("sp", digits, steps=2)
    assert result.layers == ("layers.0.linear", "layers.1.linear", "head")
    assert result.widths == WIDTHS
    assert len(result.records) == len(result.layers) * len(WIDTHS) * 3
    at_init = [r for r in result.records if r.step == 0]
    assert all(r.delta_rms == 0.0 and r.rms > 0 for r in at_init)
    assert all(r.delta_rms > 0 for r in result.records if r.step > 0)
    # rms at init of a layer is the rms of the activations it produced: independent of
    # training, and recomputed the same at the same seed.
    again = check("sp", digits, steps=2)
    assert again.records == result.records
    data = result.to_dict()
    assert data["findings"] == [vars(f) for f in result.findings]
    assert len(data["slopes"]) == len(result.layers) * (1 + 2 * 2)


def test_widths_are_sorted_and_the_smallest_is_the_base(digits: object) -> None:
    result = coord_check(mlp, [256, 64, 128], digits, steps=1)
    assert result.widths == (64, 128, 256)


class _Summed(nn.Module):
    """A model whose output no leaf module returns: two heads added."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Linear(64, width)
        self.left = nn.Linear(width, 10)
        self.right = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.body(x.flatten(1)))
        return self.left(hidden) + self.right(hidden)


def test_an_output_no_leaf_returns_is_measured_as_output(digits: object) -> None:
    result = coord_check(_Summed, [32, 64], digits, steps=1)
    assert result.output_layer == "output"
    assert result.layers == ("body", "left", "right", "output")


@pytest.mark.parametrize(
    ("widths", "message"),
    [
        ([64], "at least two different widths"),
        ([64, 64], "at least two different widths"),
        ([64, 0], "integers >= 1"),
        ([64, 128.0], "integers >= 1"),
    ],
)
def test_bad_widths_are_refused(widths: list[int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        coord_check(mlp, widths, "digits")


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="steps must be an integer >= 1"):
        coord_check(mlp, [64, 128], "digits", steps=0)
    with pytest.raises(UnknownNameError, match="Did you mean 'adam'"):
        coord_check(mlp, [64, 128], "digits", optimizer="adma")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="lr must be > 0"):
        coord_check(mlp, [64, 128], "digits", lr=0.0)


class _SkipsWhenWide(nn.Module):
    """Same parameters at every width, but the forward skips ``extra`` when wide."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.body = nn.Linear(64, width)
        self.extra = nn.Linear(width, width)
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.body(x.flatten(1)))
        if self.width <= 64:
            hidden = torch.relu(self.extra(hidden))
        return self.head(hidden)  # type: ignore[no-any-return]


def test_a_model_reaching_other_layers_at_another_width_is_refused(digits: object) -> None:
    with pytest.raises(ConfigError, match=r"has no layer 'extra'.*same layers at every width"):
        coord_check(_SkipsWhenWide, [64, 128], digits, steps=1)


def test_width_slope_recovers_a_power_law() -> None:
    widths = [64, 128, 256, 512]
    for exponent in (-0.5, 0.0, 1.0):
        values = [3.0 * w**exponent for w in widths]
        slope = width_slope(widths, values)
        assert slope is not None
        assert math.isclose(slope, exponent, abs_tol=1e-9)
    assert width_slope(widths, [0.0, 1.0, 1.0, 1.0]) is None
    assert width_slope(widths, [math.nan, 1.0, 1.0, 1.0]) is None


class _ReturnsDict(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.head = nn.Linear(64, width)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.head(x.flatten(1))}


def test_a_model_without_a_tensor_output_is_refused(digits: object) -> None:
    with pytest.raises(ConfigError, match="the model returned a dict, not a tensor"):
        coord_check(_ReturnsDict, [16, 32], digits, steps=1)


class _LongNames(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.encoder_input_projection_layer = nn.Linear(64, width)
        self.classification_head_output_projection = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.encoder_input_projection_layer(x.flatten(1)))
        return self.classification_head_output_projection(hidden)  # type: ignore[no-any-return]


def test_the_slopes_table_keeps_long_layer_names_whole_at_80_columns(digits: object) -> None:
    from rich.console import Console

    from initlab.report.coord_check import slopes_table

    result = coord_check(_LongNames, (16, 32), digits, steps=1)  # type: ignore[arg-type]
    console = Console(width=80, record=True, color_system=None)
    console.print(slopes_table(result))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    for name in ("encoder_input_projection_layer", "classification_head_output_projection"):
        assert any(name in line for line in lines), name
