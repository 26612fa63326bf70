"""Progress bars for the waits of a few seconds: epochs, doctor steps, LSUV layers, reports.

.. code-block:: python

    from initlab import progress

    with progress.steps("lsuv: fitting", total=len(layers), enabled=None) as bar:
        for layer in layers:
            bar.describe(f"lsuv: {layer}")
            ...
            bar.advance()

A bar is a transient Rich progress bar on standard error: it is drawn while the work runs and
erased when it ends, so it never mixes with what a program prints or writes. Whether one is
drawn:

- ``enabled=True``: always (on a stream that is not a terminal, the final bar is written once,
  at the end, instead of a live one);
- ``enabled=False``: never; the bar is then a no-op object, so a loop pays one method call per
  step;
- ``enabled=None``: the process-wide default, :func:`set_default` (``None`` at start: a bar only
  when standard error is a terminal; the CLI's ``--quiet`` sets ``False``).

Only one bar is drawn at a time: a bar asked for while another is shown (the doctor inside a
function that shows its own bar), or inside a :func:`quiet` block (the trials of a sweep, whose
caller shows a bar of trials), is the no-op one. Bars go to :func:`set_console`'s console
(tests give one writing to a string).

Library functions that wait take ``progress: bool | None = None`` and pass it here as
``enabled``; they never print otherwise.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from initlab.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

__all__ = ["Steps", "quiet", "set_console", "set_default", "steps"]


class _Settings:
    """The process-wide choices, and how many bars (or quiet blocks) are open now."""

    def __init__(self) -> None:
        self.default: bool | None = None
        self.console: Console | None = None  # set_console's
        self.stderr: Console | None = None  # made at the first bar drawn on standard error
        self.open = 0
        self.lock = threading.Lock()


_SETTINGS = _Settings()


def set_default(enabled: bool | None) -> None:
    """Whether a library call with ``progress=None`` shows a bar: ``None`` when standard error
    is a terminal (the default), ``False`` never (``initlab --quiet``), ``True`` always."""
    if enabled is not None and not isinstance(enabled, bool):
        raise ConfigError(f"progress.set_default takes True, False or None, got {enabled!r}.")
    _SETTINGS.default = enabled


def set_console(console: Console | None) -> None:
    """Draw bars on ``console`` (a ``rich.console.Console``); ``None``: standard error.

    With ``enabled=None`` a bar is drawn on a given console when Rich sees a terminal there
    (``console.is_terminal``), e.g. ``Console(file=io.StringIO(), force_terminal=True)``.
    """
    _SETTINGS.console = console


class Steps:
    """What :func:`steps` yields: the work's steps, counted and named. This one draws nothing
    (the bar was not asked for); :attr:`shown` tells which one a caller holds."""

    shown = False

    def advance(self, amount: int = 1) -> None:
        """``amount`` more steps are done."""

    def describe(self, description: str) -> None:
        """What is being done now (the text left of the bar)."""

    def reach(self, done: int, total: int | None = None) -> None:
        """``done`` steps are done (of ``total``, when the work learns its size as it goes)."""


class _Bar(Steps):
    """A live Rich bar of one task."""

    shown = True

    def __init__(self, bar: Progress, task: TaskID) -> None:
        self._bar, self._task = bar, task

    def advance(self, amount: int = 1) -> None:
        self._bar.advance(self._task, amount)

    def describe(self, description: str) -> None:
        self._bar.update(self._task, description=description)

    def reach(self, done: int, total: int | None = None) -> None:
        self._bar.update(self._task, completed=done, total=total)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _wanted(enabled: bool | None) -> bool:
    """Whether to draw: the caller's choice, else the default, else "is stderr a terminal"."""
    choice = _SETTINGS.default if enabled is None else enabled
    if choice is not None:
        return choice
    given = _SETTINGS.console
    return given.is_terminal if given is not None else _is_terminal(sys.stderr)


def _claim(enabled: bool | None) -> bool:
    """Whether this bar is drawn; if so it is counted as open (release it with ``_release``)."""
    with _SETTINGS.lock:
        if _SETTINGS.open or not _wanted(enabled):
            return False
        _SETTINGS.open += 1
        return True


def _release() -> None:
    with _SETTINGS.lock:
        _SETTINGS.open -= 1


def _console() -> Console:
    if _SETTINGS.console is not None:
        return _SETTINGS.console
    if _SETTINGS.stderr is None:
        from rich.console import Console

        _SETTINGS.stderr = Console(stderr=True)
    return _SETTINGS.stderr


def _progress(console: Console, total: int | None) -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns: list[ProgressColumn] = [TextColumn("{task.description}"), BarColumn()]
    if total is not None:  # an unknown total pulses, without a count of steps
        columns.append(MofNCompleteColumn())
    columns.append(TimeElapsedColumn())
    terminal = console.is_terminal
    # Rich prints what is written to stdout/stderr during the bar above it, through the bar's
    # console (stderr): stdout only when it is a terminal too, so a redirected stdout keeps
    # every line written to it.
    return Progress(
        *columns,
        console=console,
        transient=terminal,
        redirect_stdout=terminal and _is_terminal(sys.stdout),
        redirect_stderr=terminal,
    )


@contextlib.contextmanager
def steps(description: str, total: int | None, *, enabled: bool | None = None) -> Iterator[Steps]:
    """A progress bar of ``total`` steps (``None``: unknown) while the block runs.

    Args:
        description: what is being done, e.g. ``"training"``; :meth:`Steps.describe` changes it.
        total: how many steps the work has (the block calls :meth:`Steps.advance` after each).
        enabled: ``True`` always draw, ``False`` never, ``None`` the default
            (:func:`set_default`: a bar when standard error is a terminal).

    Yields:
        The steps to advance: a live bar, or (not asked for, or another bar is shown) a
        :class:`Steps` that does nothing.

    Example:
        >>> with steps("training", total=epochs, enabled=progress) as bar:
        ...     for epoch in range(epochs):
        ...         train_one_epoch()
        ...         bar.advance()
    """
    if not _claim(enabled):
        yield Steps()
        return
    try:
        bar = _progress(_console(), total)
        with bar:
            yield _Bar(bar, bar.add_task(description, total=total))
    finally:
        _release()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No bar inside the block, whatever is asked: for work whose caller shows its own progress
    (a sweep's trials). Process-wide while it runs, like the bars themselves."""
    with _SETTINGS.lock:
        _SETTINGS.open += 1
    try:
        yield
    finally:
        _release()
