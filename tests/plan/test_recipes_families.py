"""Hugging Face family presets against the models' own ``_init_weights`` (transformers 5.x).

Two checks per family: (a) by construction, every row of the dry-run table names the law
``_init_weights`` gives that parameter's module type; (b) statistically, a model initialized
by HF (its own init, a seed) and one by initlab's preset have the same per-parameter laws.

Tolerance for (b): n i.i.d. N(0, r^2) draws give a sample std with standard error
r / sqrt(2 n); two independent models differ by r * sqrt(1/(2 n1) + 1/(2 n2)); the test allows
5 of those (a false failure once in ~10^6 for a random seed; seeds are fixed).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import initlab
from initlab.errors import ConfigError
from initlab.integrations.hf import init_pretrained
from initlab.schemes import Normal, Ones, Scheme, Zeros

transformers = pytest.importorskip("transformers")

SIGMAS = 5.0
HF_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d)


def tiny_bert(initializer_range: float = 0.02) -> nn.Module:
    config = transformers.BertConfig(
        vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=64, initializer_range=initializer_range,
    )  # fmt: skip
    return transformers.BertForPreTraining(config)


def tiny_llama(pad_token_id: int | None = 0) -> nn.Module:
    config = transformers.LlamaConfig(
        vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, pad_token_id=pad_token_id,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config)


def init_weights_law(model: nn.Module, name: str) -> Scheme:
    """What ``PreTrainedModel._init_weights`` (and BERT's override) gives parameter ``name``,
    read from its module's type, as transformers' code reads it."""
    module_name, _, attribute = name.rpartition(".")
    module = model.get_submodule(module_name)
    r = model.config.initializer_range or 0.02
    if type(module).__name__ == "BertLMPredictionHead":
        return Zeros()
    if isinstance(module, (*HF_LAYERS, nn.Embedding)):
        return Normal(0.0, r) if attribute == "weight" else Zeros()
    class_name = type(module).__name__
    if "LayerNorm" in class_name or "RMSNorm" in class_name:
        return Ones() if attribute == "weight" else Zeros()
    raise AssertionError(f"{name}: _init_weights has no rule for {class_name}")


@pytest.mark.parametrize(("build", "preset"), [(tiny_bert, "hf-bert"), (tiny_llama, "hf-llama")])
def test_dry_run_names_init_weights_law_for_every_parameter(build, preset) -> None:  # type: ignore[no-untyped-def]
    model = build()
    table = initlab.preset(preset, model).resolve(model)
    assert len(table) == len(dict(model.named_parameters()))
    for row in table:
        assert row.scheme == init_weights_law(model, row.name), row.name
        assert row.source.startswith("rule "), row.name  # no parameter left to the default


def test_initializer_range_comes_from_the_config_with_hf_fallback() -> None:
    model = tiny_bert(initializer_range=0.05)
    table = initlab.preset("hf-bert", model).resolve(model)
    assert table["bert.encoder.layer.1.output.dense.weight"].scheme == Normal(0.0, 0.05)
    model = tiny_bert(initializer_range=0.0)  # HF: `initializer_range or 0.02`
    table = initlab.preset("hf-bert", model).resolve(model)
    assert table["bert.embeddings.word_embeddings.weight"].scheme == Normal(0.0, 0.02)
    table = initlab.preset("hf-bert", model, initializer_range=0.1).resolve(model)
    assert table["cls.seq_relationship.weight"].scheme == Normal(0.0, 0.1)


@pytest.mark.parametrize(("build", "preset"), [(tiny_bert, "hf-bert"), (tiny_llama, "hf-llama")])
def test_draws_match_the_model_own_init_statistically(build, preset) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    own = build()  # transformers' own _init_weights
    ours = build()
    table = init_pretrained(ours, preset, seed=1)  # zeros the padding rows, as HF does
    drawn = dict(ours.named_parameters())
    for name, expected in own.named_parameters():
        row = table[name]
        if row.std == 0:
            assert torch.equal(drawn[name], expected), name
            continue
        n = expected.numel()
        gap = abs(float(drawn[name].detach().std()) - float(expected.detach().std()))
        assert gap <= SIGMAS * row.std * math.sqrt(1 / (2 * n) + 1 / (2 * n)), name
        mean = float(drawn[name].detach().mean())
        assert abs(mean) <= SIGMAS * row.std / math.sqrt(n), name
    for module_name, module in own.named_modules():
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            row = drawn[f"{module_name}.weight"][module.padding_idx]
            assert torch.equal(row, module.weight[module.padding_idx]), module_name
            assert not row.any()


def test_a_model_of_another_family_is_warned_about() -> None:
    model = tiny_llama()
    with pytest.warns(UserWarning, match="model_type 'llama', not bert"):
        initlab.preset("hf-bert", model)


def test_bad_initializer_range_names_the_option() -> None:
    # Without a config, HF's base class default: 0.02.
    assert initlab.preset("hf-llama").rules[0].scheme == Normal(0.0, 0.02)
    with pytest.raises(ConfigError, match="initializer_range"):
        initlab.preset("hf-llama", tiny_llama(), initializer_range=-0.1)
    with pytest.raises(ConfigError, match="initializer_range"):
        initlab.preset("hf-bert", tiny_bert(), initializer_rage=0.1)
