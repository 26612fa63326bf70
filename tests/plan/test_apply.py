"""apply_table: the one loop Plan.apply, scale.initialize and hf.init_pretrained share."""

from __future__ import annotations

import torch
from torch import nn

import initlab
from initlab.plan import apply_table
from initlab.plan.apply import fill_parameter
from initlab.plan.assignments import Assignment
from initlab.rng import Stream


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def weight_normed() -> nn.Module:
    torch.manual_seed(0)
    return nn.utils.parametrizations.weight_norm(nn.Linear(4, 8))


def test_apply_table_is_plan_apply() -> None:
    plan = initlab.preset("kaiming")
    expected, model = mlp(), mlp()
    table = plan.apply(expected, seed=3)
    applied = apply_table(model, plan.resolve(model), 3)
    assert applied.seed == 3
    assert [row.name for row in applied] == [row.name for row in table]
    for (name, value), other in zip(
        model.state_dict().items(), expected.state_dict().values(), strict=True
    ):
        assert torch.equal(value, other), name


def test_skip_keeps_a_tensor_and_says_why() -> None:
    model = mlp()
    before = model[0].weight.clone()

    def skip_first(row: Assignment, tensor: torch.Tensor) -> str | None:
        return "kept: mine" if row.name == "0.weight" else None

    applied = apply_table(model, initlab.preset("kaiming").resolve(model), 0, skip=skip_first)
    assert torch.equal(model[0].weight, before)
    assert (applied["0.weight"].scheme, applied["0.weight"].source) == (None, "kept: mine")
    assert applied["2.weight"].scheme is not None
    assert torch.equal(model[0].bias, torch.zeros(8))


def test_fill_hook_sees_every_drawn_row() -> None:
    model = mlp()
    seen: list[str] = []

    def recording_fill(
        tensor: torch.Tensor, row: Assignment, seed: int, *, stream: Stream = "counter"
    ) -> None:
        seen.append(row.name)
        fill_parameter(tensor, row, seed, stream=stream)

    plan = initlab.Plan([initlab.rule("0.*", "zeros")], default="keep")
    apply_table(model, plan.resolve(model), 0, fill=recording_fill)
    assert seen == ["0.weight", "0.bias"]


def test_a_kept_weight_norm_magnitude_is_not_derived() -> None:
    model = weight_normed()
    names = dict(model.named_parameters())
    magnitude = next(name for name in names if name.endswith("original0"))
    before = names[magnitude].clone()
    table = initlab.preset("kaiming").resolve(model)
    assert table[magnitude].site.magnitude_of

    def keep_magnitude(row: Assignment, tensor: torch.Tensor) -> str | None:
        return "kept: loaded" if row.name == magnitude else None

    apply_table(model, table, 0, skip=keep_magnitude)
    assert torch.equal(names[magnitude], before)
    apply_table(model, table, 0)
    direction = names[table[magnitude].site.magnitude_of]
    assert torch.allclose(names[magnitude], direction.norm(dim=1, keepdim=True))
