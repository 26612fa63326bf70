"""`Assignments`: a resolved plan, one row per parameter, to print, save, diff and apply."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from initlab.fans import Fans, Layout
from initlab.plan.activations import Activation
from initlab.plan.sites import ParameterSite
from initlab.schemes import Scheme
from initlab.schemes.checkpoint import Checkpoint
from initlab.schemes.elementwise import ElementwiseLaw

if TYPE_CHECKING:
    from rich.text import Text

__all__ = ["Assignment", "Assignments", "Part", "UnusedRule", "zeroed_rows_text"]


@dataclass(frozen=True)
class Part:
    """One block of a stacked parameter (attention q/k/v, a recurrent gate), drawn on its own.

    Attributes:
        label: the block's label (``q``, ``f``...).
        start: its first index along ``axis``.
        stop: one past its last index along ``axis``.
        scheme: the scheme it is drawn from.
        std: the std of its values after the row's multiplier (and its own), when known.
        law: the law each of its elements is drawn from, i.i.d. (before the row's
            multiplier; its own ``multiplier`` included); ``None`` when the scheme builds the
            block as a whole (orthogonal).
        axis: the axis the blocks are stacked along (1 for the columns of GPT-2's ``c_attn``).
        multiplier: the block's own factor, drawn into ``law``, when the rules of a
            parameter's blocks differ in it (1 otherwise: the row's multiplier scales it).
        source: the rule it took, when a parameter's blocks take different rules
            (``rule 0 (... blocks=v)``); empty when the row's rule draws every block.
    """

    label: str
    start: int
    stop: int
    scheme: Scheme
    std: float | None = None
    law: ElementwiseLaw | None = None
    axis: int = 0
    multiplier: float = 1.0
    source: str = ""

    def shape(self, whole: tuple[int, ...]) -> tuple[int, ...]:
        """The block's shape inside a parameter of shape ``whole``."""
        return (*whole[: self.axis], self.stop - self.start, *whole[self.axis + 1 :])


