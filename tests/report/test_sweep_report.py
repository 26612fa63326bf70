"""A sweep's report from a trials table: configurations judged against the doctor's verdict,
the page's question and answer, human labels, no ``nan``, shared settings in their own box."""

from __future__ import annotations

import base64
import math
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from initlab.experiments.results import CONFIG_COLUMNS, DOCTOR, OUTCOMES
from initlab.report.sweep import answer, sweep_html
from initlab.report.sweep_view import (
    MOST_LINES_PER_PANEL,
    configurations,
    curve_panels,
    shared_settings,
)
from initlab.report.verdicts import Verdict, stored_verdict, worst

pandas = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

BASE: dict[str, Any] = {"init": "kaiming", "lr": 0.01, "optimizer": "sgd", "momentum": 0.9,
                        "l1": 0.0, "l2": 0.0, "weight_decay": 0.0, "dropout": 0.0,
                        "schedule": "constant", "clip": None, "augment": False, "depth": 4,
                        "width": 32, "activation": "relu", "norm": None}  # fmt: skip
# init -> (healthy at init, finding codes, best val accuracy per seed, diverged)
OUTCOME = {
    "kaiming": (True, "", (0.97, 0.95), False),
    "xavier": (False, "xavier_before_relu", (0.96, 0.96), False),  # a false alarm
    "zeros": (False, "symmetric_weights,dead_relu", (0.10, 0.10), False),
    "normal:1": (False, "exploding_forward,exploding_gradients", (0.10, 0.10), True),
    "orthogonal": (True, "", (0.40, 0.60), False),  # a missed failure
}


def _row(trial: int, init: str, seed: int) -> dict[str, Any]:
    healthy, codes, best, diverged = OUTCOME[init]
    return {
        "trial": trial, "state": "complete", **BASE, "init": init, "seed": seed,
        "doctor_healthy": healthy, "doctor_findings": codes, "doctor_forward_trend": 1.0,
        "doctor_gradient_trend": 1.0, "doctor_jacobian_mean_square": 1.0,
        "best_val_accuracy": best[seed], "final_val_accuracy": best[seed],
        "test_accuracy": math.nan if diverged else best[seed] - 0.01,
        "final_train_loss": math.nan if diverged else 0.3, "diverged": diverged,
        "epochs_run": 1 if diverged else 3, "seconds": 1.5, "error": None,
    }  # fmt: skip


def _table(failed: int = 0) -> Any:
    rows = [_row(2 * i + seed, init, seed) for i, init in enumerate(OUTCOME) for seed in (0, 1)]
    for number in range(failed):
        rows.append({"trial": len(rows) + number, "state": "fail", **BASE, "seed": 0,
                     "error": "ConfigError: boom"})  # fmt: skip
    columns = ["trial", "state", *CONFIG_COLUMNS, "seed", *DOCTOR, *OUTCOMES, "error"]
    return pandas.DataFrame(rows, columns=columns)


def _curves(table: Any) -> Any:
    done = table[table["state"] == "complete"]
    rows = [{"trial": t, "epoch": e, "val_accuracy": a * (e + 1) / 3}
            for t, a in zip(done["trial"], done["best_val_accuracy"], strict=True)
            for e in range(3)]  # fmt: skip
    return pandas.DataFrame(rows)


