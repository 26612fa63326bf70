r"""The doctor's statistics in TensorBoard (``pip install 'initlab[tensorboard]'``).

.. code-block:: python

    from initlab.report.tensorboard import write_doctor

    report = initlab.doctor(model, batch)
    write_doctor(report, "runs/doctor")                    # a log directory: written and closed
    write_doctor(report, writer, step=epoch, model=model)  # or a SummaryWriter you own

What is written, at ``step``:

* scalars :meth:`DoctorReport.scalars` (the same numbers a Lightning ``DoctorCallback`` logs):
  ``{prefix}/{layer}/{statistic}``, every number of :meth:`DoctorReport.rows` that is
  finite, under the row's own name (a statistic that does not apply to a layer is NaN or
  ``None`` there and is left out): ``mean``, ``std`` and ``rms`` of the layer's output,
  ``input_std``, ``zero_fraction``, ``dead_fraction``, ``saturated_fraction``,
  ``channel_mean_sq``, ``channel_var``, ``cosine``, ``nonfinite``, ``grad_std``,
  ``weight_std``, ``weight_gain_sq`` (:math:`\mathrm{Var}(W) \cdot \text{fan\_in}`),
  ``weight_grad_to_weight``. A module's second and later calls go to
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

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from torch import nn

from initlab.doctor.report import tag
from initlab.errors import InitlabError
from initlab.optional import require

if TYPE_CHECKING:
    from initlab.doctor.report import DoctorReport

__all__ = ["SummaryWriterLike", "write_doctor"]

FEATURE = "write_doctor"


class SummaryWriterLike(Protocol):
    """What :func:`write_doctor` needs of a writer (``torch.utils.tensorboard``, tensorboardX)."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int | None = None, /) -> Any:
        """Write one scalar."""

    def add_histogram(self, tag: str, values: Any, global_step: int | None = None, /) -> Any:
        """Write one histogram."""

    def flush(self) -> Any:
        """Write pending events to disk."""


def _across_layers(report: DoctorReport) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    for scalar in report.layer_scalars():
        values.setdefault(scalar.statistic, []).append(scalar.value)
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
        layer = record.layer or "model"
        histograms[tag(prefix, layer, f"{short}_values")] = values
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
        The scalars written, ``{tag: value}`` (:meth:`DoctorReport.scalars`).

    Raises:
        InitlabError: a step that is not an int, an empty prefix, or a model without a weight
            the report measured.
        MissingDependencyError: a log directory without tensorboard installed.
    """
    _check(step, prefix)
    scalars = report.scalars(prefix)
    histograms: dict[str, Any] = {
        tag(prefix, "across_layers", name): np.asarray(values, dtype=np.float64)
        for name, values in _across_layers(report).items()
    }
    if model is not None:
        histograms.update(_weight_histograms(report, model, prefix))
    owned = isinstance(writer, str | Path)
    target: Any = _open_writer(writer) if isinstance(writer, str | Path) else writer
    try:
        for name, value in scalars.items():
            target.add_scalar(name, value, step)
        for name, values in histograms.items():
            target.add_histogram(name, values, step)
        target.flush()
    finally:
        if owned:
            target.close()
    return scalars