@dataclass(frozen=True)
class Assignment:
    """What a plan does to one parameter.

    Attributes:
        site: the parameter (name, shape, role, module, fans layout).
        scheme: the scheme drawn from; ``None`` when the parameter is kept as it is (the
            first block's when the blocks of a stacked parameter take different rules:
            ``parts`` then hold each block's scheme, multiplier and rule).
        multiplier: factor on the drawn values.
        source: why: ``"rule 2 ('*.c_proj.weight')"``, ``"default auto"``, ``"default keep"``.
        rule_index: index of the winning rule, ``None`` for the default.
        also_matched: indices of later rules that matched too (first match wins).
        activation: the activation after the parameter's layer, when it was looked up.
        fans: the fans the scheme read, if it reads fans.
        std: the std of the values after the multiplier, when known.
        bound: the largest absolute value after the multiplier, when bounded.
        layout: the layout the fans are read in (``torch`` under a ``fans="torch"`` rule).
        groups: the groups the fans are read with.
        parts: the blocks drawn one by one (empty when the parameter is drawn whole); then
            ``fans`` are a block's and ``std`` is the std over the whole parameter.
        law: the law each element is drawn from, i.i.d. (before the multiplier), read once
            from the scheme and the fans when the table is resolved; ``None`` when the scheme
            builds the tensor as a whole (orthogonal, sparse, a checkpoint) or for ``parts``.

    An embedding's ``padding_idx`` row is set to 0 after any draw, as ``nn.Embedding`` and
    Hugging Face's ``_init_weights`` do (:attr:`zero_rows`; the notes say so); every other
    element keeps the value the scheme draws for it. ``std`` is the scheme's, over the drawn
    rows.
    """

    site: ParameterSite
    scheme: Scheme | None
    multiplier: float
    source: str
    rule_index: int | None
    also_matched: tuple[int, ...] = ()
    activation: Activation | None = None
    fans: Fans | None = None
    std: float | None = None
    bound: float | None = None
    layout: Layout = "torch"
    groups: int = 1
    parts: tuple[Part, ...] = ()
    law: ElementwiseLaw | None = None

    @property
    def name(self) -> str:
        """The parameter's qualified name."""
        return self.site.name

    @property
    def zero_rows(self) -> tuple[int, ...]:
        """The rows (first axis) set to 0 after the draw: the layer's padding rows
        (:attr:`ParameterSite.zero_rows <initlab.plan.sites.ParameterSite.zero_rows>`) when
        the scheme draws; none when the parameter is kept or copied from a checkpoint."""
        if self.scheme is None or isinstance(self.scheme, Checkpoint):
            return ()
        return self.site.zero_rows

    @property
    def scheme_label(self) -> str:
        """The scheme as shown in tables."""
        if self.scheme is None:
            return "keep"
        label = str(self.scheme)
        if self.parts:
            labels: dict[str, list[str]] = {}
            for part in self.parts:
                scaled = "" if part.multiplier == 1.0 else f" x {part.multiplier:.6g}"
                labels.setdefault(f"{part.scheme}{scaled}", []).append(part.label)
            label = "; ".join(
                f"{scheme} per {','.join(names)}" for scheme, names in labels.items()
            )
        return label if self.multiplier == 1.0 else f"{label} x {self.multiplier:.6g}"

    @property
    def notes(self) -> str:
        """Tied names, the rows set to 0, fan notes and the detected activation, joined."""
        parts = []
        if self.site.tied_to:
            parts.append("tied: " + ", ".join(self.site.tied_to))
        if self.zero_rows:
            parts.append(zeroed_rows_text(self.zero_rows))
        if self.activation is not None:
            parts.append(f"then {self.activation}")
        if self.site.fans_note and self.scheme is not None and self.scheme.uses_fans:
            parts.append(self.site.fans_note)
        if self.site.magnitude_of:
            parts.append(self.site.fans_note)
        if any(part.source for part in self.parts):
            sources: dict[str, list[str]] = {}
            for part in self.parts:
                sources.setdefault(part.source, []).append(part.label)
            parts.append(
                "blocks: " + "; ".join(f"{','.join(b)} <- {s}" for s, b in sources.items())
            )
        if self.also_matched:
            parts.append("also matched rule " + ", ".join(str(i) for i in self.also_matched))
        return "; ".join(parts)

    def to_row(self) -> dict[str, Any]:
        """A flat, JSON-friendly record (with ``blocks`` when its blocks take different
        rules: label, scheme, multiplier, std and source of each)."""
        blocks = [
            {
                "block": part.label,
                "scheme": part.scheme.to_config(),
                "multiplier": part.multiplier,
                "std": part.std,
                "source": part.source,
            }
            for part in self.parts
        ]
        per_block = {"blocks": blocks} if any(part.source for part in self.parts) else {}
        return {
            "parameter": self.name,
            "shape": list(self.site.shape),
            "role": self.site.role,
            "module": self.site.module_type,
            "depth": self.site.depth,
            "scheme": None if self.scheme is None else self.scheme.to_config(),
            "multiplier": self.multiplier,
            "source": self.source,
            "fan_in": None if self.fans is None else self.fans.fan_in,
            "fan_out": None if self.fans is None else self.fans.fan_out,
            "std": self.std,
            "bound": self.bound,
            "activation": None if self.activation is None else self.activation.name,
            "tied_to": list(self.site.tied_to),
            "zero_rows": list(self.zero_rows),
            "notes": self.notes,
            **per_block,
        }


def zeroed_rows_text(rows: tuple[int, ...]) -> str:
    """``padding row 3 set to 0`` (``rows 0, 3``)."""
    listed = ", ".join(str(index) for index in rows)
    return f"padding row{'s' if len(rows) > 1 else ''} {listed} set to 0"


class UnusedRule(NamedTuple):
    """A rule of the plan that matched no parameter.

    Attributes:
        rule_index: its position in the plan's rules.
        description: its conditions (:meth:`initlab.plan.Rule.describe`).
    """

    rule_index: int
    description: str


