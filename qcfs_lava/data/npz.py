"""A user's own arrays in an ``.npz`` file (:func:`load_npz`), read within limits.

The archive's members are checked from their headers before anything is decompressed: a few
bytes of header cannot ask for terabytes, nor a small compressed member expand a thousandfold
(``docs/failure-modes.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qcfs_lava.data.split import DataSplit, _stats, _tail_split
from qcfs_lava.errors import DatasetError

NPZ_PREFIX = "npz:"

# Limits of the npz reader (docs/failure-modes.md): a few bytes of header must not be able to
# ask for terabytes, nor a small compressed member expand a thousandfold.
NPZ_MAX_ARRAY_BYTES = 4 << 30  # one array, decompressed
NPZ_MAX_RATIO = 100  # decompressed / compressed size of one member...
NPZ_RATIO_FREE_BYTES = 64 << 20  # ...above this size (small arrays may compress any amount)
NPZ_MAX_MEMBERS = 64
NPZ_MAX_CLASSES = 1 << 16


@dataclass(frozen=True)
class NpzLimits:
    """The limits an archive's ``.npy`` headers are checked against before anything is
    decompressed in bulk (defaults: the module constants above)."""

    max_array_bytes: int = NPZ_MAX_ARRAY_BYTES
    max_ratio: int = NPZ_MAX_RATIO
    ratio_free_bytes: int = NPZ_RATIO_FREE_BYTES
    max_members: int = NPZ_MAX_MEMBERS


def _npz_headers(archive, path: Path, what: str, limits: NpzLimits) -> dict[str, tuple]:
    """``{key: (info, shape, dtype, fortran, header_length)}`` of every member, from the
    ``.npy`` headers alone; every declared size is checked against the archive's real one
    and against the limits before anything is decompressed in bulk."""
    import zipfile

    file_size = path.stat().st_size
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise DatasetError(f"{what}: {path} holds {len(infos)} members (at most "
                           f"{limits.max_members}); save only x, y and optionally x_test, y_test, "
                           "class_names")
    out = {}
    for info in infos:
        name = info.filename
        if not name.endswith(".npy") or info.is_dir():
            raise DatasetError(f"{what}: {path} holds the member {name!r}, which is not a .npy "
                               "array; save the file with numpy.savez(path, x=..., y=...)")
        if info.compress_size > file_size:
            raise DatasetError(f"{what}: {path}: member {name!r} claims {info.compress_size} "
                               f"compressed bytes in a {file_size}-byte file (damaged)")
        with archive.open(info) as f:
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f".npy format version {version}")
            except (zipfile.BadZipFile, OSError, EOFError):
                raise
            except Exception as exc:  # numpy's header parser raises tokenize/syntax errors too
                raise DatasetError(f"{what}: {path}: member {name!r} has a damaged .npy header "
                                   f"({type(exc).__name__}: {str(exc)[:120]}); save the file "
                                   "again with numpy.savez") from None
            header_length = f.tell()
        if dtype.hasobject:
            raise DatasetError(f"{what}: {path}: array {name[:-4]!r} holds Python objects "
                               f"({dtype}), which are never loaded; save numbers or strings")
        count = math.prod(int(n) for n in shape)
        nbytes = count * dtype.itemsize
        if nbytes > limits.max_array_bytes:
            raise DatasetError(
                f"{what}: {path}: array {name[:-4]!r} declares shape {tuple(shape)} "
                f"({nbytes / 2**30:.3g} GiB), above the limit of "
                f"{limits.max_array_bytes / 2**30:.0f} GiB per array; use a smaller dataset")
        if info.file_size != header_length + nbytes:
            raise DatasetError(
                f"{what}: {path}: array {name[:-4]!r} declares shape {tuple(shape)} of "
                f"{dtype} ({nbytes} bytes) but its member holds {info.file_size - header_length}"
                " bytes: the file is damaged; save it again")
        if (info.compress_type != zipfile.ZIP_STORED and nbytes > limits.ratio_free_bytes
                and info.file_size > limits.max_ratio * max(info.compress_size, 1)):
            raise DatasetError(
                f"{what}: {path}: array {name[:-4]!r} would expand from {info.compress_size} "
                f"to {info.file_size} bytes (more than {limits.max_ratio}x): refused as a "
                "decompression bomb; save it with numpy.savez (uncompressed)")
        out[name[:-4]] = (info, tuple(int(n) for n in shape), dtype, fortran, header_length)
    return out


def _npz_array(archive, entry: tuple) -> np.ndarray:
    info, shape, dtype, fortran, header_length = entry
    with archive.open(info) as f:
        f.read(header_length)
        data = f.read(info.file_size - header_length)
        if len(data) != info.file_size - header_length:
            raise EOFError(f"member {info.filename!r} ends early")
    arr = np.frombuffer(data, dtype=dtype)
    if fortran:
        return arr.reshape(shape[::-1]).transpose()
    return arr.reshape(shape)


def _read_npz(path: Path, what: str, labels: tuple[tuple[str, str], ...] = (),
              limits: NpzLimits = NpzLimits()) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive, read within the limits above.

    Args:
        path: the archive.
        what: the dataset name, for messages.
        labels: ``(labels_key, images_key)`` pairs: each labels array is read and checked
            (:func:`_labels`) against the number of images its images array declares before
            any images are decompressed.
        limits: the header limits (:class:`NpzLimits`).

    Raises:
        DatasetError: missing file, not a zip archive, a damaged member (CRC, deflate,
            truncation), a member that is not ``.npy``, a limit exceeded, bad labels.
    """
    import struct
    import zipfile
    import zlib

    if not path.is_file():
        raise DatasetError(f"{what}: {path} not found; pass an existing .npz file")
    fix = "save it with numpy.savez(path, x=..., y=...)"
    try:
        if not zipfile.is_zipfile(path):
            with open(path, "rb") as f:
                head = f.read(6)
            kind = ("a single .npy array, not an .npz archive" if head == b"\x93NUMPY"
                    else "not a zip archive (damaged or not .npz)")
            raise DatasetError(f"{what}: cannot read {path}: it is {kind}; {fix}")
        with zipfile.ZipFile(path) as archive:
            headers = _npz_headers(archive, path, what, limits)
            out: dict[str, np.ndarray] = {}
            for y_key, x_key in labels:
                if y_key in headers and x_key in headers:
                    n = headers[x_key][1][0] if headers[x_key][1] else 0
                    y_shape = headers[y_key][1]
                    if y_shape != (n,):
                        raise DatasetError(
                            f"{what}: array {y_key!r} has shape {y_shape}, expected ({n},): one "
                            "label per image")
                    out[y_key] = _labels(_npz_array(archive, headers[y_key]), n, y_key, what)
            for key, entry in headers.items():
                if key not in out:
                    out[key] = _npz_array(archive, entry)
            return out
    except DatasetError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
            NotImplementedError, RuntimeError, UnicodeDecodeError, OverflowError, struct.error,
            TypeError, KeyError, SyntaxError) as exc:
        raise DatasetError(f"{what}: cannot read {path} as a numpy .npz archive "
                           f"({type(exc).__name__}: {str(exc)[:200]}); the file is damaged: "
                           f"{fix}") from None


