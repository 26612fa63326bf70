"""Every bad input of sweeps, reports and search spaces: refused at the door, in one line.

Each case is checked twice where it can be: through the Python API (the error class and the
words its message must contain) and through the CLI (exit code 2, one ``error:`` line, no
traceback). Every CLI case runs in a fresh folder next to a real study that already holds a
complete trial, and must leave that study exactly as it was and create no file or folder.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from one_line import assert_one_line, invoke, narrow_consoles

from initlab.errors import ConfigError, InitlabError, UnknownNameError
from initlab.experiments.space import SearchSpace
from initlab.experiments.storage import default_url, open_storage
from initlab.experiments.sweep import run_sweep

OK_SPACE = "init: [kaiming]\ndepth: [2]\nwidth: [16]\nepochs: 1\nbatch_size: 128\nsampler: grid\n"


@dataclass(frozen=True)
class SpaceCase:
    """A search-space file's text and words its error must contain."""

    id: str
    text: str
    says: tuple[str, ...]


def space(id: str, text: str, *says: str) -> Any:
    return pytest.param(SpaceCase(id, text, says), id=id)


SPACES = [
    # Init specs: every one is checked before any trial (they used to fail every trial forever).
    space("normal-negative", 'init: ["normal:-1"]', "init", "normal:-1", "finite number >= 0"),
    space("normal-not-a-number", 'init: ["normal:abc"]', "normal:abc", "e.g. normal:0.01"),
    space("normal-nan", 'init: ["normal:nan"]', "normal:nan", "finite number"),
    space("normal-inf", 'init: ["normal:inf"]', "normal:inf", "finite number"),
    space("normal-second-choice", 'init: [kaiming, "normal:-0.5"]', "choice 1", "normal:-0.5"),
    space("init-unknown", "init: [kaimng]", "Unknown init 'kaimng'", "Did you mean 'kaiming'"),
    space("init-not-a-string", "init: [3]", "init", "expected an init name", "got 3"),
    space("init-empty", "init: []", "init", "at least one choice"),
    space("init-not-a-list", "init: kaiming", "init", "expected a list of choices"),
    # Numeric choices and ranges.
    space("dropout-above-one", "dropout: [1.5]", "dropout", "[0, 1)", "got 1.5"),
    space("dropout-one", "dropout: [1.0]", "dropout", "[0, 1)"),
    space("dropout-negative", "dropout: [-0.1]", "dropout", "got -0.1"),
    space("dropout-range-reaches-one", "dropout: {low: 0.0, high: 1.0}", "dropout", "[0, 1)"),
    space("lr-zero", "lr: [0]", "lr", "(0, inf)", "got 0"),
    space("lr-not-a-number", "lr: [fast]", "lr", "got 'fast'"),
    space("lr-scalar", "lr: 0.1", "lr", "a list of choices or a range", "e.g. [0.1]"),
    space("log-low-zero", "lr: {low: 0, high: 0.1, log: true}", "lr", "log range needs low > 0"),
    space("log-low-negative", "lr: {low: -1, high: 1, log: true}", "lr", "low > 0", "low=-1"),
    space("low-above-high", "lr: {low: 0.1, high: 0.01}", "lr", "high (0.01) must be >= low"),
    space("range-unknown-key", "lr: {low: 0.1, high: 1, step: 0.1}", "lr", "'step'", "low, high"),
    space("range-missing-high", "lr: {low: 0.1}", "lr", "high", "Field required"),
    space("range-bound-not-a-number", "lr: {low: a, high: 1}", "lr", "low", "valid number"),
    space("range-not-finite", "lr: {low: .nan, high: 1}", "lr", "finite"),
    space("range-log-not-a-bool", "lr: {low: 0.1, high: 1, log: 2}", "lr", "log"),
    space("range-on-a-list-option", "depth: {low: 1, high: 4}", "depth", "a range is for lr"),
    space("momentum-above-one", "momentum: [1.5]", "momentum", "[0, 1]"),
    space("l2-negative", "l2: [-0.001]", "l2", "[0, inf)"),
    space("weight-decay-not-a-number", "weight_decay: [lots]", "weight_decay", "'lots'"),
    space("clip-zero", "clip: [0]", "clip", "or null", "got 0"),
    space("depth-zero", "depth: [0]", "depth", "integer >= 1", "got 0"),
    space("width-fraction", "width: [12.5]", "width", "integer >= 1", "12.5"),
    space("depth-bool", "depth: [true]", "depth", "integer >= 1", "True"),
    space("augment-not-a-bool", "augment: [maybe]", "augment", "true or false", "'maybe'"),
    # Names.
    space("optimizer-unknown", "optimizer: [sgdd]", "optimizer", "'sgd', 'adam' or 'adamw'"),
    space("activation-unknown", "activation: [relux]", "Unknown activation", "'relu'"),
    space("schedule-unknown", "schedule: [cosin]", "Unknown schedule", "'cosine'"),
    space("norm-unknown", "norm: [group]", "norm", "'batch' or 'layer'", "'group'"),
    space("sampler-unknown", "sampler: bayes", "sampler", "'grid', 'random' or 'tpe'"),
    space("pruner-unknown", "pruner: hyperband", "pruner", "'none' or 'median'"),
    space("unknown-option", "learning_rate: [0.1]", "unknown option 'learning_rate'", "lr"),
    space("grid-with-a-range", "sampler: grid\nlr: {low: 0.01, high: 0.1}", "grid", "lr"),
    # How the sweep runs.
    space("epochs-zero", "epochs: 0", "epochs", "greater than or equal to 1", "got 0"),
    space("epochs-negative", "epochs: -3", "epochs", "got -3"),
    space("epochs-fraction", "epochs: 1.5", "epochs", "valid integer", "1.5"),
    space("epochs-string", 'epochs: "10"', "epochs", "valid integer", "'10'"),
    space("seeds-zero", "seeds: 0", "seeds", "greater than or equal to 1"),
    space("batch-size-zero", "batch_size: 0", "batch_size", "greater than or equal to 1"),
    # The file itself.
    space("not-yaml", "init: [kaiming\n", "not valid YAML"),
    space("a-list-not-a-mapping", "- kaiming\n", "expected a mapping of options", "list"),
    space("a-word-not-a-mapping", "hello\n", "expected a mapping of options", "str"),
]


