"""The ``initlab`` Typer app, its consoles, and what every command shares.

Rendering only: the work is done by the library. Every command exits with one of
:data:`EXIT_CODES`: a user error (:class:`InitlabError`, or a usage error Typer finds) is one
line, no traceback, exit code 2; any other exception is a bug, one line naming it and exit code
3, with the traceback only under ``--debug`` or ``INITLAB_DEBUG=1``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import sysconfig
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple, TextIO, TypeVar

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from initlab.errors import ConfigError, InitlabError

if TYPE_CHECKING:
    import torch
    from torch import nn
    from typer._click.core import Context, Parameter  # Typer's own copy of Click

__all__ = [
    "EXIT_CODES",
    "EXIT_INTERNAL_ERROR",
    "EXIT_OK",
    "EXIT_PROBLEMS",
    "EXIT_USAGE",
    "FACTORY_HELP",
    "DataOption",
    "FactoryArgument",
    "InitlabCommand",
    "InputShapeOption",
    "KwargsOption",
    "UserModel",
    "app",
    "check_output_path",
    "command",
    "console",
    "current_directory_importable",
    "error_console",
    "load_model",
    "model_and_batch",
    "output_width",
    "parse_kwargs",
    "print_warnings",
    "save_weights",
    "user_errors",
]

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_INTERNAL_ERROR = 3
EXIT_CODES = (
    "Exit codes: 0 success (doctor: healthy); 1 problems found (doctor), not converged "
    "(lsuv) or a layer's scale grows with width (coord-check); 2 usage or input error; "
    "3 internal error (a bug: add --debug or set INITLAB_DEBUG=1 for its traceback)."
)
DEBUG_FLAG = "--debug"
DEBUG_VARIABLE = "INITLAB_DEBUG"
QUIET_FLAG = "--quiet"
WIDTH_OPTION = "--width"
NARROWEST = 40
# Output to a file or a pipe (a CI log, `make demo > demo.log`) has no width of its own; Rich
# would take the terminal's (80 columns when there is none) and fold or leave out columns.
NOT_A_TERMINAL_WIDTH = 160

F = TypeVar("F", bound=Callable[..., Any])


def output_width(stream: TextIO | None, environ: Mapping[str, str]) -> int | None:
    """The width of the output console: ``COLUMNS`` when set, :data:`NOT_A_TERMINAL_WIDTH`
    when ``stream`` is not a terminal, else ``None`` (Rich follows the terminal's size)."""
    columns = environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        terminal = stream is not None and stream.isatty()
    except (ValueError, OSError):  # a closed or detached stream
        terminal = False
    return None if terminal else NOT_A_TERMINAL_WIDTH


console = Console(width=output_width(sys.stdout, os.environ))
error_console = Console(stderr=True)


def print_error(message: str) -> None:
    """One ``error: ...`` line on stderr, never wrapped (a CI log greps it)."""
    error_console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)


class _MetavarArgument(TyperArgument):
    """A positional argument whose help shows its metavar alone (``MODULE:FACTORY``), without
    the ``<str>`` label Typer puts beside it."""

    def display_type_rich(self, ctx: Context) -> str | None:
        return None


def _metavar_only(param: Parameter) -> None:
    """Show ``param`` in ``--help`` by its metavar: a flag takes no value, so it shows none
    (Typer would print ``<bool>``); an argument shows its metavar once, not ``<str>`` too."""
    if isinstance(param, TyperOption) and param.is_flag:
        param.metavar = ""
    elif isinstance(param, TyperArgument):
        param.__class__ = _MetavarArgument


def _unwrap(text: str | None) -> str | None:
    """A docstring's paragraphs each on one line, left for the help's console to wrap (Typer
    keeps the source's line breaks from the second paragraph on)."""
    if text is None:
        return None
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in text.split("\n\n"))


class _NamedValues:
    """Help that names each option's value by its metavar (``SHAPE``, ``FILE``, ``N``), shows
    none for a flag, and wraps the docstring's paragraphs to the terminal."""

    help: str | None
    params: list[Parameter]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.help = _unwrap(self.help)
        for param in self.params:
            _metavar_only(param)

    def get_help_option(self, ctx: Context) -> TyperOption | None:
        option: TyperOption | None = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            _metavar_only(option)
        return option


