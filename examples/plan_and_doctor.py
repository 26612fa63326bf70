"""Check an init before training: the doctor on a deep ReLU MLP, then its fix.

Run: ``python examples/plan_and_doctor.py`` (writes ``doctor.html`` beside you).
"""

from __future__ import annotations

import torch

import initlab
from initlab.doctor.inputs import digits_batch
from initlab.report.doctor_files import save_doctor_report
from initlab.train.models import MLP


def main() -> None:
    torch.manual_seed(0)
    model = MLP(64, 10, depth=8, width=128)  # PyTorch's default init: U(+-1/sqrt(fan_in))
    batch = digits_batch((64, 64))  # 64 real digits, standardized

    report = initlab.doctor(model, batch)
    for finding in report.findings:
        print(f"{finding.severity:>8}  {finding.title}")

    report.fix.apply(model, seed=0)  # He where ReLU follows
    after = initlab.doctor(model, batch, activations=report.activations)  # same architecture
    print("after the fix:", "healthy" if after.healthy else f"{len(after.findings)} problems")
    save_doctor_report(report, "doctor.html", comparison=after)


if __name__ == "__main__":
    main()
