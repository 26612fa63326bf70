"""Shared data for the training tests: digits loaded once, small subsets for fast runs."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from initlab.train import Dataset, from_arrays, load_digits


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    # pytest-xdist runs a worker per core; more torch threads per worker only oversubscribe.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits() -> Dataset:
    return load_digits(seed=0)


@pytest.fixture(scope="session")
def small_digits() -> Dataset:
    """400 digits (train 280, val 60, test 60): enough to learn, fast to fit."""
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    bunch = sklearn_datasets.load_digits()
    images = np.asarray(bunch.images[:400], dtype=np.float32)[:, None]
    return from_arrays(images, bunch.target[:400], name="small_digits", seed=0)
