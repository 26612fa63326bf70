"""Progress bars: drawn on a terminal, silent elsewhere or when turned off, one at a time, and
never a change to what the library computes."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from rich.console import Console
from torch import nn

import initlab
from initlab import progress
from initlab.doctor import doctor
from initlab.lsuv import lsuv
from initlab.report.doctor_files import save_doctor_report
from initlab.scale import materialize
from initlab.train import MLP, Dataset, TrainConfig, fit, from_arrays


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    yield
    progress.set_default(None)
    progress.set_console(None)


def _console(*, terminal: bool) -> io.StringIO:
    """Bars go to a string; ``terminal`` says whether Rich takes it for a terminal."""
    written = io.StringIO()
    progress.set_console(Console(file=written, force_terminal=terminal, width=100))
    return written


@pytest.fixture(scope="module")
def tiny_data() -> Dataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(96, 8, generator=generator)
    return from_arrays(x, (x[:, 0] > 0).long(), name="tiny", seed=0)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))


def _fit(data: Dataset, enabled: bool | None) -> list[float]:
    torch.manual_seed(0)
    model = MLP(8, 2, depth=1, width=16)
    history = fit(model, data, TrainConfig(epochs=3, batch_size=32, lr=0.1), progress=enabled)
    return [record.train_loss for record in history.epochs]


def _doctor(enabled: bool | None) -> object:
    return doctor(_net(), torch.randn(32, 8), progress=enabled).to_dict()


def _lsuv(enabled: bool | None) -> object:
    model = _net()
    lsuv(model, torch.randn(64, 8), progress=enabled)
    return [p.detach().tolist() for p in model.parameters()]


def _materialize(enabled: bool | None) -> object:
    plan = initlab.preset("kaiming")
    model = materialize(lambda: nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 2)), plan,
                        progress=enabled)  # fmt: skip
    return [p.detach().tolist() for p in model.parameters()]


RUNS: dict[str, tuple[Callable[[bool | None], object], str]] = {
    "doctor": (_doctor, "doctor:"),
    "lsuv": (_lsuv, "lsuv:"),
    "materialize": (_materialize, "materialize: filling parameters"),
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_terminal_shows_the_bar_and_the_result_does_not_change(name: str) -> None:
    run, words = RUNS[name]
    quiet_result = run(False)
    written = _console(terminal=True)
    assert run(None) == quiet_result  # the same values, to the last bit
    assert words in written.getvalue()


def test_fit_shows_its_epochs_and_trains_the_same(tiny_data: Dataset) -> None:
    quiet_losses = _fit(tiny_data, False)
    written = _console(terminal=True)
    assert _fit(tiny_data, None) == quiet_losses
    text = written.getvalue()
    assert "training (loss" in text
    assert "3/3" in text


@pytest.mark.parametrize("name", sorted(RUNS))
def test_nothing_is_written_when_turned_off(name: str) -> None:
    run, _ = RUNS[name]
    written = _console(terminal=True)
    run(False)
    progress.set_default(False)  # the CLI's --quiet
    run(None)
    assert written.getvalue() == ""


def test_fit_writes_nothing_when_turned_off(tiny_data: Dataset) -> None:
    written = _console(terminal=True)
    _fit(tiny_data, False)
    progress.set_default(False)
    _fit(tiny_data, None)
    assert written.getvalue() == ""


@pytest.mark.parametrize("name", sorted(RUNS))
def test_nothing_is_written_off_a_terminal_unless_asked(name: str) -> None:
    run, words = RUNS[name]
    written = _console(terminal=False)
    run(None)
    assert written.getvalue() == ""
    run(True)  # asked: the final bar, once, without terminal codes
    assert words in written.getvalue()
    assert "\x1b" not in written.getvalue()


def test_standard_error_that_is_not_a_terminal_gets_nothing(
    tiny_data: Dataset, capsys: pytest.CaptureFixture[str]
) -> None:
    _fit(tiny_data, None)
    _doctor(None)
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == ""


def test_one_bar_at_a_time() -> None:
    written = _console(terminal=True)
    with progress.steps("outer work", 2) as outer:
        assert outer.shown
        with progress.steps("inner work", 3, enabled=True) as inner:
            assert not inner.shown
        _doctor(None)  # a library call inside the caller's bar draws none of its own
        outer.advance(2)
    text = written.getvalue()
    assert "outer work" in text
    assert "inner work" not in text
    assert "doctor:" not in text


def test_nothing_inside_a_quiet_block() -> None:
    written = _console(terminal=True)
    with progress.quiet():
        _lsuv(True)
        with progress.steps("work", 1, enabled=True) as bar:
            assert not bar.shown
    assert written.getvalue() == ""
    with progress.steps("after the block", 1) as bar:  # the block is over
        assert bar.shown


def test_a_bar_that_fails_lets_the_next_one_draw() -> None:
    written = _console(terminal=True)
    with pytest.raises(RuntimeError, match="stop"), progress.steps("failing", 2):
        raise RuntimeError("stop")
    with progress.steps("next", 1) as bar:
        bar.advance()
    assert "next" in written.getvalue()


def test_the_doctor_report_file_shows_a_bar(tmp_path: Path) -> None:
    report = doctor(_net(), torch.randn(32, 8), jacobian=False, progress=False)
    written = _console(terminal=True)
    save_doctor_report(report, tmp_path / "doctor.html", progress=None)
    assert "writing doctor.html" in written.getvalue()
    assert (tmp_path / "doctor.html").read_text(encoding="utf-8").startswith("<!")


def test_set_default_takes_only_a_boolean_or_none() -> None:
    with pytest.raises(initlab.errors.ConfigError, match="True, False or None"):
        progress.set_default("yes")  # type: ignore[arg-type]


def test_a_sweeps_trial_bar_counts_trials_on_a_terminal_and_stays_silent_in_a_pipe() -> None:
    from initlab.report.experiments import trial_progress

    written = _console(terminal=True)
    with trial_progress("trials") as update:
        update(0, 5)
        update(3, 5)
    assert "trials" in written.getvalue()
    assert "3/5" in written.getvalue()
    piped = _console(terminal=False)
    with trial_progress("trials") as update:
        update(3, 5)
    assert piped.getvalue() == ""