@pytest.mark.parametrize("bad", SPACES)
def test_space_file_is_refused_naming_field_value_and_what_is_accepted(
    tmp_path: Path, bad: SpaceCase
) -> None:
    file = tmp_path / f"{bad.id}.yaml"
    file.write_text(bad.text)
    with pytest.raises(ConfigError) as error:
        SearchSpace.from_file(file)
    message = str(error.value)
    assert message.startswith(str(file)), message
    for words in bad.says:
        assert words in message, message
    assert "\n" not in message


# --- the CLI, beside a real study that must come out untouched ------------------------------


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite study ``good`` holding one complete trial."""
    path = tmp_path_factory.mktemp("stored") / "good.db"
    url = f"sqlite:///{path}"
    space_ = SearchSpace.from_dict(
        {
            "init": ["kaiming"],
            "depth": [2],
            "width": [16],
            "epochs": 1,
            "batch_size": 128,
            "sampler": "grid",
        }
    )
    run_sweep(space_, "digits-mlp", trials=1, storage=url, study="good")
    return url


def snapshot(url: str) -> list[tuple[Any, ...]]:
    import optuna

    study = optuna.load_study(study_name="good", storage=open_storage(url))
    return [
        (t.number, t.state.name, t.params, t.values, json.dumps(t.user_attrs, sort_keys=True))
        for t in study.get_trials(deepcopy=False)
    ]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory with the space files the cases name."""
    (tmp_path / "ok.yaml").write_text(OK_SPACE)
    (tmp_path / "list.yaml").write_text("- kaiming\n")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00init")
    (tmp_path / "adir").mkdir()
    (tmp_path / "notadb.db").write_text("not a database, and must stay so\n")
    monkeypatch.chdir(tmp_path)
    narrow_consoles(monkeypatch)
    return tmp_path


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("bad", SPACES)
def test_cli_sweep_refuses_a_bad_space_before_touching_any_storage(
    folder: Path, stored: str, bad: SpaceCase
) -> None:
    (folder / "space.yaml").write_text(bad.text)
    before, files = snapshot(stored), files_under(folder)
    result = invoke("sweep", "space.yaml", "--trials", "1", "--storage", stored, "--study", "good")
    assert_one_line(result, 2, bad.says)
    assert snapshot(stored) == before
    assert files_under(folder) == files, "nothing is created: no runs/, no .db"


