"""`History`: what one run of :func:`~initlab.train.fit` did, epoch by epoch."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

from initlab.errors import UnknownNameError, did_you_mean
from initlab.optional import require

if TYPE_CHECKING:
    from rich.text import Text

__all__ = ["EpochRecord", "History", "Status"]

Status = Literal["completed", "early_stopped", "diverged"]


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's numbers. Means over the epoch's steps unless said otherwise.

    Attributes:
        epoch: the epoch index, from 0.
        train_loss: the data loss on the training batches (weighted by batch size), in train
            mode, without the penalty.
        penalty: the penalty term added to the loss (mean over steps; 0 without penalties).
        train_accuracy: accuracy on the training batches as they were seen (classification).
        val_loss, val_accuracy: on the val split after the epoch, in eval mode (``None``
            without a val split; accuracy ``None`` for regression).
        lr: the first parameter group's learning rate at the epoch's first step.
        grad_norm: global L2 norm of the gradients before clipping, mean over steps.
        grad_norm_max: its largest value in the epoch.
        clip_fraction: share of steps where clipping changed the gradients.
        weight_norms: L2 norm of every parameter after the epoch (``History.parameter_names``).
        seconds: wall time of the epoch, evaluation included.
    """

    epoch: int
    train_loss: float
    penalty: float
    train_accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    lr: float
    grad_norm: float
    grad_norm_max: float
    clip_fraction: float
    weight_norms: tuple[float, ...]
    seconds: float

    @property
    def finite(self) -> bool:
        """Whether the training loss and gradient norm stayed finite."""
        return math.isfinite(self.train_loss) and math.isfinite(self.grad_norm_max)


@dataclass(frozen=True)
class History:
    """The record of a run.

    Attributes:
        epochs: one :class:`EpochRecord` per epoch run (the diverged epoch included).
        parameter_names: names of ``EpochRecord.weight_norms``.
        status: ``completed``, ``early_stopped`` or ``diverged`` (a NaN/inf loss or gradient).
        diverged_step: the global step index of the first non-finite loss or gradient norm.
        best_epoch: the epoch with the best monitored value (early stopping), else ``None``.
        monitor: the metric early stopping watched.
        test_loss, test_accuracy: on the test split after training (best weights when
            restored; ``None`` without a test split or after divergence).
        device: where the run ran.
        seconds: wall time of the whole run.
    """

    epochs: tuple[EpochRecord, ...]
    parameter_names: tuple[str, ...]
    status: Status
    diverged_step: int | None = None
    best_epoch: int | None = None
    monitor: str | None = None
    test_loss: float | None = None
    test_accuracy: float | None = None
    device: str = "cpu"
    seconds: float = 0.0

    @property
    def diverged(self) -> bool:
        """Whether the run stopped on a NaN or infinite loss or gradient."""
        return self.status == "diverged"

    @property
    def final(self) -> EpochRecord:
        """The last epoch run."""
        return self.epochs[-1]

    @property
    def best_val_accuracy(self) -> float | None:
        """The highest val accuracy over the epochs (``None`` without one)."""
        known = [r.val_accuracy for r in self.epochs if r.val_accuracy is not None]
        return max(known) if known else None

    def __str__(self) -> str:
        """How the run ended, then the final epoch's numbers, the best val accuracy and the
        test's, one plain line each.

        Example:
            >>> print(history)  # doctest: +SKIP
            training run: completed, 12 epochs on cpu in 8.1 s
            final epoch 11: train loss 0.0712, train accuracy 0.981, val loss 0.105, ...
            best val accuracy 0.972 (epoch 9)
        """
        count = len(self.epochs)
        ending = f"{self.status}, {count} epoch{'' if count == 1 else 's'}"
        if self.diverged:
            ending = f"diverged at step {self.diverged_step}, {count} epoch(s) run"
        lines = [f"training run: {ending} on {self.device} in {self.seconds:.3g} s"]
        if self.epochs:
            lines.append(_epoch_line(self.final))
        best = self.best_val_accuracy
        if best is not None:
            epoch = next(r.epoch for r in self.epochs if r.val_accuracy == best)
            lines.append(f"best val accuracy {best:.4g} (epoch {epoch})")
        if self.best_epoch is not None:
            lines.append(f"early stopping on {self.monitor}: best epoch {self.best_epoch}")
        test = _numbers(("test loss", self.test_loss), ("test accuracy", self.test_accuracy))
        if test:
            lines.append(test)
        return "\n".join(lines)

    def __rich__(self) -> Text:
        """What a Rich console prints: :meth:`__str__`'s summary (not the dataclass's fields)."""
        from rich.text import Text

        return Text(str(self))

    def column(self, name: str) -> list[Any]:
        """One field over all epochs, e.g. ``history.column("val_loss")``."""
        known = [f.name for f in fields(EpochRecord)]
        if name not in known:
            raise UnknownNameError(did_you_mean("history column", name, known))
        return [getattr(record, name) for record in self.epochs]

    def rows(self, *, times: bool = True) -> list[dict[str, Any]]:
        """One flat dict per epoch; weight norms become ``weight_norm/<parameter>`` columns.

        Args:
            times: include the ``seconds`` column (leave it out to compare two runs).
        """
        table = []
        for record in self.epochs:
            row = asdict(record)
            norms = row.pop("weight_norms")
            if not times:
                row.pop("seconds")
            row.update(
                {f"weight_norm/{n}": v for n, v in zip(self.parameter_names, norms, strict=True)}
            )
            table.append(row)
        return table

    def to_frame(self) -> Any:
        """The rows as a pandas ``DataFrame`` (needs pandas)."""
        pandas = require("pandas", "History.to_frame")
        return pandas.DataFrame(self.rows())


def _numbers(*named: tuple[str, float | None]) -> str:
    """``"train loss 0.0712, val accuracy 0.981"``: the known values, 4 significant digits."""
    return ", ".join(f"{name} {value:.4g}" for name, value in named if value is not None)


def _epoch_line(record: EpochRecord) -> str:
    """The epoch's losses and accuracies on one line."""
    values = _numbers(
        ("train loss", record.train_loss),
        ("train accuracy", record.train_accuracy),
        ("val loss", record.val_loss),
        ("val accuracy", record.val_accuracy),
    )
    return f"final epoch {record.epoch}: {values}"