def _images(x: np.ndarray, key: str, what: str) -> np.ndarray:
    """Validate images and return them as contiguous uint8 ``(N, C, H, W)``."""
    if x.dtype != np.uint8:
        raise DatasetError(f"{what}: array {key!r} has dtype {x.dtype}; images must be uint8 "
                           "(0..255): convert with x.astype(numpy.uint8) after scaling")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[1] in (1, 3):
            pass
        elif x.shape[3] in (1, 3):
            x = x.transpose(0, 3, 1, 2)
        else:
            raise DatasetError(f"{what}: array {key!r} of shape {x.shape} has neither 1 nor 3 "
                               "channels on axis 1 (NCHW) or axis 3 (NHWC); reshape it to "
                               "(N, C, H, W)")
    else:
        raise DatasetError(f"{what}: array {key!r} has shape {x.shape}; expected (N, C, H, W), "
                           "(N, H, W, C) or (N, H, W)")
    if x.shape[0] == 0:
        raise DatasetError(f"{what}: array {key!r} holds no images")
    return np.ascontiguousarray(x)


def _labels(y: np.ndarray, n: int, key: str, what: str) -> np.ndarray:
    """Integer labels ``0..K-1``, one per image, checked before any cast (a uint64 label
    of 2**63 does not wrap to a negative one) and bounded by :data:`NPZ_MAX_CLASSES`."""
    if not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{what}: array {key!r} has dtype {y.dtype}; labels must be integers "
                           "0..classes-1")
    if y.shape != (n,):
        raise DatasetError(f"{what}: array {key!r} has shape {y.shape}, expected ({n},): one "
                           "label per image")
    if y.size:
        lo, hi = int(y.min()), int(y.max())  # Python ints: exact for every integer dtype
        if lo < 0:
            raise DatasetError(f"{what}: array {key!r} holds the negative label {lo}; labels "
                               "must be 0..classes-1")
        if hi >= NPZ_MAX_CLASSES:
            raise DatasetError(f"{what}: array {key!r} holds the label {hi}; labels must be "
                               f"0..classes-1 with at most {NPZ_MAX_CLASSES} classes")
    return y.astype(np.int64)