class _Text(HTMLParser):
    """The visible text of a page (outside <style>), and whether its tags nest."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.open: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("meta", "img", "br"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.errors.append(tag)
        else:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        if "style" not in self.open and "title" not in self.open:
            self.text.append(data)


def _visible(page: str) -> str:
    parser = _Text()
    parser.feed(page)
    assert parser.errors == []
    assert parser.open == []
    return " ".join(" ".join(parser.text).split())


def test_configurations_are_judged_against_the_doctors_verdict() -> None:
    found = {c.name: c for c in configurations(_table())}
    assert set(found) == set(OUTCOME)
    assert [found[i].trained for i in OUTCOME] == [True, True, False, False, False]
    judged = {name: c.judgement for name, c in found.items()}
    assert judged == {"kaiming": "right", "xavier": "false alarm", "zeros": "right",
                      "normal:1": "right", "orthogonal": "missed"}  # fmt: skip
    assert found["zeros"].verdict == Verdict("critical", ("symmetric_weights", "dead_relu"))
    assert found["xavier"].verdict.level == "warning"
    assert found["normal:1"].diverged == 2
    assert found["normal:1"].test == (None, None)


def test_the_answer_counts_where_the_verdict_was_right_and_wrong() -> None:
    assert answer(configurations(_table())) == (
        "The doctor's verdict at init foretold the outcome of 3 of 5 configurations; it passed "
        "1 that did not train and flagged 1 that trained."
    )
    assert answer([]).startswith("No trial completed")


def test_stored_verdicts_and_the_worst_over_seeds() -> None:
    assert stored_verdict(True, "") == Verdict("healthy")
    assert stored_verdict(False, "he_before_tanh").level == "warning"
    assert stored_verdict(False, "vanishing_forward,vanishing_gradients").level == "critical"
    assert stored_verdict(False, "vanishing_forward", "critical").level == "critical"
    assert stored_verdict(math.nan, "").level == "warning"  # unknown is not healthy
    both = worst([Verdict("healthy"), Verdict("warning", ("dead_relu",))])
    assert both == Verdict("warning", ("dead_relu",))


def test_the_page_states_question_and_answer_with_human_labels(tmp_path: Path) -> None:
    table = _table()
    page = sweep_html("study <x>", table, _curves(table), note="tiny", png_folder=tmp_path)
    text = _visible(page)
    assert "Question Which configurations train, and did the doctor's verdict" in text
    assert "Answer The doctor's verdict at init foretold the outcome of 3 of 5" in text
    assert "study &lt;x&gt;" in page
    for label in ("Best validation accuracy", "Test accuracy", "Doctor at init",
                  "%, mean ± std over seeds", "Settings shared by all trials"):  # fmt: skip
        assert label in text
    for raw in ("best_val_accuracy", "doctor_healthy", "nan", "None", "NaN"):
        assert raw not in text, raw
    assert "96.0 ± 1.4" in text  # kaiming: 97 and 95 over seeds
    assert "- diverged" in text  # normal:1's test accuracy
    assert 'class="badge critical"' in page
    assert 'title="symmetric_weights: units of a layer start identical' in page
    assert (tmp_path / "outcome.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "curves.png").exists()


def test_constant_settings_are_in_the_shared_box_not_in_the_trials_table() -> None:
    table = _table()
    shared = shared_settings(table)
    assert shared["Learning rate"] == "0.01"
    assert shared["Gradient clipping (max norm)"] == "none"
    assert shared["Augmentation"] == "no"
    assert "Initialization" not in shared
    page = sweep_html("s", table, _curves(table))
    trials = page[page.index("<h2>All trials</h2>") :]
    assert "Learning rate" not in trials
    assert '<td class="name">kaiming</td>' in trials


def test_the_page_is_self_contained() -> None:
    table = _table()
    page = sweep_html("s", table, _curves(table))
    for external in ("http://", "https://", "url(", "@import", "<script", "<link"):
        assert external not in page.lower()
    images = page.count('src="data:image/png;base64,')
    assert images == 2
    uri = page.split('src="data:image/png;base64,', 1)[1].split('"', 1)[0]
    assert base64.b64decode(uri).startswith(b"\x89PNG")


def test_a_sweep_whose_trials_all_failed_says_so() -> None:
    table = _table(failed=3)
    table = table[table["state"] == "fail"]
    page = sweep_html("fail", table, None)
    text = _visible(page)
    assert "No trial completed: every trial failed" in text
    assert "ConfigError: boom" in text
    assert "data:image/png" not in page
    assert "nan" not in text


def test_learning_curve_panels_hold_at_most_eight_lines() -> None:
    rows = []
    for i, (init, activation) in enumerate(
        (init, act)
        for init in ("a", "b", "c", "d", "e", "f", "g", "h")
        for act in ("relu", "tanh")
    ):
        row = _row(i, "kaiming", 0)
        row.update(init=init, activation=activation)
        rows.append(row)
    table = pandas.DataFrame(rows)
    panels = curve_panels(configurations(table), _curves(table))
    assert [len(p.lines) for p in panels] == [8, 8]
    assert [p.title for p in panels] == ["activation relu", "activation tanh"]
    assert all(len(p.lines) <= MOST_LINES_PER_PANEL for p in panels)
