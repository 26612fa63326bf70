"""Buffers left as they were: one context manager for every pass that runs a model to look at it.

Running a model to measure it (activation detection, the doctor, the Jacobian, LSUV) must not
change it, yet a training-mode forward pass moves BatchNorm's running statistics and counts
``num_batches_tracked``, and some modules rebind a buffer to a new tensor. :func:`buffers_restored`
puts back, on exit and even when the body raises, every module's buffers: the same tensor objects
under the same names, holding the values they held on entry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.parameter import is_lazy

__all__ = ["buffers_restored"]


@contextlib.contextmanager
def buffers_restored(model: nn.Module) -> Iterator[None]:
    """Restore every buffer of ``model`` (tensor and values) when the block exits.

    A buffer a lazy module has not materialized yet holds no values to save: it keeps what the
    block gives it (its first forward pass materializes it).

    Args:
        model: the model; its buffers are saved on entry (one clone each).

    Example:
        >>> with buffers_restored(model):
        ...     model.train()(batch)   # BatchNorm running statistics move ...
        >>> # ... and are back to their values here
    """
    held = [(module, dict(module._buffers)) for module in model.modules()]
    values = [
        (buffer, buffer.detach().clone())
        for _, buffers in held
        for buffer in buffers.values()
        if buffer is not None and not is_lazy(buffer)
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for module, buffers in held:
                module._buffers.clear()
                module._buffers.update(buffers)
            for buffer, value in values:
                buffer.copy_(value)
