"""Penalties change gradients by exactly their formula; no-decay groups really do not decay."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from initlab.errors import ConfigError
from initlab.plan import rule
from initlab.train import TrainConfig
from initlab.train.regularize import Penalty, PenaltyTerm, decay_split, parameter_groups


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.conv = nn.Conv1d(3, 4, 2)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.embed(tokens).transpose(1, 2))
        return self.head(self.norm(x.mean(-1)))  # type: ignore[no-any-return]


def _model() -> Tiny:
    torch.manual_seed(0)
    model = Tiny().double()
    with torch.no_grad():
        model.conv.weight[0, 0, 0] = 0.0  # L1's subgradient at 0 must be 0
    return model


TOKENS = torch.tensor([[0, 1, 2, 3], [4, 3, 2, 1]])


def _grads(model: nn.Module, term: PenaltyTerm | None) -> dict[str, torch.Tensor]:
    model.zero_grad()
    loss = model(TOKENS).square().sum()
    if term is not None:
        loss = loss + term()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(("l1", "l2"), [(0.3, 0.0), (0.0, 0.7), (0.3, 0.7)])
def test_penalty_gradient_is_exactly_the_formula(l1: float, l2: float) -> None:
    model = _model()
    plain = _grads(model, None)
    penalized = _grads(model, PenaltyTerm(model, [Penalty(l1=l1, l2=l2)]))
    params = dict(model.named_parameters())
    for name, grad in penalized.items():
        w = params[name].detach()
        if name in ("conv.weight", "head.weight"):
            expected = plain[name] + l1 * torch.sign(w) + 2 * l2 * w
        else:  # biases, norm parameters, embeddings: untouched by the default rules
            expected = plain[name]
        torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12, msg=name)
    assert penalized["conv.weight"][0, 0, 0] == plain["conv.weight"][0, 0, 0] + 0.0


def test_penalty_value_and_first_matching_strength_wins() -> None:
    model = _model()
    penalties = [
        Penalty(l2=1.0, where=rule("head.*", "keep")),
        Penalty(l1=0.5),  # default rules: conv.weight and head.weight, but head is taken
    ]
    term = PenaltyTerm(model, penalties)
    assert term.assignments == {
        "conv.weight": (0.5, 0.0),
        "head.weight": (0.0, 1.0),
        "head.bias": (0.0, 1.0),
    }
    expected = (
        0.5 * model.conv.weight.abs().sum()
        + model.head.weight.square().sum()
        + model.head.bias.square().sum()
    )
    torch.testing.assert_close(term(), expected)


def test_decay_split_excludes_biases_norms_and_embeddings() -> None:
    decay, no_decay = decay_split(_model())
    assert decay == ("conv.weight", "head.weight")
    assert set(no_decay) == {"embed.weight", "conv.bias", "norm.weight", "norm.bias", "head.bias"}


@pytest.mark.parametrize("optimizer", [torch.optim.AdamW, torch.optim.SGD])
def test_no_decay_group_is_not_decayed_by_the_optimizer(optimizer: type) -> None:
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    groups = parameter_groups(model, weight_decay=0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    opt = optimizer(groups, lr=0.5)
    assert opt.param_groups[0]["param_names"] == ["conv.weight", "head.weight"]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no data gradient: only decay can move a weight
    opt.step()
    for name, p in model.named_parameters():
        if name in ("conv.weight", "head.weight"):
            # AdamW: w(1 - lr*wd); SGD: w - lr*wd*w. Both equal w * 0.95.
            torch.testing.assert_close(p.detach(), before[name] * 0.95)
        else:
            assert torch.equal(p.detach(), before[name]), name


def test_custom_decay_rules() -> None:
    groups = parameter_groups(_model(), 0.1, rule(role="embedding", scheme="keep"))
    assert groups[0]["params"][0][0] == "embed.weight"
    assert len(groups[0]["params"]) == 1


def test_bad_strengths_are_rejected() -> None:
    with pytest.raises(ConfigError, match="l2 must be a finite number >= 0, got -1"):
        Penalty(l2=-1)
    with pytest.raises(ConfigError, match="weight_decay"):
        parameter_groups(_model(), float("nan"))


def test_one_penalty_or_rule_and_several_mean_the_same() -> None:
    """The values keep what was given (frozen, never rewritten); the tuples are derived."""
    head = rule("head.*", "keep")
    one = TrainConfig(penalties=Penalty(l2=1e-4), decay_rules=head)
    several = TrainConfig(penalties=(Penalty(l2=1e-4),), decay_rules=(head,))
    assert one.penalty_list == several.penalty_list == (Penalty(l2=1e-4),)
    assert one.decay_rule_list == several.decay_rule_list == (head,)
    assert Penalty(where=head).rules == Penalty(where=(head,)).rules == (head,)
    assert one.penalties == Penalty(l2=1e-4)
    assert Penalty(l2=1e-4).l2 == 1e-4


def test_what_is_not_a_penalty_or_a_rule_is_rejected_at_construction() -> None:
    with pytest.raises(ConfigError, match=r"penalties must be Penalty values, got 0\.1"):
        TrainConfig(penalties=(0.1,))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="decay_rules must be Rule values"):
        TrainConfig(decay_rules=("head.weight",))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"where= takes Rule values"):
        Penalty(where=("head.weight",))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="at least one rule"):
        Penalty(where=())


def test_decay_reaches_every_layers_weight_on_real_architectures() -> None:
    """GPT-2's Conv1D, attention in_proj, recurrent and Bilinear weights are layer weights
    (decayed); their biases, norms and embeddings are not."""
    transformers = pytest.importorskip("transformers")
    gpt = transformers.GPT2Model(
        transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, n_positions=16, vocab_size=50)
    )
    decay, no_decay = decay_split(gpt)
    assert {"h.0.attn.c_attn.weight", "h.0.mlp.c_proj.weight"} <= set(decay)
    assert {"wte.weight", "h.0.ln_1.weight", "h.0.attn.c_attn.bias"} <= set(no_decay)
    others = nn.ModuleDict(
        {"mha": nn.MultiheadAttention(8, 2), "lstm": nn.LSTM(4, 8), "bi": nn.Bilinear(3, 4, 5)}
    )
    decay, no_decay = decay_split(others)
    assert {"mha.in_proj_weight", "lstm.weight_hh_l0", "bi.weight"} <= set(decay)
    assert {"mha.in_proj_bias", "lstm.bias_ih_l0", "bi.bias"} <= set(no_decay)


def test_a_rule_naming_blocks_cannot_select_what_decays_or_is_penalized() -> None:
    """Decay and penalties apply to whole tensors: a rule for the v block of a packed qkv
    would silently select q and k too, so it is refused where it enters."""
    value_block = rule("*.in_proj_weight", "keep", blocks="v")
    message = r"rule \('\*\.in_proj_weight' blocks=v\) selects blocks \(v\)"
    with pytest.raises(ConfigError, match="Penalty: where= " + message):
        Penalty(l2=1e-4, where=value_block)
    with pytest.raises(ConfigError, match="TrainConfig: decay_rules " + message):
        TrainConfig(decay_rules=(value_block,))
    model = nn.ModuleDict({"mha": nn.MultiheadAttention(8, 2)})
    with pytest.raises(ConfigError, match="weight decay " + message):
        parameter_groups(model, 0.1, value_block)
    with pytest.raises(ConfigError, match="weight decay " + message):
        decay_split(model, value_block)
