"""Datasets for the comparisons: tensors in memory, split once, standardized on train only.

A :class:`Dataset` holds three :class:`Split` s (train, val, test) of float32 inputs and
targets (int64 class indices, or float32 ``(n, k)`` regression targets). Every builder goes
through :func:`from_arrays`, which

* splits deterministically from ``seed`` (stratified by class for classification: each class
  keeps its share in every split),
* standardizes with statistics fitted on the train split only,

.. math::

    \\tilde x = (x - \\mu_{train}) / \\sigma_{train}

per feature for tabular data and per channel for images (a feature with
:math:`\\sigma_{train} = 0` is only centred).

Built-in datasets: :mod:`initlab.train.datasets`. User files: :mod:`initlab.train.files`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import torch

from initlab.errors import ConfigError, InitlabError, UnknownNameError, did_you_mean

__all__ = [
    "DataError",
    "Dataset",
    "Split",
    "Standardizer",
    "TaskKind",
    "from_arrays",
    "split_indices",
]

TaskKind = Literal["classification", "regression"]  # what a Dataset's targets are
StandardizeMode = Literal["auto", "feature", "channel", "none"]
Array = np.ndarray[Any, Any]


class DataError(InitlabError, ValueError):
    """Data that cannot be used: a bad file, mismatched arrays, non-finite values."""


@dataclass(frozen=True, eq=False)
class Split:
    """Inputs and targets of one split.

    Attributes:
        x: inputs, ``(n, features)`` or ``(n, channels, height, width)``, float32.
        y: class indices ``(n,)`` int64, or regression targets ``(n, k)`` float32.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Split:
        """This split on ``device``, inputs (and float targets) cast to ``dtype`` if given."""
        y_dtype = dtype if dtype is not None and self.y.is_floating_point() else None
        return Split(self.x.to(device, dtype), self.y.to(device, y_dtype))


@dataclass(frozen=True, eq=False)
class Standardizer:
    """:math:`(x - \\mu) / \\sigma` with statistics fitted on the train split.

    Attributes:
        mean: broadcastable to one input, e.g. ``(features,)`` or ``(channels, 1, 1)``.
        std: same shape; zero stds are stored as 1 (the feature is only centred).
    """

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, x: torch.Tensor, per: Literal["feature", "channel"]) -> Standardizer:
        """Fit on ``x``: per feature (every input position) or per channel (images)."""
        data = x.double()
        if per == "channel":
            if data.dim() != 4:
                raise ConfigError(
                    f"standardize='channel' needs images (n, c, h, w), got inputs of shape "
                    f"{tuple(x.shape)}; use standardize='feature'."
                )
            mean = data.mean(dim=(0, 2, 3), keepdim=True)[0]
            std = data.std(dim=(0, 2, 3), keepdim=True, correction=0)[0]
        else:
            mean = data.mean(dim=0)
            std = data.std(dim=0, correction=0)
        std = torch.where(std > 0, std, torch.ones_like(std))
        return cls(mean.float(), std.float())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Standardize ``x`` (any leading batch size)."""
        return (x - self.mean.to(x)) / self.std.to(x)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A task: train/val/test splits plus what a model and a loss need to know.

    Attributes:
        name: where it came from (a built-in name or a file path).
        task: ``"classification"`` (cross-entropy) or ``"regression"`` (mean squared error).
        train, val, test: the splits (val or test may be empty).
        class_names: one name per class (classification), else empty.
        standardizer: the train-fitted standardization applied to every split, if any.
    """

    name: str
    task: TaskKind
    train: Split
    val: Split
    test: Split
    class_names: tuple[str, ...] = ()
    standardizer: Standardizer | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input, e.g. ``(1, 8, 8)`` or ``(30,)``."""
        return tuple(self.train.x.shape[1:])

    @property
    def is_image(self) -> bool:
        """Whether inputs are ``(channels, height, width)`` images."""
        return len(self.input_shape) == 3

    @property
    def num_classes(self) -> int | None:
        """Number of classes (classification), else ``None``."""
        return len(self.class_names) if self.task == "classification" else None

    @property
    def output_size(self) -> int:
        """Width of the model's last layer: classes, or regression targets."""
        return len(self.class_names) if self.task == "classification" else self.train.y.shape[1]

    @property
    def in_features(self) -> int:
        """Number of input values per example (what an MLP's first layer takes)."""
        return math.prod(self.input_shape)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Dataset:
        """The same dataset with every split on ``device`` (and inputs in ``dtype``)."""
        return Dataset(
            name=self.name,
            task=self.task,
            train=self.train.to(device, dtype),
            val=self.val.to(device, dtype),
            test=self.test.to(device, dtype),
            class_names=self.class_names,
            standardizer=self.standardizer,
        )

    def __repr__(self) -> str:
        sizes = f"train={len(self.train)}, val={len(self.val)}, test={len(self.test)}"
        kind = f"{self.num_classes} classes" if self.task == "classification" else "regression"
        return f"Dataset({self.name!r}, {kind}, input {self.input_shape}, {sizes})"


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for field, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{field} must be in [0, 1), got {value!r}.")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"val_fraction + test_fraction must leave examples to train on, got "
            f"{val_fraction} + {test_fraction} >= 1."
        )


