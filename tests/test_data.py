"""Dataset loaders, on the embedded digits and on tiny synthetic local files."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest
import torch

from qcfs_lava.data import load_dataset, load_test_samples, normalize, read_idx, torch_dataset
from qcfs_lava.errors import DatasetError


def write_idx(path, array, compress):
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def _images(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10


def test_digits_is_deterministic_stratified_uint8():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.x_train.dtype == np.uint8 and a.x_train.shape[1:] == (1, 8, 8)
    assert len(a.y_train) + len(a.y_test) == 1797 and len(a.y_test) == 359
    assert np.array_equal(a.x_test, b.x_test) and np.array_equal(a.y_test, b.y_test)
    assert a.x_train.max() == 255 and set(np.unique(a.x_train)) <= {
        round(v * 255 / 16) for v in range(17)}
    counts = np.bincount(a.y_test, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38
    assert a.num_classes == 10 and a.in_channels == 1 and a.input_size == 8


def test_normalize_formula_and_torch_dataset():
    split = load_dataset("digits")
    x = normalize(split.x_test[:3], split)
    expected = (split.x_test[:3].astype(np.float32) / 255 - split.mean[0]) / split.std[0]
    assert torch.allclose(x, torch.from_numpy(expected), atol=1e-6)
    ds = torch_dataset(split, train=False)
    xb, yb = ds[0]
    assert torch.equal(xb, x[0]) and int(yb) == split.y_test[0]
    aug = torch_dataset(split, train=True, augment=True)
    assert aug[0][0].shape == (1, 8, 8)


@pytest.mark.parametrize("compress", [True, False])
def test_full_mnist_layout_from_idx_files(tmp_path, compress):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    suffix = ".gz" if compress else ""
    x, y = _images(30, 0)
    write_idx(raw / f"train-images-idx3-ubyte{suffix}", x, compress)
    write_idx(raw / f"train-labels-idx1-ubyte{suffix}", y, compress)
    write_idx(raw / f"t10k-images-idx3-ubyte{suffix}", x[:10], compress)
    write_idx(raw / f"t10k-labels-idx1-ubyte{suffix}", y[:10], compress)
    split = load_dataset("mnist", tmp_path)
    assert split.x_train.shape == (30, 1, 28, 28) and np.array_equal(split.x_train[:, 0], x)
    assert np.array_equal(split.y_test, y[:10])


def test_mnist_split_checks_md5_and_missing_files(tmp_path, monkeypatch):
    monkeypatch.setenv("QCFS_LAVA_MNIST_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match="not found"):
        load_dataset("mnist-split")
    x, y = _images(50, 1)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", x, True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", y, True)
    with pytest.raises(DatasetError, match="md5"):
        load_dataset("mnist-split")


def test_corrupt_idx_is_reported(tmp_path):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x05")
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(path)
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(DatasetError, match="magic"):
        read_idx(path)


def test_mnist_split_on_the_shared_test_set():
    from qcfs_lava.data import default_mnist_dir

    if not (default_mnist_dir() / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"official MNIST test set not present in {default_mnist_dir()}")
    split = load_dataset("mnist-split")
    assert split.x_train.shape == (8000, 1, 28, 28) and split.x_test.shape == (2000, 1, 28, 28)
    assert np.bincount(split.y_test).min() >= 170  # stratified: class 5 is rarest


def test_fashion_mnist_through_torchvision_raw_files(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    x, y = _images(20, 2)
    write_idx(raw / "train-images-idx3-ubyte", x, False)
    write_idx(raw / "train-labels-idx1-ubyte", y, False)
    write_idx(raw / "t10k-images-idx3-ubyte", x[:5], False)
    write_idx(raw / "t10k-labels-idx1-ubyte", y[:5], False)
    split = load_dataset("fashion-mnist", tmp_path)
    assert split.x_train.shape == (20, 1, 28, 28) and np.array_equal(split.x_train[:, 0], x)
    assert len(split.class_names) == 10


def test_missing_torchvision_dataset_says_what_to_do(tmp_path):
    with pytest.raises(DatasetError, match="download"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("imagenet")


def test_data_search_path_is_overridable(tmp_path, monkeypatch):
    from qcfs_lava.data import DATA_ENV_VAR, data_search_path, default_mnist_dir, find_data

    monkeypatch.delenv("QCFS_LAVA_MNIST_DIR", raising=False)
    first, second = tmp_path / "a", tmp_path / "b"
    (second / "mnist").mkdir(parents=True)
    monkeypatch.setenv(DATA_ENV_VAR, f"{first}{os.pathsep}{second}")
    assert data_search_path()[:2] == [first, second]
    assert find_data("mnist") == second / "mnist"
    assert default_mnist_dir() == second / "mnist"
    x, y = _images(20, 2)
    write_idx(second / "mnist" / "t10k-images-idx3-ubyte", x, False)
    write_idx(second / "mnist" / "t10k-labels-idx1-ubyte", y, False)
    split = load_dataset("mnist-split")
    assert len(split.y_train) + len(split.y_test) == 20
    assert find_data("no-such-dataset") is None
    monkeypatch.setenv("QCFS_LAVA_MNIST_DIR", str(first))
    assert default_mnist_dir() == first


def test_load_test_samples_keeps_the_first_n_contiguous():
    split = load_dataset("digits")
    x, y, got = load_test_samples("digits", samples=5)
    assert np.array_equal(x, split.x_test[:5]) and np.array_equal(y, split.y_test[:5])
    assert x.flags.c_contiguous and got.name == split.name
    x_all, _, _ = load_test_samples("digits")
    assert len(x_all) == len(split.x_test)
    with pytest.raises(DatasetError, match="no dataset given"):
        load_test_samples(None)
