"""``materialize(factory, "own")``: the model's own init, once, on allocated tensors, with no
default init at build; the same values on every run, whatever order the modules were built in;
the same statistics as the model's own eager init (Hugging Face GPT-2 and BERT, and torch.nn)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest
import torch
from torch import nn

import initlab
from initlab.errors import ConfigError
from initlab.scale import materialize
from initlab.scale.own_init import OwnInitError, run_own_init

transformers = pytest.importorskip("transformers")

LAYERS, WIDTH, VOCAB = 2, 32, 97


def _gpt2() -> nn.Module:
    config = transformers.GPT2Config(n_layer=LAYERS, n_embd=WIDTH, n_head=2, vocab_size=VOCAB,
                                     n_positions=16, bos_token_id=0, eos_token_id=0)  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def _bert() -> nn.Module:
    config = transformers.BertConfig(num_hidden_layers=LAYERS, hidden_size=WIDTH,
                                     num_attention_heads=2, intermediate_size=64,
                                     vocab_size=VOCAB, max_position_embeddings=16)  # fmt: skip
    return transformers.BertForMaskedLM(config)


class Net(nn.Module):
    """torch.nn layers registered first to last."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.hidden = nn.Linear(8, 64)
        self.norm = nn.LayerNorm(64)
        self.attention = nn.MultiheadAttention(64, 4)
        self.out = nn.Linear(64, 3)


class NetReversed(nn.Module):
    """The same layers under the same names, registered (and built) last to first."""

    def __init__(self) -> None:
        super().__init__()
        self.out = nn.Linear(64, 3)
        self.attention = nn.MultiheadAttention(64, 4)
        self.norm = nn.LayerNorm(64)
        self.hidden = nn.Linear(8, 64)
        self.embed = nn.Embedding(20, 8)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach() for name, p in model.named_parameters()}


def _assert_same(first: nn.Module, second: nn.Module) -> None:
    ours, theirs = _state(first), _state(second)
    assert ours.keys() == theirs.keys()
    for name, tensor in ours.items():
        assert torch.equal(tensor, theirs[name]), name


def _count_real_calls(monkeypatch: pytest.MonkeyPatch, owner: type, method: str) -> Counter[int]:
    """Calls of ``owner.method`` whose module holds allocated parameters, by module id."""
    calls: Counter[int] = Counter()
    original = getattr(owner, method)

    def counting(self: Any, *args: Any) -> Any:
        module = args[0] if args else self
        if any(not p.is_meta for p in module.parameters(recurse=False)):
            calls[id(module)] += 1
        return original(self, *args)

    monkeypatch.setattr(owner, method, counting)
    return calls


def test_hf_gpt2_runs_init_weights_once_per_module_and_none_at_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _count_real_calls(monkeypatch, transformers.GPT2PreTrainedModel, "_init_weights")
    model = materialize(_gpt2, "own", seed=0)
    owners = {name.rpartition(".")[0] for name, _ in model.named_parameters()}
    # Each module owning a parameter (a tied one under its first name: wte, not lm_head):
    # exactly one _init_weights on real storage; the build (meta device) drew nothing.
    assert {id(model.get_submodule(owner)) for owner in owners} == set(calls)
    assert set(calls.values()) == {1}


def test_torch_modules_run_reset_parameters_once_and_none_at_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    linear = _count_real_calls(monkeypatch, nn.Linear, "reset_parameters")
    norm = _count_real_calls(monkeypatch, nn.LayerNorm, "reset_parameters")
    model = materialize(Net, "own", seed=0)
    assert {id(model.hidden), id(model.out), id(model.attention.out_proj)} == set(linear)
    assert set(linear.values()) == {1}
    assert dict(norm) == {id(model.norm): 1}


def test_hf_values_repeat_across_runs_and_differ_between_seeds() -> None:
    _assert_same(materialize(_gpt2, "own", seed=3), materialize(_gpt2, "own", seed=3))
    other = materialize(_gpt2, "own", seed=4)
    first = materialize(_gpt2, "own", seed=3)
    assert not torch.equal(first.transformer.wte.weight, other.transformer.wte.weight)


def test_values_do_not_depend_on_the_order_modules_were_built_in() -> None:
    _assert_same(materialize(Net, "own", seed=7), materialize(NetReversed, "own", seed=7))


