r"""Short regular expressions that match exactly a chosen set of parameter names.

A recipe that found its parameters on the model (T-Fixup's value projections, ZerO's widening
layers, timm's qkv) gives them one rule; :func:`names_regex` writes that rule's pattern so the
dry-run table and a saved plan stay readable: ``^encoder\.layers\.\d+\.(self_attn\.v_proj|fc1)
\.weight$`` rather than every name listed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["names_regex"]


def names_regex(names: Iterable[str], among: Iterable[str]) -> str:
    r"""A regular expression that matches exactly ``names`` out of ``among``, short to read.

    Integer components become ``\d+`` wherever every name of ``among`` that the generalized form
    matches is one of ``names``; the rest are listed. Forms that share their start up to the first
    ``\d+`` and their last component are merged:
    ``^encoder\.layers\.\d+\.(self_attn\.v_proj|fc1)\.weight$``.

    Example:
        >>> names_regex(["h.0.w", "h.1.w"], ["h.0.w", "h.1.w", "h.0.b"])
        '^h\\.\\d+\\.w$'
    """
    wanted = list(dict.fromkeys(names))
    chosen = set(wanted)
    candidates = set(among) | chosen
    forms: list[list[str]] = []
    for name in wanted:
        general = [r"\d+" if p.isdigit() else re.escape(p) for p in name.split(".")]
        covered = {c for c in candidates if re.fullmatch(r"\.".join(general), c)}
        form = general if covered <= chosen else [re.escape(p) for p in name.split(".")]
        if form not in forms:
            forms.append(form)
    merged: dict[tuple[str, str], list[str]] = {}
    patterns: list[str] = []
    for form in forms:
        if len(form) < 3:  # nothing between a head and the last component to merge
            patterns.append(r"\.".join(form))
            continue
        cut = min(form.index(r"\d+") + 1, len(form) - 2) if r"\d+" in form else 0
        head, middle = r"\.".join(form[:cut]), r"\.".join(form[cut:-1])
        merged.setdefault((head, form[-1]), []).append(middle)
    patterns += [_joined(head, middles, last) for (head, last), middles in merged.items()]
    return "^(" + "|".join(patterns) + ")$" if len(patterns) > 1 else f"^{patterns[0]}$"


def _joined(head: str, middles: list[str], last: str) -> str:
    middle = middles[0] if len(middles) == 1 else "(" + "|".join(middles) + ")"
    return r"\.".join(part for part in (head, middle, last) if part)
