r"""Presets that switch residual branches off or start from zeros and ones.

====================  ===========================================================================
preset                source
====================  ===========================================================================
``rezero``            Bachlechner et al. (2020), "ReZero is All You Need" (``resweight = 0``,
                      ``majumderb/rezero``); De & Smith (2020), SkipInit (alias ``skipinit``)
``zero``              Zhao, Schäfer & Anandkumar (2022), ZerO (:mod:`.zero_init`)
``small-init-emb``    BlinkDL, ``BlinkDL/SmallInitEmb`` ``README.md``/``model.py`` and RWKV-LM
                      (``nn.init.uniform_(emb.weight, a=-1e-4, b=1e-4)``)
====================  ===========================================================================

T-Fixup and DeepNet, for very deep transformers, are in :mod:`.deep_transformers`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

from torch import nn

from initlab.errors import ConfigError
from initlab.plan.plan import Plan
from initlab.plan.recipes.zero_init import zero_plan
from initlab.plan.rules import rule

__all__ = ["RECIPES", "RESIDUAL_GAIN_NAMES"]


# --- ReZero / SkipInit --------------------------------------------------------------------------
RESIDUAL_GAIN_NAMES = (
    "resweight",
    "res_weight",
    "rezero_weight",
    "rezero_alpha",
    "alpha",
    "skip_gain",
    "skipinit_gain",
    "skipinit_alpha",
    "residual_gain",
    "residual_weight",
    "residual_scale",
    "res_scale",
    "gain",
)


def _residual_gains(preset: str, names: Sequence[str] | None) -> Plan:
    chosen = tuple(RESIDUAL_GAIN_NAMES if names is None else names)
    if not chosen or not all(isinstance(name, str) and name for name in chosen):
        raise ConfigError(
            f"{preset} preset: names must be a non-empty list of parameter names such as "
            f"['resweight'], got {names!r}."
        )
    gain = rule(
        regex=rf"(^|\.)({'|'.join(map(re.escape, chosen))})$", role="other", scheme="zeros"
    )
    return Plan([gain], default="keep", name=preset, warn_unused=False)


def _rezero(model: nn.Module | None, names: Sequence[str] | None = None) -> Plan:
    r"""ReZero (Bachlechner et al., 2020): every residual branch starts switched off,
    :math:`x_{l+1} = x_l + \alpha_l F(x_l)` with :math:`\alpha_l = 0`.

    The gains are parameters of role ``other`` (not a layer's weight or bias, not a norm's)
    whose own name is one of ``names`` (default :data:`RESIDUAL_GAIN_NAMES`: ``resweight`` as
    in ``majumderb/rezero``, ``alpha``, ``skip_gain``, ``gain``...): 0. Everything else is kept:
    the model's own init (ReZero keeps its layers' defaults). A model without such a parameter
    shows every row as ``default keep`` and the rule under the table's unused rules.

    Options:
        names: the gain parameters' own names (the last component of their qualified name).

    Raises:
        ConfigError: ``names`` empty or not strings.
    """
    return _residual_gains("rezero", names)


def _skipinit(model: nn.Module | None, names: Sequence[str] | None = None) -> Plan:
    r"""SkipInit (De & Smith, 2020, "Batch Normalization Biases Residual Blocks Towards the
    Identity Function in Deep Networks"): the scalar multiplier at the end of each residual
    branch is 0; the same rule as ``rezero`` (SkipInit draws the rest with He's init: the
    model's own, kept here)."""
    return _residual_gains("skipinit", names)


# --- SmallInitEmb -------------------------------------------------------------------------------
def _small_init_emb(model: nn.Module | None, bound: float = 1e-4) -> Plan:
    r"""SmallInitEmb (BlinkDL; ``BlinkDL/SmallInitEmb``, RWKV-LM): every embedding
    :math:`U(-b, b)` with :math:`b = 10^{-4}`; everything else kept.

    The reference puts a LayerNorm right after the embedding, so the tiny vectors are normalized
    to unit scale and their direction moves fast in the first steps: that LayerNorm is the
    model's part.

    Options:
        bound: :math:`b`.
    """
    if isinstance(bound, bool) or not isinstance(bound, int | float) or not 0 < bound < math.inf:
        raise ConfigError(f"small-init-emb preset: bound must be a number > 0, got {bound!r}.")
    return Plan(
        [rule(role="embedding", scheme="uniform", a=-float(bound), b=float(bound))],
        default="keep",
        name="small-init-emb",
        warn_unused=False,
    )


RECIPES: dict[str, Callable[..., Plan]] = {
    "rezero": _rezero,
    "skipinit": _skipinit,
    "zero": zero_plan,
    "small-init-emb": _small_init_emb,
}
"""Preset name -> builder (model, **options) -> Plan."""
