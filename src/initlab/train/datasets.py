"""Built-in datasets: scikit-learn's real ones and a synthetic teacher-student regression.

scikit-learn ships these with the package (no download): handwritten digits (1,797 images of
8x8), Wisconsin breast cancer (569 x 30, 2 classes), wine (178 x 13, 3 classes). Every loader
takes the split options of :func:`initlab.train.data.from_arrays` (``val_fraction``,
``test_fraction``, ``seed``, ``standardize``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from initlab.errors import ConfigError, UnknownNameError, did_you_mean
from initlab.optional import require
from initlab.train.data import Dataset, from_arrays

__all__ = [
    "DATASETS",
    "load_breast_cancer",
    "load_dataset",
    "load_digits",
    "load_wine",
    "teacher_student",
]


def _split_options(options: dict[str, Any]) -> dict[str, Any]:
    allowed = {"val_fraction", "test_fraction", "seed", "standardize"}
    unknown = set(options) - allowed
    if unknown:
        raise ConfigError(
            f"Unknown dataset option(s) {sorted(unknown)}. Known: {sorted(allowed)}."
        )
    return options


def load_digits(**options: Any) -> Dataset:
    """scikit-learn's handwritten digits: 1,797 images of 1x8x8 pixels (0..16), 10 classes.

    Options: ``val_fraction``, ``test_fraction``, ``seed``, ``standardize`` (see
    :func:`from_arrays`). Needs scikit-learn (ships the data; no download).
    """
    datasets = require("sklearn.datasets", "initlab.train.data.load_digits")
    bunch = datasets.load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)[:, None]
    names = [str(n) for n in bunch.target_names]
    return from_arrays(
        images, bunch.target, name="digits", class_names=names, **_split_options(options)
    )


def load_breast_cancer(**options: Any) -> Dataset:
    """scikit-learn's Wisconsin breast cancer: 569 examples, 30 features, 2 classes."""
    datasets = require("sklearn.datasets", "initlab.train.data.load_breast_cancer")
    bunch = datasets.load_breast_cancer()
    names = [str(n) for n in bunch.target_names]
    return from_arrays(
        bunch.data,
        bunch.target,
        name="breast_cancer",
        class_names=names,
        **_split_options(options),
    )


def load_wine(**options: Any) -> Dataset:
    """scikit-learn's wine recognition: 178 examples, 13 features, 3 classes."""
    datasets = require("sklearn.datasets", "initlab.train.data.load_wine")
    bunch = datasets.load_wine()
    names = [str(n) for n in bunch.target_names]
    return from_arrays(
        bunch.data, bunch.target, name="wine", class_names=names, **_split_options(options)
    )


def teacher_student(
    n: int = 2048,
    in_features: int = 16,
    out_features: int = 1,
    *,
    hidden: int = 64,
    depth: int = 2,
    noise: float = 0.1,
    teacher_seed: int = 0,
    **options: Any,
) -> Dataset:
    """Synthetic regression: targets from a random tanh network (the teacher) plus noise.

    .. math::

        x \\sim \\mathcal N(0, I),\\quad
        h_0 = x,\\; h_{l} = \\tanh(W_l h_{l-1}),\\; W_l \\sim \\mathcal N(0, 1/\\text{fan\\_in}),
        \\quad y = W_{out} h_{depth} + \\varepsilon,\\; \\varepsilon \\sim \\mathcal N(0,
        \\text{noise}^2)

    The teacher and the inputs are drawn from ``teacher_seed``; ``seed`` (in ``options``) only
    splits. The best reachable test MSE is ``noise**2``.
    """
    for field, value in (
        ("n", n),
        ("in_features", in_features),
        ("out_features", out_features),
        ("hidden", hidden),
    ):
        if value < 1:
            raise ConfigError(f"teacher_student: {field} must be >= 1, got {value!r}.")
    if depth < 0 or noise < 0:
        raise ConfigError(
            f"teacher_student: depth and noise must be >= 0, got {depth!r} and {noise!r}."
        )
    rng = np.random.default_rng(teacher_seed)
    x = rng.standard_normal((n, in_features))
    signal = x
    for _ in range(depth):
        weight = rng.standard_normal((signal.shape[1], hidden)) / math.sqrt(signal.shape[1])
        signal = np.tanh(signal @ weight)
    readout = rng.standard_normal((signal.shape[1], out_features)) / math.sqrt(signal.shape[1])
    y = signal @ readout + noise * rng.standard_normal((n, out_features))
    opts = {"standardize": "none", **_split_options(options)}
    return from_arrays(x, y.astype(np.float32), name="teacher_student", task="regression", **opts)


DATASETS = {
    "digits": load_digits,
    "breast_cancer": load_breast_cancer,
    "wine": load_wine,
    "teacher_student": teacher_student,
}


def load_dataset(name: str, **options: Any) -> Dataset:
    """A built-in dataset by name: ``digits``, ``breast_cancer``, ``wine``, ``teacher_student``.

    Example:
        >>> data = load_dataset("digits", seed=1)
    """
    if name not in DATASETS:
        raise UnknownNameError(did_you_mean("dataset", name, DATASETS))
    return DATASETS[name](**options)
