"""Start-up time: ``import torch``, ``import initlab``, ``initlab --help``, ``initlab schemes``.

Each command runs in a fresh interpreter (the console script is run as ``python -c`` calling
``initlab.cli:main``, which is all the installed ``initlab`` script does), interleaved (torch,
initlab, --help, schemes, torch, ...) so that a busy neighbour slows every command alike. Prints
the median wall time of each with its spread (min-max) and the ratios of medians to
``import torch``; also whether each command loaded torch.

    python benchmarks/bench_startup.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

_CLI = "import sys; from initlab.cli import main; sys.argv = ['initlab', *{args!r}]; main()"
# Asked at interpreter exit: the CLI's SystemExit would skip a statement placed after it.
_REPORT_TORCH = (
    "import atexit, sys\natexit.register(lambda: print('torch' in sys.modules, file=sys.stderr))\n"
)


@dataclass(frozen=True)
class Command:
    """One start-up to time: a label and the Python code a fresh interpreter runs."""

    label: str
    code: str


COMMANDS = (
    Command("import torch", "import torch"),
    Command("import initlab", "import initlab"),
    Command("initlab --help", _CLI.format(args=["--help"])),
    Command("initlab schemes", _CLI.format(args=["schemes"])),
)


def _seconds(code: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "120"},
    )
    return time.perf_counter() - start


def _loads_torch(command: Command) -> bool:
    """Whether ``command`` leaves torch in ``sys.modules`` (run once, outside the timing)."""
    result = subprocess.run(
        [sys.executable, "-c", _REPORT_TORCH + command.code],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "120"},
    )
    return result.stderr.strip().splitlines()[-1] == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    for command in COMMANDS:  # warm the file cache once, untimed
        _seconds(command.code)
    times: dict[str, list[float]] = {command.label: [] for command in COMMANDS}
    for _ in range(args.repeats):
        for command in COMMANDS:
            times[command.label].append(_seconds(command.code))
    baseline = statistics.median(times["import torch"])
    print(f"Python {sys.version.split()[0]}, median of {args.repeats} interleaved runs")
    for command in COMMANDS:
        runs = times[command.label]
        median = statistics.median(runs)
        torch_note = "loads torch" if _loads_torch(command) else "no torch"
        print(
            f"{command.label:<16} {median:6.3f} s  (min {min(runs):.3f}, max {max(runs):.3f})  "
            f"ratio to import torch {median / baseline:5.2f}  [{torch_note}]"
        )


if __name__ == "__main__":
    main()
