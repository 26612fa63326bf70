r"""Hugging Face ``transformers`` models: initialize what was not loaded, and diagnose them.

``initlab.init_model`` and ``initlab.doctor`` take a ``PreTrainedModel`` as they take any
module (GPT-2's ``Conv1D`` is read as ``(in, out)``, tied embeddings are drawn once under their
first name, ``input_ids`` batches are measured without a Jacobian). This module adds what
needs to know about Hugging Face's own bookkeeping:

.. code-block:: python

    from initlab.integrations.hf import init_pretrained

    model = GPT2ForSequenceClassification.from_pretrained(path)   # `score` is new
    table = init_pretrained(model, "hf-gpt2", seed=0)              # only `score.weight` drawn

**Which parameters count as loaded.** transformers 5.x marks a *tensor* with
``tensor._is_hf_initialized = True`` when ``from_pretrained`` loads it from a checkpoint
(``core_model_loading``) and when it is a tied copy of one
(``mark_tied_weights_as_initialized``); its guarded init functions
(``transformers.initialization.normal_`` and friends) skip such tensors, which is how the
missing ones get initialized and the loaded ones do not. :func:`init_pretrained` follows that
per-tensor rule. The same attribute on a *module* means something else: "``_init_weights``
has already run on this module". ``post_init`` sets it on every module of every model, also
one built from a config with nothing loaded, so it says nothing about where values came from
and is not read. ``force=True`` ignores the flags.

The ``hf-gpt2`` preset (:mod:`initlab.plan.presets`) is GPT-2's own ``_init_weights`` as
rules: start from it and override one rule::

    base = initlab.preset("hf-gpt2", model)
    plan = initlab.Plan([initlab.rule("*.mlp.c_fc.weight", "he_normal"), *base.rules],
                        default=base.default, warn_unused=False)

Needs ``pip install 'initlab[hf]'``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from initlab.errors import ConfigError
from initlab.optional import require
from initlab.plan.apply import apply_table
from initlab.plan.assignments import Assignment, Assignments
from initlab.plan.checkpoint import open_checkpoints
from initlab.plan.plan import Plan
from initlab.plan.presets import as_plan

require("transformers", "initlab.integrations.hf")

__all__ = [
    "HF_INITIALIZED_FLAG",
    "init_pretrained",
    "is_loaded",
    "loaded_parameters",
    "token_batch",
]

HF_INITIALIZED_FLAG = "_is_hf_initialized"


def is_loaded(tensor: torch.Tensor) -> bool:
    """Whether transformers marked ``tensor`` as already initialized (loaded or tied to loaded)."""
    return bool(getattr(tensor, HF_INITIALIZED_FLAG, False))


def loaded_parameters(model: nn.Module) -> tuple[str, ...]:
    """Qualified names of the parameters of ``model`` that transformers marked as loaded."""
    return tuple(name for name, tensor in model.named_parameters() if is_loaded(tensor))


def _keeping_padding_rows(table: Assignments) -> Assignments:
    """``table`` with no row set to 0 after the draw (``zero_padding=False``)."""
    rows = tuple(
        dataclasses.replace(row, site=dataclasses.replace(row.site, zero_rows=())) for row in table
    )
    return dataclasses.replace(table, rows=rows)


def init_pretrained(
    model: nn.Module,
    plan: str | Plan = "auto",
    seed: int = 0,
    *,
    force: bool = False,
    zero_padding: bool = True,
    **options: Any,
) -> Assignments:
    """Initialize the parameters of ``model`` that were not loaded from a checkpoint.

    Every parameter the plan draws is filled exactly as :meth:`Plan.apply` fills it (same
    seed, same values), except those transformers marked ``_is_hf_initialized`` (loaded from
    the checkpoint, or tied to a loaded one), which keep their values unless ``force``. On a
    model built from a config nothing is marked, and the result equals
    ``initlab.init_model(model, plan, seed)``.

    Like ``nn.Embedding.reset_parameters``, HF's ``_init_weights`` and every plan, it sets the
    ``padding_idx`` row of an embedding it draws to 0 after the draw (``zero_padding=False``
    keeps the drawn row; a row copied from a checkpoint is kept as the file has it).

    Args:
        model: a ``PreTrainedModel`` (or any module; flags are read where present).
        plan: a preset name (e.g. ``"hf-gpt2"``), ``"auto"`` or a :class:`~initlab.Plan`.
        seed: the seed of the parameters' streams.
        force: draw the loaded parameters too (ignore the flags).
        zero_padding: zero the ``padding_idx`` row of each embedding that is drawn.
        **options: preset options (``hf-gpt2``: ``n_layer``, ``initializer_range``).

    Returns:
        The table of what was done: loaded parameters appear as kept (scheme ``None``), their
        ``source`` saying so; ``extra["loaded"]`` and ``extra["padding_rows_zeroed"]`` list
        the names.

    Raises:
        UnknownNameError: an unknown preset name.
        ConfigError: options given with a Plan, or a preset that cannot read the model.
    """
    chosen = as_plan(plan, model, **options)

    loaded: list[str] = []

    def keep_loaded(row: Assignment, tensor: torch.Tensor) -> str | None:
        if force or not is_loaded(tensor):
            return None
        if row.scheme is not None:
            loaded.append(row.name)
        return f"kept: loaded ({HF_INITIALIZED_FLAG}); plan said {row.source}"

    with open_checkpoints():  # a checkpoint rule's file: opened once, to resolve and to copy
        resolved = chosen.resolve(model)
        if not zero_padding:
            resolved = _keeping_padding_rows(resolved)
        table = apply_table(model, resolved, seed, skip=keep_loaded)
    zeroed = tuple(row.name for row in table if row.zero_rows)
    return dataclasses.replace(
        table, extra={"loaded": tuple(loaded), "padding_rows_zeroed": zeroed}
    )


def token_batch(
    model: nn.Module, batch_size: int = 8, length: int = 32, seed: int = 0
) -> torch.Tensor:
    """Uniform random ``input_ids`` of shape ``(batch_size, length)`` for ``initlab.doctor``.

    Token ids are drawn from ``range(model.config.vocab_size)`` by their own generator (the
    global RNG is untouched), on the model's device.

    Raises:
        ConfigError: a model without ``config.vocab_size``, or a ``length`` longer than
            ``config.max_position_embeddings`` (``n_positions`` for GPT-2).
    """
    config = getattr(model, "config", None)
    vocab = getattr(config, "vocab_size", None)
    if not isinstance(vocab, int) or vocab < 1:
        raise ConfigError(
            f"token_batch: the model has no config.vocab_size (got {vocab!r}); pass a "
            "PreTrainedModel, or build the input_ids batch yourself."
        )
    if batch_size < 1 or length < 1:
        raise ConfigError(
            f"token_batch: batch_size and length must be >= 1, got {batch_size}, {length}."
        )
    limit = getattr(config, "max_position_embeddings", None)
    if isinstance(limit, int) and length > limit:
        raise ConfigError(
            f"token_batch: length {length} exceeds the model's {limit} positions; "
            f"use length <= {limit}."
        )
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch_size, length), generator=generator)
    return ids.to(device)
