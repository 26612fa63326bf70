r"""The doctor's statistics in TensorBoard (``pip install 'initlab[tensorboard]'``).

.. code-block:: python

    report = initlab.doctor(model, batch)
    report.to_tensorboard("runs/doctor")                 # a log directory: written and closed
    report.to_tensorboard(writer, step=epoch, model=model)  # or a SummaryWriter you own

What is written, at ``step``:

* scalars ``{prefix}/{layer}/{statistic}``: every number of :meth:`DoctorReport.rows` that is
  finite, under the row's own name (a statistic that does not apply to a layer is NaN or
  ``None`` there and is left out): ``mean``, ``std`` and ``rms`` of the layer's output,
  ``input_std``, ``zero_fraction``, ``dead_fraction``, ``saturated_fraction``,
  ``channel_mean_sq``, ``channel_var``, ``cosine``, ``nonfinite``, ``grad_std``,
  ``weight_std``, ``weight_gain_sq`` (:math:`\mathrm{Var}(W) \cdot \text{fan\_in}`),
  ``weight_grad_to_weight``. These are the tags Lightning's ``DoctorCallback`` logs, so both
  routes put the same number under the same name. A module's second and later calls go to
  ``{prefix}/{layer}/call2/{statistic}``, ``call3``...;
* scalars ``{prefix}/healthy`` (1 or 0), ``{prefix}/findings/critical`` and
  ``{prefix}/findings/warning`` (counts), and the input-output Jacobian's
  ``{prefix}/jacobian/largest``, ``smallest``, ``mean_square`` and ``spread`` when known;
* histograms ``{prefix}/across_layers/{statistic}``: one statistic over all layers (how spread
  the layers are, step after step);
* with ``model=``, histograms ``{prefix}/{layer}/{parameter}_values`` of every weight the report
  measured. The report keeps statistics, not tensors, so the values are read from ``model`` at
  the time of the call; the doctor leaves the model as it found it, so right after
  :func:`initlab.doctor` they are the diagnosed values.

Call it once per step (``step=epoch``) to follow the statistics through training. Characters
TensorBoard does not accept in a tag (outside ``[-/\w.]``) become ``_``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from torch import nn

from initlab.errors import InitlabError
from initlab.optional import require

if TYPE_CHECKING:
    from initlab.doctor.diagnose import DoctorReport

__all__ = ["SummaryWriterLike", "doctor_scalars", "write_doctor"]

FEATURE = "DoctorReport.to_tensorboard"
_NOT_STATISTICS = ("layer", "call", "kind", "index", "activation_after")
_INVALID_TAG = re.compile(r"[^-/\w.]")


class SummaryWriterLike(Protocol):
    """What :func:`write_doctor` needs of a writer (``torch.utils.tensorboard``, tensorboardX)."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int | None = None, /) -> Any:
        """Write one scalar."""

    def add_histogram(self, tag: str, values: Any, global_step: int | None = None, /) -> Any:
        """Write one histogram."""

    def flush(self) -> Any:
        """Write pending events to disk."""


def _tag(*parts: str) -> str:
    return "/".join(_INVALID_TAG.sub("_", part) for part in parts)


def _layer(name: str, call: int = 0) -> str:
    """The tag part of a module's ``call``: its name, then ``/call2``... for later calls."""
    part = name or "model"  # a model probed as a single module has the empty name
    return f"{part}/call{call + 1}" if call else part


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _layer_statistics(report: DoctorReport) -> Iterable[tuple[str, str, float]]:
    for row in report.rows():
        for key, raw in row.items():
            value = _finite(raw)
            if key not in _NOT_STATISTICS and value is not None:
                yield _layer(str(row["layer"]), int(row.get("call", 0))), key, value


def _summary(report: DoctorReport) -> dict[tuple[str, ...], float]:
    summary: dict[tuple[str, ...], float] = {("healthy",): float(report.healthy)}
    for severity in ("critical", "warning"):
        count = sum(1 for finding in report.findings if finding.severity == severity)
        summary[("findings", severity)] = float(count)
    spectrum = report.jacobian
    if spectrum is not None:
        known = {
            "largest": spectrum.largest,
            "smallest": spectrum.smallest,
            "mean_square": spectrum.mean_square,
            "spread": spectrum.spread,
        }
        for name, raw in known.items():
            value = _finite(raw)
            if value is not None:
                summary[("jacobian", name)] = value
    return summary