class InitlabCommand(_NamedValues, TyperCommand):
    """A command of the app (made by :func:`command`), with :class:`_NamedValues`' help."""


class InitlabSubgroup(_NamedValues, TyperGroup):
    """A command that also holds commands (``initlab demo`` and ``initlab demo transfer``),
    with :class:`_NamedValues`' help; made by :func:`group`."""


class InitlabGroup(_NamedValues, TyperGroup):
    """The app's Click group: every command's exit code and error lines are decided here.

    Click's own handling (standalone mode) is turned off so that each kind of failure maps to
    one of :data:`EXIT_CODES` and prints one line, whichever command raised it. The options
    every command takes (:data:`GLOBAL_OPTIONS`) are taken out of the command line first,
    wherever they stand.
    """

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        debug = _take_flag(argv, DEBUG_FLAG) or _debug_from_environment()
        quiet = _take_flag(argv, QUIET_FLAG)
        try:
            width = _take_width_option(argv)
            if width is not None:
                console.width = width
            with _progress_bars(shown=not quiet):
                result = super().main(
                    argv, prog_name, complete_var, standalone_mode=False, **extra
                )
            code = result if isinstance(result, int) else EXIT_OK  # an Exit's code, or None
        except InitlabError as error:
            print_error(str(error))
            code = EXIT_USAGE
        except typer.TyperException as error:  # Click's usage errors: bad option, value, command
            if type(error).__name__ != "NoArgsIsHelpError":  # that one has printed the help
                print_error(_usage_message(error))
            code = EXIT_USAGE
        except typer.Abort as error:  # Typer turns an EOFError escaping a command into Abort
            if error.__cause__ is None:
                print_error("aborted.")
                code = EXIT_USAGE
            else:
                code = _internal_error(error.__cause__, debug)
        except Exception as error:
            code = _internal_error(error, debug)
        if not standalone_mode:
            return code
        sys.exit(code)


def _take_flag(argv: list[str], flag: str) -> bool:
    """Remove ``flag`` (``--debug``, ``--quiet``) from ``argv`` (before a ``--``), wherever the
    user put it; whether it was there."""
    end = argv.index("--") if "--" in argv else len(argv)
    found = flag in argv[:end]
    argv[:end] = [arg for arg in argv[:end] if arg != flag]
    return found


@contextlib.contextmanager
def _progress_bars(*, shown: bool) -> Iterator[None]:
    """With ``shown=False`` (``--quiet``), no library call draws a progress bar while the
    command runs; the process-wide default is back to "when stderr is a terminal" after it
    (an in-process call, a test, leaves nothing behind)."""
    if shown:
        yield
        return
    from initlab import progress  # only when asked: ``initlab --help`` stays light

    progress.set_default(False)
    try:
        yield
    finally:
        progress.set_default(None)


def _take_width_option(argv: list[str]) -> int | None:
    """Remove ``--width N`` (or ``--width=N``) from ``argv`` (before a ``--``), wherever the
    user put it, and return ``N``; ``None`` when not given.

    Raises:
        ConfigError: ``N`` is missing, not a whole number, or under :data:`NARROWEST`.
    """
    end = argv.index("--") if "--" in argv else len(argv)
    for index, arg in enumerate(argv[:end]):
        if arg == WIDTH_OPTION:
            value = argv[index + 1] if index + 1 < end else ""
            del argv[index : index + 2]
        elif arg.startswith(WIDTH_OPTION + "="):
            value = arg.partition("=")[2]
            del argv[index]
        else:
            continue
        if not value.isdigit() or int(value) < NARROWEST:
            raise ConfigError(
                f"{WIDTH_OPTION} takes the output's width in columns, {NARROWEST} or more "
                f"(e.g. {WIDTH_OPTION} 120); got {value!r}."
            )
        return int(value)
    return None


def _debug_from_environment() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def _usage_message(error: typer.TyperException) -> str:
    message = " ".join(error.format_message().split())
    context = getattr(error, "ctx", None)  # a UsageError knows the command it came from
    command = context.command_path if context is not None else app.info.name
    return f"{message.rstrip('.')}. See '{command} --help'."


