"""parameter_sites keeps its answer per model, and never gives a stale one after a change."""

from __future__ import annotations

import torch
from torch import nn

from initlab.plan.sites import parameter_sites


def test_a_replaced_parameter_an_added_layer_and_a_changed_setting_are_seen() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Embedding(6, 3, padding_idx=1))
    first = parameter_sites(model)
    assert parameter_sites(model) == first  # unchanged: the same answer
    model[0].weight = nn.Parameter(torch.randn(5, 4))
    assert parameter_sites(model)[0].shape == (5, 4)
    model[1].padding_idx = 2
    assert next(s for s in parameter_sites(model) if s.name == "1.weight").zero_rows == (2,)
    model.append(nn.Linear(3, 2))
    assert [s.name for s in parameter_sites(model)][-2:] == ["2.weight", "2.bias"]


def test_the_list_returned_is_the_callers_own() -> None:
    model = nn.Linear(2, 2)
    parameter_sites(model).clear()
    assert len(parameter_sites(model)) == 2
