"""The cifar10-subset dataset and the ``npz:PATH`` loader for a user's own arrays."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from repo_files import needs_cifar10_subset

from qcfs_lava import data
from qcfs_lava.data import load_dataset, load_npz
from qcfs_lava.errors import DatasetError


def _arrays(n=40, classes=4, nhwc=False, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
    y = np.arange(n) % classes
    return (x.transpose(0, 2, 3, 1).copy() if nhwc else x), y


def test_npz_nchw_and_nhwc_give_the_same_split(tmp_path):
    x, y = _arrays()
    np.savez(tmp_path / "a.npz", x=x, y=y)
    np.savez(tmp_path / "b.npz", x=x.transpose(0, 2, 3, 1), y=y.astype(np.uint8))
    a = load_dataset(f"npz:{tmp_path / 'a.npz'}")
    b = load_npz(tmp_path / "b.npz")
    assert a.name == f"npz:{tmp_path / 'a.npz'}"
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    # per class, in file order, the last 20% (2 of 10) are the test part
    assert a.x_test.shape == (8, 3, 8, 8) and a.x_train.shape == (32, 3, 8, 8)
    assert np.array_equal(a.x_test, x[32:]) and np.array_equal(a.y_test, y[32:])
    assert a.y_train.dtype == np.int64 and a.num_classes == 4 and a.input_size == 8
    assert np.allclose(a.mean, (x[:32] / 255.0).mean(axis=(0, 2, 3)), atol=1e-6)


def test_npz_with_its_own_test_part_and_class_names(tmp_path):
    x, y = _arrays()
    np.savez(tmp_path / "d.npz", x=x[:30], y=y[:30], x_test=x[30:], y_test=y[30:],
             class_names=np.array(["a", "b", "c", "d"]))
    split = load_npz(tmp_path / "d.npz")
    assert np.array_equal(split.x_test, x[30:]) and len(split.y_train) == 30
    assert split.class_names == ["a", "b", "c", "d"]


def test_npz_grayscale_three_dimensional(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "g.npz", x=rng.integers(0, 256, (20, 6, 6), dtype=np.uint8),
             y=np.arange(20) % 2)
    split = load_npz(tmp_path / "g.npz")
    assert split.x_train.shape[1:] == (1, 6, 6) and split.in_channels == 1


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((4, 3, 8, 8), np.float32), "y": np.zeros(4, int)}, "uint8"),
        ({"x": np.zeros((4, 5, 8, 7), np.uint8), "y": np.zeros(4, int)}, "channels"),
        ({"x": np.zeros((4, 8), np.uint8), "y": np.zeros(4, int)}, "shape"),
        ({"x": np.zeros((4, 3, 8, 8), np.uint8), "y": np.zeros(5, int)}, "one label per image"),
        ({"x": np.zeros((4, 3, 8, 8), np.uint8), "y": np.zeros(4, np.float32)}, "integers"),
        ({"x": np.zeros((4, 3, 8, 8), np.uint8), "y": np.array([0, 1, -1, 0])}, "negative"),
        ({"images": np.zeros((4, 3, 8, 8), np.uint8)}, "lacks the array"),
        ({"x": np.zeros((4, 3, 8, 8), np.uint8), "y": np.zeros(4, int),
          "x_test": np.zeros((2, 3, 8, 8), np.uint8)}, "x_test/y_test"),
        ({"x": np.zeros((4, 3, 8, 8), np.uint8), "y": np.zeros(4, int),
          "x_test": np.zeros((2, 3, 4, 4), np.uint8), "y_test": np.zeros(2, int)}, "one shape"),
        ({"x": np.zeros((4, 3, 8, 8), np.uint8), "y": np.arange(4) % 2,
          "class_names": np.array(["a"])}, "name every class"),
        ({"x": np.zeros((1, 3, 8, 8), np.uint8), "y": np.zeros(1, int)}, "too few images"),
    ],
)
def test_npz_validation_names_file_and_problem(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(f"npz:{path}")
    assert str(path) in str(info.value)


def test_npz_missing_unreadable_or_unnamed(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(f"npz:{tmp_path / 'none.npz'}")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="cannot read"):
        load_dataset(f"npz:{tmp_path / 'junk.npz'}")
    with pytest.raises(DatasetError, match="names no file"):
        load_dataset("npz:")


def _fake_subset(tmp_path, per_class=(103, 101)):
    y = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)]).astype(np.uint8)
    y = y[np.random.default_rng(0).permutation(len(y))]
    x = np.random.default_rng(1).integers(0, 256, (len(y), 3, 32, 32), dtype=np.uint8)
    path = tmp_path / data.CIFAR10_SUBSET_FILE
    np.savez(path, x=x, y=y)
    return path, x, y


def test_cifar10_subset_split_is_the_last_100_of_each_class(tmp_path, monkeypatch):
    path, x, y = _fake_subset(tmp_path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setattr(data, "CIFAR10_SUBSET_SHA256", digest)
    split = load_dataset("cifar10-subset", tmp_path)
    assert np.bincount(split.y_test).tolist() == [100, 100]
    assert np.bincount(split.y_train).tolist() == [3, 1]
    first0 = np.flatnonzero(y == 0)[:3]
    assert np.array_equal(split.x_train[split.y_train == 0], x[first0])
    assert split.class_names[:2] == ["airplane", "automobile"]
    # the file itself as root, and the environment variable, find the same data
    same = load_dataset("cifar10-subset", path)
    assert np.array_equal(same.x_test, split.x_test)
    monkeypatch.setenv("QCFS_LAVA_CIFAR10_SUBSET_DIR", str(tmp_path))
    assert np.array_equal(load_dataset("cifar10-subset").y_test, split.y_test)


def test_cifar10_subset_checks_sha256_and_says_where_it_looked(tmp_path, monkeypatch):
    _fake_subset(tmp_path)
    with pytest.raises(DatasetError, match="sha256"):
        load_dataset("cifar10-subset", tmp_path)
    monkeypatch.setenv("QCFS_LAVA_CIFAR10_SUBSET_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match="QCFS_LAVA_CIFAR10_SUBSET_DIR"):
        load_dataset("cifar10-subset")


def test_cifar10_subset_on_the_shared_file():
    needs_cifar10_subset()
    split = load_dataset("cifar10-subset")
    assert split.x_train.shape == (3660, 3, 32, 32) and split.x_test.shape == (1000, 3, 32, 32)
    assert np.bincount(split.y_test).tolist() == [100] * 10
    assert split.num_classes == 10 and split.input_size == 32


def test_npz_dataset_from_the_command_line(tmp_path, capsys):
    from qcfs_lava.cli import main

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60, 8, 8, 1), dtype=np.uint8)  # NHWC grayscale
    y = np.arange(60) % 3
    x[y == 1, :4] = 255  # learnable: class 1 bright on top, class 2 bright at the bottom
    x[y == 2, 4:] = 255
    npz = tmp_path / "mine.npz"
    np.savez(npz, x=x, y=y)
    out = tmp_path / "run"
    assert main(["train", "--model", "cnn", "--width", "4", "--epochs", "1", "--dataset",
                 f"npz:{npz}", "--out", str(out)]) == 0
    # the checkpoint remembers the file: emulate finds it without --dataset
    report = tmp_path / "emu.json"
    assert main(["emulate", str(out / "best.pt"), "--steps", "4", "--json", str(report)]) == 0
    assert json.loads(report.read_text())["dataset"] == f"npz:{npz}"
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=x.astype(np.float32), y=y)
    assert main(["evaluate", str(out / "best.pt"), "--dataset", f"npz:{bad}"]) == 2
    err = capsys.readouterr().err
    assert "uint8" in err and str(bad) in err


def test_npz_one_based_labels_are_refused_naming_the_empty_class(tmp_path):
    x, y = _arrays()
    np.savez(tmp_path / "one.npz", x=x, y=y + 1)
    with pytest.raises(DatasetError, match=r"class\(es\) 0 have no training images.*1-based"):
        load_npz(tmp_path / "one.npz")
    np.savez(tmp_path / "gap.npz", x=x, y=np.where(y == 2, 3, y))
    with pytest.raises(DatasetError, match=r"class\(es\) 2 have no training images") as info:
        load_npz(tmp_path / "gap.npz")
    assert "1-based" not in str(info.value)


@pytest.mark.slow
def test_npz_relative_path_is_recorded_absolute_and_class_names_reach_the_report(
        tmp_path, monkeypatch, capsys):
    from qcfs_lava.checkpoint import load_checkpoint
    from qcfs_lava.cli import main

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60, 8, 8), dtype=np.uint8)
    y = np.arange(60) % 3
    work = tmp_path / "work"
    work.mkdir()
    np.savez(work / "mine.npz", x=x, y=y, class_names=np.array(["cat", "dog", "owl"]))
    monkeypatch.chdir(work)
    assert main(["train", "--model", "cnn", "--width", "4", "--epochs", "1", "--dataset",
                 "npz:mine.npz", "--out", "run"]) == 0
    ckpt = load_checkpoint(work / "run" / "best.pt")
    assert ckpt.dataset == f"npz:{work / 'mine.npz'}"
    assert ckpt.class_names == ["cat", "dog", "owl"]
    monkeypatch.chdir(tmp_path)  # another folder: the recorded path still finds the file
    assert main(["report", str(work / "run" / "best.pt"), "--steps", "2,4", "--out",
                 "rep"]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| 0 | cat | 4 |" in md and "| 2 | owl | 4 |" in md
    rows = json.loads((tmp_path / "rep" / "report.json").read_text())["classes"]["rows"]
    assert [r["name"] for r in rows] == ["cat", "dog", "owl"]
