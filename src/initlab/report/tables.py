"""Terminal tables that keep every name and number whole, at any width.

Rich fits a table that is too wide by cutting cells with an ellipsis or by wrapping them letter
by letter; either loses a layer name or a number. A :class:`FittedTable` chooses its column
widths itself, when it is rendered, for the width it is given:

1. Each column has a *floor*, the narrowest it can be without losing anything. A ``whole``
   column (names, numbers) never wraps: its floor is its longest cell. A ``words`` column wraps
   between words only (a list of names, ``0.1 -> 0.2``): its floor is its longest word. A
   ``prose`` column wraps between words and folds a word longer than :data:`PROSE_FLOOR`.
   A header wraps between its words.
2. While the floors, the borders and the padding (:math:`3n + 1` characters for :math:`n`
   columns) are wider than the space, the column of highest ``priority`` number is left out;
   the caption names what was left out. Priority 0 is never left out.
3. The space left above the floors goes to the columns that want more, narrowest first.

Only when the kept floors alone are wider than the space (a name longer than the terminal) is
a column narrowed below its floor, the widest first: its cells fold onto the next line, every
character kept. A view with another layout for narrow widths (several columns stacked into
one) offers both as a :class:`FirstFitting`: the first that :meth:`FittedTable.fits` is shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

__all__ = ["PROSE_FLOOR", "Column", "FirstFitting", "FittedTable", "Kind"]

Kind = Literal["whole", "words", "prose"]
PROSE_FLOOR = 16
Justify = Literal["left", "right", "center"]


@dataclass(frozen=True)
class Column:
    """One column of a :class:`FittedTable`.

    Attributes:
        header: its header (short: it wraps between words, never inside one).
        kind: ``whole`` (never wrapped), ``words`` (wrapped between words) or ``prose``.
        priority: 0 is always shown; at narrow widths the highest number is left out first.
        justify: the cells' alignment.
        style: the cells' style.
    """

    header: str
    kind: Kind = "whole"
    priority: int = 0
    justify: Justify = "left"
    style: str = ""


def _as_text(cell: RenderableType) -> RenderableType:
    # A plain string would be read as Rich markup: a name like 'blocks[0]' must print as it is.
    return Text(cell) if isinstance(cell, str) else cell


@dataclass(frozen=True)
class _Width:
    floor: int
    need: int


class FittedTable:
    """A table whose names and numbers stay whole at the width it is rendered at.

    Args:
        columns: the columns, in order.
        rows: one sequence of cells (strings or Rich renderables) per row.
        title: the title above it.
        caption: the caption below it (a note on what was left out is added to it).
        row_lines: a rule between rows (for rows of several lines each).
    """

    def __init__(
        self,
        columns: Sequence[Column],
        rows: Iterable[Sequence[RenderableType]],
        *,
        title: str | Text | None = None,
        caption: str | Text | None = None,
        row_lines: bool = False,
    ) -> None:
        self.columns = tuple(columns)
        self.row_lines = row_lines
        self.rows = [tuple(_as_text(cell) for cell in row) for row in rows]
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"A row has {len(row)} cells for {len(self.columns)} columns.")
        self.title = Text(title) if isinstance(title, str) else title
        self.caption = Text(caption, "dim") if isinstance(caption, str) else caption

    def _width(self, console: Console, options: ConsoleOptions, index: int) -> _Width:
        column = self.columns[index]
        header = Measurement.get(console, options, Text(column.header))
        cells = [Measurement.get(console, options, row[index]) for row in self.rows]
        need = max([header.maximum, *(cell.maximum for cell in cells)])
        if column.kind == "whole":
            floor = max([header.minimum, *(cell.maximum for cell in cells)])
        else:
            longest_word = max((cell.minimum for cell in cells), default=1)
            if column.kind == "prose":
                longest_word = min(longest_word, PROSE_FLOOR)
            floor = max(header.minimum, longest_word)
        return _Width(floor=min(floor, need), need=need)

    def kept_columns(self, console: Console, options: ConsoleOptions) -> list[int]:
        """The indexes of the columns shown at ``options.max_width``, in order."""
        widths = [self._width(console, options, index) for index in range(len(self.columns))]
        kept = list(range(len(self.columns)))
        droppable = sorted(
            (index for index in kept if self.columns[index].priority > 0),
            key=lambda index: (self.columns[index].priority, index),
        )
        while (
            droppable
            and _chrome(len(kept)) + sum(widths[index].floor for index in kept) > options.max_width
        ):
            kept.remove(droppable.pop())
        return kept

    def fits(self, console: Console, options: ConsoleOptions) -> bool:
        """Whether the kept columns fit ``options.max_width`` at their floors, so that no
        cell has to fold inside a name."""
        kept = self.kept_columns(console, options)
        floors = sum(self._width(console, options, index).floor for index in kept)
        return _chrome(len(kept)) + floors <= options.max_width

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        kept = self.kept_columns(console, options)
        ranges = [self._width(console, options, index) for index in kept]
        widths = _allocate(ranges, options.max_width - _chrome(len(kept)))
        table = Table(title=self.title, title_justify="left", caption_justify="left",
                      show_lines=self.row_lines)  # fmt: skip
        for index, width, fitted in zip(kept, widths, ranges, strict=True):
            column = self.columns[index]
            table.add_column(
                Text(column.header, no_wrap=False),  # a header wraps between its words
                justify=column.justify,
                style=column.style,
                width=width,
                # Rich crops a no_wrap cell wider than its column: only a column at its floor
                # may be no_wrap; a narrower one folds its cells instead.
                no_wrap=column.kind == "whole" and width >= fitted.floor,
                overflow="fold",
            )
        for row in self.rows:
            table.add_row(*(row[index] for index in kept))
        table.caption = self._caption(kept, options.max_width)
        yield table

    def _caption(self, kept: list[int], width: int) -> Text | None:
        left_out = [column.header for i, column in enumerate(self.columns) if i not in kept]
        if not left_out:
            return self.caption
        note = Text(
            f"left out to fit {width} columns: {', '.join(left_out)} "
            "(a wider terminal, COLUMNS or --width shows them)",
            "dim",
        )
        return note if self.caption is None else Text.assemble(self.caption, "\n", note)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        kept = self.kept_columns(console, options)
        ranges = [self._width(console, options, index) for index in kept]
        chrome = _chrome(len(kept))
        return Measurement(
            chrome + sum(r.floor for r in ranges), chrome + sum(r.need for r in ranges)
        ).with_maximum(options.max_width)


class FirstFitting:
    """The first of several layouts of one table that :meth:`~FittedTable.fits` the width it
    is rendered at (the last when none does), chosen at each rendering.

    Args:
        layouts: the layouts, widest first (a table with a column per setting, then the same
            rows with the settings stacked in one column).
    """

    def __init__(self, *layouts: FittedTable) -> None:
        if not layouts:
            raise ValueError("FirstFitting needs at least one layout.")
        self.layouts = layouts

    def chosen(self, console: Console, options: ConsoleOptions) -> FittedTable:
        """The layout shown at ``options.max_width``."""
        return next(
            (table for table in self.layouts if table.fits(console, options)), self.layouts[-1]
        )

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.chosen(console, options)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.chosen(console, options))


def _chrome(columns: int) -> int:
    """Borders and padding of a Rich table with ``columns`` columns: a border each side of
    every column and one space of padding either side of every cell."""
    return columns + 1 + 2 * columns


def _allocate(ranges: Sequence[_Width], space: int) -> list[int]:
    """Column widths that fit ``space``: every floor, then what is left to the narrowest
    columns that want more; below the floors (widest first) only when they do not fit."""
    needs = [r.need for r in ranges]
    if sum(needs) <= space:
        return needs
    widths = [r.floor for r in ranges]
    while sum(widths) > max(space, len(widths)):
        widest = max(range(len(widths)), key=lambda i: widths[i])
        widths[widest] -= 1
    spare = space - sum(widths)
    while spare > 0:
        wanting = [i for i in range(len(widths)) if widths[i] < needs[i]]
        if not wanting:
            break
        narrowest = min(wanting, key=lambda i: widths[i])
        widths[narrowest] += 1
        spare -= 1
    return widths
