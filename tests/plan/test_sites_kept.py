"""parameter_sites keeps its answer per model, and never gives a stale one after a change."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import torch
from torch import nn

from initlab.plan.sites import _SITES, parameter_sites


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


def test_a_setting_of_numpy_type_or_a_list_changed_in_place_is_seen() -> None:
    model = nn.Sequential(nn.Embedding(6, 3, padding_idx=1), nn.ConvTranspose1d(2, 2, 3))
    parameter_sites(model)
    model[0].padding_idx = np.int64(4)
    assert parameter_sites(model)[0].zero_rows == (4,)
    model[1].stride = [1]
    before = parameter_sites(model)[1].fans
    model[1].stride[0] = 3  # in place: the transposed conv's fan_in counts taps per output
    after = parameter_sites(model)[1].fans
    assert before is not None
    assert after is not None
    assert after.fan_in == before.fan_in / 3


def test_a_kept_answer_does_not_keep_its_model_alive() -> None:
    model = nn.Linear(3, 2)
    parameter_sites(model)
    assert model in _SITES
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None