@dataclass(frozen=True)
class Assignments:
    """A plan resolved against a model: the rows, plus what the resolution noticed.

    Attributes:
        rows: one :class:`Assignment` per distinct parameter, in registration order.
        unused_rules: the rules that matched no parameter.
        activation_method: ``"fx"``, ``"module order"`` or ``""`` when not needed.
        activation_fallback: why fx tracing failed, when it did.
        seed: the seed it was applied with (``None`` for a dry run).
    """

    rows: tuple[Assignment, ...]
    unused_rules: tuple[UnusedRule, ...] = ()
    activation_method: str = ""
    activation_fallback: str = ""
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Assignment]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, name: str) -> Assignment:
        for row in self.rows:
            if row.name == name or name in row.site.tied_to:
                return row
        raise KeyError(name)

    def to_rows(self) -> list[dict[str, Any]]:
        """Every row as a flat record."""
        return [row.to_row() for row in self.rows]

    def to_json(self, indent: int | None = 2) -> str:
        """The table as JSON (rows plus unused rules and the activation method)."""
        document = {
            "seed": self.seed,
            "activation_method": self.activation_method,
            "activation_fallback": self.activation_fallback,
            "unused_rules": [
                {"index": unused.rule_index, "rule": unused.description}
                for unused in self.unused_rules
            ],
            "parameters": self.to_rows(),
        }
        return json.dumps(document, indent=indent)

    def to_dataframe(self) -> Any:
        """The rows as a pandas DataFrame (needs pandas)."""
        from initlab.optional import require

        pandas = require("pandas", "to_dataframe")
        return pandas.DataFrame(self.to_rows())

    def __str__(self) -> str:
        """One aligned line per parameter, then the count (drawn, read from checkpoints, kept;
        applied or a dry run) as the CLI writes it, the padding rows set to 0 after the draw,
        the activation method and the unused rules.

        Example:
            >>> print(plan.resolve(model))  # doctest: +SKIP
            parameter  shape  role    scheme                          std     source
            0.weight   8x4    weight  he_normal(nonlinearity='relu')  0.7071  default auto
            ...
            4 parameters: 3 drawn, 1 kept; dry run
        """
        from_files = sum(isinstance(row.scheme, Checkpoint) for row in self.rows)
        kept = sum(row.scheme is None for row in self.rows)
        counts = [f"{len(self.rows) - from_files - kept} drawn"]
        if from_files:
            counts.append(f"{from_files} from checkpoints")
        counts.append(f"{kept} kept")
        done = "dry run" if self.seed is None else f"applied with seed {self.seed}"
        count = f"{len(self.rows)} parameters: {', '.join(counts)}; {done}"
        headers = ("parameter", "shape", "role", "scheme", "std", "source")
        lines = [
            (
                row.name,
                "x".join(str(d) for d in row.site.shape) or "scalar",
                row.site.role,
                row.scheme_label,
                "-" if row.std is None else f"{row.std:.4g}",
                row.source,
            )
            for row in self.rows
        ]
        widths = [max([len(h), *(len(line[i]) for line in lines)]) for i, h in enumerate(headers)]
        render = [
            "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True))
            for line in [headers, *lines]
        ]
        render.append(count)
        render.extend(
            f"{row.name}: {zeroed_rows_text(row.zero_rows)} after the draw"
            for row in self.rows
            if row.zero_rows
        )
        if self.activation_method:
            render.append(
                f"activations: {self.activation_method} {self.activation_fallback}".rstrip()
            )
        for unused in self.unused_rules:
            render.append(f"rule {unused.rule_index} ({unused.description}) matched no parameter")
        return "\n".join(line.rstrip() for line in render)

    def __rich__(self) -> Text:
        """What a Rich console prints: the same summary as :meth:`__str__`, as plain text
        (without it Rich would print the dataclass's fields)."""
        from rich.text import Text

        return Text(str(self))
