"""Run the zoo's checks without pytest and print the README's "Tried on" table (Markdown).

    .venv/bin/python tests/zoo/tried_on.py              # the table
    .venv/bin/python tests/zoo/tried_on.py --failures   # also every failing check, one line each
    .venv/bin/python tests/zoo/tried_on.py LLaMA T5     # only these architectures

Columns: the architecture and its family, its parameter count, what ``Plan(default="auto")``
did (how it found the activations, the schemes it chose, rows drawn per block, weight-norm
magnitudes derived, weights whose fans differ from torch's array rule, parameters kept), the
doctor's verdict on the stock init, what LSUV fitted and skipped, whether ``materialize``
with the auto plan matched ``Plan.apply`` on an eager build, and how many of the zoo's checks
(``test_zoo.py``) pass.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import checks
import torch
from architectures import ARCHITECTURES, Architecture

import initlab

CHECKS: dict[str, Callable[[Architecture], Any]] = {
    "plan: schemes": checks.check_plan_schemes,
    "plan: layers covered": checks.check_plan_covers_layers,
    "plan: fans": checks.check_plan_fans,
    "plan: apply": checks.check_plan_apply,
    "audit: stock": checks.check_audit_stock,
    "audit: after auto": checks.check_audit_after_auto,
    "doctor": checks.check_doctor,
    "lsuv: claims": checks.check_lsuv_claims,
    "lsuv: every layer": checks.check_lsuv_accounts_for_every_layer,
    "materialize": checks.check_materialize,
    "materialize: buffers": checks.check_materialize_buffers,
}


def _first_line(error: BaseException, limit: int = 160) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = " ".join(lines[:2]) if lines else type(error).__name__
    if not isinstance(error, AssertionError):
        text = f"{type(error).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def parameter_count(architecture: Architecture) -> str:
    count = sum(p.numel() for p in architecture.model().parameters())
    return f"{count / 1000:.1f}k"


_SCHEME_NAMES = {"he_normal": "He", "xavier_normal": "Xavier", "lecun_normal": "LeCun"}


def auto_summary(table: initlab.Assignments) -> str:
    """What ``auto`` chose for the weights, and what it did beyond one scheme per parameter."""
    schemes = Counter(
        _SCHEME_NAMES.get(row.scheme.name, row.scheme.name)
        for row in table
        if row.site.role == "weight" and row.scheme is not None
    )
    parts = [", ".join(f"{name} {count}" for name, count in sorted(schemes.items()))]
    derived = [row for row in table if getattr(row.site, "magnitude_of", "")]
    counts = {
        "drawn per q/k/v or gate block": sum(1 for row in table if getattr(row, "parts", ())),
        "weight-norm g derived": len(derived),
        "fans differ from torch's": sum(
            1 for row in table if row.site.role == "weight" and "torch's array rule" in row.notes
        ),
        "tied": sum(1 for row in table if row.site.tied_to),
        "kept": sum(1 for row in table if row.scheme is None and row not in derived),
    }
    parts += [f"{count} {label}" for label, count in counts.items() if count]
    parts.append(f"activations: {table.activation_method or '-'}")
    return "; ".join(parts)


def doctor_verdict(report: initlab.DoctorReport) -> str:
    if report.healthy:
        return "healthy"
    by_severity: dict[str, list[str]] = {}
    for finding in report.findings:
        if finding.severity != "info":
            by_severity.setdefault(finding.severity, []).append(finding.code)
    return "; ".join(f"{severity}: {', '.join(codes)}" for severity, codes in by_severity.items())


def lsuv_summary(run: checks.LsuvRun) -> str:
    rows = run.log.rows
    converged = sum(row.converged for row in rows)
    text = f"{len(rows)} fitted" + ("" if converged == len(rows) else f" ({converged} converged)")
    return f"{text}, {len(run.log.skipped)} skipped"


def materialize_summary(built: checks.Materialized) -> str:
    return "ok" + (f" ({len(built.reports)} warning(s))" if built.reports else "")


def tried_on(architecture: Architecture) -> tuple[list[str], dict[str, str], float]:
    """The table row of one architecture, its failing checks, and the seconds it took."""
    start = time.perf_counter()
    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    for label, check in CHECKS.items():
        try:
            results[label] = check(architecture)
        except Exception as error:
            failures[label] = _first_line(error)
    auto = (
        auto_summary(results["plan: schemes"])
        if "plan: schemes" in results
        else f"fails: {failures['plan: schemes']}"
    )
    doctor = (
        doctor_verdict(results["doctor"]) if "doctor" in results else _recover_doctor(architecture)
    )
    lsuv = (
        lsuv_summary(results["lsuv: every layer"])
        if "lsuv: every layer" in results
        else _recover_lsuv(architecture)
    )
    materialized = (
        materialize_summary(results["materialize"])
        if "materialize" in results
        else f"fails: {failures['materialize'][:90]}..."
    )
    row = [
        architecture.name,
        architecture.family,
        parameter_count(architecture),
        auto,
        doctor,
        lsuv,
        materialized,
        f"{len(CHECKS) - len(failures)}/{len(CHECKS)}",
    ]
    return row, failures, time.perf_counter() - start


def _recover_doctor(architecture: Architecture) -> str:
    """The verdict when the check failed: the findings if the doctor ran, else its error."""
    try:
        return doctor_verdict(initlab.doctor(architecture.model(), architecture.batch()))
    except Exception as error:
        return f"error: {_first_line(error)}"


def _recover_lsuv(architecture: Architecture) -> str:
    """LSUV's counts when the accounting check failed, else its error."""
    try:
        run = checks.run_lsuv(architecture)
    except Exception as error:
        return f"error: {_first_line(error)}"
    layers = {weight.layer for weight in checks.layer_weights(architecture.model())}
    accounted = checks.fitted_layers(run.log) | checks.skipped_layers(run.log)
    return f"{lsuv_summary(run)}, {len(layers - accounted)} unaccounted"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="architectures to run (default: all)")
    parser.add_argument("--failures", action="store_true", help="list every failing check")
    options = parser.parse_args(argv)
    torch.set_num_threads(1)
    chosen = [a for a in ARCHITECTURES if not options.names or a.name in options.names]
    header = ["architecture", "family", "parameters", "`auto` did", "doctor (stock init)",
              "LSUV", "materialize (auto)", "zoo checks passed"]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    failing: list[tuple[str, str, str]] = []
    timings: list[tuple[float, str]] = []
    for architecture in chosen:
        row, failures, seconds = tried_on(architecture)
        print("| " + " | ".join(_cell(cell) for cell in row) + " |", flush=True)
        failing += [(architecture.name, check, text) for check, text in failures.items()]
        timings.append((seconds, architecture.name))
    if options.failures:
        print(f"\n{len(failing)} failing checks:\n")
        print("| architecture | check | what failed |\n|---|---|---|")
        for name, check, text in failing:
            print(f"| {_cell(name)} | {check} | {_cell(text)} |")
        slowest = ", ".join(f"{name} {seconds:.1f}s" for seconds, name in sorted(timings)[::-1])
        print(f"\nseconds per architecture (all checks): {slowest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
