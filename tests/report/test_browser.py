"""The three HTML reports (the demo's, a sweep's, the doctor's) opened in headless Chromium at a
desktop (1280 px) and a phone (390 px) width: the page is exactly as wide as the viewport (wide
tables scroll inside their box), every image loads, nothing is logged as an error, and no
``nan``/``None`` reaches the visible text. A full-page PNG of each is written under the test's
tmp folder for a person to look at.

The demo runs for real, shortened (1 seed, 2 epochs); ``INITLAB_DEMO_REPORT=runs/demo/report.html``
checks (and screenshots) the report of a full ``make demo`` instead.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from initlab.doctor import doctor
from initlab.report.doctor_html import doctor_html

pytestmark = pytest.mark.slow

WIDTHS = (1280, 390)
NOT_A_NUMBER = re.compile(r"\b(?:nan|NaN|None|undefined)\b")
SPACE = {
    "init": ["kaiming", "zeros", "normal:1", "xavier"],
    "depth": [4],
    "width": [32],
    "lr": [0.05],
    "clip": [None],
    "epochs": 3,
    "seeds": 2,
    "sampler": "grid",
}


def _doctor_page() -> str:
    """A zero-init MLP diagnosed, its fix applied and diagnosed again: every section shown."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(6):
        layers += [nn.Linear(32, 32), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(32, 10))
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)
    batch = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
    report = doctor(model, batch)
    assert report.fix.rules
    report.fix.apply(model, seed=0)
    return doctor_html(report, title="zero-init MLP", comparison=doctor(model, batch))


def _initlab(*args: str, cwd: Path) -> None:
    """Run the ``initlab`` command line as a user would (its own process)."""
    environment = {**os.environ, "PYTHONPATH": str(cwd)}
    command = [sys.executable, "-c", "from initlab.cli import main; main()", *args]
    done = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=900, check=False)  # fmt: skip
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]


def _reports(folder: Path) -> dict[str, Path]:
    """The demo's, a sweep's and the doctor's report, made the way a user makes them."""
    demo = os.environ.get("INITLAB_DEMO_REPORT")
    if demo:
        demo_page = Path(demo).resolve()
    else:
        _initlab("demo", "--out", "demo", "--seeds", "1", "--epochs", "2", "--workers", "2",
                 cwd=folder)  # fmt: skip
        demo_page = folder / "demo" / "report.html"
    (folder / "space.json").write_text(json.dumps(SPACE), encoding="utf-8")
    storage = f"sqlite:///{folder / 'browser.db'}"
    _initlab("sweep", "space.json", "--task", "digits-mlp", "--trials", "8", "--storage",
             storage, "--study", "browser", cwd=folder)  # fmt: skip
    _initlab("report", "browser", "--storage", storage, "--out", "sweep.html", cwd=folder)
    (folder / "doctor.html").write_text(_doctor_page(), encoding="utf-8")
    return {"demo": demo_page, "sweep": folder / "sweep.html", "doctor": folder / "doctor.html"}


def _problems(page: Any, width: int) -> list[str]:
    problems = []
    if page.viewport_width != width:
        problems.append(f"viewport {page.viewport_width} px")
    if page.document_width != width or page.body_width > width:
        problems.append(f"scrolls sideways: page {page.document_width} px, body {page.body_width}")
    if not page.images:
        problems.append("no plot")
    problems.extend(f"image not loaded: {i['alt']}" for i in page.images
                    if not i["complete"] or i["width"] <= 0)  # fmt: skip
    problems.extend(f"console: {error}" for error in page.errors)
    problems.extend(f"visible {word!r}" for word in NOT_A_NUMBER.findall(page.text))
    return problems


def test_reports_fit_the_viewport_and_load_cleanly(chromium: Any, tmp_path: Path) -> None:
    """One test for the six pages, so the reports are made once even under pytest-xdist."""
    reports = _reports(tmp_path)
    found = {}
    for name, path in reports.items():
        for width in WIDTHS:
            screenshot = tmp_path / f"{name}-{width}.png"
            page = chromium.open(path, width, screenshot)
            found[f"{name} at {width} px"] = _problems(page, width)
            assert screenshot.stat().st_size > 10_000
    assert {key: problems for key, problems in found.items() if problems} == {}