@dataclass(frozen=True)
class CliCase:
    """A command line (``{good}``: the stored study's URL; ``{closed}``: a port nobody serves)
    and words its one-line error must contain."""

    id: str
    args: tuple[str, ...]
    says: tuple[str, ...]


def cli_case(id: str, *args: str, says: tuple[str, ...] | str) -> Any:
    return pytest.param(CliCase(id, args, (says,) if isinstance(says, str) else says), id=id)


SWEEP = ("sweep", "ok.yaml", "--trials", "1")
CLI_CASES = [
    # The space file and the sweep's arguments.
    cli_case("space-missing", "sweep", "nope.yaml", says=("nope.yaml", "does not exist")),
    cli_case("space-is-a-folder", "sweep", "adir", says=("adir", "not a file")),
    cli_case("space-not-utf8", "sweep", "binary.yaml", says=("binary.yaml", "not valid YAML")),
    cli_case("space-a-list", "sweep", "list.yaml", says="expected a mapping of options"),
    cli_case(
        "trials-zero",
        "sweep",
        "ok.yaml",
        "--trials",
        "0",
        "--storage",
        "{good}",
        says=("trials must be an integer >= 1", "got 0"),
    ),
    cli_case(
        "workers-zero",
        *SWEEP,
        "--workers",
        "0",
        "--storage",
        "{good}",
        says=("workers must be an integer >= 1", "got 0"),
    ),
    cli_case(
        "task-unknown",
        *SWEEP,
        "--task",
        "digits-mpl",
        "--storage",
        "{good}",
        says=("Unknown task 'digits-mpl'", "Did you mean 'digits-mlp'"),
    ),
    cli_case("task-unknown-default-storage", *SWEEP, "--task", "mnist", says="Unknown task"),
    # Storage URLs: refused before any worker starts, fast, nothing written.
    cli_case(
        "storage-unknown-scheme",
        *SWEEP,
        "--storage",
        "mongodb://db/x",
        says=("scheme 'mongodb'", "sqlite:///", "postgresql://"),
    ),
    cli_case("storage-mysql", *SWEEP, "--storage", "mysql://u@h/db", says="scheme 'mysql'"),
    cli_case("storage-not-a-url", *SWEEP, "--storage", "runs.db", says=("'runs.db'", "not a URL")),
    cli_case(
        "storage-sqlite-missing-folder",
        *SWEEP,
        "--storage",
        "sqlite:///nope/s.db",
        says=("folder nope does not exist", "create it"),
    ),
    cli_case(
        "storage-sqlite-is-a-folder",
        *SWEEP,
        "--storage",
        "sqlite:///adir",
        says="names a folder, not a file",
    ),
    cli_case(
        "storage-sqlite-not-a-database",
        *SWEEP,
        "--storage",
        "sqlite:///notadb.db",
        says=("Cannot open storage", "not a database"),
    ),
    cli_case(
        "storage-postgres-unreachable",
        *SWEEP,
        "--storage",
        "postgresql://initlab@127.0.0.1:{closed}/postgres",
        says=("Cannot open storage", "127.0.0.1"),
    ),
    cli_case(
        "storage-psycopg2-unreachable",
        *SWEEP,
        "--storage",
        "postgresql+psycopg2://initlab@127.0.0.1:{closed}/postgres",
        says="Cannot open storage",
    ),
    cli_case(
        "storage-password-is-redacted",
        *SWEEP,
        "--storage",
        "postgresql://initlab:hunter2@127.0.0.1:{closed}/postgres",
        says=("Cannot open storage", "initlab:***@"),
    ),
    # Reports.
    cli_case(
        "report-missing-study-default",
        "report",
        "nosuch",
        says=("No study storage at runs/nosuch.db", "initlab sweep"),
    ),
    cli_case(
        "report-missing-sqlite-file",
        "report",
        "x",
        "--storage",
        "sqlite:///gone.db",
        says=("No study storage at gone.db", "does not exist"),
    ),
    cli_case(
        "report-wrong-study-name",
        "report",
        "goood",
        "--storage",
        "{good}",
        says=("No study named 'goood'", "studies there: good"),
    ),
    cli_case(
        "report-unknown-scheme", "report", "good", "--storage", "redis://h", says="scheme 'redis'"
    ),
    cli_case(
        "report-postgres-unreachable",
        "report",
        "good",
        "--storage",
        "postgresql://initlab@127.0.0.1:{closed}/postgres",
        says="Cannot open storage",
    ),
    cli_case(
        "report-csv-wrong-suffix",
        "report",
        "good",
        "--storage",
        "{good}",
        "--csv",
        "trials.txt",
        says=("trials.txt", ".csv"),
    ),
    cli_case(
        "report-parquet-wrong-suffix",
        "report",
        "good",
        "--storage",
        "{good}",
        "--parquet",
        "trials.csv",
        says=("trials.csv", ".parquet"),
    ),
    cli_case(
        "report-out-missing-folder",
        "report",
        "good",
        "--storage",
        "{good}",
        "--out",
        "reprots/good.html",
        says=("--out", "reprots", "does not exist"),
    ),
    cli_case(
        "report-csv-missing-folder",
        "report",
        "good",
        "--storage",
        "{good}",
        "--csv",
        "nofolder/trials.csv",
        says=("--csv", "nofolder", "does not exist"),
    ),
    cli_case(
        "report-out-wrong-suffix",
        "report",
        "good",
        "--storage",
        "{good}",
        "--out",
        "good.pdf",
        says=("--out", "good.pdf", ".html"),
    ),
]


