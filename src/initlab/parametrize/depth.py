r"""Depth-muP: residual branches scaled by :math:`1/\sqrt{L}`, without changing the model.

Depth-muP (Yang, Yu, Zhu & Hayou, 2023, "Tensor Programs VI"; Bordelon et al., 2023, "Depthwise
hyperparameter transfer in residual networks") puts a multiplier :math:`a/\sqrt{L}` on every
residual branch of a network with :math:`L` blocks, :math:`x_{l+1} = x_l + \frac{a}{\sqrt L}
f_l(x_l)`, on top of muP in width, and scales the learning rate of the blocks' parameters by
:math:`L^{-1/2}` under Adam (by 1 under SGD). Relative to a base model with :math:`L_b` blocks
(:math:`a = \sqrt{L_b}`, so the base model is unchanged), with :math:`r = L_b / L`:

================================  =======================  =====================  ==========
parameter                         init std                 Adam lr                SGD lr
================================  =======================  =====================  ==========
branch output layer (weight,      :math:`\times\sqrt r`    :math:`\times r`       :math:`\times r`
bias): last layer of a branch
other parameters of a block       unchanged                :math:`\times\sqrt r`  unchanged
everything outside the blocks     unchanged                unchanged              unchanged
================================  =======================  =====================  ==========

The forward multiplier is *folded* into the branch's output layer: :math:`\sqrt r\,(W h + b) =
W' h + b'` with :math:`W' = \sqrt r\,W`. Init: :math:`W'` has :math:`\sqrt r` times the std.
Training: to keep :math:`W' = \sqrt r\,W`, its update must be :math:`\sqrt r` times that of
:math:`W`; the gradient of :math:`W'` is :math:`1/\sqrt r` times that of :math:`W`, so SGD needs
a learning rate :math:`\times r`; Adam's update does not see the gradient's scale, so
:math:`\sqrt r \cdot \sqrt r = r` too. This is exact because the output layer is linear and its
output is added to the residual stream (dropout in between is fine). A branch that ends with
anything else (a norm, an activation) needs the multiplier in its forward; that is reported in
the notes, never skipped silently.

Branch output layers are found by name (``branch_outputs``, glob patterns on parameter names,
inside numbered blocks): by default GPT-2's ``c_proj``, ``nn.TransformerEncoderLayer``'s
``self_attn.out_proj`` and ``linear2``, LLaMA's ``o_proj``/``down_proj``, timm's ``attn.proj``
and ``mlp.fc2``, BERT's ``output.dense``. :math:`L` is the number of blocks holding one.
Tensor Programs VI proves depth transfer for blocks of one layer; for deeper blocks
(transformers) it finds that no parametrization is fully depth-consistent.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass

from initlab.errors import ConfigError
from initlab.parametrize.rules import Optimizer
from initlab.plan.sites import ParameterSite

__all__ = ["DEFAULT_BRANCH_OUTPUTS", "DepthScaling", "depth_scalings"]

DEFAULT_BRANCH_OUTPUTS: tuple[str, ...] = (
    "*.c_proj.*",
    "*.out_proj.*",
    "*.linear2.*",
    "*.o_proj.*",
    "*.down_proj.*",
    "*.fc2.*",
    "*.attn.proj.*",
    "*.output.dense.*",
)

_TP6 = "Yang et al. 2023, Tensor Programs VI (Depth-muP)"


@dataclass(frozen=True)
class DepthScaling:
    """The depth factors of every parameter, and what they rest on.

    Attributes:
        blocks: the model's residual blocks :math:`L`.
        base_blocks: the base's :math:`L_b`.
        branch_outputs: the parameters the branch multiplier is folded into.
        block_indices: the block indices of the residual blocks.
        optimizer: ``adam`` or ``sgd``.
    """

    blocks: int
    base_blocks: int
    branch_outputs: frozenset[str]
    block_indices: frozenset[int]
    optimizer: Optimizer

    @property
    def ratio(self) -> float:
        """:math:`r = L_b / L`."""
        return self.base_blocks / self.blocks

    def std_factor(self, site: ParameterSite) -> float:
        """:math:`\\sqrt r` for a branch output, else 1."""
        return math.sqrt(self.ratio) if site.name in self.branch_outputs else 1.0

    def lr_factor(self, site: ParameterSite) -> float:
        """:math:`r` for a branch output, :math:`\\sqrt r` (Adam) or 1 (SGD) inside a block."""
        if site.name in self.branch_outputs:
            return self.ratio
        if site.depth in self.block_indices and self.optimizer == "adam":
            return math.sqrt(self.ratio)
        return 1.0

    def source(self, site: ParameterSite) -> str:
        """The depth rule that applies to ``site``, or ``""`` outside the blocks."""
        if site.name in self.branch_outputs:
            return f"branch output x sqrt(L_b/L) folded in: {_TP6}"
        if site.depth in self.block_indices:
            return f"residual block: {_TP6}"
        return ""

    def notes(self) -> tuple[str, ...]:
        """What was folded into the model's parameters, and what the user must check."""
        shown = sorted(self.branch_outputs)
        listed = ", ".join(shown[:4]) + (f", ... ({len(shown)} in all)" if len(shown) > 4 else "")
        return (
            f"depth-mup: L = {self.blocks} residual blocks, base L_b = {self.base_blocks}; the "
            f"branch multiplier sqrt(L_b/L) = {math.sqrt(self.ratio):.4g} is folded into the "
            f"branch output layers ({listed}): init std x sqrt(L_b/L), lr x L_b/L. Exact only "
            "if each of them is linear and its output is added to the residual stream; a branch "
            "ending in a norm or an activation needs x + sqrt(L_b/L) * f(x) in its forward.",
            "depth-mup: Tensor Programs VI proves depth transfer for one-layer blocks; with "
            "deeper blocks (attention + MLP) no parametrization is fully depth-consistent.",
        )


