"""The doctor's verdict as reports show it: a level (healthy, warning, critical), a colour, and
the finding codes spelled out in words.

A sweep stores each trial's verdict at init as ``doctor_healthy`` and the comma-separated codes
of its warning and critical findings (``doctor_findings``); a doctor report has the findings
themselves. Both become a :class:`Verdict`, which the HTML badges and the plots colour alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from initlab.doctor import DoctorReport

__all__ = ["FINDING_MEANINGS", "LEVELS", "LEVEL_COLOURS", "Level", "Verdict", "report_verdict",
           "stored_verdict", "worst"]  # fmt: skip

Level = Literal["healthy", "warning", "critical"]
LEVELS: tuple[Level, ...] = ("healthy", "warning", "critical")

# Colour-blind-safe enough to tell apart (green, amber, red differ in lightness too).
LEVEL_COLOURS: dict[Level, str] = {
    "healthy": "#1a7f37",
    "warning": "#bf8700",
    "critical": "#cf222e",
}

# One line per finding code of the doctor, for hover text and the glossary under a table.
FINDING_MEANINGS: dict[str, str] = {
    "nonfinite": "NaN or inf values in the forward or backward pass",
    "vanishing_forward": "the forward signal shrinks with depth",
    "exploding_forward": "the forward signal grows with depth",
    "vanishing_gradients": "gradients shrink toward the input",
    "exploding_gradients": "gradients grow toward the input",
    "dead_relu": "most units of a rectifier are zero for the whole batch",
    "inputs_collapse": "different inputs collapse to one direction",
    "saturated": "tanh/sigmoid outputs sit in saturation, gradients near zero",
    "symmetric_weights": "units of a layer start identical (or zero) and stay so",
    "cloned_layers": "layers start as exact copies of another layer",
    "random_norm_scales": "normalization scales drawn at random around 0",
    "torch_default_relu": "PyTorch's default init (1/6 of He's variance) before ReLU",
    "xavier_before_relu": "gain-1 weights before ReLU: half the variance lost per layer",
    "he_before_tanh": "He-scaled weights push tanh/sigmoid toward saturation",
}

# Codes the doctor only ever reports as critical: a stored verdict (codes without severities)
# with one of them is critical; otherwise its findings are at least warnings.
_CRITICAL_CODES = frozenset({"nonfinite", "vanishing_gradients", "exploding_gradients",
                             "symmetric_weights", "torch_default_relu"})  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    """The doctor's verdict at init: its level and the codes of its findings."""

    level: Level
    codes: tuple[str, ...] = ()

    @property
    def flagged(self) -> bool:
        """Whether the doctor found a warning or critical problem."""
        return self.level != "healthy"

    @property
    def meanings(self) -> tuple[tuple[str, str], ...]:
        """``(code, what it means)`` for each code (the code itself when unknown)."""
        return tuple((code, FINDING_MEANINGS.get(code, code)) for code in self.codes)

    @property
    def explanation(self) -> str:
        """The codes spelled out on one line (hover text)."""
        if not self.codes:
            return "no warning or critical finding at init"
        return "; ".join(f"{code}: {meaning}" for code, meaning in self.meanings)


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The most severe level and every code of ``verdicts`` (first-seen order), e.g. over seeds."""
    found = list(verdicts)
    level: Level = max((v.level for v in found), key=LEVELS.index, default="healthy")
    codes = dict.fromkeys(code for v in found for code in v.codes)
    return Verdict(level, tuple(codes))


def stored_verdict(healthy: object, findings: object, severity: object = None) -> Verdict:
    """A sweep trial's stored verdict: ``doctor_healthy``, ``doctor_findings`` and, when the
    study has it, ``doctor_severity`` (the worst severity). Without a severity, a finding code
    the doctor only reports as critical makes the verdict critical, any other a warning."""
    codes = tuple(code for code in str(findings or "").split(",") if code)
    if severity == "warning" or severity == "critical":
        return Verdict(severity, codes)
    if healthy is not None and healthy == healthy and bool(healthy):  # NaN != NaN: unknown
        return Verdict("healthy")
    return Verdict("critical" if _CRITICAL_CODES.intersection(codes) else "warning", codes)


def report_verdict(report: DoctorReport) -> Verdict:
    """The verdict of a doctor report: its worst warning/critical severity and their codes."""
    problems = [f for f in report.findings if f.severity in ("warning", "critical")]
    level: Level = "healthy"
    if problems:
        level = "critical" if any(f.severity == "critical" for f in problems) else "warning"
    return Verdict(level, tuple(dict.fromkeys(f.code for f in problems)))
