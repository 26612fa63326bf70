"""Checks of the arguments many entry points share: seeds, models, tensors, generators, devices.

Each check runs where the argument enters initlab, before any work, and raises a
:class:`~initlab.errors.ConfigError` whose message names the function, the argument, the value
received, what is allowed and the way out, instead of a stack trace from deep inside torch.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

import torch
from torch import nn

from initlab.errors import ConfigError

__all__ = [
    "check_device",
    "check_float_dtype",
    "check_generator",
    "check_module",
    "check_seed",
    "check_tensor",
    "describe_value",
]


def describe_value(value: Any) -> str:
    """``repr`` of ``value`` with its type, shortened: ``'a' (str)``."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def check_seed(where: str, seed: Any, *, name: str = "seed") -> int:
    """``seed`` as an ``int``; a bool, a float (even ``1.0``), ``None`` or a string is refused.

    A float seed would be truncated silently (``1.5`` and ``1`` give the same stream), so only
    integers (Python or NumPy) are taken.
    """
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise ConfigError(
            f"{where}: {name} must be an integer, got {describe_value(seed)}; e.g. {name}=0."
        )
    return int(seed)


def check_module(where: str, model: Any, *, name: str = "model") -> nn.Module:
    """``model`` if it is a ``torch.nn.Module``."""
    if not isinstance(model, nn.Module):
        hint = " (a class: call it, e.g. Model())" if isinstance(model, type) else ""
        raise ConfigError(
            f"{where}: {name} must be a torch.nn.Module, got {describe_value(model)}{hint}."
        )
    return model


def check_tensor(where: str, tensor: Any, *, floating: bool = True) -> torch.Tensor:
    """``tensor`` if it is a ``torch.Tensor`` (of floating or complex dtype if ``floating``)."""
    if not isinstance(tensor, torch.Tensor):
        hint = (
            " Convert it with torch.from_numpy(...), or use initlab.numpy for NumPy arrays."
            if hasattr(tensor, "__array__")
            else ""
        )
        raise ConfigError(
            f"{where}: tensor must be a torch.Tensor, got {describe_value(tensor)}.{hint}"
        )
    if floating and not (tensor.is_floating_point() or tensor.is_complex()):
        raise ConfigError(
            f"{where}: tensor has dtype {tensor.dtype}, but random draws need a floating-point "
            "tensor (float32, float64, float16, bfloat16). Initialize a float tensor, e.g. "
            "torch.empty(shape) or tensor.float()."
        )
    return tensor


def check_generator(where: str, generator: Any) -> torch.Generator | None:
    """``generator`` if it is ``None`` or a ``torch.Generator``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ConfigError(
            f"{where}: generator must be a torch.Generator or None, got "
            f"{describe_value(generator)}; e.g. generator=torch.Generator().manual_seed(0)."
        )
    return generator


def check_device(where: str, device: Any) -> torch.device:
    """``device`` as a ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(
            f"{where}: device must be a torch.device or a device string such as 'cpu', "
            f"'cuda' or 'cuda:1', got {describe_value(device)}."
        ) from None


def check_float_dtype(where: str, dtype: Any) -> torch.dtype | None:
    """``dtype`` if it is ``None`` or a floating-point ``torch.dtype``."""
    if dtype is None:
        return None
    if not isinstance(dtype, torch.dtype):
        raise ConfigError(
            f"{where}: dtype must be a torch.dtype, got {describe_value(dtype)}; "
            "e.g. dtype=torch.float32 or torch.bfloat16."
        )
    if not dtype.is_floating_point:
        raise ConfigError(
            f"{where}: dtype {dtype} is not floating; parameters need a floating dtype "
            "(torch.float32, torch.bfloat16, torch.float16, torch.float64)."
        )
    return dtype
