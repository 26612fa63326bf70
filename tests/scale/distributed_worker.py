"""The per-rank body of the distributed tests (run by ``torch.multiprocessing.spawn``).

Each rank builds the same models with DTensor parameters (``Shard(0)``, ``Shard(1)``,
``Replicate()``) and with FSDP2 (``fully_shard``), initializes only its local shards, gathers
the full tensors and, on rank 0, saves them for the test process to compare.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from scale_models import GPT
from torch import nn

import initlab
import initlab.scale.shards as shards
from initlab.scale import initialize, materialize


def plan() -> initlab.Plan:
    """Every path: counter laws (normal, uniform, truncated, variance scaling, constants, a
    multiplier) and a whole-matrix scheme (orthogonal)."""
    rule = initlab.rule
    return initlab.Plan(
        [
            rule("*c_attn.weight", "orthogonal"),
            rule("*c_fc.weight", "he_uniform"),
            rule("*mlp.c_proj.weight", "truncated_normal", std=0.02, a=-0.04, b=0.04),
            rule("*attn.c_proj.weight", "normal", std=0.02, multiplier=0.5),
            rule("odd.weight", "xavier_normal"),
            rule(role="embedding", scheme="normal", std=0.02),
            rule(role="bias", scheme="uniform", a=-0.1, b=0.1),
            rule(role="norm_weight", scheme="ones"),
            rule(role="norm_bias", scheme="zeros"),
        ],
        default="keep",
    )


class OddGPT(GPT):
    """GPT with an odd-shaped layer: a Shard(1) run of 9-column rows alternates parity."""

    def __init__(self) -> None:
        super().__init__(n_layer=2, width=20, vocab=37, context=9)
        self.odd = nn.Linear(9, 7)


def _gathered(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone()
        for name, p in model.named_parameters()
    }


def run(rank: int, world_size: int, rendezvous: str, out_dir: str, seed: int) -> None:
    """Initialize DTensor and FSDP2 models at ``world_size`` and save the gathered values."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank,
                            world_size=world_size)  # fmt: skip
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (world_size,))
    results: dict[str, dict[str, torch.Tensor]] = {}
    full_builds: list[str] = []  # parameters for which a rank built the full tensor
    original = shards.fill_parameter

    def recording(tensor: torch.Tensor, row: Any, seed: int, **options: Any) -> None:
        full_builds.append(row.name)
        original(tensor, row, seed, **options)

    shards.fill_parameter = recording  # type: ignore[assignment]
    for label, placement in (
        ("shard0", Shard(0)),
        ("shard1", Shard(1)),
        ("replicate", Replicate()),
    ):
        model = OddGPT()
        for module in model.modules():
            for name, param in list(module._parameters.items()):
                if param is None or isinstance(param, DTensor):
                    continue
                # Vectors (biases, norms) cannot be Shard(1): they are Shard(0) then.
                chosen = placement if param.dim() > 1 or label == "replicate" else Shard(0)
                shard = distribute_tensor(
                    torch.empty_like(param), mesh, [chosen], src_data_rank=None
                )
                module._parameters[name] = nn.Parameter(shard)
        model.lm_head.weight = model.wte.weight
        initialize(model, plan(), seed)
        results[label] = _gathered(model)

    with torch.device("meta"):
        model = OddGPT()
    for block in model.h:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    materialize(model, plan(), seed=seed)
    results["fsdp2"] = _gathered(model)
    if rank == 0:
        torch.save(results, os.path.join(out_dir, f"world{world_size}.pt"))
        with open(os.path.join(out_dir, "full_builds.txt"), "w") as file:
            file.write("\n".join(sorted(set(full_builds))))
    dist.barrier()
    dist.destroy_process_group()