def _branch_outputs(sites: Sequence[ParameterSite], patterns: Sequence[str]) -> list[str]:
    return [
        site.name
        for site in sites
        if site.depth is not None
        and site.role in ("weight", "bias")
        and any(fnmatch.fnmatchcase(site.name, pattern) for pattern in patterns)
    ]


def _count_blocks(sites: Sequence[ParameterSite], names: Sequence[str]) -> set[int]:
    depth = {site.name: site.depth for site in sites}
    return {index for name in names if (index := depth[name]) is not None}


def depth_scalings(
    sites: Sequence[ParameterSite],
    *,
    optimizer: Optimizer,
    branch_outputs: Sequence[str] | None,
    base_sites: Sequence[ParameterSite] | None,
    base_depth: int | None,
) -> DepthScaling:
    """The depth factors for ``sites`` (see the module docstring).

    Args:
        sites: the model's parameters.
        optimizer: ``adam`` or ``sgd``.
        branch_outputs: glob patterns naming the last layer of each residual branch
            (default :data:`DEFAULT_BRANCH_OUTPUTS`).
        base_sites: the base model's parameters: :math:`L_b` is counted the same way there.
        base_depth: :math:`L_b` given directly (default: the base's count, else 1, i.e. the
            absolute multiplier :math:`1/\\sqrt L`).

    Raises:
        ConfigError: no branch output layer found, or a base deeper than the model.
    """
    patterns = tuple(DEFAULT_BRANCH_OUTPUTS if branch_outputs is None else branch_outputs)
    names = _branch_outputs(sites, patterns)
    indices = _count_blocks(sites, names)
    if not indices:
        raise ConfigError(
            "parametrize 'depth-mup': no residual branch output layer found (patterns "
            f"{list(patterns)}, inside numbered blocks such as 'blocks.3.'). Name the last layer "
            "of each residual branch with branch_outputs=['*.proj.*', ...]."
        )
    if base_depth is None and base_sites is not None:
        base_depth = len(_count_blocks(base_sites, _branch_outputs(base_sites, patterns)))
    base_blocks = 1 if base_depth is None else base_depth
    if isinstance(base_blocks, bool) or not isinstance(base_blocks, int) or base_blocks < 1:
        raise ConfigError(f"parametrize: base_depth must be a positive int, got {base_depth!r}.")
    if base_blocks > len(indices):
        raise ConfigError(
            f"parametrize 'depth-mup': the base has {base_blocks} residual blocks, more than the "
            f"model's {len(indices)}; the base must be the smaller (shallower) model."
        )
    return DepthScaling(
        blocks=len(indices),
        base_blocks=base_blocks,
        branch_outputs=frozenset(names),
        block_indices=frozenset(indices),
        optimizer=optimizer,
    )