def test_materialize_equals_the_seeded_own_init_of_an_eager_model() -> None:
    """By construction: the meta build changes nothing but the work done."""
    for factory in (_gpt2, _bert, Net):
        eager = factory()
        run_own_init(eager, seed=5)
        _assert_same(materialize(factory, "own", seed=5), eager)


def _assert_std(values: torch.Tensor, expected: float) -> None:
    # Normal draws: the sample std's relative standard error is 1/sqrt(2n); 5 of them.
    assert float(values.std()) == pytest.approx(expected, rel=5 / math.sqrt(2 * values.numel()))


def test_hf_gpt2_statistics_are_its_own_init() -> None:
    model = materialize(_gpt2, "own", seed=0)
    state = _state(model)
    residual = 0.02 / math.sqrt(2 * LAYERS)  # GPT2PreTrainedModel._init_weights' c_proj
    for layer in range(LAYERS):
        _assert_std(state[f"transformer.h.{layer}.attn.c_attn.weight"], 0.02)
        _assert_std(state[f"transformer.h.{layer}.attn.c_proj.weight"], residual)
        _assert_std(state[f"transformer.h.{layer}.mlp.c_proj.weight"], residual)
        assert torch.count_nonzero(state[f"transformer.h.{layer}.mlp.c_fc.bias"]) == 0
        assert torch.equal(state[f"transformer.h.{layer}.ln_1.weight"], torch.ones(WIDTH))
    _assert_std(state["transformer.wte.weight"], 0.02)
    assert model.lm_head.weight is model.transformer.wte.weight


def test_hf_bert_statistics_match_an_eager_build() -> None:
    torch.manual_seed(0)
    eager = _state(_bert())  # the default init, then transformers' own: the double init
    ours = _state(materialize(_bert, "own", seed=0))
    assert ours.keys() == eager.keys()
    for name, values in eager.items():
        if float(values.std()) == 0.0:  # biases 0, LayerNorm 1/0: the same constants
            assert torch.equal(ours[name], values), name
        else:  # BertPreTrainedModel: Linear and Embedding N(0, initializer_range^2)
            _assert_std(values, 0.02)
            _assert_std(ours[name], 0.02)


def test_torch_statistics_are_reset_parameters() -> None:
    model = materialize(Net, "own", seed=0)
    bound = 1 / math.sqrt(8)  # nn.Linear: U(+-1/sqrt(fan_in)) for weight and bias
    assert float(model.hidden.weight.detach().abs().max()) <= bound
    # uniform: std bound/sqrt(3); relative standard error sqrt(0.8/(4n)), 5 of them
    n = model.hidden.weight.numel()
    assert float(model.hidden.weight.detach().std()) == pytest.approx(
        bound / math.sqrt(3), rel=5 * math.sqrt(0.8 / (4 * n))
    )
    _assert_std(model.embed.weight.detach(), 1.0)
    assert torch.count_nonzero(model.attention.in_proj_bias) == 0  # MHA's _reset_parameters
    assert torch.count_nonzero(model.attention.out_proj.bias) == 0  # ...which zeroes its child's


def test_a_plan_overrides_a_few_rules_on_top_of_the_own_init() -> None:
    plan = initlab.Plan([initlab.rule(role="weight", types=nn.Linear, scheme="zeros")],
                        default="keep", warn_unused=False)  # fmt: skip
    model = materialize(Net, plan, seed=2, own_init=True)  # no "kept" warning: own init
    assert torch.count_nonzero(model.hidden.weight) == 0
    own = materialize(Net, "own", seed=2)
    assert torch.equal(model.hidden.bias, own.hidden.bias)
    assert torch.equal(model.embed.weight, own.embed.weight)


def test_a_parameter_no_own_init_writes_is_named() -> None:
    class Bare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 4)
            self.scale = nn.Parameter(torch.ones(4))

    with pytest.raises(OwnInitError, match="scale"):
        materialize(Bare, "own")
    plan = initlab.Plan([initlab.rule("scale", "ones")], default="keep")
    model = materialize(Bare, plan, own_init=True)
    assert torch.equal(model.scale, torch.ones(4))


def test_the_global_generator_is_left_as_it_was() -> None:
    torch.manual_seed(11)
    state = torch.get_rng_state()
    materialize(Net, "own", seed=0)
    assert torch.equal(torch.get_rng_state(), state)


def test_own_init_must_be_a_bool() -> None:
    with pytest.raises(ConfigError, match="own_init must be True or False"):
        materialize(Net, "kaiming", own_init="yes")  # type: ignore[arg-type]
