"""User data from files: ``.npz`` arrays, ``.csv`` tables, image folders (class per folder).

Every loader reads into NumPy and hands over to :func:`initlab.train.data.from_arrays`, so
splits and standardization follow the same rules as the built-in datasets. A file that cannot
be used raises :class:`~initlab.train.data.DataError` naming the file, the place in it (key,
line, column, image) and what to do.

Nothing in a file can run code: ``.npz`` files load with ``allow_pickle=False``.
"""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from initlab.optional import MissingDependencyError
from initlab.train.data import Array, DataError, Dataset, TaskKind, from_arrays

__all__ = ["IMAGE_EXTENSIONS", "from_csv", "from_image_folder", "from_npz"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff")


def _existing(path: str | Path, kind: str) -> Path:
    file = Path(path)
    if not file.exists():
        raise DataError(f"{file}: no such {kind}.")
    return file


def from_npz(
    path: str | Path,
    *,
    x_key: str = "x",
    y_key: str = "y",
    task: TaskKind | Literal["auto"] = "auto",
    class_names: Sequence[str] | None = None,
    **options: Any,
) -> Dataset:
    """A dataset from a NumPy ``.npz`` file holding inputs ``x_key`` and targets ``y_key``.

    Example:
        >>> np.savez("points.npz", x=features, y=labels)
        >>> data = from_npz("points.npz", seed=0)

    Args:
        path: the ``.npz`` file (``numpy.savez`` / ``savez_compressed``).
        x_key, y_key: the arrays' names in the file.
        task, class_names, **options: see :func:`~initlab.train.data.from_arrays`.

    Raises:
        DataError: missing file or key, not an ``.npz``, object arrays, bad shapes or values.
    """
    file = _existing(path, "file")
    arrays = _npz_arrays(file, x_key, y_key)
    return from_arrays(
        arrays.x, arrays.y, name=str(file), task=task, class_names=class_names, **options
    )


class _Arrays(NamedTuple):
    """Inputs and targets as read from a file."""

    x: Array
    y: Array


def _npz_arrays(file: Path, x_key: str, y_key: str) -> _Arrays:
    try:
        with np.load(file, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise DataError(
                    f"{file}: holds a single array, not named arrays; save with "
                    f"numpy.savez(path, {x_key}=inputs, {y_key}=targets)."
                )
            keys = sorted(archive.files)
            missing = [key for key in (x_key, y_key) if key not in keys]
            if missing:
                raise DataError(
                    f"{file}: no array named {missing[0]!r}; it holds {keys}. Pass "
                    f"x_key=... and y_key=... to pick the arrays."
                )
            return _Arrays(archive[x_key], archive[y_key])
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise DataError(f"{file}: not a readable .npz archive ({error}).") from None
    except ValueError as error:
        if "Object arrays" not in str(error) and "pickle" in str(error):
            raise DataError(
                f"{file}: not a readable .npz archive (numpy sees pickled or unknown data, "
                f"which initlab does not load); save with numpy.savez."
            ) from None
        if "allow_pickle" in str(error):
            raise DataError(
                f"{file}: holds object arrays, which initlab does not unpickle; save numeric "
                f"(or string) arrays."
            ) from None
        raise DataError(f"{file}: cannot be read ({error}).") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _column_index(file: Path, header: list[str] | None, width: int, target: int | str) -> int:
    if isinstance(target, str):
        if header is None or target not in header:
            found = f"columns are {header}" if header else "the file has no header row"
            raise DataError(f"{file}: no column named {target!r}; {found}.")
        return header.index(target)
    if not -width <= target < width:
        raise DataError(f"{file}: target column {target} is out of range ({width} columns).")
    return target % width


def from_csv(
    path: str | Path,
    *,
    target: int | str = -1,
    header: bool | None = None,
    delimiter: str = ",",
    task: TaskKind | Literal["auto"] = "auto",
    **options: Any,
) -> Dataset:
    """A dataset from a CSV table: one example per row, numeric features, one target column.

    The target column may hold numbers (whole numbers are class labels, other numbers make a
    regression unless ``task`` says otherwise) or strings (class names, classes sorted).

    Args:
        path: the ``.csv`` file.
        target: the target column, by index (default: the last) or by header name.
        header: whether the first row names the columns; ``None`` guesses (the first row is a
            header if it has text where the second row has a number).
        delimiter: the field separator.
        task, **options: see :func:`~initlab.train.data.from_arrays`.

    Raises:
        DataError: missing/empty file, ragged rows, empty or non-numeric feature cells.
    """
    file = _existing(path, "file")
    rows = _csv_rows(file, delimiter)
    if not rows:
        raise DataError(f"{file}: the file is empty.")
    first = rows[0].cells
    if header is None:
        header = _looks_like_header(rows)
    names = [cell.strip() for cell in first] if header else None
    body = rows[1:] if header else rows
    if not body:
        raise DataError(f"{file}: no data rows after the header.")
    width = len(first)
    if width < 2:
        raise DataError(f"{file}: needs at least one feature column and a target column.")
    column = _column_index(file, names, width, target)
    features = [_features(file, row, names, width, column) for row in body]
    labels = [row.cells[column].strip() for row in body]
    return from_arrays(
        np.asarray(features), _targets(file, labels), name=str(file), task=task, **options
    )


class _CsvRow(NamedTuple):
    """A non-empty row of a CSV file and its line number (from 1)."""

    line: int
    cells: list[str]


def _csv_rows(file: Path, delimiter: str) -> list[_CsvRow]:
    try:
        with file.open(newline="", encoding="utf-8") as handle:
            return [
                _CsvRow(number, row)
                for number, row in enumerate(csv.reader(handle, delimiter=delimiter), 1)
                if row
            ]
    except (UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{file}: not a readable text CSV ({error}).") from None


def _looks_like_header(rows: list[_CsvRow]) -> bool:
    """A header has a name where the next row has a number."""
    second = rows[1].cells if len(rows) > 1 else []
    return any(
        not _is_number(cell) and _is_number(below)
        for cell, below in zip(rows[0].cells, second, strict=False)
    )


def _features(
    file: Path, row: _CsvRow, names: list[str] | None, width: int, column: int
) -> list[float]:
    """The row's feature values: every cell but the target ``column``, as numbers."""
    if len(row.cells) != width:
        raise DataError(f"{file}: line {row.line} has {len(row.cells)} fields, expected {width}.")
    values = []
    for index, cell in enumerate(row.cells):
        if index == column:
            continue
        try:
            values.append(float(cell))
        except ValueError:
            where = f"column {names[index]!r}" if names else f"column {index}"
            raise DataError(
                f"{file}: line {row.line}, {where}: {cell!r} is not a number; features "
                f"must be numeric (encode categories first)."
            ) from None
    return values


def _targets(file: Path, labels: list[str]) -> Array:
    if any(label == "" for label in labels):
        raise DataError(f"{file}: {labels.count('')} rows have an empty target cell.")
    if not all(_is_number(label) for label in labels):
        return np.asarray(labels)
    numbers = np.asarray([float(label) for label in labels])
    if np.all(numbers == np.round(numbers)):
        return numbers.astype(np.int64)
    return numbers


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise MissingDependencyError(
            "initlab.train.files.from_image_folder needs Pillow to read images. Install it "
            "with: pip install pillow"
        ) from None
    return Image


def _open_image(file: Path, mode: str | None, size: tuple[int, int] | None) -> Array:
    """Pixels ``(channels, height, width)`` in [0, 1]; ``mode=None`` keeps grey images grey."""
    image_module = _pillow()
    try:
        with image_module.open(file) as image:
            if mode is None:
                mode = "L" if image.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
            converted = image.convert(mode)
    except OSError as error:  # PIL.UnidentifiedImageError is an OSError
        raise DataError(f"{file}: not a readable image ({error}).") from None
    if size is not None:
        converted = converted.resize((size[1], size[0]), image_module.Resampling.BILINEAR)
    pixels = np.asarray(converted, dtype=np.float32) / 255.0
    return pixels[None] if pixels.ndim == 2 else np.moveaxis(pixels, -1, 0)


def from_image_folder(
    path: str | Path,
    *,
    size: tuple[int, int] | None = None,
    mode: Literal["L", "RGB"] | None = None,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    **options: Any,
) -> Dataset:
    """A classification dataset from a folder with one sub-folder of images per class.

    ``root/cat/001.png``, ``root/dog/xyz.jpg``... Classes are the sub-folder names, sorted;
    pixels are scaled to [0, 1] before standardization (per channel by default).

    Args:
        path: the root folder.
        size: ``(height, width)`` to resize every image to; without it all images must share
            one size.
        mode: ``"L"`` (grey) or ``"RGB"``; default: the first image's mode decides (grey
            stays grey, anything else becomes RGB).
        extensions: which files are images (case-insensitive); other files are ignored.
        **options: see :func:`~initlab.train.data.from_arrays`.

    Raises:
        DataError: no class folders, an empty class, an unreadable image, sizes that differ.
        MissingDependencyError: Pillow is not installed.
    """
    root = _existing(path, "folder")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; give the folder that holds one folder per class.")
    classes = sorted(entry for entry in root.iterdir() if entry.is_dir())
    if not classes:
        raise DataError(f"{root}: no class sub-folders; lay images out as {root}/<class>/<image>.")
    suffixes = {ext.lower() for ext in extensions}
    images: list[Array] = []
    labels: list[int] = []
    for index, folder in enumerate(classes):
        for file in _image_files(folder, suffixes):
            pixels = _open_image(file, mode, size)
            mode = mode or ("L" if pixels.shape[0] == 1 else "RGB")
            if images:
                _check_same_size(file, pixels, images[0])
            images.append(pixels)
            labels.append(index)
    return from_arrays(
        np.stack(images),
        np.asarray(labels),
        name=str(root),
        class_names=[folder.name for folder in classes],
        **options,
    )


def _image_files(folder: Path, suffixes: set[str]) -> list[Path]:
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in suffixes)
    if not files:
        raise DataError(
            f"{folder}: class {folder.name!r} has no images ({', '.join(sorted(suffixes))})."
        )
    return files


def _check_same_size(file: Path, pixels: Array, first: Array) -> None:
    if pixels.shape != first.shape:
        raise DataError(
            f"{file}: image is {pixels.shape[1]}x{pixels.shape[2]} with "
            f"{pixels.shape[0]} channel(s), the first was {first.shape[1]}x"
            f"{first.shape[2]} with {first.shape[0]}; pass size=(height, width) "
            f"to resize all images."
        )
