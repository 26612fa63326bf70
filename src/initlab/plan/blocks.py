r"""Stacked weights, block by block: attention q/k/v and recurrent gates.

``nn.MultiheadAttention.in_proj_weight`` is three ``(d, d)`` projections stacked; GPT-2's
``c_attn`` holds them side by side (columns of its ``(d, 3d)`` ``(in, out)`` weight); an LSTM's
``weight_ih`` is four gates of ``(h, in)``. Read as one matrix, their fans are wrong (Xavier on
an LSTM's ``(4h, in)`` uses fan_out :math:`4h`: std :math:`\sqrt{2/(in + 4h)}` where each gate
needs :math:`\sqrt{2/(in + h)}`), and an orthogonal init makes the *stack* orthogonal, not each
gate. So a plan draws each block on its own, with the block's fans (:class:`initlab.layers.Block`).

Under ``auto`` (after Jozefowicz et al., 2015, and Keras' LSTM defaults, per gate):

===================================  ==========================================================
block                                scheme
===================================  ==========================================================
input-to-hidden gate, q/k/v          ``xavier_normal`` (gain 1) with the block's fans
hidden-to-hidden gate                ``orthogonal`` (each ``(h, h)`` gate orthogonal)
LSTM ``bias_ih`` forget gate         ``constant(1)`` (so the cell remembers at init); the
                                     ``bias_hh`` forget gate and every other bias 0
===================================  ==========================================================

An explicit scheme is drawn per block too; a He scheme takes each gate's own activation
(sigmoid or tanh) for its gain, never the ReLU gain it was written with.

A rule may target some blocks only (``rule(..., blocks=("v",))``, :mod:`initlab.plan.rules`):
then each block takes its own rule, and a block's multiplier, when the blocks' rules differ in
it, is drawn into the block's law (:func:`scaled_law`: :math:`m X` for :math:`X` the law's
variable), since the row's one multiplier cannot scale one block. ``rule(..., split=N)``
declares ``N`` equal blocks (:func:`split_site`) on a weight initlab does not know as stacked.
The values of a block depend only on the seed, the parameter's name and shape, the block's
scheme (and multiplier) and where the block lies: each block is the box of the parameter's one
counter stream it covers, so a block that falls through to a rule keeps the bits that rule
gives it alone, whatever the other blocks take. A block's own multiplier drawn into its law
gives the same law as drawing and then multiplying, not the same last bits.
"""

from __future__ import annotations

import dataclasses

from initlab.errors import ConfigError
from initlab.fans import compute_fans
from initlab.layers.structure import Block, equal_blocks
from initlab.plan.assignments import Part
from initlab.plan.sites import ParameterSite
from initlab.schemes import Constant, Normal, Orthogonal, Scheme, Uniform, XavierNormal, Zeros
from initlab.schemes.elementwise import ElementwiseLaw, TruncatedNormal
from initlab.schemes.variance import HeNormal, HeUniform

__all__ = ["block_parts", "block_scheme", "scaled_law", "split_site"]


def block_parts(site: ParameterSite, scheme: Scheme, *, auto: bool) -> tuple[Part, ...]:
    """Each block of ``site`` as a :class:`Part` with the scheme it is drawn from (empty when
    the parameter has no blocks).

    Args:
        site: the parameter.
        scheme: the scheme its rule (or ``auto``) gave the whole parameter.
        auto: the scheme came from ``auto``: use the per-block table of the module docstring.
    """
    return tuple(
        Part(
            block.label,
            block.start,
            block.stop,
            block_scheme(site, block, scheme, auto=auto),
            axis=block.axis,
        )
        for block in site.blocks
    )


def block_scheme(site: ParameterSite, block: Block, scheme: Scheme, *, auto: bool) -> Scheme:
    """The scheme ``block`` of ``site`` is drawn from, given its rule's ``scheme`` (``auto``:
    the table of the module docstring, whatever ``scheme`` is)."""
    if auto:
        if site.role == "bias":
            forget = block.label == "f" and site.attribute.startswith("bias_ih")
            return Constant(1.0) if forget else Zeros()
        return Orthogonal() if block.recurrent else XavierNormal()
    if block.activation is not None and isinstance(scheme, HeNormal | HeUniform):
        return dataclasses.replace(scheme, nonlinearity=block.activation, a=0.0)
    return scheme


def split_site(site: ParameterSite, count: int) -> ParameterSite:
    """``site`` as ``count`` equal blocks along its output axis (rows of a torch weight, columns
    of GPT-2's ``(in, out)`` ``Conv1D``, a bias's only axis), labelled ``0`` to ``count - 1``,
    with the fans of one block: fan_out :math:`out/N` where the layer's is :math:`out`.

    Raises:
        ConfigError: a parameter that has blocks already, or no output axis ``count`` divides.
    """
    if site.blocks:
        labels = ", ".join(block.label for block in site.blocks)
        raise ConfigError(
            f"split={count}: {site.name!r} is stacked already (blocks {labels}); drop split "
            "and name the blocks with blocks=... instead."
        )
    out_axis = 1 if site.layout == "keras" else 0
    axis = 0 if len(site.shape) == 1 else out_axis
    fan_shape = site.fan_shape
    if (
        site.role not in ("weight", "bias")
        or site.layout not in ("torch", "keras")
        or (len(fan_shape) < 2 or not site.shape)
    ):
        raise ConfigError(
            f"split={count}: {site.name!r} ({site.module_type}, role {site.role}) is not the "
            "weight or bias of a Linear-like or convolution layer; split splits their outputs."
        )
    if fan_shape[out_axis] % count or site.shape[axis] % count:
        raise ConfigError(
            f"split={count}: {site.name!r} has {fan_shape[out_axis]} outputs, which do not "
            f"split into {count} equal blocks."
        )
    block_shape = tuple(
        size // count if index == out_axis else size for index, size in enumerate(fan_shape)
    )
    fans = compute_fans(block_shape, layout=site.layout, groups=site.groups)
    note = f"split in {count} blocks: fans per block {fans.fan_in}, {fans.fan_out}"
    return dataclasses.replace(
        site,
        blocks=equal_blocks(site.shape[axis], count, axis=axis),
        fans=fans,
        fans_note="; ".join(filter(None, [site.fans_note, note])),
    )


def scaled_law(law: ElementwiseLaw, factor: float) -> ElementwiseLaw:
    """The law of :math:`m X` for :math:`X \\sim` ``law`` and :math:`m` = ``factor``: a
    constant, uniform, normal or truncated normal law scaled (bounds swapped for m < 0).

    Example:
        >>> scaled_law(Uniform(-1.0, 1.0), 0.5)
        Uniform(a=-0.5, b=0.5)
    """
    if isinstance(law, Constant):
        return Constant(law.value * factor)
    if isinstance(law, Uniform):
        low, high = sorted((law.a * factor, law.b * factor))
        return Uniform(low, high)
    if isinstance(law, Normal) and factor:
        return Normal(law.mean * factor, law.std * abs(factor))
    if isinstance(law, TruncatedNormal) and factor:
        low, high = sorted(value * factor for value in law.interval)
        return TruncatedNormal(law.mean * factor, law.std * abs(factor), low, high)
    if not factor:
        return Zeros()
    raise ConfigError(f"a block's multiplier cannot scale the law {law}.")
