"""Hugging Face transformers: presets, loaded-parameter flags and the doctor on tiny models."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

import initlab
from initlab.counter import counter_fill_
from initlab.plan import parameter_sites
from initlab.rng import counter_stream
from initlab.schemes import Normal

transformers = pytest.importorskip("transformers")
hf = pytest.importorskip("initlab.integrations.hf")

from transformers import (  # noqa: E402
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    GPT2Model,
)

README_SNIPPET = """\
import torch
import initlab
from transformers import GPT2Config, GPT2LMHeadModel
from initlab.integrations.hf import init_pretrained, token_batch

config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=64,
                    bos_token_id=0, eos_token_id=0)
model = GPT2LMHeadModel(config)                       # built from a config: nothing downloaded
table = initlab.init_model(model, "hf-gpt2", seed=0)  # GPT-2's own _init_weights, as rules
print(table["transformer.h.0.attn.c_proj.weight"].std)  # 0.02 / sqrt(2 * n_layer) = 0.01

# Start from the preset and change one rule (the first match wins):
base = initlab.preset("hf-gpt2", model)
plan = initlab.Plan([initlab.rule("*.mlp.c_fc.weight", "he_normal"), *base.rules],
                    default=base.default, name="hf-gpt2 + He c_fc", warn_unused=False)
init_pretrained(model, plan, seed=0)  # skips tensors from_pretrained loaded, unless force=True

report = initlab.doctor(model, token_batch(model, batch_size=4, length=16))
print([(f.severity, f.code) for f in report.findings])
"""


def gpt2_config(**overrides: Any) -> Any:
    # bos/eos inside the tiny vocabulary: transformers logs a complaint about 50256 otherwise.
    values: dict[str, Any] = {"n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": 100,
                              "n_positions": 64, "bos_token_id": 0, "eos_token_id": 0}  # fmt: skip
    return GPT2Config(**{**values, **overrides})


def bert_config() -> Any:
    return BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )


def hf_std(config: Any, name: str) -> float | None:
    """The std HF's GPT2 `_init_weights` (transformers 5.x) gives ``name``; None for constants."""
    r = config.initializer_range
    if name.endswith(("attn.c_proj.weight", "mlp.c_proj.weight")):
        return float(r / math.sqrt(2 * config.n_layer))
    if name.endswith(("c_attn.weight", "c_fc.weight", "wte.weight", "wpe.weight", "score.weight")):
        return float(r)
    return None


def test_readme_snippet_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(README_SNIPPET, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert float(printed[0]) == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("n_layer", "initializer_range", "factory"),
    [(2, 0.02, GPT2LMHeadModel), (3, 0.05, GPT2ForSequenceClassification)],
)
def test_hf_gpt2_preset_reproduces_gpt2_init_weights_in_law(
    n_layer: int, initializer_range: float, factory: Any
) -> None:
    config = gpt2_config(n_layer=n_layer, initializer_range=initializer_range, num_labels=3)
    torch.manual_seed(0)
    theirs = factory(config)  # HF's own _init_weights ran in the constructor
    ours = factory(config)
    table = initlab.init_model(ours, "hf-gpt2", seed=1)
    mine = dict(ours.named_parameters())
    for name, reference in theirs.named_parameters():
        value = mine[name]
        expected = hf_std(config, name)
        if expected is None:
            # HF's constants (LayerNorm 1/0, biases 0) are reproduced bit for bit.
            assert torch.equal(value, reference), name
            assert table[name].scheme is not None
            assert table[name].std == 0.0
            continue
        assert table[name].std == pytest.approx(expected, rel=1e-12), name
        n = value.numel()
        # The sample std of n iid normals has relative standard error ~ 1/sqrt(2n); five of
        # them bound both draws (ours and HF's) with room to spare at a fixed seed. The mean's
        # standard error is std/sqrt(n).
        tolerance = 5.0 / math.sqrt(2 * n)
        for draw in (value, reference):
            assert draw.std().item() == pytest.approx(expected, rel=tolerance), name
            assert abs(draw.mean().item()) < 5.0 * expected / math.sqrt(n), name
        assert value.std().item() == pytest.approx(reference.std().item(), rel=2 * tolerance)


def test_hf_gpt2_reads_config_and_names_what_is_missing() -> None:
    model = GPT2Model(gpt2_config(n_layer=4, initializer_range=0.03))
    table = initlab.preset("hf-gpt2", model).resolve(model)
    assert table["h.3.mlp.c_proj.weight"].std == pytest.approx(0.03 / math.sqrt(8))
    assert table["h.3.mlp.c_fc.weight"].std == pytest.approx(0.03)
    with pytest.raises(initlab.ConfigError, match=r"n_layer=\.\.\. explicitly"):
        initlab.preset("hf-gpt2", torch.nn.Linear(2, 2))
    with pytest.raises(initlab.ConfigError, match=r"initializer_range=\.\.\. explicitly"):
        initlab.preset("hf-gpt2", torch.nn.Linear(2, 2), n_layer=2)
    explicit = initlab.preset("hf-gpt2", n_layer=8, initializer_range=0.02).resolve(model)
    assert explicit["h.0.attn.c_proj.weight"].std == pytest.approx(0.02 / 4)


