"""buffers_restored: a model run inside the block keeps its buffers, even when the block raises."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from initlab.plan.buffers import buffers_restored


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {name: buffer.clone() for name, buffer in net.named_buffers()}


def test_running_statistics_come_back_after_a_training_pass() -> None:
    net = model().train()
    before = state(net)
    with buffers_restored(net):
        net(torch.randn(16, 4))
        assert not torch.equal(net[1].running_mean, before["1.running_mean"])
    after = state(net)
    assert after.keys() == before.keys()
    assert all(torch.equal(after[name], before[name]) for name in before)


def test_running_statistics_come_back_when_the_body_raises() -> None:
    net = model().train()
    before = state(net)

    def train_then_fail() -> None:
        with buffers_restored(net):
            net(torch.randn(16, 4))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        train_then_fail()
    assert all(torch.equal(buffer, before[name]) for name, buffer in net.named_buffers())


def test_a_rebound_buffer_is_put_back() -> None:
    net = model()
    original = net[1].running_var
    with buffers_restored(net):
        net[1].running_var = torch.full((8,), 5.0)
        net[1].register_buffer("extra", torch.zeros(1))
    assert net[1].running_var is original
    assert torch.equal(original, torch.ones(8))
    assert "extra" not in dict(net[1].named_buffers())


def test_an_unmaterialized_lazy_buffer_is_left_to_the_block() -> None:
    net = nn.Sequential(nn.LazyLinear(8), nn.LazyBatchNorm1d()).train()
    with buffers_restored(net):
        net(torch.randn(16, 4))
    assert net[1].running_mean.shape == (8,)
