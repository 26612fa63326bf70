"""What the model's depth is made of: stacks of repeated blocks, and layers copied across depth.

**Stacks.** A transformer's depth is a stack of identical blocks (``BertLayer``,
``GPT2Block``, ``LlamaDecoderLayer``, ``nn.TransformerEncoderLayer``) around a residual stream;
a ResNet's is a stack of residual blocks. Inside a block, the scale of a sublayer's output or
gradient says little about depth: :math:`\\partial L/\\partial h` at an attention query or key
is tiny at init by construction (a near-uniform softmax passes almost no gradient to its
logits) while the stream itself carries the signal intact. The stream is what the blocks
output, so the doctor judges depth trends there (see :func:`block_stacks`).

**Clones.** ``copy.deepcopy`` of one layer in a loop, ``[copy.deepcopy(layer)] * n``-style
helpers, and ``nn.TransformerEncoder(layer, n)`` (which deep-copies ``layer``) give every copy
the same starting weights (see :func:`cloned_weights`). The copies then begin fully correlated:
only the different inputs they see tell their gradients apart, which wastes the randomness the
depth was meant to have.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator

import torch
from torch import nn

from initlab.layers import has_children
from initlab.plan.sites import parameter_sites

__all__ = ["MIN_BLOCKS", "block_stacks", "cloned_weights", "within"]

#: Same-class blocks a container must hold to be a stack (a repeated pattern, not a pair).
MIN_BLOCKS = 3

# Elements compared before two same-shape weights are compared in full: distinct random draws
# share 8 values bit for bit with probability ~0, so only real clones (and deterministic
# patterns) reach torch.equal.
_FINGERPRINT_SIZE = 8

_CONTAINERS = (nn.ModuleList, nn.Sequential)

# (parameter name, layer name, tensor)
_Weight = tuple[str, str, torch.Tensor]


def _blocks_of(container: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """The children of a container that are blocks: modules with children of their own.

    Leaves (a ``Linear`` in a plain ``nn.Sequential`` MLP) are layers, judged as layers.
    ``ModuleList``/``ModuleDict`` hold modules but have no forward: never a block themselves.
    """
    for name, child in container.named_children():
        if has_children(child) and not isinstance(child, nn.ModuleList | nn.ModuleDict):
            yield name, child


def block_stacks(model: nn.Module) -> tuple[tuple[str, ...], ...]:
    """Groups of repeated blocks, each a candidate stack on the signal path, by module name.

    Blocks are the non-leaf children of a ``ModuleList`` or ``nn.Sequential``, grouped by their
    class and by the module holding their container, so a ResNet's ``layer1``, ``layer2``...
    stages form one stack while T5's encoder and decoder blocks form two (each starts from the
    embeddings). A group is kept when it holds at least :data:`MIN_BLOCKS` blocks, or when it
    sits in a ``ModuleList``: ALBERT keeps one layer in a one-element list and applies it
    ``n`` times, which only the recorded calls show (the doctor counts calls, not modules).
    Stacks come outermost first; one nested inside a block of a stack of at least
    :data:`MIN_BLOCKS` blocks is dropped (the outer stack is the longer path).

    Example:
        >>> block_stacks(BertModel(config))
        (('encoder.layer.0', 'encoder.layer.1', 'encoder.layer.2', 'encoder.layer.3'),)
    """
    groups: dict[tuple[type[nn.Module], str], list[str]] = defaultdict(list)
    listed: set[tuple[type[nn.Module], str]] = set()
    for name, module in model.named_modules():
        if not isinstance(module, _CONTAINERS):
            continue
        holder = name.rpartition(".")[0]
        for child_name, child in _blocks_of(module):
            key = (type(child), holder)
            groups[key].append(f"{name}.{child_name}" if name else child_name)
            if isinstance(module, nn.ModuleList):
                listed.add(key)
    stacks = sorted(
        (
            tuple(names)
            for key, names in groups.items()
            if len(names) >= MIN_BLOCKS or key in listed
        ),
        key=lambda stack: stack[0].count("."),
    )
    # A stack inside a block of a stack of MIN_BLOCKS modules is dropped (the outer one is the
    # longer path and is judged whenever it runs); inside a list of one or two blocks it is
    # kept, since that outer list may run once (the doctor then prefers the outer by calls).
    certain = {name for stack in stacks if len(stack) >= MIN_BLOCKS for name in stack}
    return tuple(stack for stack in stacks if not any(within(name, certain) for name in stack))


def within(name: str, modules: set[str]) -> bool:
    """Whether ``name`` lies strictly inside one of ``modules`` (a descendant, not itself)."""
    parts = name.split(".")
    return any(".".join(parts[:cut]) in modules for cut in range(1, len(parts)))


def cloned_weights(model: nn.Module) -> list[tuple[tuple[str, str], ...]]:
    """Groups of distinct weight tensors with bit-identical values, as (parameter, layer).

    Only weights of different elements of a ``ModuleList``/``nn.Sequential`` count (layers
    across depth); a whole network held twice under named attributes (an EMA teacher, a DQN
    target network) is identical on purpose. A tensor registered under several names (tied
    embeddings, ALBERT's shared layer) is one parameter, never a clone of itself; nor are
    deterministic patterns (identity, Dirac, constants, repeated rows), which are the same in
    every layer by design. Same-shape weights are compared on a few fixed elements first, then
    in full with ``torch.equal``.
    """
    parameters = dict(model.named_parameters(remove_duplicate=False))
    by_shape: dict[tuple[object, ...], list[_Weight]] = defaultdict(list)
    for site in parameter_sites(model):
        tensor = parameters[site.name].detach()
        if site.role != "weight" or tensor.dim() < 2 or tensor.is_meta:
            continue
        by_shape[(tensor.shape, tensor.dtype, tensor.device)].append(
            (site.name, site.module_name, tensor)
        )
    containers = {name for name, m in model.named_modules() if isinstance(m, _CONTAINERS)}
    groups = []
    for candidates in by_shape.values():
        if len(candidates) < 2:
            continue
        for equal in _equal_groups(candidates):
            if not _random_looking(equal[0][2]):
                continue
            for component in _across_depth(equal, containers):
                groups.append(tuple((name, layer) for name, layer, _ in component))
    return groups


def _equal_groups(
    candidates: list[_Weight],
) -> list[list[_Weight]]:
    """Partition same-shape weights into groups of bit-identical, distinct tensors."""
    size = candidates[0][2].numel()
    positions = torch.linspace(0, size - 1, min(_FINGERPRINT_SIZE, size)).long()
    stacked = torch.stack([t.reshape(-1)[positions.to(t.device)] for _, _, t in candidates])
    keys = [tuple(row) for row in stacked.float().cpu().tolist()]
    by_key: dict[tuple[float, ...], list[int]] = defaultdict(list)
    for index, key in enumerate(keys):
        by_key[key].append(index)
    groups = []
    for indices in by_key.values():
        pending = [candidates[i] for i in indices]
        while len(pending) > 1:
            first, rest = pending[0], pending[1:]
            same = [item for item in rest if _clone_of(item[2], first[2])]
            if same:
                groups.append([first, *same])
            pending = [item for item in rest if all(item is not s for s in same)]
    return groups


def _clone_of(tensor: torch.Tensor, other: torch.Tensor) -> bool:
    """Equal values in distinct memory (two views of one storage are one weight)."""
    shared = tensor.data_ptr() == other.data_ptr() and tensor.stride() == other.stride()
    return not shared and torch.equal(tensor, other)


def _across_depth(group: list[_Weight], containers: set[str]) -> list[list[_Weight]]:
    """The parts of an equal group linked by depth: two weights are linked when their paths
    part at an element of a ModuleList/Sequential (``layers.0.fc`` and ``layers.1.fc``), not at
    a named attribute (``student.fc`` and ``teacher.fc``)."""
    parent = list(range(len(group)))

    def root(index: int) -> int:
        while parent[index] != index:
            index = parent[index]
        return index

    for i, j in itertools.combinations(range(len(group)), 2):
        if _part_at_container(group[i][0], group[j][0], containers):
            parent[root(j)] = root(i)
    components: dict[int, list[_Weight]] = defaultdict(list)
    for index, item in enumerate(group):
        components[root(index)].append(item)
    return [part for part in components.values() if len(part) > 1]


def _part_at_container(name: str, other: str, containers: set[str]) -> bool:
    left, right = name.split("."), other.split(".")
    for cut, (a, b) in enumerate(zip(left, right, strict=False)):
        if a != b:
            return ".".join(left[:cut]) in containers
    return False


def _random_looking(tensor: torch.Tensor) -> bool:
    """Not a deterministic pattern: more than two distinct values (not a constant, identity or
    Dirac init) and a first row unlike the second (not Mamba's ``A_log = log(1..N)`` rows)."""
    flat = tensor.reshape(-1)
    rows = tensor.reshape(tensor.shape[0], -1)
    repeated_rows = rows.shape[0] > 1 and torch.equal(rows[0], rows[1])
    return bool(torch.unique(flat[:4096]).numel() > 2) and not repeated_rows