def load_npz(path: str | Path, *, name: str | None = None, test_fraction: float = 0.2,
             limits: NpzLimits = NpzLimits()) -> DataSplit:
    """A user's own images from an ``.npz`` file.

    Arrays: ``x`` (uint8 images, ``(N, C, H, W)``, ``(N, H, W, C)`` with 1 or 3 channels, or
    ``(N, H, W)``) and ``y`` (integer labels ``0..classes-1``, shape ``(N,)``). With
    ``x_test``/``y_test`` as well, ``x``/``y`` are the training part; otherwise the last
    ``round(test_fraction * count)`` images of each class (in file order, at least one for a class
    of two or more) are the test part. An optional ``class_names`` string array names the classes.
    Mean and std come from the training part. The name recorded is ``npz:`` and the file's
    absolute path, so later commands find the file from any folder.

    Args:
        path: the ``.npz`` file.
        name: the dataset name to record (default ``"npz:<path>"``).
        test_fraction: share of each class held out when the file has no ``x_test``.
        limits: the header limits (:class:`NpzLimits`); the defaults guard against
            archives that declare or expand to huge arrays.

    Raises:
        DatasetError: missing or unreadable file, missing arrays, wrong dtype/shape, labels out
            of range, a class without training images (e.g. 1-based labels), or test images
            of another shape than the training ones.
    """
    path = Path(path).absolute()  # recorded absolute: later commands may run elsewhere
    name = name or f"{NPZ_PREFIX}{path}"
    arrays = _read_npz(path, name, labels=(("y", "x"), ("y_test", "x_test")), limits=limits)
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise DatasetError(f"{name}: {path} lacks the array(s) {', '.join(missing)} (it has "
                           f"{', '.join(sorted(arrays)) or 'none'}); save images as x and labels "
                           "as y")
    x = _images(arrays["x"], "x", name)
    y = _labels(arrays["y"], x.shape[0], "y", name)
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DatasetError(f"{name}: {path} has only one of x_test/y_test; give both or neither")
    if "x_test" in arrays:
        x_tr, y_tr = x, y
        x_te = _images(arrays["x_test"], "x_test", name)
        y_te = _labels(arrays["y_test"], x_te.shape[0], "y_test", name)
        if x_te.shape[1:] != x_tr.shape[1:]:
            raise DatasetError(f"{name}: x_test images are {x_te.shape[1:]} but x images are "
                               f"{x_tr.shape[1:]}; both parts must have one shape")
    else:
        if not 0.0 < test_fraction < 1.0:
            raise DatasetError(f"{name}: test_fraction must be in (0, 1), got {test_fraction}")
        train, test = _tail_split(
            y, lambda n: min(n - 1, max(1, int(round(test_fraction * n)))) if n > 1 else 0)
        if len(test) == 0 or len(train) == 0:
            raise DatasetError(f"{name}: {path} has too few images ({len(y)}) to hold some out "
                               "for testing; add images or give x_test/y_test")
        x_tr, y_tr, x_te, y_te = x[train], y[train], x[test], y[test]
    classes = int(max(y_tr.max(), y_te.max())) + 1
    empty = np.flatnonzero(np.bincount(y_tr, minlength=classes) == 0)
    if empty.size:
        one_based = int(min(y_tr.min(), y_te.min())) == 1
        raise DatasetError(
            f"{name}: class(es) {', '.join(map(str, empty[:10]))} have no training images "
            f"(labels go up to {classes - 1}); labels must be 0..classes-1 with every class "
            "present" + ("; they look 1-based: save y - 1" if one_based else ""))
    if "class_names" in arrays:
        names = [str(v) for v in np.asarray(arrays["class_names"]).reshape(-1)]
        if len(names) < classes:
            raise DatasetError(f"{name}: class_names has {len(names)} entries but the labels go "
                               f"up to {classes - 1}; name every class")
    else:
        names = [str(i) for i in range(classes)]
    mean, std = _stats(x_tr)
    return DataSplit(name, np.ascontiguousarray(x_tr), y_tr, np.ascontiguousarray(x_te), y_te,
                     mean, std, names)