def _internal_error(error: BaseException, debug: bool) -> int:
    """Report an exception initlab did not anticipate: one line, or the traceback."""
    if debug:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        error_console.out(text.rstrip("\n"), highlight=False)
    lines = str(error).strip().splitlines()
    what = f"{type(error).__name__}: {lines[0] if lines else '(no message)'}"
    user_frame = _user_frame(error)
    if user_frame is None:
        where = "internal error, a bug in initlab"
        report = "; please report it with the traceback"
    else:
        where = f"error in your code ({Path(user_frame.filename).name}:{user_frame.lineno})"
        report = ""
    how = "" if debug else f"; add {DEBUG_FLAG} or set {DEBUG_VARIABLE}=1 for the traceback"
    print_error(f"{where}: {what}{how}{report}.")
    return EXIT_INTERNAL_ERROR


_INITLAB = Path(__file__).resolve().parent.parent
_LIBRARIES = tuple(
    Path(sysconfig.get_paths()[key]).resolve() for key in ("stdlib", "purelib", "platlib")
)


def _user_frame(error: BaseException) -> traceback.FrameSummary | None:
    """The frame of the user's own code the exception came from, if it did not come from ours.

    Walks out from where it was raised past installed libraries (torch, numpy, the standard
    library): the first frame left is initlab's (a bug here) or the user's (their module).
    """
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if frame.filename.startswith("<"):
            continue
        path = Path(frame.filename).resolve()
        if path.is_relative_to(_INITLAB):
            return None
        if not any(path.is_relative_to(library) for library in _LIBRARIES):
            return frame
    return None


