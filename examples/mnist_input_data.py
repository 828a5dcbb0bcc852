"""Data loading shared by the MNIST example trainer and client.

The trainer and the client must agree on the pixel count and scaling, so both
load images through :func:`load_dataset`. With no ``--data`` folder the
examples use scikit-learn's bundled 8x8 digits: they work offline, with no
download, and train in seconds. With a folder, real MNIST (28x28) is read from
``mnist.npz`` or the four IDX files; nothing is ever downloaded.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass

import numpy as np

__all__ = [
    "IDX_FILES",
    "NPZ_FILE",
    "Dataset",
    "load_dataset",
    "load_digits_dataset",
    "load_mnist_folder",
    "read_idx",
]

NPZ_FILE = "mnist.npz"
# Names as published on the MNIST site; each may also carry a ".gz" suffix.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# IDX type codes (third byte of the magic number) -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


@dataclass
class Dataset:
    """Images flattened to float32 rows in [0, 1] with int64 labels 0..9."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    pixels: int


def load_dataset(data: str | None = None) -> Dataset:
    """Load sklearn digits when ``data`` is None, else real MNIST from that folder."""
    if data is None:
        return load_digits_dataset()
    return load_mnist_folder(data)


def load_digits_dataset() -> Dataset:
    """Split sklearn's 8x8 digits deterministically so trainer and client agree."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.data / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=0.25, random_state=0, stratify=labels
    )
    return _make_dataset(train_x, train_y, test_x, test_y)


def load_mnist_folder(folder: str) -> Dataset:
    """Read ``mnist.npz`` or the four IDX files (optionally gzipped) from ``folder``."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--data folder {folder!r} does not exist")
    npz_path = os.path.join(folder, NPZ_FILE)
    if os.path.isfile(npz_path):
        with np.load(npz_path, allow_pickle=False) as npz:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in npz]
            if missing:
                raise ValueError(f"{npz_path} lacks the arrays {missing}")
            return _from_uint8(npz["x_train"], npz["y_train"], npz["x_test"], npz["y_test"])

    paths = {key: _find_idx(folder, name) for key, name in IDX_FILES.items()}
    if all(p is None for p in paths.values()):
        looked_for = ", ".join([NPZ_FILE] + [f"{n}[.gz]" for n in IDX_FILES.values()])
        raise FileNotFoundError(
            f"no MNIST data in {folder!r}: looked for {looked_for} "
            "(nothing is downloaded; omit --data to use scikit-learn's bundled digits)"
        )
    missing = [IDX_FILES[k] + "[.gz]" for k, p in paths.items() if p is None]
    if missing:
        raise FileNotFoundError(f"incomplete MNIST IDX files in {folder!r}: missing {missing}")
    arrays = {key: read_idx(path) for key, path in paths.items() if path is not None}
    return _from_uint8(
        arrays["train_images"], arrays["train_labels"], arrays["test_images"], arrays["test_labels"]
    )


def read_idx(path: str) -> np.ndarray:
    """Parse one IDX file (plain or .gz): the format MNIST is published in."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    dtype = _IDX_DTYPES.get(raw[2])
    if dtype is None:
        raise ValueError(f"{path}: unknown IDX data type 0x{raw[2]:02x}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX shape {shape} needs {expected} data bytes, found {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find_idx(folder: str, name: str) -> str | None:
    for candidate in (name, name + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def _from_uint8(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray
) -> Dataset:
    """Flatten 0..255 images to float32 rows in [0, 1]."""

    def images(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        return (x.reshape(x.shape[0], -1) / 255.0).astype(np.float32)

    return _make_dataset(images(train_x), train_y, images(test_x), test_y)


def _make_dataset(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray
) -> Dataset:
    train_y = np.asarray(train_y).astype(np.int64).reshape(-1)
    test_y = np.asarray(test_y).astype(np.int64).reshape(-1)
    if train_x.shape[0] != train_y.shape[0] or test_x.shape[0] != test_y.shape[0]:
        raise ValueError("image and label counts differ")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError("train and test images differ in size")
    return Dataset(
        train_images=np.ascontiguousarray(train_x, dtype=np.float32),
        train_labels=train_y,
        test_images=np.ascontiguousarray(test_x, dtype=np.float32),
        test_labels=test_y,
        pixels=int(train_x.shape[1]),
    )