def doctor_scalars(report: DoctorReport, prefix: str = "doctor") -> dict[str, float]:
    """The scalars :func:`write_doctor` writes: ``{tag: value}``, layers in call order.

    Example:
        >>> scalars = doctor_scalars(report)  # doctest: +SKIP
        >>> scalars["doctor/layers.0.linear/std"]  # doctest: +SKIP
        0.58992...
    """
    scalars = {
        _tag(prefix, layer, statistic): value
        for layer, statistic, value in _layer_statistics(report)
    }
    for parts, value in _summary(report).items():
        scalars[_tag(prefix, *parts)] = value
    return scalars


def _across_layers(report: DoctorReport) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    for _, statistic, value in _layer_statistics(report):
        values.setdefault(statistic, []).append(value)
    return values


def _weight_histograms(
    report: DoctorReport, model: nn.Module, prefix: str
) -> dict[str, np.ndarray[Any, Any]]:
    parameters = dict(model.named_parameters())
    histograms = {}
    for record in report.weights:
        if record.name not in parameters:
            raise InitlabError(
                f"{FEATURE}: the model has no parameter {record.name!r}, which the report "
                "measured. Pass the model the report was made from, or model=None."
            )
        values = parameters[record.name].detach().float().cpu().numpy()
        short = record.name.rsplit(".", 1)[-1]
        histograms[_tag(prefix, _layer(record.layer), f"{short}_values")] = values
    return histograms


def _check(step: Any, prefix: Any) -> None:
    if isinstance(step, bool) or not isinstance(step, int):
        raise InitlabError(f"{FEATURE}: step must be an int, got {step!r}.")
    if not isinstance(prefix, str) or not prefix.strip("/"):
        raise InitlabError(
            f"{FEATURE}: prefix must be a non-empty tag such as 'doctor', got {prefix!r}."
        )


def _open_writer(log_dir: str | Path) -> Any:
    require("tensorboard", FEATURE)  # first, so a missing package names the right extra
    return require("torch.utils.tensorboard", FEATURE).SummaryWriter(log_dir=str(log_dir))


def write_doctor(
    report: DoctorReport,
    writer: SummaryWriterLike | str | Path,
    step: int = 0,
    prefix: str = "doctor",
    *,
    model: nn.Module | None = None,
) -> dict[str, float]:
    """Write ``report``'s statistics to TensorBoard at ``step`` (see the module docstring).

    Args:
        report: a :class:`~initlab.doctor.diagnose.DoctorReport`.
        writer: a ``torch.utils.tensorboard.SummaryWriter`` (or anything with ``add_scalar``,
            ``add_histogram`` and ``flush``), flushed but left open; or a log directory, for
            which a ``SummaryWriter`` is opened and closed.
        step: the ``global_step`` of every value.
        prefix: the first part of every tag.
        model: the diagnosed model, to add histograms of its weights' values.

    Returns:
        The scalars written, ``{tag: value}`` (as :func:`doctor_scalars`).

    Raises:
        InitlabError: a step that is not an int, an empty prefix, or a model without a weight
            the report measured.
        MissingDependencyError: a log directory without tensorboard installed.
    """
    _check(step, prefix)
    scalars = doctor_scalars(report, prefix)
    histograms: dict[str, Any] = {
        _tag(prefix, "across_layers", name): np.asarray(values, dtype=np.float64)
        for name, values in _across_layers(report).items()
    }
    if model is not None:
        histograms.update(_weight_histograms(report, model, prefix))
    owned = isinstance(writer, str | Path)
    target: Any = _open_writer(writer) if isinstance(writer, str | Path) else writer
    try:
        for tag, value in scalars.items():
            target.add_scalar(tag, value, step)
        for tag, values in histograms.items():
            target.add_histogram(tag, values, step)
        target.flush()
    finally:
        if owned:
            target.close()
    return scalars
