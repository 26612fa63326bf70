"""The doctor's HTML report: one self-contained file with the findings, plots and tables."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from torch import nn

from initlab.doctor import DoctorReport, doctor
from initlab.optional import MissingDependencyError
from initlab.report import doctor_plots
from initlab.report.doctor_files import save_doctor_report
from initlab.report.doctor_html import doctor_html

pytest.importorskip("matplotlib")

VOID = {"meta", "img", "br", "hr", "input", "link"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ODD_NAME = "<img src=x onerror=alert(1)>&"


def _mlp(depth: int, init: str) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(16, 16), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(16, 4))
    for module in model.modules():
        if isinstance(module, nn.Linear) and init == "zeros":
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and init == "he":
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return model


def _batch() -> torch.Tensor:
    return torch.randn(32, 16, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def broken() -> tuple[nn.Module, DoctorReport]:
    model = _mlp(3, "zeros")
    return model, doctor(model, _batch())


class Structure(HTMLParser):
    """Collects tags (checking that they nest) and every src/href attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.errors: list[str] = []
        self.links: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.links.extend(v or "" for k, v in attrs if k in ("src", "href", "srcset", "action"))
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.open[-1:]}")
            return
        self.open.pop()


def _parse(page: str) -> Structure:
    parser = Structure()
    parser.feed(page)
    parser.close()
    return parser


def test_the_page_holds_the_findings_and_the_fix_plan(
    broken: tuple[nn.Module, DoctorReport],
) -> None:
    _, report = broken
    page = doctor_html(report, title="zero-init MLP")
    assert "<title>zero-init MLP</title>" in page
    assert "Does the signal keep its scale through this network at init" in page
    assert "No: 2 problems (1 critical, 1 warning): symmetric_weights, dead_relu." in page
    assert '<span class="badge critical" title="symmetric_weights: units of a layer' in page
    for finding in report.findings:
        assert finding.title.replace("'", "&#39;") in page
        assert f'<span class="badge {finding.severity}">' in page
        assert f'<span class="code">{finding.code}</span>' in page
    assert "100% zero rows" in page
    assert "&#39;0.*&#39; -&gt; auto" in page  # the fix plan's rules, escaped
    assert "everything else -&gt; keep" in page
    assert "Input-output Jacobian" in page
    assert "<th title=" in page  # the per-layer table, its columns explained
    assert "Per-layer statistics" in page


def test_the_page_is_self_contained(broken: tuple[nn.Module, DoctorReport]) -> None:
    _, report = broken
    page = doctor_html(report)
    lowered = page.lower()
    for external in ("http://", "https://", "url(", "@import", "<script", "<link", "<iframe"):
        assert external not in lowered, external
    structure = _parse(page)
    assert structure.links, "the plots are embedded as images"
    for link in structure.links:
        assert link.startswith("data:image/png;base64,"), link[:40]
        assert base64.b64decode(link.split(",", 1)[1]).startswith(PNG_SIGNATURE)


def test_the_page_is_well_formed(broken: tuple[nn.Module, DoctorReport]) -> None:
    _, report = broken
    page = doctor_html(report)
    assert page.startswith('<!DOCTYPE html>\n<html lang="en">')
    assert page.rstrip().endswith("</html>")
    structure = _parse(page)
    assert structure.errors == []
    assert structure.open == []
    assert structure.tags.count("html") == structure.tags.count("body") == 1
    assert '<meta charset="utf-8">' in page


def test_text_from_the_model_is_escaped() -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.add_module(ODD_NAME, nn.Linear(8, 8))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            layer: nn.Module = getattr(self, ODD_NAME)
            return layer(x)

    model = Odd()
    nn.init.zeros_(getattr(model, ODD_NAME).weight)
    report = doctor(model, torch.randn(8, 8, generator=torch.Generator().manual_seed(0)))
    page = doctor_html(report, title="<b>title</b>")
    assert ODD_NAME not in page
    assert "&lt;img src=x onerror=alert(1)&gt;&amp;" in page
    assert "<b>title</b>" not in page
    assert _parse(page).links == [link for link in _parse(page).links if link.startswith("data:")]


def test_comparison_adds_a_before_after_section(broken: tuple[nn.Module, DoctorReport]) -> None:
    model, report = broken
    assert report.fix.rules
    fixed = _mlp(3, "zeros")
    fixed.load_state_dict(model.state_dict())
    report.fix.apply(fixed, seed=0)
    after = doctor(fixed, _batch())
    page = doctor_html(report, comparison=after)
    assert "Before and after the fix" in page
    assert '<p class="verdict critical"><span class="badge critical"' in page
    assert '<p class="verdict healthy"><span class="badge healthy"' in page
    assert "</span> after: healthy: no problem found</p>" in page
    assert "After the fix: per-layer statistics" in page
    assert len(_parse(page).links) == 2  # the doctor plots and the before/after plot
    assert _parse(page).errors == []


def test_healthy_report() -> None:
    report = doctor(_mlp(3, "he"), _batch(), jacobian=False)
    page = doctor_html(report)
    assert "Yes: no warning or critical finding." in page
    assert '<span class="badge healthy"' in page
    assert "No finding" in page
    assert "Input-output Jacobian" not in page  # not computed
    assert "The whole fix" not in page  # the empty plan is no fix to show


def test_without_matplotlib_the_page_says_what_to_install(
    broken: tuple[nn.Module, DoctorReport], monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(report: DoctorReport) -> None:
        raise MissingDependencyError(
            "doctor plots needs 'matplotlib.figure', which is not installed. "
            "Install it with: pip install 'initlab[report]'"
        )

    monkeypatch.setattr(doctor_plots, "doctor_figure", missing)
    page = doctor_html(broken[1])
    assert "pip install &#39;initlab[report]&#39;" in page
    assert "Weights are symmetric" in page
    assert "data:image/png" not in page


def test_report_save_writes_html_and_json(
    broken: tuple[nn.Module, DoctorReport], tmp_path: Path
) -> None:
    _, report = broken
    html_path = save_doctor_report(report, tmp_path / "doctor.html")
    assert html_path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    json_path = save_doctor_report(report, tmp_path / "doctor.json")
    assert json.loads(json_path.read_text())["healthy"] is False
