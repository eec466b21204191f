"""``npz:`` datasets are read within limits, every damage is a typed error.

A few bytes of ``.npy`` header must not be able to ask for terabytes, a small deflated member
must not expand a thousandfold, a label must not size a list of classes, and a damaged archive
is a :class:`~qcfs_lava.errors.DatasetError`, never a zipfile/zlib traceback.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from netfuzz import npy_bytes, raw_npy, zip_members

from qcfs_lava import data
from qcfs_lava.cli import main
from qcfs_lava.data import NpzLimits, load_dataset, load_npz
from qcfs_lava.errors import DatasetError

ROOT = data.Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "netx_exports" / "digits-cnn.net"


def _images(n=20, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 1, 8, 8), dtype=np.uint8)


def _good(tmp_path, **extra):
    x = _images()
    y = np.arange(20) % 4
    path = tmp_path / "good.npz"
    np.savez(path, x=x, y=y, **extra)
    return path


# --------------------------------------------------------------------------- 7: limits


@pytest.mark.parametrize("shape", [(1 << 46,), (1 << 20, 1 << 20, 8, 8), (1 << 62, 2)])
def test_a_huge_declared_shape_is_refused_before_allocation(tmp_path, shape):
    path = tmp_path / "huge.npz"
    zip_members(path, {"x.npy": raw_npy("|u1", shape, b""), "y.npy": npy_bytes(np.zeros(2))})
    with pytest.raises(DatasetError, match="declares shape|limit"):
        load_npz(path)


def test_a_shape_larger_than_the_member_is_refused(tmp_path):
    path = tmp_path / "short.npz"
    zip_members(path, {"x.npy": raw_npy("|u1", (1000, 1, 8, 8), b"\0" * 640),
                       "y.npy": npy_bytes(np.zeros(1000, dtype=np.int64))})
    with pytest.raises(DatasetError, match="declares shape"):
        load_npz(path)


@pytest.mark.parametrize("member", ["x", "y"])
def test_a_deflate_bomb_is_refused(tmp_path, member):
    # the ratio rule applies above NPZ_RATIO_FREE_BYTES (64 MiB); 1 MiB here keeps it fast
    limits = NpzLimits(ratio_free_bytes=1 << 20)
    n = 1 << 16
    x = np.zeros((n, 1, 8, 8), dtype=np.uint8)  # 4 MiB of zeros deflate to a few KiB
    y = np.zeros(n, dtype=np.int64)
    arrays = {"x": x[:4] if member == "y" else x, "y": y}
    if member == "y":
        arrays["x"] = np.zeros((n, 1, 8, 8), dtype=np.uint8)
        arrays["y"] = np.zeros(n * 16, dtype=np.int64)[:n]
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, **arrays)
    with pytest.raises(DatasetError, match="decompression bomb"):
        load_npz(path, limits=limits)


@pytest.mark.parametrize("label", [2147483655, 1 << 16, (1 << 63) + 5])
def test_a_huge_label_is_refused_before_any_list_of_classes(tmp_path, label):
    y = np.arange(20, dtype=np.uint64) % 4
    y[3] = label
    path = tmp_path / "label.npz"
    np.savez(path, x=_images(), y=y)
    with pytest.raises(DatasetError, match=f"label {label}"):
        load_npz(path)


def test_labels_in_the_test_part_are_checked_too(tmp_path):
    y_test = np.arange(20, dtype=np.uint64) % 4
    y_test[0] = 1 << 63  # wraps to a negative int64 if cast first
    path = tmp_path / "t.npz"
    np.savez(path, x=_images(), y=np.arange(20) % 4, x_test=_images(), y_test=y_test)
    with pytest.raises(DatasetError, match=str(1 << 63)):
        load_npz(path)


# --------------------------------------------------------------------------- 11: damage


def _damaged(tmp_path, how: str):
    good = _good(tmp_path).read_bytes()
    path = tmp_path / f"{how}.npz"
    if how == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif how == "truncated-tail":
        path.write_bytes(good[:-10])
    elif how == "bad-crc":
        blob = bytearray(good)
        blob[200] ^= 0xFF  # inside x's data (stored members)
        path.write_bytes(bytes(blob))
    elif how == "broken-deflate":
        buffer = io.BytesIO()
        np.savez_compressed(buffer, x=_images(), y=np.arange(20) % 4)
        blob = bytearray(buffer.getvalue())
        for i in range(60, 120):
            blob[i] ^= 0x5A
        path.write_bytes(bytes(blob))
    elif how == "pk-garbage":
        path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    elif how == "plain-npy":
        path.write_bytes(npy_bytes(_images()))
    elif how == "not-npy-member":
        zip_members(path, {"x.npy": npy_bytes(_images()), "y.txt": b"0 1 2"})
    elif how == "bad-npy-header":
        zip_members(path, {"x.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': 'zz', }     \n",
                           "y.npy": npy_bytes(np.arange(20) % 4)})
    elif how == "object-member":
        zip_members(path, {"x.npy": npy_bytes(_images()),
                           "y.npy": raw_npy("|O", (20,), b"\0" * 160)})
    elif how == "empty":
        path.write_bytes(b"")
    return path


@pytest.mark.parametrize("how", ["truncated", "truncated-tail", "bad-crc", "broken-deflate",
                                 "pk-garbage", "plain-npy", "not-npy-member", "bad-npy-header",
                                 "object-member", "empty"])
def test_damaged_archives_are_typed_errors(tmp_path, how, capsys):
    path = _damaged(tmp_path, how)
    with pytest.raises(DatasetError):
        load_npz(path)
    assert main(["emulate", str(EXAMPLE), "--dataset", f"npz:{path}", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "Traceback" not in err


# --------------------------------------------------------------------------- 12: labels


def test_one_based_labels_are_refused_with_the_fix(tmp_path):
    path = tmp_path / "one.npz"
    np.savez(path, x=_images(), y=np.arange(20) % 4 + 1)
    with pytest.raises(DatasetError, match="1-based"):
        load_npz(path)


def test_a_class_without_training_images_is_refused(tmp_path):
    y = np.arange(20) % 4
    y[y == 2] = 3
    path = tmp_path / "gap.npz"
    np.savez(path, x=_images(), y=y)
    with pytest.raises(DatasetError, match=r"class\(es\) 2 have no training images"):
        load_npz(path)


def test_labels_beyond_the_models_classes_are_refused(tmp_path, capsys):
    split = load_dataset("digits")
    y = split.y_test[:40].copy()
    y[y == 9] = 11
    y[y == 8] = 10  # 12 classes, every one present
    y = np.concatenate([y, np.arange(12)])
    x = np.concatenate([split.x_test[:40], split.x_test[:12]])
    path = tmp_path / "more.npz"
    np.savez(path, x=x, y=y, x_test=x, y_test=y)
    for argv in (["emulate", str(EXAMPLE), "--steps", "1"],
                 ["resources", str(EXAMPLE), "--samples", "4"],
                 ["evaluate", str(ROOT / "netx_exports" / "digits-cnn.pt"), "--steps", "1"]):
        assert main([*argv, "--dataset", f"npz:{path}"]) == 2
        err = capsys.readouterr().err
        assert "label 11" in err and "10 outputs" in err


def test_good_archives_still_read_identically(tmp_path):
    x, y = _images(), np.arange(20, dtype=np.uint64) % 4
    path = tmp_path / "g.npz"
    np.savez_compressed(path, x=x, y=y, class_names=np.array(["a", "b", "c", "d"]))
    split = load_npz(path)
    with np.load(path) as f:
        assert np.array_equal(np.concatenate([split.y_train, split.y_test]).sort(),
                              f["y"].astype(np.int64).sort())
    assert split.class_names == ["a", "b", "c", "d"]
    fortran = tmp_path / "f.npz"
    np.savez(fortran, x=np.asfortranarray(x), y=y)
    assert np.array_equal(load_npz(fortran).x_train, split.x_train)


def test_stats_of_a_large_array_match_the_float_pass():
    x = _images(64)
    small = data._stats(x)
    large = data._stats(x, chunk_bytes=1000)
    np.testing.assert_allclose(small[0], large[0], rtol=1e-6)
    np.testing.assert_allclose(small[1], large[1], rtol=1e-5)


def test_zip_members_helper_writes_a_real_zip(tmp_path):
    zip_members(tmp_path / "z.npz", {"a.npy": npy_bytes(np.arange(3))})
    with zipfile.ZipFile(tmp_path / "z.npz") as z:
        assert z.namelist() == ["a.npy"]
