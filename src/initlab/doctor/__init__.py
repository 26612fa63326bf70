"""Signal propagation at init: measure a real batch, find what is wrong, propose the fix."""

from __future__ import annotations

from initlab.doctor.diagnose import doctor
from initlab.doctor.finding import Finding, Thresholds
from initlab.doctor.metrics import JacobianSpectrum, WeightRecord
from initlab.doctor.probe import LayerRecord, Probe
from initlab.doctor.report import DoctorReport

__all__ = [
    "DoctorReport",
    "Finding",
    "JacobianSpectrum",
    "LayerRecord",
    "Probe",
    "Thresholds",
    "WeightRecord",
    "doctor",
]
