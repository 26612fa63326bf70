"""Sharded init on the gloo backend: world sizes 1, 2 and 4 in spawned processes.

Each world size initializes DTensor parameters (``Shard(0)``, ``Shard(1)``, ``Replicate()``)
with :func:`initlab.scale.initialize` and an FSDP2 (``fully_shard``) model with
:func:`initlab.scale.materialize`, each rank filling only its local shard; the gathered
parameters must equal the single-process ``materialize`` bit for bit, so they are also equal
across world sizes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from initlab.scale import materialize

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="needs torch.distributed")
SEED = 5


@pytest.mark.parametrize(
    "world_size", [1, 2, pytest.param(4, marks=pytest.mark.slow)], ids=lambda n: f"world{n}"
)
def test_gathered_shards_equal_the_single_process_model(world_size: int, tmp_path: Path) -> None:
    import distributed_worker

    expected = dict(materialize(distributed_worker.OddGPT, distributed_worker.plan(), seed=SEED)
                    .named_parameters())  # fmt: skip
    mp.spawn(
        distributed_worker.run,
        args=(world_size, str(tmp_path / "rendezvous"), str(tmp_path), SEED),
        nprocs=world_size,
        join=True,
    )
    gathered = torch.load(tmp_path / f"world{world_size}.pt")
    # Only the whole-matrix scheme (orthogonal c_attn) built a full tensor on a rank.
    full_builds = (tmp_path / "full_builds.txt").read_text().split()
    assert full_builds == ["h.0.attn.c_attn.weight", "h.1.attn.c_attn.weight"]
    assert set(gathered) == {"shard0", "shard1", "replicate", "fsdp2"}
    for layout, parameters in gathered.items():
        assert parameters.keys() == expected.keys(), layout
        for name, tensor in expected.items():
            assert torch.equal(parameters[name], tensor.detach()), (layout, name)
