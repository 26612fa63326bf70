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
"""

from __future__ import annotations

import dataclasses

from initlab.layers.structure import Block
from initlab.plan.assignments import Part
from initlab.plan.sites import ParameterSite
from initlab.schemes import Constant, Orthogonal, Scheme, XavierNormal, Zeros
from initlab.schemes.variance import HeNormal, HeUniform

__all__ = ["block_parts"]


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
            _block_scheme(site, block, scheme, auto),
            axis=block.axis,
        )
        for block in site.blocks
    )


def _block_scheme(site: ParameterSite, block: Block, scheme: Scheme, auto: bool) -> Scheme:
    if auto:
        if site.role == "bias":
            forget = block.label == "f" and site.attribute.startswith("bias_ih")
            return Constant(1.0) if forget else Zeros()
        return Orthogonal() if block.recurrent else XavierNormal()
    if block.activation is not None and isinstance(scheme, HeNormal | HeUniform):
        return dataclasses.replace(scheme, nonlinearity=block.activation, a=0.0)
    return scheme
