"""Start-up stays light: ``import initlab`` loads its names on first use, the heavy extras load
only inside the features that use them, and the CLI answers ``--help`` without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

COMMANDS = ("schemes", "plan", "doctor", "lsuv", "sweep", "report", "demo")
HEAVY = (
    "scipy",
    "numba",
    "llvmlite",
    "optuna",
    "matplotlib",
    "pandas",
    "sklearn",
    "kornia",
    "sqlalchemy",
    "safetensors",
    "keras",
    "lightning",
    "transformers",
    "tensorboard",
)


def test_import_initlab_loads_no_optional_dependency() -> None:
    code = f"import sys, initlab\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "", f"import initlab loaded: {loaded}"


def _modules_left_loaded(code: str) -> set[str]:
    """The top-level packages a fresh interpreter holds after running ``code`` (asked at exit,
    since the CLI ends with SystemExit)."""
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print(','.join(sorted({m.split('.')[0] for m in sys.modules})),"
        " file=sys.stderr))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe + code], capture_output=True, text=True, check=False
    )
    return set(result.stderr.strip().splitlines()[-1].split(","))


def _cli(*args: str) -> str:
    return f"import sys; from initlab.cli import main; sys.argv = ['initlab', *{args!r}]; main()"


def test_import_initlab_loads_neither_torch_nor_numpy() -> None:
    loaded = _modules_left_loaded("import initlab")
    assert {"torch", "numpy"}.isdisjoint(loaded)


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        *[(command, "--help") for command in COMMANDS],
        ("schemes", "he_normal"),
        ("schemes", "he_normal", "--shape", "64,3,3,3", "--param", "mode=fan_out"),
    ],
    ids=" ".join,
)
def test_the_cli_answers_help_and_describes_schemes_without_torch(args: tuple[str, ...]) -> None:
    loaded = _modules_left_loaded(_cli(*args))
    assert "initlab" in loaded
    assert "torch" not in loaded, f"initlab {' '.join(args)} imported torch"
    assert {"numpy", *HEAVY}.isdisjoint(loaded)


def test_the_scheme_catalogue_is_listed_without_torch() -> None:
    assert "torch" not in _modules_left_loaded(_cli("schemes"))


def test_every_public_name_loads_on_first_use() -> None:
    code = (
        "import initlab\n"
        "missing = [n for n in initlab.__all__ if getattr(initlab, n, None) is None]\n"
        "assert not missing, missing\n"
        "assert callable(initlab.doctor) and callable(initlab.lsuv)\n"
        "assert initlab.init.__name__ == 'initlab.init'\n"
        "assert set(initlab.__all__) <= set(dir(initlab))\n"
        "assert initlab.get('checkpoint', path='w.pt').path == 'w.pt'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_functions_keep_their_names_when_their_package_is_imported_first() -> None:
    code = (
        "import initlab.lsuv.fit, initlab.doctor.diagnose, initlab\n"
        "assert callable(initlab.lsuv) and callable(initlab.doctor)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
