r"""Attention logits under muP: :math:`1/d_{head}` instead of :math:`1/\sqrt{d_{head}}`.

muP scales attention logits as :math:`q^\top k / d_{head}` (Yang et al., 2022, "Tensor Programs
V", Section 6 and Appendix D.4): as :math:`d_{head}` grows, :math:`q` and :math:`k` become
correlated during training, so their dot product grows like :math:`d_{head}`, not
:math:`\sqrt{d_{head}}`. That is a change to the attention's forward, which initlab does not
make: it is reported, with the value to use, for every attention module whose head dimension
differs from the base's. Relative to the base (head dimension :math:`d_b`), the scale
:math:`\sqrt{d_b}/d_{head}` keeps the base model's :math:`1/\sqrt{d_b}` at the base width.

Recognized: ``nn.MultiheadAttention`` (no scale option: a custom attention is needed, e.g.
``F.scaled_dot_product_attention(q, k, v, scale=...)``), and Hugging Face attention modules
with a ``scaling`` attribute and ``head_dim`` or ``attention_head_size`` (GPT-2, BERT, LLaMA...:
``module.scaling = ...`` after building the model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

__all__ = ["AttentionHeads", "attention_heads", "attention_notes"]


@dataclass(frozen=True)
class AttentionHeads:
    """One attention module's head dimension and how its logits are scaled.

    Attributes:
        module_name: the module's qualified name.
        module_type: its class name.
        head_dim: :math:`d_{head}`.
        settable: whether the scale is an attribute (``scaling``) one can set.
    """

    module_name: str
    module_type: str
    head_dim: int
    settable: bool


def _head_dim(module: nn.Module) -> int | None:
    if isinstance(module, nn.MultiheadAttention):
        return int(module.head_dim)
    if not isinstance(getattr(module, "scaling", None), float | int):
        return None
    for attribute in ("head_dim", "attention_head_size"):
        value = getattr(module, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def attention_heads(model: nn.Module) -> dict[str, AttentionHeads]:
    """Every attention module of ``model`` initlab recognizes, by qualified name."""
    found = {}
    for name, module in model.named_modules():
        head_dim = _head_dim(module)
        if head_dim is not None:
            settable = not isinstance(module, nn.MultiheadAttention)
            found[name] = AttentionHeads(name, type(module).__name__, head_dim, settable)
    return found


def attention_notes(
    heads: dict[str, AttentionHeads], base_head_dims: dict[str, float] | None
) -> tuple[str, ...]:
    """One note per attention module whose head dimension grows with width.

    Args:
        heads: the model's attention modules (:func:`attention_heads`).
        base_head_dims: each module's head dimension in the base model, by name; ``None``
            when there is no base (then every module is reported, with :math:`1/d_{head}`).
    """
    notes = []
    for name, head in heads.items():
        base = None if base_head_dims is None else base_head_dims.get(name)
        if base is not None and base == head.head_dim:
            continue
        d = head.head_dim
        target = 1.0 / d if base is None else math.sqrt(base) / d
        formula = "1/d_head" if base is None else f"sqrt({base:g})/d_head"
        where = f"attention {name or '(model)'!r} ({head.module_type}, d_head {d})"
        how = (
            f"set {name or 'model'}.scaling = {target:.6g}"
            if head.settable
            else "nn.MultiheadAttention has no scale option: use an attention that calls "
            f"F.scaled_dot_product_attention(q, k, v, scale={target:.6g})"
        )
        notes.append(
            f"{where}: its logits are scaled 1/sqrt(d_head) = {1 / math.sqrt(d):.6g}; muP needs "
            f"{formula} = {target:.6g} (Tensor Programs V, Sec. 6), a forward change initlab "
            f"does not make: {how}."
        )
    return tuple(notes)