def test_one_rule_overrides_the_preset_and_the_rest_is_unchanged() -> None:
    model = GPT2LMHeadModel(gpt2_config())
    reference = GPT2LMHeadModel(gpt2_config())
    initlab.init_model(reference, "hf-gpt2", seed=0)
    base = initlab.preset("hf-gpt2", model)
    plan = initlab.Plan([initlab.rule("*.mlp.c_fc.weight", "he_normal"), *base.rules],
                        default=base.default, warn_unused=False)  # fmt: skip
    table = hf.init_pretrained(model, plan, seed=0)
    changed = {row.name for row in table if row.name.endswith("mlp.c_fc.weight")}
    assert changed == {"transformer.h.0.mlp.c_fc.weight", "transformer.h.1.mlp.c_fc.weight"}
    # Conv1D stores (in, out): He's fan_in is n_embd = 32, not the array's 128.
    assert table["transformer.h.0.mlp.c_fc.weight"].std == pytest.approx(math.sqrt(2 / 32))
    references = dict(reference.named_parameters())
    for name, value in model.named_parameters():
        # A parameter's values depend only on (seed, name, scheme, shape).
        assert torch.equal(value, references[name]) != (name in changed), name


def test_init_pretrained_skips_loaded_tensors_and_force_draws_them(tmp_path: Any) -> None:
    torch.manual_seed(0)
    GPT2Model(gpt2_config()).save_pretrained(tmp_path)
    model = GPT2ForSequenceClassification.from_pretrained(
        tmp_path, num_labels=3, local_files_only=True
    )
    before = {name: value.detach().clone() for name, value in model.named_parameters()}
    assert set(hf.loaded_parameters(model)) == set(before) - {"score.weight"}
    table = hf.init_pretrained(model, "xavier", seed=0)
    # The loaded tensors the plan would have drawn (xavier keeps embeddings anyway).
    assert "transformer.h.0.attn.c_attn.weight" in table.extra["loaded"]
    assert set(table.extra["loaded"]) <= set(hf.loaded_parameters(model))
    for name, value in model.named_parameters():
        assert torch.equal(value, before[name]) == (name != "score.weight"), name
    assert table["transformer.h.0.attn.c_attn.weight"].scheme is None
    assert "loaded" in table["transformer.h.0.attn.c_attn.weight"].source
    fresh = GPT2ForSequenceClassification(gpt2_config(num_labels=3))
    initlab.init_model(fresh, "xavier", seed=0)
    assert torch.equal(model.score.weight, fresh.score.weight)

    forced = hf.init_pretrained(model, "xavier", seed=0, force=True)
    assert forced.extra["loaded"] == ()
    assert torch.equal(model.transformer.h[0].attn.c_attn.weight,
                       fresh.transformer.h[0].attn.c_attn.weight)  # fmt: skip


def test_a_model_built_from_config_has_every_module_flagged_but_no_tensor() -> None:
    # Why init_pretrained reads the tensors' flags: post_init flags every module.
    model = GPT2LMHeadModel(gpt2_config())
    assert all(getattr(m, hf.HF_INITIALIZED_FLAG, False) for m in model.modules())
    assert hf.loaded_parameters(model) == ()
    table = hf.init_pretrained(model, "hf-gpt2", seed=3)
    reference = GPT2LMHeadModel(gpt2_config())
    initlab.init_model(reference, "hf-gpt2", seed=3)
    assert table.extra["loaded"] == ()
    for (name, ours), (_, theirs) in zip(
        model.named_parameters(), reference.named_parameters(), strict=True
    ):
        assert torch.equal(ours, theirs), name
    assert model.lm_head.weight is model.transformer.wte.weight  # still tied


def test_tiny_bert_init_and_doctor() -> None:
    model = BertModel(bert_config())
    table = hf.init_pretrained(model, "torch-default", seed=0)  # embeddings N(0, 1)
    assert table.extra["padding_rows_zeroed"] == ("embeddings.word_embeddings.weight",)
    assert not model.embeddings.word_embeddings.weight[0].any()
    assert table["encoder.layer.0.attention.self.query.weight"].scheme is not None
    batch = hf.token_batch(model, batch_size=4, length=16)
    report = initlab.doctor(model, batch)
    layers = {row["layer"] for row in report.rows()}
    assert "encoder.layer.1.output.dense" in layers
    assert report.jacobian is not None
    assert report.jacobian.skipped
    assert all(f.severity != "critical" for f in report.findings)