@pytest.mark.parametrize("bad", CLI_CASES)
def test_cli_bad_input_is_one_line_exit_2_and_changes_nothing(
    folder: Path, stored: str, bad: CliCase
) -> None:
    port = str(closed_port())
    args = [arg.replace("{good}", stored).replace("{closed}", port) for arg in bad.args]
    before, files = snapshot(stored), files_under(folder)
    start = time.monotonic()
    result = invoke(*args)
    elapsed = time.monotonic() - start
    message = assert_one_line(result, 2, bad.says)
    assert "hunter2" not in message
    assert elapsed < 15, f"an unreachable server must be an error fast, took {elapsed:.1f} s"
    assert snapshot(stored) == before
    assert files_under(folder) == files, "a refused command creates no file or folder"


# --- the Python API ---------------------------------------------------------------------------


def _sweep(**changes: Any) -> Callable[[Path], object]:
    def call(folder: Path) -> object:
        arguments: dict[str, Any] = {
            "trials": 1,
            "storage": f"sqlite:///{folder / 's.db'}",
            "study": "s",
        }
        arguments.update(changes)
        task = arguments.pop("task", "digits-mlp")
        return run_sweep(SearchSpace.from_dict({}), task, **arguments)

    return call


API_CASES = [
    pytest.param(_sweep(trials=0), ConfigError, ("trials", ">= 1", "got 0"), id="trials-zero"),
    pytest.param(_sweep(trials=2.5), ConfigError, ("trials", "got 2.5"), id="trials-fraction"),
    pytest.param(_sweep(workers=-1), ConfigError, ("workers", "got -1"), id="workers-negative"),
    pytest.param(_sweep(task="nope"), UnknownNameError, ("Unknown task 'nope'",), id="task"),
    pytest.param(_sweep(storage="ftp://x"), ConfigError, ("scheme 'ftp'",), id="scheme"),
    pytest.param(
        _sweep(configurations=[{"seed": 0}]), ConfigError, ("sampler 'grid'",), id="configs-tpe"
    ),
    pytest.param(
        lambda folder: open_storage(f"sqlite:///{folder / 'missing.db'}"),
        ConfigError,
        ("No study storage", "missing.db"),
        id="open-missing-file",
    ),
    pytest.param(
        lambda folder: open_storage(default_url("nosuch", folder / "runs"), create=True),
        ConfigError,
        ("folder", "runs", "does not exist"),
        id="open-missing-folder",
    ),
    pytest.param(
        lambda folder: open_storage(f"postgresql://u@127.0.0.1:{closed_port()}/db"),
        ConfigError,
        ("Cannot open storage",),
        id="open-postgres-unreachable",
    ),
]


@pytest.mark.parametrize(("call", "kind", "says"), API_CASES)
def test_api_bad_input_raises_a_named_error_and_writes_nothing(
    tmp_path: Path, call: Callable[[Path], object], kind: type[InitlabError], says: tuple[str, ...]
) -> None:
    with pytest.raises(kind) as error:
        call(tmp_path)
    for words in says:
        assert words in str(error.value), str(error.value)
    assert list(tmp_path.iterdir()) == []
