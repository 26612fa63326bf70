"""The initializations a sweep compares, by name.

========================  ===================================================================
name                      what it does
========================  ===================================================================
a preset                  ``torch-default``, ``xavier``, ``kaiming`` (alias ``he``), ``lecun``,
                          ``orthogonal``, ``zero-init-residual``, ``fixup``, ``gpt2``
``auto``                  activation-aware (He / LeCun / Xavier by the following activation)
``zeros``                 every weight and bias 0 (the symmetric classic)
``normal:STD``            every weight N(0, STD^2), biases 0 (``normal:1``, ``normal:0.01``)
``lsuv``                  orthogonal, then LSUV on the sweep's first training batch
========================  ===================================================================
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from initlab.errors import ConfigError, UnknownNameError, did_you_mean
from initlab.plan import init_model
from initlab.plan.plan import Plan
from initlab.plan.presets import PRESET_NAMES
from initlab.plan.rules import rule

__all__ = ["INIT_NAMES", "check_init", "init_by_name"]

INIT_NAMES = (*PRESET_NAMES, "he", "zeros", "normal:STD", "lsuv")


def _weights_and_zero_bias(scheme: str, **params: Any) -> Plan:
    return Plan(
        [rule(role="weight", scheme=scheme, **params), rule(role="bias", scheme="zeros")],
        default="auto",
        name=scheme,
        warn_unused=False,
    )


def _normal_std(name: str) -> float:
    text = name.strip().split(":", 1)[1]
    try:
        std = float(text)
    except ValueError:
        std = math.nan
    if not (math.isfinite(std) and std >= 0):
        raise ConfigError(
            f"init {name!r}: expected normal:STD with STD a finite number >= 0, got {text!r}; "
            "e.g. normal:0.01."
        )
    return std


def check_init(name: str) -> str:
    """The canonical form of the init called ``name``, checked without building a model.

    Raises:
        UnknownNameError: an unknown name.
        ConfigError: ``normal:STD`` whose STD is not a finite number >= 0.
    """
    key = name.strip().lower()
    if key == "he":
        return "kaiming"
    if key.startswith("normal:"):
        _normal_std(key)
        return key
    if key in PRESET_NAMES or key in ("zeros", "lsuv"):
        return key
    raise UnknownNameError(did_you_mean("init", name, INIT_NAMES))


def init_by_name(
    model: nn.Module, name: str, *, seed: int, batch: torch.Tensor | None = None
) -> None:
    """Initialize ``model`` in place with the initialization called ``name``.

    Args:
        model: the model.
        name: see the module docstring.
        seed: the seed of the parameters' streams.
        batch: a training batch, needed by ``lsuv``.

    Raises:
        UnknownNameError: an unknown name.
        ConfigError: ``normal:STD`` with a bad STD, or ``lsuv`` without a batch.
    """
    key = check_init(name)
    if key in PRESET_NAMES:
        init_model(model, key, seed=seed)
    elif key == "zeros":
        _weights_and_zero_bias("zeros").apply(model, seed=seed)
    elif key.startswith("normal:"):
        _weights_and_zero_bias("normal", std=_normal_std(key)).apply(model, seed=seed)
    else:  # lsuv
        if batch is None:
            raise ConfigError("init 'lsuv' needs a data batch to calibrate on.")
        from initlab.lsuv import lsuv

        lsuv(model, batch, seed=seed, progress=False)
