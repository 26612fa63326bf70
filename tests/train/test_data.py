"""Datasets: deterministic stratified splits, train-only standardization, file loaders."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from initlab.errors import ConfigError, UnknownNameError
from initlab.train import (
    DataError,
    Dataset,
    from_arrays,
    from_csv,
    from_image_folder,
    from_npz,
    load_breast_cancer,
    load_dataset,
    load_digits,
    load_wine,
    teacher_student,
)

PIL_Image = pytest.importorskip("PIL.Image")


def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    datasets = pytest.importorskip("sklearn.datasets")
    bunch = datasets.load_digits()
    return np.asarray(bunch.images, dtype=np.float32)[:, None], bunch.target


def test_digits_are_8x8_images_split_70_15_15(digits: Dataset) -> None:
    assert digits.input_shape == (1, 8, 8)
    assert digits.is_image
    assert digits.num_classes == 10
    assert digits.class_names[3] == "3"
    sizes = len(digits.train), len(digits.val), len(digits.test)
    assert sum(sizes) == 1797
    # Each class of ~180 examples gives round(0.15 * m) to val and to test.
    assert 260 <= sizes[1] <= 280
    assert 260 <= sizes[2] <= 280
    assert digits.train.y.dtype == torch.int64
    assert digits.train.x.dtype == torch.float32


def test_splits_are_stratified_disjoint_and_seeded() -> None:
    images, labels = _raw_digits()
    first = load_digits(seed=1)
    again = load_digits(seed=1)
    other = load_digits(seed=2)
    assert torch.equal(first.val.x, again.val.x)
    assert torch.equal(first.test.y, again.test.y)
    assert not torch.equal(first.val.x, other.val.x)
    for split in (first.val, first.test):
        counts = torch.bincount(split.y, minlength=10).numpy()
        expected = np.round(np.bincount(labels) * 0.15)
        np.testing.assert_array_equal(counts, expected)
    # Disjoint: undo the standardization and match every example back to a distinct row.
    flat = images.reshape(len(images), -1)
    index = {row.tobytes(): i for i, row in enumerate(flat)}
    seen: set[int] = set()
    for split in (first.train, first.val, first.test):
        assert first.standardizer is not None
        raw = split.x * first.standardizer.std + first.standardizer.mean
        rows = {
            index.get(np.round(r).astype(np.float32).tobytes(), -1)
            for r in raw.reshape(len(split), -1).numpy()
        }
        assert -1 not in rows
        assert not rows & seen
        seen |= rows
    # Some digits images are duplicates of others, so distinct rows cover slightly fewer.
    assert len(seen) >= 1790


def test_standardization_is_fitted_on_train_only(digits: Dataset) -> None:
    assert digits.standardizer is not None
    train = digits.train.x.double()
    # Per channel on images: the train split has mean 0 and std 1 exactly (up to rounding).
    assert abs(float(train.mean())) < 1e-6
    assert abs(float(train.std(correction=0)) - 1) < 1e-6
    # The val split used the train statistics, so its moments are close to, not exactly, 0/1.
    assert float(digits.val.x.double().mean()) != pytest.approx(0.0, abs=1e-6)
    assert digits.standardizer.mean.shape == (1, 1, 1)


@pytest.mark.parametrize(
    ("loader", "features", "classes"),
    [
        (load_breast_cancer, 30, 2),
        (load_wine, 13, 3),
    ],
)
def test_tabular_sets_standardize_per_feature(loader, features: int, classes: int) -> None:
    data = loader(seed=0)
    assert data.input_shape == (features,)
    assert data.num_classes == classes
    means = data.train.x.double().mean(0)
    stds = data.train.x.double().std(0, correction=0)
    assert float(means.abs().max()) < 1e-5
    assert float((stds - 1).abs().max()) < 1e-5


def test_teacher_student_is_a_seeded_regression() -> None:
    data = teacher_student(n=500, in_features=8, out_features=2, noise=0.0, teacher_seed=3)
    again = teacher_student(n=500, in_features=8, out_features=2, noise=0.0, teacher_seed=3)
    assert data.task == "regression"
    assert data.output_size == 2
    assert data.train.y.shape == (len(data.train), 2)
    assert data.num_classes is None
    assert torch.equal(data.train.y, again.train.y)
    # The noise is added last, so with the same teacher the difference is pure noise: the best
    # reachable MSE is noise**2. The sample std of m Gaussian values has standard error
    # ~ 0.3 / sqrt(2 m) (m = 700 train rows x 2 targets: 0.0057); allow 4 of them.
    noisy = teacher_student(n=500, in_features=8, out_features=2, noise=0.3, teacher_seed=3)
    residual = noisy.train.y - data.train.y
    assert torch.equal(noisy.train.x, data.train.x)
    assert abs(float(residual.std()) - 0.3) < 4 * 0.3 / math.sqrt(2 * residual.numel())


def test_load_dataset_by_name_and_typos() -> None:
    assert load_dataset("wine").name == "wine"
    with pytest.raises(UnknownNameError, match="Did you mean 'digits'"):
        load_dataset("digit")
    with pytest.raises(ConfigError, match="Unknown dataset option"):
        load_dataset("wine", shuffle=True)


def test_fractions_are_checked() -> None:
    with pytest.raises(ConfigError, match="val_fraction"):
        load_wine(val_fraction=1.2)
    with pytest.raises(ConfigError, match="leave examples to train"):
        load_wine(val_fraction=0.5, test_fraction=0.5)


def test_from_arrays_rejects_bad_inputs() -> None:
    x = np.zeros((10, 3))
    with pytest.raises(DataError, match="targets must be"):
        from_arrays(x, np.zeros(9, dtype=int))
    x[4, 1] = np.nan
    with pytest.raises(DataError, match=r"1 examples have NaN.*index 4"):
        from_arrays(x, np.zeros(10, dtype=int))
    with pytest.raises(DataError, match="whole numbers"):
        from_arrays(np.zeros((10, 3)), np.full(10, 0.5), task="classification")


# --- .npz -------------------------------------------------------------------------------------
def test_npz_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 4)), np.repeat(["cat", "dog", "emu"], 20)
    path = tmp_path / "points.npz"
    np.savez(path, inputs=x, labels=y)
    data = from_npz(path, x_key="inputs", y_key="labels", seed=0)
    assert data.class_names == ("cat", "dog", "emu")
    assert data.input_shape == (4,)
    assert len(data.train) + len(data.val) + len(data.test) == 60


def test_npz_errors_name_the_file_and_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(DataError, match=r"bad\.npz: no array named 'x'; it holds \['a'\]"):
        from_npz(path)
    with pytest.raises(DataError, match="no such file"):
        from_npz(tmp_path / "missing.npz")
    text = tmp_path / "text.npz"
    text.write_text("not a zip")
    with pytest.raises(DataError, match=r"text\.npz: not a readable \.npz"):
        from_npz(text)
    objects = tmp_path / "objects.npz"
    np.savez(objects, x=np.array([{"a": 1}] * 4, dtype=object), y=np.zeros(4))
    with pytest.raises(DataError, match="object arrays"):
        from_npz(objects)
    short = tmp_path / "short.npz"
    np.savez(short, x=np.zeros((5, 2)), y=np.zeros(4, dtype=int))
    with pytest.raises(DataError, match=r"short\.npz: targets must be"):
        from_npz(short)


# --- .csv -------------------------------------------------------------------------------------
def test_csv_with_header_and_named_string_target(tmp_path: Path) -> None:
    lines = ["height,label,width"] + [f"{i},{'ab'[i % 2]},{i * 2}" for i in range(40)]
    path = tmp_path / "table.csv"
    path.write_text("\n".join(lines) + "\n")
    data = from_csv(path, target="label", seed=0)
    assert data.class_names == ("a", "b")
    assert data.input_shape == (2,)
    assert data.task == "classification"


def test_csv_without_header_numeric_targets(tmp_path: Path) -> None:
    path = tmp_path / "numbers.csv"
    path.write_text("\n".join(f"{i},{i % 3}" for i in range(30)))
    assert from_csv(path).num_classes == 3
    labelled = tmp_path / "labelled.csv"
    labelled.write_text("\n".join(f"{i},{i * 2},{'xy'[i % 2]}" for i in range(30)))
    data = from_csv(labelled)  # no header: the text in the first row is a label, not a name
    assert data.class_names == ("x", "y")
    assert len(data.train) + len(data.val) + len(data.test) == 30
    floats = tmp_path / "floats.csv"
    floats.write_text("\n".join(f"{i},{i / 7}" for i in range(30)))
    assert from_csv(floats).task == "regression"


def test_csv_errors_name_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.csv"
    path.write_text("a,b,label\n1,2,x\n3,oops,y\n")
    with pytest.raises(
        DataError, match=r"broken\.csv: line 3, column 'b': 'oops' is not a number"
    ):
        from_csv(path)
    path.write_text("a,b,label\n1,2,x\n3,4\n")
    with pytest.raises(DataError, match="line 3 has 2 fields, expected 3"):
        from_csv(path)
    path.write_text("")
    with pytest.raises(DataError, match="empty"):
        from_csv(path)
    path.write_text("a,b,label\n1,2,x\n")
    with pytest.raises(DataError, match="no column named 'target'"):
        from_csv(path, target="target")


# --- image folders ----------------------------------------------------------------------------
def _write_folder(root: Path, sizes: dict[str, list[tuple[int, int]]], mode: str = "L") -> None:
    rng = np.random.default_rng(0)
    for name, shapes in sizes.items():
        (root / name).mkdir(parents=True)
        for i, (h, w) in enumerate(shapes):
            channels = (h, w) if mode == "L" else (h, w, 3)
            pixels = rng.integers(0, 256, size=channels, dtype=np.uint8)
            PIL_Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_image_folder_one_class_per_folder(tmp_path: Path) -> None:
    _write_folder(tmp_path, {"circle": [(8, 8)] * 10, "square": [(8, 8)] * 10})
    (tmp_path / "square" / "notes.txt").write_text("ignored")
    data = from_image_folder(tmp_path, seed=0)
    assert data.class_names == ("circle", "square")
    assert data.input_shape == (1, 8, 8)
    assert len(data.train) + len(data.val) + len(data.test) == 20
    raw = from_image_folder(tmp_path, standardize="none", val_fraction=0, test_fraction=0)
    first = np.asarray(PIL_Image.open(tmp_path / "circle" / "0.png"), dtype=np.float32) / 255
    np.testing.assert_allclose(raw.train.x[0, 0].numpy(), first)


def test_image_folder_rgb_and_resize(tmp_path: Path) -> None:
    _write_folder(tmp_path, {"a": [(8, 8), (12, 10)], "b": [(8, 8), (9, 9)]}, mode="RGB")
    with pytest.raises(DataError, match=r"1\.png: image is 12x10 .* pass size="):
        from_image_folder(tmp_path)
    data = from_image_folder(tmp_path, size=(6, 6), val_fraction=0, test_fraction=0)
    assert data.input_shape == (3, 6, 6)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no class sub-folders"):
        from_image_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="class 'empty' has no images"):
        from_image_folder(tmp_path)
    (tmp_path / "empty" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"broken\.png: not a readable image"):
        from_image_folder(tmp_path)