def test_bert_with_hf_gpt2_and_init_model_keeps_working() -> None:
    model = BertModel(bert_config())
    table = initlab.init_model(model, "hf-gpt2", seed=0, n_layer=2)
    assert table["encoder.layer.0.intermediate.dense.weight"].std == pytest.approx(0.02)
    assert table["embeddings.LayerNorm.weight"].std == 0.0
    report = initlab.doctor(model, hf.token_batch(model, 2, 8))
    assert report.records


def test_token_batch_errors_name_the_way_out() -> None:
    model = GPT2Model(gpt2_config())
    with pytest.raises(initlab.ConfigError, match="64 positions"):
        hf.token_batch(model, length=65)
    with pytest.raises(initlab.ConfigError, match="vocab_size"):
        hf.token_batch(torch.nn.Linear(2, 2))
    with pytest.raises(initlab.ConfigError, match="Plan takes none"):
        hf.init_pretrained(model, initlab.Plan(), n_layer=2)


def test_auto_finds_gpt2_and_bert_activations_although_the_models_do_not_trace() -> None:
    from initlab.plan.activations import detect_activations

    gpt2 = detect_activations(GPT2LMHeadModel(gpt2_config()))
    assert gpt2.method == "fx per submodule, else module order"
    assert gpt2.by_layer["transformer.h.0.mlp.c_fc"].name == "gelu_tanh"  # NewGELUActivation
    assert gpt2.by_layer["transformer.h.0.mlp.c_proj"].name == "linear"  # not the act after it
    bert = detect_activations(BertModel(bert_config()))
    assert bert.by_layer["encoder.layer.0.intermediate.dense"].name == "gelu"
    assert bert.by_layer["encoder.layer.0.output.dense"].name == "linear"
    assert bert.by_layer["pooler.dense"].name == "tanh"


# --- GPT-2's packed q/k/v: three (d, d) projections side by side in one Conv1D ----------------
def test_gpt2_c_attn_is_three_projections_with_their_own_fans() -> None:
    width = 32
    model = GPT2Model(gpt2_config(n_embd=width))
    sites = {site.name: site for site in parameter_sites(model)}
    weight, bias = sites["h.0.attn.c_attn.weight"], sites["h.0.attn.c_attn.bias"]
    assert weight.shape == (width, 3 * width)  # Conv1D stores (in, out)
    assert [(b.label, b.start, b.stop, b.axis) for b in weight.blocks] == [
        ("q", 0, width, 1),
        ("k", width, 2 * width, 1),
        ("v", 2 * width, 3 * width, 1),
    ]
    assert [b.axis for b in bias.blocks] == [0, 0, 0]
    assert (weight.fans.fan_in, weight.fans.fan_out) == (width, width)  # not (width, 3 width)
    assert (weight.torch_fans.fan_in, weight.torch_fans.fan_out) == (3 * width, width)
    # Other Conv1D layers stay one matrix, whatever their width (c_fc is (d, 4d)).
    assert sites["h.0.mlp.c_fc.weight"].blocks == ()
    assert sites["h.0.attn.c_proj.weight"].blocks == ()


def test_auto_draws_each_gpt2_projection_with_xavier_on_its_own_fans() -> None:
    width = 64
    model = GPT2Model(gpt2_config(n_embd=width))
    table = initlab.init_model(model, "auto", seed=0)
    row = table["h.0.attn.c_attn.weight"]
    expected = math.sqrt(2.0 / (width + width))  # the packed matrix would give 2 / (d + 3d)
    assert [part.label for part in row.parts] == ["q", "k", "v"]
    assert row.std == pytest.approx(expected)
    weight = model.h[0].attn.c_attn.weight.detach()
    # Each block holds d * d = 4096 normal draws: the sample std's relative standard error is
    # 1 / sqrt(2 n) = 1.1%; 5% is more than 4 standard errors.
    for index in range(3):
        block = weight[:, index * width : (index + 1) * width]
        assert block.std().item() == pytest.approx(expected, rel=0.05)
    assert torch.count_nonzero(model.h[0].attn.c_attn.bias) == 0


def test_cross_attention_c_attn_is_k_and_v() -> None:
    model = GPT2Model(gpt2_config(add_cross_attention=True))
    sites = {site.name: site for site in parameter_sites(model)}
    assert [b.label for b in sites["h.0.crossattention.c_attn.weight"].blocks] == ["k", "v"]
    assert sites["h.0.crossattention.q_attn.weight"].blocks == ()


def test_hf_gpt2_draws_the_packed_projections_as_the_whole_matrix_bit_for_bit() -> None:
    """Blocks of one law come from the parameter's one counter stream: the values are those
    of the whole matrix drawn at once."""
    model = GPT2Model(gpt2_config())
    initlab.init_model(model, "hf-gpt2", seed=3)
    whole = torch.empty_like(model.h[0].attn.c_attn.weight)
    law = Normal(0.0, model.config.initializer_range)
    counter_fill_(whole, law, counter_stream(3, "h.0.attn.c_attn.weight"))
    assert torch.equal(whole, model.h[0].attn.c_attn.weight)