def split_indices(
    labels: Array | None, n: int, val_fraction: float, test_fraction: float, seed: int
) -> tuple[Array, Array, Array]:
    """Train/val/test indices, from ``seed`` alone; stratified by ``labels`` when given.

    Each stratum (a class, or everything) is permuted with ``numpy.random.default_rng(seed)``;
    its first ``round(m * test_fraction)`` indices go to test, the next
    ``round(m * val_fraction)`` to val, the rest to train. Indices come back sorted.
    """
    _check_fractions(val_fraction, test_fraction)
    rng = np.random.default_rng(seed)
    strata = (
        [np.arange(n)]
        if labels is None
        else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    )
    parts: tuple[list[Array], list[Array], list[Array]] = ([], [], [])
    for members in strata:
        order = rng.permutation(members)
        n_test = round(len(order) * test_fraction)
        n_val = round(len(order) * val_fraction)
        parts[2].append(order[:n_test])
        parts[1].append(order[n_test : n_test + n_val])
        parts[0].append(order[n_test + n_val :])
    train, val, test = (np.sort(np.concatenate(p)).astype(np.int64) for p in parts)
    return train, val, test


def _infer_task(y: Array) -> TaskKind:
    if y.dtype.kind in "biuUSO":
        return "classification"
    return "regression"


@dataclass(frozen=True, eq=False)
class _Targets:
    """What the targets say: the task, the target tensor, the classes, the split's strata."""

    task: TaskKind
    values: torch.Tensor
    class_names: tuple[str, ...] = ()
    strata: Array | None = None  # class index per example: the splits are stratified by it


def _as_numpy(values: Array | torch.Tensor) -> Array:
    return (
        values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    )


def _check_shapes(name: str, x: Array, y: Array) -> None:
    if x.dtype.kind not in "biuf":
        raise DataError(f"{name}: inputs must be numeric, got dtype {x.dtype}.")
    if x.ndim < 2:
        raise DataError(
            f"{name}: inputs must be (n, features) or (n, channels, height, width), got shape "
            f"{x.shape}; reshape a single feature to (n, 1)."
        )
    if y.ndim not in (1, 2) or len(y) != len(x):
        raise DataError(
            f"{name}: targets must be (n,) or (n, k) with n = {len(x)} like the inputs, got "
            f"shape {y.shape}."
        )
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        raise DataError(
            f"{name}: {int(bad.sum())} examples have NaN or infinite inputs (first: index "
            f"{int(np.flatnonzero(bad)[0])}); drop or impute them first."
        )


def _class_targets(name: str, y: Array, class_names: Sequence[str] | None) -> _Targets:
    if y.ndim != 1:
        raise DataError(f"{name}: class labels must be (n,), got shape {y.shape}.")
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        raise DataError(
            f"{name}: classification labels must be whole numbers or strings, got floats "
            f"such as {y[y != np.round(y)][0]!r}; use task='regression'."
        )
    values, labels = np.unique(y, return_inverse=True)
    names = tuple(str(v) for v in values) if class_names is None else tuple(class_names)
    if len(names) != len(values):
        raise DataError(
            f"{name}: {len(values)} distinct labels but {len(names)} class names given."
        )
    targets = torch.from_numpy(labels.astype(np.int64))
    return _Targets("classification", targets, class_names=names, strata=labels)


def _regression_targets(name: str, y: Array) -> _Targets:
    if y.dtype.kind not in "biuf" or not np.isfinite(y).all():
        raise DataError(f"{name}: regression targets must be finite numbers.")
    return _Targets("regression", torch.from_numpy(y.reshape(len(y), -1).astype(np.float32)))


def from_arrays(
    x: Array | torch.Tensor,
    y: Array | torch.Tensor,
    *,
    name: str = "arrays",
    task: TaskKind | Literal["auto"] = "auto",
    class_names: Sequence[str] | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    standardize: StandardizeMode = "auto",
) -> Dataset:
    """A :class:`Dataset` from inputs ``x`` (n, ...) and targets ``y`` (n,) or (n, k).

    Args:
        x: numeric inputs; 4-D arrays are images ``(n, channels, height, width)``.
        y: integer or string labels (classification) or float targets (regression).
        name: how errors and reprs refer to the data (a file path for loaders).
        task: ``"auto"`` (integers and strings are labels, floats are targets).
        class_names: names of classes ``0..C-1``; default: the sorted distinct labels.
        val_fraction, test_fraction: shares of each class held out.
        seed: the split's seed.
        standardize: ``"auto"`` (per channel for images, per feature otherwise), ``"feature"``,
            ``"channel"`` or ``"none"``.

    Raises:
        DataError: lengths differ, values are not numeric or not finite, too few examples.
    """
    x_np, y_np = _as_numpy(x), _as_numpy(y)
    _check_shapes(name, x_np, y_np)
    kind = _infer_task(y_np) if task == "auto" else task
    if kind not in ("classification", "regression"):
        raise UnknownNameError(did_you_mean("task", str(task), ["auto", *get_args(TaskKind)]))
    if kind == "classification":
        targets = _class_targets(name, y_np, class_names)
    else:
        targets = _regression_targets(name, y_np)
    train, val, test = split_indices(targets.strata, len(x_np), val_fraction, test_fraction, seed)
    if len(train) == 0:
        raise DataError(f"{name}: no examples left to train on ({len(x_np)} in all).")
    inputs = torch.from_numpy(x_np.astype(np.float32))
    standardizer = _standardizer(inputs[train], standardize)
    if standardizer is not None:
        inputs = standardizer(inputs)
    y_all = targets.values
    return Dataset(
        name=name,
        task=targets.task,
        train=Split(inputs[train], y_all[train]),
        val=Split(inputs[val], y_all[val]),
        test=Split(inputs[test], y_all[test]),
        class_names=targets.class_names,
        standardizer=standardizer,
    )


def _standardizer(train_x: torch.Tensor, mode: StandardizeMode) -> Standardizer | None:
    if mode not in ("auto", "feature", "channel", "none"):
        raise UnknownNameError(
            did_you_mean("standardize mode", str(mode), ["auto", "feature", "channel", "none"])
        )
    if mode == "none":
        return None
    if mode == "auto":
        mode = "channel" if train_x.dim() == 4 else "feature"
    return Standardizer.fit(train_x, mode)