GLOBAL_OPTIONS = (
    f"Every command takes, anywhere on its command line: {WIDTH_OPTION} N, the output's width "
    f"in columns (default: COLUMNS, else the terminal's, else {NOT_A_TERMINAL_WIDTH} in a file "
    f"or pipe); {QUIET_FLAG}, no progress bars; {DEBUG_FLAG}, an internal error's traceback."
)
app = typer.Typer(
    name="initlab",
    cls=InitlabGroup,
    help="Weight initialization, measured: schemes, plans, a signal-propagation doctor, LSUV, "
    f"training sweeps.\n\n{GLOBAL_OPTIONS}",
    epilog=f"Example: initlab schemes he_normal --shape 256,128,3,3\n\n{EXIT_CODES}",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def command(name: str, *, example: str) -> Callable[[F], F]:
    """Register ``initlab NAME`` on :data:`app`, as an :class:`InitlabCommand`, its help ending
    with one ``example`` command line and :data:`EXIT_CODES`."""
    register: Callable[[F], F] = app.command(
        name, cls=InitlabCommand, epilog=f"Example: {example}\n\n{EXIT_CODES}"
    )
    return register


def group(name: str, *, example: str, help: str) -> typer.Typer:
    """``initlab NAME`` as a group on :data:`app`: the group's own callback runs the command
    (``initlab demo``) when no subcommand is named, and subcommands register on the returned
    Typer (``initlab demo transfer``)."""
    subgroup = typer.Typer(
        cls=InitlabSubgroup,
        invoke_without_command=True,
        help=help,
        epilog=f"Example: {example}\n\n{EXIT_CODES}",
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.add_typer(subgroup, name=name)
    return subgroup


FACTORY_HELP = (
    "Import path of a function or class that returns the model, "
    "e.g. mypackage.models:make_model (only that module is imported)."
)
# The options of every command that builds the user's model and feeds it a batch.
FactoryArgument = Annotated[
    str, typer.Argument(metavar="MODULE:FACTORY", help=FACTORY_HELP, show_default=False)
]
InputShapeOption = Annotated[
    str | None,
    typer.Option(
        "--input-shape",
        metavar="SHAPE",
        help="The batch's shape, batch size first: 64,3,32,32 (CNN) or 64,64 (MLP).",
    ),
]
DataOption = Annotated[
    str | None,
    typer.Option(
        metavar="digits|FILE",
        help="'digits' (scikit-learn's, standardized; 64,64 or 64,1,8,8) or a .npy/.npz "
        "file (its 'x' array); default: a Gaussian batch of --input-shape.",
    ),
]
KwargsOption = Annotated[
    str | None,
    typer.Option(
        "--kwargs", metavar="JSON", help="Keyword arguments of the factory, as a JSON object."
    ),
]


def user_errors(command: F) -> F:
    """Print an :class:`InitlabError` as one line (no traceback) and exit with code 2.

    The app's group does the same for every command; this keeps a command called as a plain
    function (in a test or a script) to the same contract.
    """

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except InitlabError as error:
            print_error(str(error))
            raise typer.Exit(code=EXIT_USAGE) from None

    return run  # type: ignore[return-value]


def parse_kwargs(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"--kwargs is a JSON object such as '{{\"depth\": 30}}'; {text!r} is not JSON "
            f"({error.msg} at column {error.colno})."
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(f"--kwargs is a JSON object such as '{{\"depth\": 30}}', got {text!r}.")
    return value


@contextlib.contextmanager
def current_directory_importable() -> Iterator[None]:
    # A console script's sys.path starts at its bin/ folder; users expect `initlab plan
    # models:make` to find ./models.py, as `python -m` would.
    saved = list(sys.path)
    sys.path.insert(0, os.getcwd())
    try:
        yield
    finally:
        sys.path[:] = saved


class UserModel(NamedTuple):
    """The user's model and the batch to run it on (unpacks as ``model, batch``)."""

    model: nn.Module
    batch: torch.Tensor


def model_and_batch(
    factory: str, *, kwargs: str | None, data: str | None, input_shape: str | None, seed: int
) -> UserModel:
    """The user's model, built under ``seed``, and the batch ``--data``/``--input-shape`` name."""
    import torch

    from initlab.cli.values import parse_shape
    from initlab.doctor.inputs import input_batch

    shape = parse_shape(input_shape, option="--input-shape") if input_shape else None
    batch = input_batch(data, shape, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the factory's own init draws from torch's global stream
        model = load_model(factory, kwargs)
    return UserModel(model, batch)


def load_model(factory: str, kwargs: str | None) -> nn.Module:
    """The user's model from ``MODULE:FACTORY`` (``--kwargs``: the factory's JSON keywords)."""
    from initlab.plan.factory import load_factory

    with current_directory_importable():
        return load_factory(factory, parse_kwargs(kwargs))


def save_weights(model: nn.Module, path: Path) -> None:
    """Write ``model``'s state dict to the ``.safetensors`` file ``path`` and say so."""
    from initlab.optional import require

    require("safetensors.torch", "--save").save_model(model, str(path))
    console.print(Text(f"weights written to {path}", "dim"))


def print_warnings(caught: Sequence[warnings.WarningMessage], *, unless: str) -> None:
    """Each warning a command caught, in yellow, except those containing ``unless`` (which the
    command's own table already shows)."""
    for warning in caught:
        if unless not in str(warning.message):
            console.print(Text(f"warning: {warning.message}", "yellow"))


def check_output_path(path: Path | None, option: str, suffixes: tuple[str, ...]) -> None:
    """Fail before the work if ``option``'s file ``path`` could not be written after it.

    A missing folder is an error, not created: like ``cp`` or ``tar -f``, and unlike a silently
    created ``reprots/`` folder, it catches a typo while the fix is one ``mkdir`` away.

    Args:
        path: the file the option names (``None``: the option was not given).
        option: the option's name for the message, e.g. ``"--json"``.
        suffixes: the suffixes the command writes, the preferred first (``(".json",)``).

    Raises:
        ConfigError: the path is a folder, has another suffix, or its folder is missing,
            not a folder, or not writable.
    """
    if path is None:
        return
    shown = f"{option} {str(path)!r}"
    folder = path.parent
    if path.is_dir():
        raise ConfigError(
            f"{shown} is a folder; give a file in it, e.g. {str(path / ('out' + suffixes[0]))!r}."
        )
    if path.suffix.lower() not in suffixes:
        raise ConfigError(
            f"{shown}: this option writes a {' or '.join(suffixes)} file; give a path ending "
            f"in {suffixes[0]}."
        )
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{shown}: {str(folder)!r} is not a folder but a file.")
    if not folder.exists():
        raise ConfigError(
            f"{shown}: the folder {str(folder)!r} does not exist. Create it first "
            f"(mkdir -p {folder}) or correct the path."
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{shown}: the folder {str(folder)!r} is not writable.")
