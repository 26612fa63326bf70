"""`materialize`: equal to ``plan.apply`` on an eager build, buffers right, no default init on
real storage, and errors that name the module and the way out."""

from __future__ import annotations

import pytest
import torch
from scale_models import GPT, ReadsWeight, Rotary, RotaryNet, Wrapper
from torch import nn

import initlab
from initlab.scale import MaterializeError, materialize

GPT2 = initlab.preset("gpt2", n_layer=2)
LAYERS = initlab.Plan(
    [
        initlab.rule(role="weight", scheme="he_normal"),
        initlab.rule(role="bias", scheme="uniform", a=-0.05, b=0.05),
        initlab.rule(role="norm_weight", scheme="ones"),
        initlab.rule(role="norm_bias", scheme="zeros"),
    ],
    default="keep",
    warn_unused=False,
)


def _assert_same_state(eager: nn.Module, lazy: nn.Module) -> None:
    ours, theirs = lazy.state_dict(), eager.state_dict()
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert ours[name].dtype == tensor.dtype, name
        assert torch.equal(ours[name], tensor), name


def test_gpt_equals_plan_apply_on_an_eager_build() -> None:
    eager = GPT()
    GPT2.apply(eager, seed=3)
    lazy = materialize(GPT, GPT2, seed=3)
    _assert_same_state(eager, lazy)
    assert lazy.lm_head.weight is lazy.wte.weight  # the tie survives allocation
    assert lazy(torch.zeros(1, 5, dtype=torch.long)).shape == (1, 5, 97)


def test_buffers_computed_in_init_come_out_as_an_eager_build_makes_them() -> None:
    eager = RotaryNet()
    LAYERS.apply(eager, seed=1)
    lazy = materialize(RotaryNet, LAYERS, seed=1)
    _assert_same_state(eager, lazy)  # cos/sin tables, BatchNorm running statistics
    assert torch.equal(lazy.rotary.inv_freq, eager.rotary.inv_freq)  # not in the state dict
    assert torch.equal(lazy.bn.running_var, torch.ones(4))
    assert int(lazy.bn.num_batches_tracked) == 0
    assert lazy.bn.momentum == 0.3
    batch = torch.randn(2, 16, 8)
    assert torch.equal(lazy.eval()(batch), eager.eval()(batch))


def test_dtype_casts_parameters_and_floating_buffers_like_module_to() -> None:
    eager = RotaryNet().to(torch.bfloat16)
    LAYERS.apply(eager, seed=2)
    lazy = materialize(RotaryNet, LAYERS, dtype=torch.bfloat16, seed=2)
    _assert_same_state(eager, lazy)
    assert lazy.bn.num_batches_tracked.dtype == torch.int64


def test_no_default_init_touches_real_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    original = nn.Linear.reset_parameters

    def recording(self: nn.Linear) -> None:
        seen.append(self.weight.is_meta)
        original(self)

    monkeypatch.setattr(nn.Linear, "reset_parameters", recording)
    materialize(GPT, GPT2)
    assert seen
    assert all(seen)  # every Linear's default init ran on meta tensors: no work, no memory


def test_a_factory_reading_parameter_data_names_the_module_and_the_fallback() -> None:
    with pytest.raises(MaterializeError) as caught:
        materialize(Wrapper, LAYERS)
    message = str(caught.value)
    assert "ReadsWeight.__init__" in message
    assert "meta=False" in message
    model = materialize(Wrapper, LAYERS, meta=False, seed=0)  # builds normally, then the plan
    eager = Wrapper()
    LAYERS.apply(eager, seed=0)
    _assert_same_state(eager, model)
    assert isinstance(model.reader, ReadsWeight)


def test_kept_parameters_get_their_modules_default_and_a_warning() -> None:
    weights_only = initlab.Plan(
        [initlab.rule(role="weight", scheme="he_normal")], default="keep", warn_unused=False
    )
    with pytest.warns(UserWarning, match=r"keeps .*bn\.weight"):
        model = materialize(RotaryNet, weights_only)
    assert torch.equal(model.bn.weight, torch.ones(4))  # BatchNorm's reset_parameters
    assert torch.isfinite(model.head.bias).all()


def test_a_meta_model_without_its_buffers_is_an_error_naming_them() -> None:
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(8, 8), Rotary(8))
    with pytest.raises(MaterializeError, match=r"1\.inv_freq.*meta=False"):
        materialize(model, LAYERS)


def test_a_meta_model_whose_modules_can_reset_their_buffers() -> None:
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    materialize(model, LAYERS, seed=0)
    assert torch.equal(model[1].running_mean, torch.zeros(2))
    assert torch.equal(model[1].running_var, torch.ones(2))


def test_an_eager_model_is_moved_and_initialized() -> None:
    model = RotaryNet()
    same = materialize(model, LAYERS, seed=4)
    assert same is model
    again = RotaryNet()
    LAYERS.apply(again, seed=4)
    _assert_same_state(again, model)


def test_a_factory_must_return_a_module() -> None:
    with pytest.raises(MaterializeError, match=r"not an nn\.Module"):
        materialize(lambda: 3, LAYERS)  # type: ignore[arg-type,return-value]
