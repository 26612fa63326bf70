"""Big models: built without default init, initialized once, sharded, the same on any device count.

* :func:`materialize`: build on the meta device, allocate on ``device``, apply a plan once;
* :func:`initialize`: apply a plan to a model whose parameters may be DTensors (FSDP2, tensor
  parallel), each rank filling only its local shard;
* :func:`local_region`: the box of the full tensor a DTensor's local shard holds;
* :func:`run_own_init`: the model's own ``reset_parameters`` / ``_init_weights``, once, seeded
  per module (what ``materialize(..., plan="own")`` runs).

Values come from the counter stream (:mod:`initlab.rng`, :mod:`initlab.counter`): element ``i``
of a parameter depends only on (seed, name, scheme, shape, ``i``), so every shard is generated
alone and the gathered tensor equals the single-process one bit for bit.
"""

from __future__ import annotations

from initlab.counter import counter_fill_
from initlab.rng import Region, counter_stream
from initlab.scale.errors import MaterializeError, OwnInitError
from initlab.scale.materialize import materialize, parameters_on_meta
from initlab.scale.own_init import run_own_init
from initlab.scale.shards import initialize, is_dtensor, local_region

__all__ = [
    "MaterializeError",
    "OwnInitError",
    "Region",
    "counter_fill_",
    "counter_stream",
    "initialize",
    "is_dtensor",
    "local_region",
    "materialize",
    "parameters_on_meta",
    "run_own_init",
]
