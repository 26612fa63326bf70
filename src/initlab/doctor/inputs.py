"""The batch the doctor measures on: real data (scikit-learn's digits, a .npy/.npz file) or noise.

Signal propagation depends on the inputs' scale and correlations, so a real batch is better than
noise when there is one; a standard Gaussian batch is the fallback (the scale the variance-
preserving schemes assume). Files are read with ``allow_pickle=False``: a data file cannot run
code.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import torch

from initlab.arguments import check_seed
from initlab.errors import ConfigError
from initlab.fans import shape_tuple

__all__ = ["digits_batch", "file_batch", "gaussian_batch", "input_batch"]

DIGITS_FEATURES = 64


def gaussian_batch(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """A standard normal batch of ``shape`` from its own generator (the global RNG untouched)."""
    dims = shape_tuple(shape)
    if not dims or 0 in dims:
        raise ConfigError(
            f"gaussian_batch: shape must have positive sizes, batch size first, got {dims}."
        )
    generator = torch.Generator().manual_seed(check_seed("gaussian_batch", seed))
    return torch.randn(dims, generator=generator)


def _fit(array: np.ndarray, shape: tuple[int, ...] | None, source: str) -> np.ndarray:
    """The first ``shape[0]`` examples of ``array``, reshaped to ``shape``."""
    if shape is None:
        return array
    count, example = shape[0], shape[1:]
    if array.ndim == 0 or array.shape[0] < count:
        have = array.shape[0] if array.ndim else 0
        raise ConfigError(
            f"{source} holds {have} examples; --input-shape {_text(shape)} asks for {count}. "
            "Lower the batch size (the first number)."
        )
    per_example = int(np.prod(array.shape[1:], dtype=np.int64))
    wanted = math.prod(example)
    if per_example != wanted:
        raise ConfigError(
            f"{source}: an example has {per_example} values (shape {_text(array.shape[1:])}), "
            f"but --input-shape {_text(shape)} needs {wanted} per example; give a shape whose "
            f"sizes after the first multiply to {per_example}."
        )
    return array[:count].reshape(shape)


def _text(shape: tuple[int, ...]) -> str:
    return ",".join(str(d) for d in shape) or "(scalar)"


def digits_batch(shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """scikit-learn's handwritten digits (8x8 images, one channel), standardized as a whole.

    One mean and one std over every pixel of the 1,797 images (the images' one channel), as
    :func:`initlab.train.datasets.load_digits` standardizes them (it fits the same two numbers
    on its train split): the pixels keep their relative scale, so the always-blank borders
    stay below the mean rather than being blown up by a per-pixel std near 0.

    Args:
        shape: ``(N, 64)`` for an MLP, ``(N, 1, 8, 8)`` for a CNN, or any shape whose sizes
            after the first multiply to 64; default ``(64, 64)``.

    Raises:
        ConfigError: a shape that does not hold 64 values per example, or more than 1797
            examples.
    """
    from initlab.optional import require

    datasets = require("sklearn.datasets", "--data digits")
    pixels = np.asarray(datasets.load_digits().data, dtype=np.float64)
    scaled = (pixels - pixels.mean()) / pixels.std()
    fitted = _fit(scaled, shape or (64, DIGITS_FEATURES), "the digits data set")
    return torch.from_numpy(np.ascontiguousarray(fitted, dtype=np.float32))


def file_batch(path: str | Path, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """A batch from a ``.npy`` file or a ``.npz`` file (its ``x`` array, or its only array).

    Floating-point data becomes float32; integer data (token ids) stays integer (int64).

    Raises:
        ConfigError: a missing file, an unreadable one, or data that does not fit ``shape``.
    """
    target = Path(path)
    if not target.is_file():
        raise ConfigError(
            f"--data {str(path)!r}: no such file. Give a .npy or .npz file, or 'digits'."
        )
    try:
        # The file is opened here, so a corrupt archive cannot leave it open.
        with target.open("rb") as handle:
            loaded = np.load(handle, allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                with loaded:
                    array = _npz_array(loaded, target)
            else:
                array = loaded
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        reason = str(error) or type(error).__name__
        if isinstance(error, EOFError):
            reason = "the file is empty or cut short"
        raise ConfigError(
            f"--data {str(path)!r}: not a readable .npy/.npz file ({reason}). Save it with "
            "np.save(path, array) or np.savez(path, x=array)."
        ) from None
    source = f"--data {str(path)!r}"
    data = np.asarray(array)
    if data.ndim == 0:
        raise ConfigError(
            f"{source}: the array is a scalar (shape ()); give a batch of examples, "
            "shape (N, ...), batch size first."
        )
    if data.shape[0] == 0 or data.size == 0:
        raise ConfigError(
            f"{source}: the array holds 0 examples (shape {data.shape}); give a batch of at "
            "least one example, ideally 16 or more."
        )
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        raise ConfigError(f"{source}: the array contains NaN or inf; clean the data first.")
    fitted = _fit(data, shape, source)
    if np.issubdtype(fitted.dtype, np.floating):
        return torch.from_numpy(np.ascontiguousarray(fitted, dtype=np.float32))
    if np.issubdtype(fitted.dtype, np.integer) or fitted.dtype == np.bool_:
        return torch.from_numpy(np.ascontiguousarray(fitted, dtype=np.int64))
    raise ConfigError(
        f"--data {str(path)!r}: the array has dtype {fitted.dtype}; give numbers (float or int)."
    )


def _npz_array(loaded: np.lib.npyio.NpzFile, target: Path) -> np.ndarray:
    if not loaded.files:
        raise ConfigError(f"--data {str(target)!r}: the .npz file holds no array.")
    if "x" in loaded.files:
        return np.asarray(loaded["x"])
    if len(loaded.files) > 1:
        # Picking one of several arrays would silently measure the wrong data (labels, say).
        raise ConfigError(
            f"--data {str(target)!r}: the .npz file has no array named 'x' and several others "
            f"({', '.join(repr(key) for key in loaded.files)}); save the inputs as 'x' "
            "(np.savez(path, x=inputs, ...)) or in a file of their own."
        )
    return np.asarray(loaded[loaded.files[0]])


def input_batch(source: str | None, shape: tuple[int, ...] | None, seed: int = 0) -> torch.Tensor:
    """The batch for ``--data``: ``"digits"``, a file path, or ``None`` for a Gaussian batch.

    Raises:
        ConfigError: a Gaussian batch without a shape, or the errors of :func:`digits_batch`
            and :func:`file_batch`.
    """
    if shape is not None and (not shape or 0 in shape):
        raise ConfigError(
            f"--input-shape needs positive sizes, batch size first (e.g. 64,3,32,32), "
            f"got {_text(shape)}."
        )
    if source is None:
        if shape is None:
            raise ConfigError(
                "Give --input-shape (e.g. 64,3,32,32: a batch of 64 RGB 32x32 images) or "
                "--data digits / --data batch.npy for real inputs."
            )
        return gaussian_batch(shape, seed)
    if source.strip().lower() == "digits":
        return digits_batch(shape)
    return file_batch(source, shape)
