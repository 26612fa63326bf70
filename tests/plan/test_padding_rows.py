"""An embedding's ``padding_idx`` row is set to 0 after the draw, as torch and HF do.

``nn.Embedding.reset_parameters`` (and ``nn.EmbeddingBag``'s, and transformers'
``_init_weights``) draw the whole matrix, then zero the padding row. A plan does the same, for
every scheme that draws; every other element keeps the value the parameter's stream gives it
(the counter stream numbers elements by their flat index, so a row's values do not depend on
its neighbours), which the tests check against the same parameter name without a padding row.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from rich.console import Console
from torch import nn

import initlab
from initlab.plan import Plan, rule
from initlab.plan.apply import zero_rows_
from initlab.report.plan import assignments_view
from initlab.rng import Region, Stream
from initlab.scale.shards import fill_shard_

VOCAB, WIDTH, PADDING = 10, 4, 3
# What the GPT-2 presets need on a model that is not GPT-2.
OPTIONS: dict[str, dict[str, float]] = {
    "gpt2": {"n_layer": 1},
    "hf-gpt2": {"n_layer": 1, "initializer_range": 0.02},
}


class Tokens(nn.Module):
    """One embedding named ``embed`` (with or without a padding row) and a head."""

    def __init__(self, padding_idx: int | None) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH, padding_idx=padding_idx)
        self.head = nn.Linear(WIDTH, VOCAB)


def drawn(preset: str, padding_idx: int | None, stream: Stream = "counter") -> torch.Tensor:
    model = Tokens(padding_idx)
    initlab.preset(preset, model, **OPTIONS.get(preset, {})).apply(model, seed=7, stream=stream)
    return model.embed.weight.detach()


def others(weight: torch.Tensor, row: int) -> torch.Tensor:
    return torch.cat([weight[:row], weight[row + 1 :]])


@pytest.mark.parametrize("preset", ["torch-default", "auto", "gpt2", "hf-gpt2", "hf-llama"])
@pytest.mark.parametrize("stream", ["counter", "generator"])
def test_the_padding_row_is_zero_and_the_others_are_the_draw(preset: str, stream: Stream) -> None:
    today = drawn(preset, None, stream)  # the same name and shape, no padding row
    padded = drawn(preset, PADDING, stream)
    assert not padded[PADDING].any()
    assert today[PADDING].any()
    assert torch.equal(others(padded, PADDING), others(today, PADDING))


def test_a_negative_padding_idx_is_the_row_torch_normalizes_it_to() -> None:
    padded = drawn("torch-default", -1)
    assert not padded[VOCAB - 1].any()
    assert torch.equal(padded[:-1], drawn("torch-default", None)[:-1])


def test_an_embedding_bag_zeroes_its_padding_row_as_torch_does() -> None:
    torch_own = nn.EmbeddingBag(VOCAB, WIDTH, padding_idx=PADDING)
    ours = nn.EmbeddingBag(VOCAB, WIDTH, padding_idx=PADDING)
    table = initlab.preset("torch-default", ours).apply(ours, seed=0)
    assert table["weight"].zero_rows == (PADDING,)
    assert not torch_own.weight[PADDING].any()
    assert not ours.weight[PADDING].any()
    assert ours.weight.count_nonzero() == torch_own.weight.count_nonzero() == (VOCAB - 1) * WIDTH


def test_the_table_says_which_row_it_zeroes() -> None:
    model = Tokens(PADDING)
    table = initlab.preset("torch-default", model).resolve(model)
    row = table["embed.weight"]
    assert row.zero_rows == (PADDING,)
    assert "padding row 3 set to 0" in row.notes
    assert row.to_row()["zero_rows"] == [PADDING]
    assert "embed.weight: padding row 3 set to 0 after the draw" in str(table).splitlines()
    assert table["head.weight"].zero_rows == ()
    console = Console(width=200, record=True)
    console.print(assignments_view(table))
    assert "padding row 3 set to 0" in console.export_text()


def test_a_kept_embedding_is_left_as_it_is() -> None:
    model = Tokens(PADDING)
    before = model.embed.weight.detach().clone()
    table = Plan([rule("head.*", "zeros")], default="keep").apply(model, seed=0)
    assert table["embed.weight"].zero_rows == ()
    assert "padding" not in table["embed.weight"].notes
    assert torch.equal(model.embed.weight, before)


def test_a_checkpoint_row_is_copied_as_the_file_has_it(tmp_path: Path) -> None:
    source = Tokens(PADDING)
    with torch.no_grad():
        source.embed.weight.fill_(1.5)
    path = tmp_path / "tokens.pt"
    torch.save(source.state_dict(), path)
    model = Tokens(PADDING)
    table = Plan([rule(scheme="checkpoint", path=str(path))]).apply(model, seed=0)
    assert table["embed.weight"].zero_rows == ()
    assert torch.equal(model.embed.weight, source.embed.weight)


def test_an_output_layer_tied_to_a_padded_embedding_keeps_its_padding_row() -> None:
    class HeadFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(WIDTH, VOCAB, bias=False)
            self.embed = nn.Embedding(VOCAB, WIDTH, padding_idx=PADDING)
            self.embed.weight = self.head.weight

    model = HeadFirst()
    table = initlab.preset("torch-default", model).apply(model, seed=0)
    assert table["head.weight"].zero_rows == (PADDING,)
    assert not model.embed.weight[PADDING].any()


def test_a_weight_normed_embedding_zeroes_no_row_of_its_direction() -> None:
    # A zero row of the direction v would make the weight g v / ||v|| = 0 / 0 there.
    model = nn.utils.parametrizations.weight_norm(nn.Embedding(VOCAB, WIDTH, padding_idx=0))
    table = Plan([rule("*original1", "normal")]).apply(model, seed=0)
    assert all(row.zero_rows == () for row in table)
    assert torch.isfinite(model.weight).all()


def test_zero_rows_of_a_shard_zero_only_the_rows_it_holds() -> None:
    full = torch.ones(VOCAB, WIDTH)
    boxes = [(0, 4), (4, 4), (8, 2)]
    shards = [
        zero_rows_(
            torch.ones(rows, WIDTH),
            (PADDING, 9),
            Region((VOCAB, WIDTH), (first, 0), (rows, WIDTH)),
        )
        for first, rows in boxes
    ]
    assert torch.equal(torch.cat(shards), zero_rows_(full, (PADDING, 9)))
    assert [int(shard.count_nonzero()) for shard in shards] == [12, 16, 4]


@contextmanager
def fake_rank(rank: int, world_size: int) -> Iterator[object]:
    """This process as rank ``rank`` of ``world_size`` (torch's fake process group: no peers,
    collectives do nothing), with a 1-D CPU mesh."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.testing._internal.distributed.fake_pg import FakeStore

    dist.init_process_group("fake", store=FakeStore(), rank=rank, world_size=world_size)
    try:
        yield init_device_mesh("cpu", (world_size,))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(
    not dist.is_available() or dist.is_initialized(), reason="needs a free torch.distributed"
)
@pytest.mark.parametrize("placement", ["Shard(0)", "Shard(1)"])
@pytest.mark.parametrize("stream", ["counter", "generator"])
def test_each_rank_zeroes_the_padding_row_only_in_its_shard(
    placement: str, stream: Stream
) -> None:
    # The shard fill alone (scale.initialize's per-parameter step) on a DTensor of each rank.
    from torch.distributed.tensor import DTensor, Shard
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    expected = Tokens(PADDING)
    table = initlab.preset("torch-default", expected).apply(expected, seed=7, stream=stream)
    row = table["embed.weight"]
    placements = [Shard(0) if placement == "Shard(0)" else Shard(1)]
    world_size, shards = 3, []
    for rank in range(world_size):
        with fake_rank(rank, world_size) as mesh:
            shape, _ = compute_local_shape_and_global_offset((VOCAB, WIDTH), mesh, placements)
            local = torch.full(shape, float("nan"))
            weight = DTensor.from_local(
                local, mesh, placements, run_check=False, shape=(VOCAB, WIDTH), stride=(WIDTH, 1)
            )
            fill_shard_(weight, row, 7, stream=stream)
            shards.append(local)
    gathered = torch.cat(shards, dim=0 if placement == "Shard(0)" else 1)
    assert torch.equal(gathered, expected.embed.weight.detach())
    assert not gathered[PADDING].any()
    assert int(gathered.count_nonzero()) == (VOCAB - 1) * WIDTH


