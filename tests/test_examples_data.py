"""Tests of examples/mnist_input_data.py: the trainer and client must see the same data."""

from __future__ import annotations

import gzip
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))

import mnist_input_data
from mnist_input_data import load_dataset, read_idx


def _write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """Write a uint8 IDX file the way the MNIST site publishes them."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def _tiny_mnist() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "x_train": rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, size=7, dtype=np.uint8),
        "x_test": rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, size=3, dtype=np.uint8),
    }


def _check(ds: mnist_input_data.Dataset, raw: dict[str, np.ndarray]) -> None:
    assert ds.pixels == 784
    assert ds.train_images.shape == (7, 784) and ds.test_images.shape == (3, 784)
    assert ds.train_images.dtype == np.float32 and ds.test_images.dtype == np.float32
    assert ds.train_labels.dtype == np.int64 and ds.test_labels.dtype == np.int64
    np.testing.assert_allclose(ds.train_images, raw["x_train"].reshape(7, -1) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(ds.test_images, raw["x_test"].reshape(3, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.train_labels, raw["y_train"])
    np.testing.assert_array_equal(ds.test_labels, raw["y_test"])


def test_default_digits_split_is_deterministic() -> None:
    a = load_dataset(None)
    b = load_dataset(None)
    assert a.pixels == 64
    assert a.train_images.shape == (1347, 64) and a.test_images.shape == (450, 64)
    assert a.train_labels.shape == (1347,) and a.test_labels.shape == (450,)
    assert a.train_images.dtype == np.float32 and a.train_labels.dtype == np.int64
    assert a.train_images.min() >= 0.0 and a.train_images.max() <= 1.0
    assert a.train_images.max() == 1.0
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    # Stratified: every digit appears in the test split.
    assert set(a.test_labels.tolist()) == set(range(10))


def test_default_digits_split_covers_all_images_once() -> None:
    from sklearn.datasets import load_digits

    ds = load_dataset(None)
    everything = np.concatenate([ds.train_images, ds.test_images])
    original = (load_digits().data / 16.0).astype(np.float32)
    # Same multiset of rows: nothing dropped or duplicated between the splits.
    assert sorted(r.tobytes() for r in everything) == sorted(r.tobytes() for r in original)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
def test_idx_folder_round_trip(tmp_path: Path, compress: bool) -> None:
    raw = _tiny_mnist()
    for key, name in [
        ("x_train", "train-images-idx3-ubyte"),
        ("y_train", "train-labels-idx1-ubyte"),
        ("x_test", "t10k-images-idx3-ubyte"),
        ("y_test", "t10k-labels-idx1-ubyte"),
    ]:
        _write_idx(tmp_path / name, raw[key], compress=compress)
    _check(load_dataset(str(tmp_path)), raw)


def test_read_idx_shape_and_magic(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "x", array)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "x")), array)

    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(ValueError, match="magic"):
        read_idx(str(tmp_path / "bad"))

    (tmp_path / "short").write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 5) + b"\x00\x01")
    with pytest.raises(ValueError, match="needs 5 data bytes"):
        read_idx(str(tmp_path / "short"))


def test_npz_round_trip(tmp_path: Path) -> None:
    raw = _tiny_mnist()
    np.savez(tmp_path / "mnist.npz", **raw)
    _check(load_dataset(str(tmp_path)), raw)


def test_folder_without_mnist_names_the_files(tmp_path: Path) -> None:
    (tmp_path / "unrelated.txt").write_text("hello")
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(str(tmp_path))
    message = str(info.value)
    assert str(tmp_path) in message
    for name in ["mnist.npz", *mnist_input_data.IDX_FILES.values()]:
        assert name in message


def test_incomplete_idx_folder_names_the_missing_file(tmp_path: Path) -> None:
    raw = _tiny_mnist()
    _write_idx(tmp_path / "train-images-idx3-ubyte", raw["x_train"])
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_dataset(str(tmp_path))


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(str(tmp_path / "nope"))
