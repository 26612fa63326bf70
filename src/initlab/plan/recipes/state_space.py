r"""Mamba (Gu & Dao, 2023): the selective state-space layer's init as the ``mamba`` preset.

The preset is :func:`mamba`; its law per parameter is in its docstring. Its two laws of its own,
``mamba_dt_bias`` (the step's bias) and ``s4d_real_log`` (``A_log``), are schemes:
:mod:`initlab.schemes.state_space`.

Reference: state-spaces/mamba ``mamba_ssm/modules/mamba_simple.py`` (``Mamba.__init__``) and
``mamba_ssm/models/mixer_seq_simple.py`` (``_init_weights``).
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Any

from torch import nn

from initlab.errors import ConfigError
from initlab.plan.plan import Plan
from initlab.plan.recipes.role_rules import count_layers
from initlab.plan.rules import Rule, rule
from initlab.schemes.state_space import MambaDtBias

__all__ = ["mamba"]

_DT_INITS = ("random", "constant")
#: The parameters of a Mamba mixer: a model with none of them is not one the preset knows.
_MIXER = re.compile(r"(^|\.)(A_log|dt_bias|dt_proj\.weight)$")
_TORCH_LAYERS = ("Linear", "Conv1d")


def _positive(option: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ConfigError(f"mamba preset: {option} must be a finite number > 0, got {value!r}.")
    return float(value)


def _warn_no_mixer(model: nn.Module | None) -> None:
    """Warn when ``model`` has no Mamba mixer (no ``A_log``, ``dt_bias``, ``dt_proj``): the
    preset then gives only its generic rules (torch's own init, zero biases)."""
    if model is None or any(_MIXER.search(name) for name, _ in model.named_parameters()):
        return
    warnings.warn(
        f"mamba preset: no Mamba mixer (A_log, dt_bias, dt_proj) in {type(model).__name__}, "
        "so it gets only the generic rules (torch's own init for Linear/Conv1d, zero biases). "
        "The dry-run table's source column shows the rule each parameter got.",
        stacklevel=4,
    )


def _dt_weight_rules(model: nn.Module | None, dt_init: str, dt_scale: float) -> list[Rule]:
    r"""``dt_proj.weight``: :math:`U(\pm s/\sqrt{r})` or the constant :math:`s/\sqrt{r}`."""
    if dt_init not in _DT_INITS:
        raise ConfigError(
            f"mamba preset: dt_init must be 'random' or 'constant', got {dt_init!r}."
        )
    if dt_init == "random":
        # bound sqrt(3 scale / fan_in) = dt_scale / sqrt(dt_rank): exact for any dt_rank
        return [rule(regex=r"(^|\.)dt_proj\.weight$", scheme="variance_scaling",
                     scale=dt_scale**2 / 3.0, mode="fan_in", distribution="uniform")]  # fmt: skip
    if model is None:
        raise ConfigError(
            "mamba preset: dt_init='constant' reads dt_rank from the model: pass it."
        )
    return [
        rule(f"{name}.weight", "constant", value=dt_scale / math.sqrt(module.in_features))
        for name, module in model.named_modules()
        if name.rsplit(".", 1)[-1] == "dt_proj" and isinstance(module, nn.Linear)
    ]


def mamba(
    model: nn.Module | None,
    n_layer: int | None = None,
    initializer_range: float = 0.02,
    rescale_prenorm_residual: bool = True,
    n_residuals_per_layer: int = 1,
    dt_init: str = "random",
    dt_scale: float = 1.0,
    dt_min: float = 0.001,
    dt_max: float = 0.1,
    dt_init_floor: float = 1e-4,
) -> Plan:
    r"""Mamba's init (Gu & Dao, 2023; state-spaces/mamba ``mamba_ssm/modules/mamba_simple.py``
    ``Mamba.__init__`` and ``mamba_ssm/models/mixer_seq_simple.py`` ``_init_weights``).

    :math:`r` = ``dt_rank`` (``dt_proj``'s input width), :math:`s` = ``dt_scale``, :math:`L` =
    ``n_layer``, :math:`k` = ``n_residuals_per_layer``:

    ==================================  ===================================================
    parameter                           law
    ==================================  ===================================================
    ``dt_proj.weight``                  ``random``: :math:`U(\pm s/\sqrt r)`; ``constant``:
                                        :math:`s/\sqrt r`
    ``dt_proj.bias`` (``dt_bias``)      ``mamba_dt_bias``: :math:`\operatorname{softplus}^{-1}`
                                        of :math:`\max(e^{U(\log\Delta_{min},
                                        \log\Delta_{max})}, \Delta_{floor})`
    ``A_log`` ``(d_inner, d_state)``    ``s4d_real_log``: :math:`\log(1, \dots, d_{state})`
                                        per channel
    ``D``                               1
    ``out_proj.weight``,                ``rescale_prenorm_residual``: torch's Linear init
    ``fc2.weight``                      :math:`U(\pm 1/\sqrt{n_{in}})` divided by
                                        :math:`\sqrt{kL}`
    other Linear / Conv1d weights,      torch's own: :math:`U(\pm 1/\sqrt{fan_{in}})`
    Conv1d biases                       (``kaiming_uniform_(a=sqrt 5)``), as Mamba keeps them
    Linear biases                       0
    embedding                           :math:`\mathcal N(0, \sigma^2)`,
                                        :math:`\sigma` = ``initializer_range``
    norms                               1 / 0
    ==================================  ===================================================

    ``MambaLMHeadModel`` runs ``_init_weights`` twice, the second time with the default
    :math:`k = 1`, so its released models end with :math:`\sqrt{L}` (the default here); a bare
    ``MixerModel`` with an MLP ends with :math:`k = 2`. ``A_log``, ``D`` and ``dt_proj.bias``
    must have **no weight decay** (Mamba sets ``_no_weight_decay``): a Plan says how to draw, not
    how to train, so it cannot carry that; initlab's decay groups
    (:func:`initlab.train.regularize.parameter_groups`) decay the role ``weight`` only, which
    none of the three has. Mamba-2's 1-D ``A_log`` (:math:`\log U(1, 16)` per head) is kept.

    Args:
        model: the model, or ``None`` (then ``n_layer`` is needed).
        n_layer: :math:`L`, read from ``model.config.n_layer`` or counted when not given.
        initializer_range: the embedding's std.
        rescale_prenorm_residual: rescale ``out_proj``/``fc2`` (Mamba's default).
        n_residuals_per_layer: :math:`k`.
        dt_init: ``random`` or ``constant``.
        dt_scale: :math:`s`.
        dt_min: :math:`\Delta_{min}`.
        dt_max: :math:`\Delta_{max}`.
        dt_init_floor: :math:`\Delta_{floor}`.
    """
    std = _positive("initializer_range", initializer_range)
    if not isinstance(rescale_prenorm_residual, bool):
        raise ConfigError(
            f"mamba preset: rescale_prenorm_residual must be true or false, got "
            f"{rescale_prenorm_residual!r}."
        )
    if isinstance(n_residuals_per_layer, bool) or n_residuals_per_layer not in (1, 2):
        raise ConfigError(
            f"mamba preset: n_residuals_per_layer must be 1 or 2, got {n_residuals_per_layer!r}."
        )
    try:
        dt_bias = MambaDtBias(dt_min, dt_max, dt_init_floor)
    except ConfigError as error:
        raise ConfigError(f"mamba preset: {error}") from None
    _warn_no_mixer(model)
    rules = _dt_weight_rules(model, dt_init, _positive("dt_scale", dt_scale))
    rules += [
        rule(regex=r"(^|\.)(dt_proj\.bias|dt_bias)$", scheme=dt_bias),
        rule(regex=r"(^|\.)A_log$", scheme="s4d_real_log"),
        rule(regex=r"(^|\.)D$", scheme="ones"),
    ]
    if rescale_prenorm_residual:
        depth = count_layers(model, n_layer, preset="mamba", option="n_layer")
        rules.append(rule(regex=r"(^|\.)(out_proj|fc2)\.weight$", scheme="he_uniform",
                          a=math.sqrt(5.0), fans="torch",
                          multiplier=1.0 / math.sqrt(n_residuals_per_layer * depth)))  # fmt: skip
    return Plan([*rules, *_torch_and_zero_rules(std)], default="keep", name="mamba",
                warn_unused=False)  # fmt: skip


def _torch_and_zero_rules(std: float) -> list[Rule]:
    """What ``_init_weights`` and torch's constructors leave on the other parameters."""
    return [
        rule(types="Linear", role="bias", scheme="zeros"),
        rule(
            types=_TORCH_LAYERS, role="weight", scheme="he_uniform", a=math.sqrt(5.0), fans="torch"
        ),
        rule(
            types="Conv1d",
            role="bias",
            scheme="variance_scaling",
            scale=1.0 / 3.0,
            distribution="uniform",
            fans="torch",
        ),
        rule(role="embedding", scheme="normal", std=std),
        rule(role="norm_weight", scheme="ones"),
        rule(role="norm_bias", scheme="zeros"),
    ]
