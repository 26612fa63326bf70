"""Fan-in / fan-out for every layout: torch, transposed, grouped, Keras, depthwise and JAX."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from initlab.errors import InitlabError, ShapeError, UnknownNameError
from initlab.fans import Fans, compute_fans, fan_in, fan_out, torch_fans


def torch_reference(shape: tuple[int, ...]) -> tuple[int, int]:
    return nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


# --- torch layouts: the REFERENCE.md table (torch 2.13, measured) --------------------------------

# (module, layout, groups, initlab (fan_in, fan_out), torch (fan_in, fan_out))
REFERENCE_MODULES: list[
    tuple[str, Callable[[], nn.Module], str, int, tuple[int, int], tuple[int, int]]
] = [
    ("Linear(1000,1000)", lambda: nn.Linear(1000, 1000), "torch", 1, (1000, 1000), (1000, 1000)),
    ("Conv1d(4,8,5)", lambda: nn.Conv1d(4, 8, 5), "torch", 1, (20, 40), (20, 40)),
    ("Conv2d(16,32,3)", lambda: nn.Conv2d(16, 32, 3), "torch", 1, (144, 288), (144, 288)),
    # Each input channel feeds only its group's 32/4 outputs x 9 taps = 72 (pytorch#23854).
    (
        "Conv2d(16,32,3,g=4)",
        lambda: nn.Conv2d(16, 32, 3, groups=4),
        "torch",
        4,
        (36, 72),
        (36, 288),
    ),
    (
        "Conv3d(4,8,(3,5,7))",
        lambda: nn.Conv3d(4, 8, (3, 5, 7)),
        "torch",
        1,
        (420, 840),
        (420, 840),
    ),
    # torch reads a transposed conv's axes the wrong way round; initlab reads them as they are.
    (
        "ConvTranspose2d(16,32,3)",
        lambda: nn.ConvTranspose2d(16, 32, 3),
        "torch_transposed",
        1,
        (144, 288),
        (288, 144),
    ),
    (
        "ConvTranspose2d(16,32,3,g=4)",
        lambda: nn.ConvTranspose2d(16, 32, 3, groups=4),
        "torch_transposed",
        4,
        (36, 72),
        (72, 144),
    ),
    ("Embedding(10,7)", lambda: nn.Embedding(10, 7), "torch", 1, (7, 10), (7, 10)),
    ("Bilinear(3,4,5)", lambda: nn.Bilinear(3, 4, 5), "torch", 1, (12, 20), (12, 20)),
]


@pytest.mark.parametrize(
    ("label", "make", "layout", "groups", "expected", "torch_expected"),
    REFERENCE_MODULES,
    ids=[row[0] for row in REFERENCE_MODULES],
)
def test_reference_table_torch_modules(
    label: str,
    make: Callable[[], nn.Module],
    layout: str,
    groups: int,
    expected: tuple[int, int],
    torch_expected: tuple[int, int],
) -> None:
    weight = make().weight
    fans = compute_fans(weight.shape, layout=layout, groups=groups)
    assert (fans.fan_in, fans.fan_out) == expected
    assert fan_in(weight.shape, layout=layout, groups=groups) == expected[0]
    assert fan_out(weight.shape, layout=layout, groups=groups) == expected[1]
    # torch_fans is torch's rule whatever the layer, so the torch-compatible functions agree.
    assert torch_fans(weight.shape) == torch_expected
    assert nn.init._calculate_fan_in_and_fan_out(weight) == torch_expected


def test_hf_conv1d_in_out_layout_is_keras_layout() -> None:
    # Hugging Face GPT-2 Conv1D(nf=3072, nx=768) stores its weight as (in, out) = (768, 3072).
    shape = (768, 3072)
    assert compute_fans(shape, layout="keras") == Fans(768, 3072, 1)
    assert torch_fans(shape) == (3072, 768)


def test_receptive_field_is_reported() -> None:
    assert compute_fans((8, 4, 3, 5, 7)).receptive_field == 105
    assert compute_fans((3, 5, 7, 4, 8), layout="keras").receptive_field == 105
    assert compute_fans((10, 7)).receptive_field == 1


REAL_MODULES: list[tuple[str, Callable[[], torch.Tensor]]] = [
    ("Linear", lambda: nn.Linear(13, 7).weight),
    ("Conv1d", lambda: nn.Conv1d(3, 6, 4).weight),
    ("Conv2d-groups", lambda: nn.Conv2d(8, 12, (3, 5), groups=4).weight),
    ("Conv3d", lambda: nn.Conv3d(2, 5, 3).weight),
    ("ConvTranspose1d", lambda: nn.ConvTranspose1d(6, 4, 3).weight),
    ("ConvTranspose3d", lambda: nn.ConvTranspose3d(4, 2, 2, groups=2).weight),
    ("Embedding", lambda: nn.Embedding(11, 5).weight),
    ("Bilinear", lambda: nn.Bilinear(3, 4, 5).weight),
    ("LSTM.weight_ih", lambda: nn.LSTM(6, 9).weight_ih_l0),
    ("MHA.in_proj", lambda: nn.MultiheadAttention(16, 4).in_proj_weight),
]


@pytest.mark.parametrize("make", [m for _, m in REAL_MODULES], ids=[n for n, _ in REAL_MODULES])
def test_torch_fans_equals_torch_on_real_module_weights(make: Callable[[], torch.Tensor]) -> None:
    weight = make()
    assert torch_fans(weight.shape) == nn.init._calculate_fan_in_and_fan_out(weight)


# --- Keras layout ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((), (1, 1)),
        ((5,), (5, 5)),
        ((784, 256), (784, 256)),
        ((3, 3, 16, 32), (144, 288)),
        # Conv2DTranspose(32) on 16 channels: kernel (3, 3, 32, 16) -> (288, 144), as Keras.
        ((3, 3, 32, 16), (288, 144)),
        ((5, 4, 8), (20, 40)),
        ((3, 5, 7, 4, 8), (420, 840)),
    ],
)
def test_keras_layout(shape: tuple[int, ...], expected: tuple[int, int]) -> None:
    fans = compute_fans(shape, layout="keras")
    assert (fans.fan_in, fans.fan_out) == expected


def test_keras_grouped_divides_fan_out() -> None:
    # Keras Conv2D(32, 3, groups=4) on 16 channels: kernel (3, 3, 4, 32).
    assert compute_fans((3, 3, 4, 32), layout="keras", groups=4) == Fans(36, 72, 9)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        # DepthwiseConv2D(3) on 16 channels: each output sees one input channel x 9 taps.
        ((3, 3, 16, 1), Fans(9, 9, 9)),
        ((3, 3, 16, 2), Fans(9, 18, 9)),
        ((5, 8, 3), Fans(5, 15, 5)),
    ],
)
def test_keras_depthwise_layout(shape: tuple[int, ...], expected: Fans) -> None:
    assert compute_fans(shape, layout="keras_depthwise") == expected
    # Keras' generic rule counts every channel as an input (keras-team/keras#11773).
    assert compute_fans(shape, layout="keras").fan_in == shape[-2] * expected.receptive_field


# --- JAX layout --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "kwargs", "expected"),
    [
        ((3, 3, 16, 32), {}, (144, 288)),
        ((8, 4, 16), {"in_axis": 0, "out_axis": (1, 2)}, (8, 64)),
        ((4, 16, 32), {"batch_axis": 0}, (16, 32)),
        ((784, 256), {}, (784, 256)),
        ((16, 32), {"in_axis": -1, "out_axis": -2}, (32, 16)),
    ],
)
def test_jax_layout(
    shape: tuple[int, ...], kwargs: dict[str, object], expected: tuple[int, int]
) -> None:
    fans = compute_fans(shape, layout="jax", **kwargs)
    assert (fans.fan_in, fans.fan_out) == expected


def test_jax_1d_with_default_in_axis_raises() -> None:
    with pytest.raises(ShapeError, match=r"\(5,\)"):
        compute_fans((5,), layout="jax")


def test_jax_axis_out_of_range_names_the_axis() -> None:
    with pytest.raises(ShapeError, match=r"out_axis=3.*\(4, 5\)"):
        compute_fans((4, 5), layout="jax", out_axis=3)


# --- fan modes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("fan_in", 288.0),
        ("fan_out", 576.0),
        ("fan_avg", 432.0),
        ("fan_geo_avg", math.sqrt(288 * 576)),
    ],
)
def test_fan_modes(mode: str, expected: float) -> None:
    assert compute_fans((64, 32, 3, 3)).fan(mode) == pytest.approx(expected, rel=1e-15)


def test_unknown_fan_mode_suggests_the_closest() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'fan_in'"):
        compute_fans((4, 5)).fan("fan_inn")


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["torch", "torch_transposed"])
@pytest.mark.parametrize("shape", [(5,), ()])
def test_torch_layout_rejects_bias_shapes(shape: tuple[int, ...], layout: str) -> None:
    with pytest.raises(ShapeError) as info:
        compute_fans(shape, layout=layout)
    message = str(info.value)
    assert str(shape) in message
    # A 1-D tensor is a bias or a norm scale: the message says how to initialize it instead.
    assert "zeros" in message
    assert "uniform" in message
    # torch users catch ValueError; initlab's errors are both.
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, InitlabError)


@pytest.mark.parametrize(
    ("shape", "layout", "groups"),
    [
        ((30, 4, 3, 3), "torch", 4),
        ((30, 8, 3, 3), "torch_transposed", 4),
        ((3, 3, 4, 30), "keras", 4),
        ((32, 4, 3, 3), "torch", 0),
    ],
)
def test_groups_that_do_not_divide_raise(shape: tuple[int, ...], layout: str, groups: int) -> None:
    with pytest.raises(ShapeError, match=str(groups)):
        compute_fans(shape, layout=layout, groups=groups)


def test_groups_error_names_shape() -> None:
    with pytest.raises(ShapeError, match=r"\(30, 4, 3, 3\)"):
        compute_fans((30, 4, 3, 3), groups=4)


def test_negative_dimension_raises() -> None:
    with pytest.raises(ShapeError, match="negative"):
        compute_fans((4, -1))


def test_unknown_layout_suggests_the_closest() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'keras'"):
        compute_fans((4, 5), layout="kears")


# --- properties --------------------------------------------------------------------------------

shapes_rank_2_to_5 = st.lists(st.integers(1, 9), min_size=2, max_size=5).map(tuple)


@given(shape=shapes_rank_2_to_5)
def test_torch_layout_matches_formula_and_torch(shape: tuple[int, ...]) -> None:
    receptive_field = math.prod(shape[2:])
    fans = compute_fans(shape)
    assert fans.fan_in > 0
    assert fans.fan_out > 0
    assert fans == Fans(shape[1] * receptive_field, shape[0] * receptive_field, receptive_field)
    assert torch_fans(shape) == torch_reference(shape)


@given(shape=shapes_rank_2_to_5)
def test_keras_and_jax_layouts_match_formula(shape: tuple[int, ...]) -> None:
    receptive_field = math.prod(shape[:-2])
    expected = Fans(shape[-2] * receptive_field, shape[-1] * receptive_field, receptive_field)
    assert compute_fans(shape, layout="keras") == expected
    assert compute_fans(shape, layout="jax") == expected
    # The transposed torch layout of the same weight gives the same fans.
    torch_order = (shape[-1], shape[-2], *shape[:-2])
    assert compute_fans(torch_order) == expected
    assert compute_fans((shape[-2], shape[-1], *shape[:-2]), layout="torch_transposed") == expected


@given(shape=shapes_rank_2_to_5, groups=st.integers(1, 4))
def test_grouped_fans_are_a_group_share(shape: tuple[int, ...], groups: int) -> None:
    out_channels = shape[0] * groups
    grouped = (out_channels, *shape[1:])
    plain = compute_fans(grouped)
    fans = compute_fans(grouped, groups=groups)
    assert fans.fan_in == plain.fan_in
    assert fans.fan_out * groups == plain.fan_out