def hf_tiny_bert() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32, pad_token_id=1,
    )  # fmt: skip
    return transformers.BertModel(config)


def test_hf_bert_zeroes_the_word_embeddings_padding_row_as_transformers_does() -> None:
    from initlab.integrations.hf import init_pretrained

    own = hf_tiny_bert()  # transformers' _init_weights
    assert not own.embeddings.word_embeddings.weight[1].any()
    model = hf_tiny_bert()
    table = initlab.preset("hf-bert", model).apply(model, seed=2)
    assert table["embeddings.word_embeddings.weight"].zero_rows == (1,)
    assert not model.embeddings.word_embeddings.weight[1].any()
    assert [row.name for row in table if row.zero_rows] == ["embeddings.word_embeddings.weight"]

    pretrained = hf_tiny_bert()
    applied = init_pretrained(pretrained, "hf-bert", seed=2)
    assert applied.extra["padding_rows_zeroed"] == ("embeddings.word_embeddings.weight",)
    for (name, ours), theirs in zip(
        model.state_dict().items(), pretrained.state_dict().values(), strict=True
    ):
        assert torch.equal(ours, theirs), name

    kept = hf_tiny_bert()
    applied = init_pretrained(kept, "hf-bert", seed=2, zero_padding=False)
    assert applied.extra["padding_rows_zeroed"] == ()
    weight, zeroed = (
        kept.embeddings.word_embeddings.weight,
        model.embeddings.word_embeddings.weight,
    )
    assert weight[1].any()
    assert torch.equal(others(weight, 1), others(zeroed, 1))
