"""Every bad CLI input: the right exit code, one line naming the thing and the way out.

Exit codes (README, ``initlab --help``): 0 success, 1 problems found / not converged, 2 usage or
input error, 3 internal error (a bug; the traceback only with ``--debug`` or ``INITLAB_DEBUG=1``).
Each case is a command line run in a fresh folder that holds the models and data files below.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import typer.testing
from one_line import assert_one_line, invoke, narrow_consoles

from initlab.cli import application as cli

MODULE = "initlab_bad_input_models"
FACTORIES = """
from torch import nn


def mlp(inputs: int = 64) -> nn.Module:
    return nn.Sequential(nn.Linear(inputs, 16), nn.ReLU(), nn.Linear(16, 10))


def broken() -> nn.Module:
    raise RuntimeError("needs a GPU that is not there")


def not_a_model() -> list[int]:
    return [1, 2]


class Fails(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x):
        raise KeyError("the user's forward is broken")
"""
MLP = f"{MODULE}:mlp"
BATCH = ["--input-shape", "8,64"]


@dataclass(frozen=True)
class Case:
    """One command line, its exit code, and words its one-line error must contain."""

    id: str
    args: tuple[str, ...]
    says: tuple[str, ...]
    code: int = 2
    marks: tuple[pytest.MarkDecorator, ...] = ()


def case(
    id: str,
    *args: str,
    says: tuple[str, ...] | str,
    code: int = 2,
    marks: tuple[pytest.MarkDecorator, ...] = (),
) -> Case:
    return Case(id, args, (says,) if isinstance(says, str) else says, code, marks)


def params(cases: list[Case]) -> list[object]:
    return [pytest.param(c, id=c.id, marks=c.marks) for c in cases]


CASES = [
    # The model: MODULE:FACTORY, its import, its call, its keyword arguments.
    case("factory-no-colon", "doctor", "models", *BATCH, says=("MODULE:FACTORY", "'models'")),
    case(
        "factory-unknown-module",
        "doctor",
        "no_such_mod_xyz:make",
        *BATCH,
        says="cannot import module 'no_such_mod_xyz'",
    ),
    case(
        "factory-import-raises",
        "plan",
        "explodes:make",
        says=("importing module 'explodes' failed", "ValueError", "bad config at import"),
    ),
    case(
        "factory-missing-attribute",
        "lsuv",
        f"{MODULE}:mpl",
        *BATCH,
        says=("has no attribute 'mpl'", "Did you mean 'mlp'?"),
    ),
    case(
        "factory-raises",
        "doctor",
        f"{MODULE}:broken",
        *BATCH,
        says=("factory raised RuntimeError", "needs a GPU"),
    ),
    case("factory-not-a-model", "plan", f"{MODULE}:not_a_model", says="not a torch.nn.Module"),
    case(
        "kwargs-not-json",
        "doctor",
        MLP,
        *BATCH,
        "--kwargs",
        "{inputs: 3",
        says=("--kwargs", "is not JSON"),
    ),
    case(
        "kwargs-not-object",
        "lsuv",
        MLP,
        *BATCH,
        "--kwargs",
        "[1]",
        says=("--kwargs", "JSON object"),
    ),
    case(
        "kwargs-unknown-key",
        "plan",
        MLP,
        "--kwargs",
        '{"depth": 3}',
        says="unexpected keyword argument 'depth'",
    ),
    case(
        "model-fails-on-batch",
        "doctor",
        MLP,
        "--input-shape",
        "8,63",
        says=("failed on a batch of shape (8, 63)", "mat1 and mat2"),
    ),
    case(
        "user-forward-raises",
        "lsuv",
        f"{MODULE}:Fails",
        *BATCH,
        says=("failed on the batch", "KeyError"),
    ),
    # The batch: --input-shape and --data.
    case(
        "shape-not-integers",
        "doctor",
        MLP,
        "--input-shape",
        "8xa",
        says=("--input-shape", "comma-separated integers"),
    ),
    case("shape-zero", "lsuv", MLP, "--input-shape", "0,64", says=("--input-shape", "positive")),
    case(
        "shape-negative",
        "doctor",
        MLP,
        "--input-shape",
        "8,-64",
        says=("--input-shape", "non-negative"),
    ),
    case("shape-and-data-missing", "doctor", MLP, says=("--input-shape", "--data digits")),
    case(
        "data-missing-file",
        "doctor",
        MLP,
        "--data",
        "nope.npy",
        says=("--data 'nope.npy'", "no such file", ".npz"),
    ),
    case(
        "data-empty-npy",
        "doctor",
        MLP,
        "--data",
        "empty.npy",
        "--input-shape",
        "8,64",
        says=("--data 'empty.npy'", "0 examples"),
    ),
    case(
        "data-empty-npy-no-shape",
        "lsuv",
        MLP,
        "--data",
        "empty.npy",
        says=("'empty.npy'", "0 examples"),
    ),
    case(
        "data-zero-bytes",
        "doctor",
        MLP,
        "--data",
        "zero.npy",
        says=("--data 'zero.npy'", "not a readable .npy/.npz", "empty"),
    ),
    case(
        "data-corrupt-npz",
        "lsuv",
        MLP,
        "--data",
        "corrupt.npz",
        says=("--data 'corrupt.npz'", "not a readable .npy/.npz"),
    ),
    case(
        "data-npz-without-x",
        "doctor",
        MLP,
        "--data",
        "no_x.npz",
        "--input-shape",
        "8,64",
        says=("--data 'no_x.npz'", "8 values", "64"),
    ),
    case(
        "data-npz-no-array",
        "doctor",
        MLP,
        "--data",
        "nothing.npz",
        says=("--data 'nothing.npz'", "holds no array"),
    ),
    case(
        "data-strings",
        "doctor",
        MLP,
        "--data",
        "words.npy",
        says=("--data 'words.npy'", "dtype", "numbers"),
    ),
    case(
        "data-pickled-objects",
        "lsuv",
        MLP,
        "--data",
        "objects.npy",
        says=("--data 'objects.npy'", "not a readable"),
    ),
    case(
        "data-text-file",
        "doctor",
        MLP,
        "--data",
        "table.csv",
        says=("--data 'table.csv'", "not a readable"),
    ),
    case(
        "data-too-few-examples",
        "doctor",
        MLP,
        "--data",
        "small.npy",
        "--input-shape",
        "64,64",
        says=("holds 4 examples", "asks for 64"),
    ),
    case(
        "digits-wrong-shape",
        "lsuv",
        MLP,
        "--data",
        "digits",
        "--input-shape",
        "8,65",
        says=("digits", "64"),
    ),
    # Names: presets, schemes, layouts, options.
    case("preset-unknown", "plan", MLP, "--preset", "kaimin", says="Did you mean 'kaiming'?"),
    case(
        "doctor-plan-unknown",
        "doctor",
        MLP,
        *BATCH,
        "--plan",
        "kaimin",
        says=("--plan", "'kaimin'", "plan file"),
    ),
    case("scheme-unknown", "schemes", "he_normall", says="Did you mean 'he_normal'?"),
    case(
        "scheme-shape-bad",
        "schemes",
        "he_normal",
        "--shape",
        "abc",
        says=("--shape", "comma-separated integers"),
    ),
    case(
        "scheme-layout-unknown",
        "schemes",
        "he_normal",
        "--shape",
        "4,4",
        "--layout",
        "tf",
        says=("Unknown layout 'tf'", "keras"),
    ),
    case(
        "scheme-param-no-equals",
        "schemes",
        "he_normal",
        "-p",
        "mode",
        says=("--param", "KEY=VALUE"),
    ),
    case(
        "scheme-param-bad-value",
        "schemes",
        "he_normal",
        "--shape",
        "4,4",
        "-p",
        "mode=fan_sideways",
        says=("'fan_sideways'", "fan_in"),
    ),
    case(
        "scheme-param-unknown",
        "schemes",
        "he_normal",
        "-p",
        "bogus=1",
        says=("no parameter 'bogus'", "mode"),
    ),
    case(
        "scheme-groups-zero",
        "schemes",
        "he_normal",
        "--shape",
        "4,4",
        "--groups",
        "0",
        says=("groups", "positive"),
    ),
    case(
        "preset-option-unknown",
        "plan",
        "--preset",
        "xavier",
        "-o",
        "bogus=1",
        "--show",
        says=("'bogus'", "Options"),
    ),
    case(
        "preset-option-no-equals",
        "plan",
        "--preset",
        "gpt2",
        "-o",
        "n_layer",
        "--show",
        says=("--option", "KEY=VALUE"),
    ),
    case("option-without-preset", "plan", "--show", "-o", "n_layer=2", says="add --preset"),
    case(
        "preset-and-config",
        "plan",
        MLP,
        "--preset",
        "xavier",
        "--config",
        "plan.yaml",
        says="alternatives",
    ),
    case("plan-without-model", "plan", "--preset", "xavier", says="Give MODULE:FACTORY"),
    # Usage errors Typer finds: one line too, exit 2.
    case("seed-not-int", "doctor", MLP, *BATCH, "--seed", "abc", says=("--seed", "integer")),
    case("tol-not-number", "lsuv", MLP, *BATCH, "--tol", "abc", says=("--tol", "number")),
    case("unknown-option", "doctor", MLP, *BATCH, "--bogus", says=("--bogus", "--help")),
    case("unknown-command", "frobnicate", says=("frobnicate", "--help")),
    case("missing-argument", "lsuv", says=("MODULE:FACTORY", "--help")),
    # LSUV's settings.
    case("lsuv-tol-negative", "lsuv", MLP, *BATCH, "--tol", "-1", says=("tol", "positive")),
    case("lsuv-tol-zero", "lsuv", MLP, *BATCH, "--tol", "0", says=("tol", "positive")),
    case(
        "lsuv-max-iter-negative", "lsuv", MLP, *BATCH, "--max-iter", "-3", says=("max_iter", "-3")
    ),
    # Plan files.
    case("config-missing", "plan", MLP, "--config", "missing.yaml", says="does not exist"),
    case(
        "config-suffix",
        "plan",
        "--config",
        "plan.txt",
        "--show",
        says=("'.txt'", ".yaml", ".toml"),
    ),
    case(
        "config-unknown-field",
        "plan",
        "--config",
        "unknown_field.yaml",
        "--show",
        says=("unknown_field.yaml", "defualt"),
    ),
    case("config-bad-toml", "plan", "--config", "broken.toml", "--show", says="broken.toml"),
    case("config-bad-yaml", "plan", "--config", "broken.yaml", "--show", says="broken.yaml"),
    case(
        "config-bad-scheme",
        "plan",
        "--config",
        "bad_scheme.json",
        "--show",
        says=("bad_scheme.json", "he_normall"),
    ),
    case(
        "config-rules-not-list",
        "plan",
        "--config",
        "rules_string.yaml",
        "--show",
        says=("rules_string.yaml", "rules"),
    ),
    case("config-empty", "plan", "--config", "empty.yaml", "--show", says="empty.yaml"),
    case(
        "doctor-plan-file-missing",
        "doctor",
        MLP,
        *BATCH,
        "--plan",
        "missing.yaml",
        says="'missing.yaml'",
    ),
    # Combinations that do nothing the user asked for.
    case("save-without-apply", "plan", MLP, "--save", "w.safetensors", says="add --apply"),
    case(
        "show-with-json",
        "plan",
        "--preset",
        "xavier",
        "--show",
        "--json",
        "t.json",
        says=("--show", "--json"),
    ),
    case(
        "show-with-apply",
        "plan",
        MLP,
        "--preset",
        "xavier",
        "--show",
        "--apply",
        says=("--show", "--apply"),
    ),
]

# Output paths: checked before the model is built (load_factory is made to fail in these).
OUTPUT_CASES = [
    case(
        "doctor-json-missing-folder",
        "doctor",
        MLP,
        *BATCH,
        "--json",
        "nodir/r.json",
        says=("--json", "'nodir/r.json'", "folder 'nodir' does not exist", "mkdir"),
    ),
    case(
        "doctor-html-missing-folder",
        "doctor",
        MLP,
        *BATCH,
        "--fix",
        "--html",
        "no/r.html",
        says=("--html", "'no'", "does not exist"),
    ),
    case(
        "doctor-json-directory",
        "doctor",
        MLP,
        *BATCH,
        "--json",
        "adir",
        says=("--json", "'adir'", "is a folder"),
    ),
    case(
        "doctor-json-suffix",
        "doctor",
        MLP,
        *BATCH,
        "--json",
        "r.txt",
        says=("--json", "'r.txt'", ".json"),
    ),
    case(
        "doctor-html-suffix", "doctor", MLP, *BATCH, "--html", "r.json", says=("--html", ".html")
    ),
    case(
        "doctor-json-under-a-file",
        "doctor",
        MLP,
        *BATCH,
        "--json",
        "table.csv/r.json",
        says=("--json", "'table.csv'", "not a folder"),
    ),
    case(
        "plan-json-missing-folder",
        "plan",
        MLP,
        "--json",
        "nodir/t.json",
        says=("--json", "'nodir'", "does not exist"),
    ),
    case(
        "plan-save-missing-folder",
        "plan",
        MLP,
        "--apply",
        "--save",
        "no/w.safetensors",
        says=("--save", "'no'", "does not exist"),
    ),
    case(
        "plan-save-suffix",
        "plan",
        MLP,
        "--apply",
        "--save",
        "w.pt",
        says=("--save", "'w.pt'", ".safetensors"),
    ),
    case(
        "plan-save-directory",
        "plan",
        MLP,
        "--apply",
        "--save",
        "dir.safetensors",
        says=("--save", "is a folder"),
    ),
    case(
        "lsuv-save-missing-folder",
        "lsuv",
        MLP,
        *BATCH,
        "--save",
        "no/w.safetensors",
        says=("--save", "'no'", "does not exist"),
    ),
    case(
        "lsuv-save-suffix", "lsuv", MLP, *BATCH, "--save", "w.bin", says=("--save", ".safetensors")
    ),
]


def _write_inputs(folder: Path) -> None:
    (folder / f"{MODULE}.py").write_text(textwrap.dedent(FACTORIES), encoding="utf-8")
    (folder / "explodes.py").write_text("raise ValueError('bad config at import')\n")
    np.save(folder / "empty.npy", np.zeros((0,), dtype=np.float32))
    (folder / "zero.npy").write_bytes(b"")
    (folder / "corrupt.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    np.savez(folder / "no_x.npz", features=np.zeros((16, 8), dtype=np.float32))
    np.savez(folder / "nothing.npz")
    np.save(folder / "words.npy", np.array(["a", "b"]))
    np.save(folder / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(folder / "small.npy", np.zeros((4, 64), dtype=np.float32))
    (folder / "table.csv").write_text("a,b\n1,2\n")
    (folder / "plan.yaml").write_text("default: auto\n")
    (folder / "plan.txt").write_text("default: auto\n")
    (folder / "unknown_field.yaml").write_text("defualt: kaiming_normal\n")
    (folder / "broken.toml").write_text("default = [\n")
    (folder / "broken.yaml").write_text("default: [unclosed\n")
    (folder / "bad_scheme.json").write_text(json.dumps({"default": "he_normall"}))
    (folder / "rules_string.yaml").write_text("rules: kaiming\n")
    (folder / "empty.yaml").write_text("")
    (folder / "adir").mkdir()
    (folder / "dir.safetensors").mkdir()


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory with the models and the files the cases name."""
    _write_inputs(tmp_path)
    for name in (MODULE, "explodes"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    narrow_consoles(monkeypatch)
    return tmp_path


@pytest.mark.parametrize("bad", params(CASES))
def test_bad_input_is_one_line_with_its_exit_code(folder: Path, bad: Case) -> None:
    assert_one_line(invoke(*bad.args), bad.code, bad.says)


@pytest.mark.parametrize("bad", params(OUTPUT_CASES))
def test_output_paths_are_checked_before_the_work(
    folder: Path, bad: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was built before the output path was checked")

    monkeypatch.setattr("initlab.plan.factory.load_factory", no_work)
    assert_one_line(invoke(*bad.args), bad.code, bad.says)
    assert not (folder / "nodir").exists()


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write anywhere"
)
def test_an_output_folder_without_write_permission(folder: Path) -> None:
    locked = folder / "locked"
    locked.mkdir(mode=0o500)
    try:
        result = invoke("doctor", MLP, *BATCH, "--json", "locked/r.json")
    finally:
        locked.chmod(0o700)
    assert_one_line(result, 2, ("--json", "'locked'", "not writable"))


def break_inside_initlab(monkeypatch: pytest.MonkeyPatch, module: str, name: str) -> None:
    """Make an internal function raise: a Mock, so the innermost Python frame is initlab's."""
    bug = mock.Mock(side_effect=RuntimeError("an invariant broke"))
    monkeypatch.setattr(importlib.import_module(module), name, bug)


def test_an_internal_error_is_one_line_exit_3_naming_the_bug(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_inside_initlab(monkeypatch, "initlab.doctor.diagnose", "doctor")
    line = assert_one_line(
        invoke("doctor", MLP, *BATCH), 3, ("bug in initlab", "RuntimeError: an invariant broke")
    )
    assert "--debug" in line
    assert "INITLAB_DEBUG=1" in line


@pytest.mark.parametrize("how", ["flag-after", "flag-before", "environment"])
def test_debug_shows_the_traceback(
    folder: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    break_inside_initlab(monkeypatch, "initlab.doctor.diagnose", "doctor")
    args = ["doctor", MLP, *BATCH]
    if how == "flag-after":
        args.append("--debug")
    elif how == "flag-before":
        args.insert(0, "--debug")
    else:
        monkeypatch.setenv("INITLAB_DEBUG", "1")
    result = invoke(*args)
    assert result.exit_code == 3, result.output
    assert "Traceback (most recent call last)" in result.stderr
    assert "doctor_command" in result.stderr  # the frame in cli/doctor.py
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: internal error, a bug in initlab: RuntimeError"), last


def test_debug_does_not_change_a_user_error(folder: Path) -> None:
    assert_one_line(invoke("--debug", "doctor", "models", *BATCH), 2, ("MODULE:FACTORY",))


def test_an_internal_error_in_another_command_exits_3(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_inside_initlab(monkeypatch, "initlab.report.schemes", "catalogue_table")
    assert_one_line(invoke("schemes"), 3, ("bug in initlab", "RuntimeError"))


def test_an_unexpected_error_from_the_users_code_names_their_file(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # initlab maps a model failing on the batch to exit 2; a user's function raising where
    # initlab does not expect it (here: patched in for the doctor) is named as theirs.
    (folder / "user_code.py").write_text("def doctor(*a, **k):\n    raise KeyError('x')\n")
    monkeypatch.delitem(sys.modules, "user_code", raising=False)
    monkeypatch.setattr(
        importlib.import_module("initlab.doctor.diagnose"),
        "doctor",
        importlib.import_module("user_code").doctor,
    )
    assert_one_line(
        invoke("doctor", MLP, *BATCH), 3, ("error in your code (user_code.py:2)", "KeyError")
    )


@pytest.mark.parametrize("command", ["plan", "doctor", "lsuv", "schemes", "sweep", "report"])
def test_every_help_lists_the_exit_codes(command: str) -> None:
    result = typer.testing.CliRunner().invoke(
        cli.app, [command, "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"}
    )
    assert result.exit_code == 0, result.output
    for words in ("Exit codes", "2 usage or input error", "3 internal error", "--debug"):
        assert words in result.stdout, result.stdout


def test_no_command_prints_the_help_and_exits_2(folder: Path) -> None:
    result = invoke()
    assert result.exit_code == 2
    assert "Exit codes" in result.output
    assert "error:" not in result.output
