"""Datasets as plain uint8 arrays, and the one normalisation every stage uses.

Every dataset is held as ``uint8`` images of shape ``(N, C, H, W)`` (what the integer network
receives on Loihi) plus per-channel ``mean``/``std``. The float model always sees

.. math::
    x_{\\mathrm{float}} = (x_{\\mathrm{uint8}} / 255 - \\mathrm{mean}) / \\mathrm{std}

(:func:`normalize`), so the converter can fold exactly this affine map into the first layer.

Names (:data:`DATASETS`):

- ``digits``: scikit-learn's embedded 8x8 digits (1797 images), values ``0..16`` mapped to
  ``round(v * 255 / 16)``; a fixed stratified 80/20 split. Needs no files.
- ``mnist-split``: the official MNIST 10k test set (IDX gz), split stratified and
  deterministically into 8000 train / 2000 test. Looked up in ``root`` (``--data-root``),
  else ``$QCFS_LAVA_MNIST_DIR``, else in ``mnist/`` under the first folder of the data search
  path that has it (:func:`data_search_path`).
- ``mnist``: the full MNIST in a folder of IDX files (torchvision's raw layout accepted).
- ``fashion-mnist``, ``cifar10``, ``cifar100``: torchvision datasets under ``root``; nothing is
  downloaded unless ``download=True``.

- ``cifar10-subset``: 4,660 real CIFAR-10 training images (``cifar10_train_subset.npz``, sha256
  checked) with a fixed split: per class, in file order, the last 100 images are the test part
  (1,000 test images, 100 per class) and the others (3,660) the training part. Looked up in
  ``root`` (the folder or the file), else ``$QCFS_LAVA_CIFAR10_SUBSET_DIR``, else in
  ``cifar10-subset/`` under the first folder of the data search path that has it.
- ``npz:PATH``: a user's own arrays (:func:`load_npz`): ``x`` uint8 ``(N, C, H, W)`` or
  ``(N, H, W, C)`` (or ``(N, H, W)``) and integer labels ``y``; optionally ``x_test``/``y_test``,
  else the last 20% of each class (in file order) are the test part.

The data search path (:func:`data_search_path`), in order: the folders in
``$QCFS_LAVA_DATA`` (separated like ``PATH``), ``data/`` in the repository, and a ``data/``
folder beside the repository checkout (``../shared/data``, where a shared workspace keeps
one copy for several checkouts). An explicit ``root`` always wins.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from qcfs_lava.errors import DatasetError

__all__ = [
    "DATASETS",
    "DataSplit",
    "DATA_ENV_VAR",
    "data_search_path",
    "default_cifar10_subset_dir",
    "default_mnist_dir",
    "find_data",
    "load_dataset",
    "load_npz",
    "load_test_samples",
    "check_sample_shape",
    "normalize",
    "read_idx",
    "torch_dataset",
]

DATASETS = ("digits", "mnist-split", "mnist", "fashion-mnist", "cifar10", "cifar100",
            "cifar10-subset", "npz:PATH")
NPZ_PREFIX = "npz:"

MNIST_T10K_MD5 = {
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_ENV_VAR = "QCFS_LAVA_DATA"


@dataclass(frozen=True)
class DataSplit:
    """A dataset as uint8 images and labels.

    Attributes:
        name: dataset name (one of :data:`DATASETS`).
        x_train: training images. Shape: ``(N_train, C, H, W)``, uint8.
        y_train: training labels. Shape: ``(N_train,)``, int64.
        x_test: test images. Shape: ``(N_test, C, H, W)``, uint8.
        y_test: test labels. Shape: ``(N_test,)``, int64.
        mean: per-channel mean of ``x / 255``. Shape: ``(C,)``.
        std: per-channel standard deviation of ``x / 255``. Shape: ``(C,)``.
        class_names: one name per class.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if x.dtype != np.uint8 or x.ndim != 4:
                raise DatasetError(f"{self.name}: x_{part} must be uint8 (N, C, H, W), got "
                                   f"{x.dtype} {x.shape}")
            if y.shape != (x.shape[0],):
                raise DatasetError(f"{self.name}: y_{part} has shape {y.shape}, expected "
                                   f"({x.shape[0]},)")
        if self.mean.shape != (self.x_train.shape[1],) or self.std.shape != self.mean.shape:
            raise DatasetError(f"{self.name}: mean/std must have one value per channel")

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def input_size(self) -> int:
        return int(self.x_train.shape[2])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def normalize(x_uint8: np.ndarray | torch.Tensor, split_or_mean, std=None) -> torch.Tensor:
    """Float model input ``(x / 255 - mean) / std`` per channel.

    Args:
        x_uint8: images. Shape: ``(N, C, H, W)`` (or ``(C, H, W)``), values 0..255.
        split_or_mean: a :class:`DataSplit`, or the per-channel mean (then pass ``std``).
        std: per-channel standard deviation when ``split_or_mean`` is a mean.

    Returns:
        float32 tensor of the same shape.
    """
    if isinstance(split_or_mean, DataSplit):
        mean, std = split_or_mean.mean, split_or_mean.std
    else:
        mean = split_or_mean
    x = torch.as_tensor(np.asarray(x_uint8) if not torch.is_tensor(x_uint8) else x_uint8)
    mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float32)).view(-1, 1, 1)
    std_t = torch.as_tensor(np.asarray(std, dtype=np.float32)).view(-1, 1, 1)
    return (x.to(torch.float32) / 255.0 - mean_t) / std_t


_STATS_CHUNK_BYTES = 64 << 20


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of ``x / 255``.

    Up to 64 MiB of images in one float64 pass; above that, in chunks from exact integer sums,
    so that no float64 copy of a large array (8 bytes per pixel) is ever made.
    """
    if x.nbytes <= _STATS_CHUNK_BYTES:
        xf = x.astype(np.float64) / 255.0
        mean = xf.mean(axis=(0, 2, 3))
        std = xf.std(axis=(0, 2, 3))
        return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)
    channels = x.shape[1]
    total = np.zeros(channels, dtype=np.uint64)
    squares = np.zeros(channels, dtype=np.uint64)
    step = max(1, (_STATS_CHUNK_BYTES // 8) // max(1, x[0].size))
    for i in range(0, len(x), step):
        chunk = x[i:i + step].astype(np.uint64)
        total += chunk.sum(axis=(0, 2, 3))
        squares += (chunk * chunk).sum(axis=(0, 2, 3))
    count = float(x.size // channels)
    mean = total.astype(np.float64) / count
    var = np.maximum(squares.astype(np.float64) / count - mean * mean, 0.0)
    mean, std = mean / 255.0, np.sqrt(var) / 255.0
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


def _stratified_split(y: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    train, test = train_test_split(index, test_size=n_test, stratify=y, random_state=seed)
    return np.sort(train), np.sort(test)


def _digits(seed: int) -> DataSplit:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.rint(bunch.images * 255.0 / 16.0).astype(np.uint8)[:, None]
    y = bunch.target.astype(np.int64)
    train, test = _stratified_split(y, int(round(0.2 * len(y))), seed)
    mean, std = _stats(x[train])
    return DataSplit("digits", x[train], y[train], x[test], y[test], mean, std,
                     [str(i) for i in range(10)])


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a numpy array.

    Raises:
        DatasetError: the file is missing or is not a valid unsigned-byte IDX file.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"IDX file {path} not found")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise DatasetError(f"cannot read IDX file {path}: {exc}") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + int(np.prod(dims)):
        raise DatasetError(f"{path}: IDX header says shape {dims} but the payload has "
                           f"{len(data) - header} bytes; the file is truncated or corrupt")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz", folder / "raw" / stem,
                      folder / "raw" / f"{stem}.gz", folder / "MNIST" / "raw" / stem,
                      folder / "MNIST" / "raw" / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _idx_pair(folder: Path, images: str, labels: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    paths = [_find_idx(folder, images), _find_idx(folder, labels)]
    missing = [stem for stem, p in zip((images, labels), paths, strict=True) if p is None]
    if missing:
        raise DatasetError(f"{what}: {', '.join(missing)}[.gz] not found in {folder} (also "
                           "looked in raw/ and MNIST/raw/); put the IDX files there or pass "
                           "another root")
    x, y = read_idx(paths[0]), read_idx(paths[1])
    if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise DatasetError(f"{what}: images {x.shape} and labels {y.shape} in {folder} do not "
                           "match (expected (N, H, W) and (N,))")
    return x[:, None], y.astype(np.int64)


def data_search_path() -> list[Path]:
    """The folders searched for data files, first match wins.

    ``$QCFS_LAVA_DATA`` (one or more folders, separated by :data:`os.pathsep`), then
    ``<repository>/data``, then ``<repository>/../shared/data`` (a workspace's shared copy).
    """
    env = os.environ.get(DATA_ENV_VAR, "")
    path = [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
    return path + [_REPO_ROOT / "data", _REPO_ROOT.parent / "shared" / "data"]


def find_data(relative: str | Path) -> Path | None:
    """``relative`` under the first folder of :func:`data_search_path` that has it."""
    for folder in data_search_path():
        candidate = folder / relative
        if candidate.exists():
            return candidate
    return None


def default_mnist_dir() -> Path:
    """``$QCFS_LAVA_MNIST_DIR`` if set, else ``mnist/`` on the data search path.

    When no folder of the search path has ``mnist/``, the first candidate is returned (the
    error that follows names it).
    """
    env = os.environ.get("QCFS_LAVA_MNIST_DIR")
    if env:
        return Path(env)
    found = find_data("mnist")
    return found if found is not None else data_search_path()[0] / "mnist"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()  # noqa: S324 - checksum, not security


def _mnist_split(root: Path | None, seed: int, verify: bool = True) -> DataSplit:
    folder = Path(root) if root is not None else default_mnist_dir()
    if verify:
        for name, expected in MNIST_T10K_MD5.items():
            path = folder / name
            if path.is_file() and _md5(path) != expected:
                raise DatasetError(
                    f"mnist-split: {path} has md5 {_md5(path)}, expected {expected} (the "
                    "official MNIST test set); replace it with the original file"
                )
    x, y = _idx_pair(folder, _MNIST_FILES["test_images"], _MNIST_FILES["test_labels"],
                     f"mnist-split (pass --data-root, set QCFS_LAVA_MNIST_DIR, or put "
                     f"mnist/ in a folder of ${DATA_ENV_VAR})")
    train, test = _stratified_split(y, 2000 if len(y) >= 4000 else max(len(y) // 5, 10), seed)
    mean, std = _stats(x[train])
    return DataSplit("mnist-split", x[train], y[train], x[test], y[test], mean, std,
                     [str(i) for i in range(10)])


def _mnist_full(root: Path | None) -> DataSplit:
    if root is None:
        raise DatasetError("mnist: no data folder given; pass --data-root DIR (root=DIR in "
                           "Python), DIR holding the four MNIST IDX files")
    folder = Path(root)
    x_tr, y_tr = _idx_pair(folder, _MNIST_FILES["train_images"], _MNIST_FILES["train_labels"],
                           "mnist")
    x_te, y_te = _idx_pair(folder, _MNIST_FILES["test_images"], _MNIST_FILES["test_labels"],
                           "mnist")
    mean, std = _stats(x_tr)
    return DataSplit("mnist", x_tr, y_tr, x_te, y_te, mean, std, [str(i) for i in range(10)])


def _torchvision(name: str, root: Path | None, download: bool) -> DataSplit:
    from torchvision import datasets

    if root is None:
        raise DatasetError(f"{name}: no data folder given; pass --data-root DIR (root=DIR in "
                           f"Python), DIR holding torchvision's {name} files")
    cls = {"fashion-mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10,
           "cifar100": datasets.CIFAR100}[name]
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except (RuntimeError, OSError) as exc:
        raise DatasetError(
            f"{name}: cannot read the dataset under {root} ({exc}); put torchvision's files "
            f"there (`qcfs-lava train --dataset {name} --data-root {root} --download` fetches "
            "them; download=True in Python)"
        ) from exc

    def arrays(ds) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(ds.data.numpy() if torch.is_tensor(ds.data) else ds.data, dtype=np.uint8)
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x), np.asarray(ds.targets, dtype=np.int64)

    x_tr, y_tr = arrays(train)
    x_te, y_te = arrays(test)
    mean, std = _stats(x_tr)
    return DataSplit(name, x_tr, y_tr, x_te, y_te, mean, std, list(train.classes))


CIFAR10_SUBSET_FILE = "cifar10_train_subset.npz"
CIFAR10_SUBSET_SHA256 = "14b75d7391b085a2aa4ca89d6a6133b1027c9c66539ed0dde26321d36913945f"
CIFAR10_SUBSET_TEST_PER_CLASS = 100
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]


def default_cifar10_subset_dir() -> Path:
    """``$QCFS_LAVA_CIFAR10_SUBSET_DIR`` if set, else ``cifar10-subset/`` on the data search
    path (:func:`data_search_path`).

    When no folder of the search path has it, the first candidate is returned (the error that
    follows names it).
    """
    env = os.environ.get("QCFS_LAVA_CIFAR10_SUBSET_DIR")
    if env:
        return Path(env)
    found = find_data("cifar10-subset")
    return found if found is not None else data_search_path()[0] / "cifar10-subset"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tail_split(y: np.ndarray, per_class) -> tuple[np.ndarray, np.ndarray]:
    """Per class, in file order: the last ``per_class(count)`` images are the test part."""
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        index = np.flatnonzero(y == c)
        n = int(per_class(len(index)))
        if n > 0:
            test[index[len(index) - n:]] = True
    return np.flatnonzero(~test), np.flatnonzero(test)


# Limits of the npz reader (docs/failure-modes.md): a few bytes of header must not be able to
# ask for terabytes, nor a small compressed member expand a thousandfold.
NPZ_MAX_ARRAY_BYTES = 4 << 30  # one array, decompressed
NPZ_MAX_RATIO = 100  # decompressed / compressed size of one member...
NPZ_RATIO_FREE_BYTES = 64 << 20  # ...above this size (small arrays may compress any amount)
NPZ_MAX_MEMBERS = 64
NPZ_MAX_CLASSES = 1 << 16


def _npz_headers(archive, path: Path, what: str) -> dict[str, tuple]:
    """``{key: (info, shape, dtype, fortran, header_length)}`` of every member, from the
    ``.npy`` headers alone; every declared size is checked against the archive's real one
    and against the limits before anything is decompressed in bulk."""
    import zipfile

    file_size = path.stat().st_size
    infos = archive.infolist()
    if len(infos) > NPZ_MAX_MEMBERS:
        raise DatasetError(f"{what}: {path} holds {len(infos)} members (at most "
                           f"{NPZ_MAX_MEMBERS}); save only x, y and optionally x_test, y_test, "
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
        if nbytes > NPZ_MAX_ARRAY_BYTES:
            raise DatasetError(
                f"{what}: {path}: array {name[:-4]!r} declares shape {tuple(shape)} "
                f"({nbytes / 2**30:.3g} GiB), above the limit of "
                f"{NPZ_MAX_ARRAY_BYTES / 2**30:.0f} GiB per array; use a smaller dataset")
        if info.file_size != header_length + nbytes:
            raise DatasetError(
                f"{what}: {path}: array {name[:-4]!r} declares shape {tuple(shape)} of "
                f"{dtype} ({nbytes} bytes) but its member holds {info.file_size - header_length}"
                " bytes: the file is damaged; save it again")
        if (info.compress_type != zipfile.ZIP_STORED and nbytes > NPZ_RATIO_FREE_BYTES
                and info.file_size > NPZ_MAX_RATIO * max(info.compress_size, 1)):
            raise DatasetError(
                f"{what}: {path}: array {name[:-4]!r} would expand from {info.compress_size} "
                f"to {info.file_size} bytes (more than {NPZ_MAX_RATIO}x): refused as a "
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


def _read_npz(path: Path, what: str, labels: tuple[tuple[str, str], ...] = ()
              ) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive, read within the limits above.

    Args:
        path: the archive.
        what: the dataset name, for messages.
        labels: ``(labels_key, images_key)`` pairs: each labels array is read and checked
            (:func:`_labels`) against the number of images its images array declares before
            any images are decompressed.

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
            headers = _npz_headers(archive, path, what)
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


def load_npz(path: str | Path, *, name: str | None = None, test_fraction: float = 0.2) -> DataSplit:
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

    Raises:
        DatasetError: missing or unreadable file, missing arrays, wrong dtype/shape, labels out
            of range, a class without training images (e.g. 1-based labels), or test images
            of another shape than the training ones.
    """
    path = Path(path).absolute()  # recorded absolute: later commands may run elsewhere
    name = name or f"{NPZ_PREFIX}{path}"
    arrays = _read_npz(path, name, labels=(("y", "x"), ("y_test", "x_test")))
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


def _cifar10_subset(root: Path | None, verify: bool = True) -> DataSplit:
    where = Path(root) if root is not None else default_cifar10_subset_dir()
    path = where if where.suffix == ".npz" else where / CIFAR10_SUBSET_FILE
    if not path.is_file():
        raise DatasetError(
            f"cifar10-subset: {path} not found; pass --data-root <folder holding "
            f"{CIFAR10_SUBSET_FILE}> or set QCFS_LAVA_CIFAR10_SUBSET_DIR")
    if verify and _sha256(path) != CIFAR10_SUBSET_SHA256:
        raise DatasetError(
            f"cifar10-subset: {path} has sha256 {_sha256(path)}, expected "
            f"{CIFAR10_SUBSET_SHA256}; replace it with the original file (or load your own "
            f"arrays as --dataset npz:{path})")
    arrays = _read_npz(path, "cifar10-subset", labels=(("y", "x"),))
    if "x" not in arrays or "y" not in arrays:
        raise DatasetError(f"cifar10-subset: {path} lacks the arrays x and y")
    x = _images(arrays["x"], "x", "cifar10-subset")
    y = _labels(arrays["y"], x.shape[0], "y", "cifar10-subset")
    train, test = _tail_split(y, lambda n: CIFAR10_SUBSET_TEST_PER_CLASS)
    mean, std = _stats(x[train])
    return DataSplit("cifar10-subset", x[train], y[train], x[test], y[test], mean, std,
                     list(CIFAR10_CLASSES))


def load_dataset(
    name: str, root: str | Path | None = None, *, seed: int = 0, download: bool = False
) -> DataSplit:
    """Load a dataset by name as uint8 arrays.

    Args:
        name: one of :data:`DATASETS` (``npz:PATH`` names a user's ``.npz`` file).
        root: folder with the files (ignored for ``digits`` and ``npz:``; optional for
            ``mnist-split`` and ``cifar10-subset``).
        seed: seed of the deterministic stratified split (``digits``, ``mnist-split``).
        download: let torchvision download ``fashion-mnist``/``cifar10``/``cifar100``.

    Raises:
        DatasetError: unknown name, or files missing/corrupt (the message says what to do).
    """
    if name == "digits":
        return _digits(seed)
    if name == "mnist-split":
        return _mnist_split(Path(root) if root is not None else None, seed)
    if name == "mnist":
        return _mnist_full(Path(root) if root is not None else None)
    if name in ("fashion-mnist", "cifar10", "cifar100"):
        return _torchvision(name, Path(root) if root is not None else None, download)
    if name == "cifar10-subset":
        return _cifar10_subset(Path(root) if root is not None else None)
    if name.startswith(NPZ_PREFIX):
        if len(name) == len(NPZ_PREFIX):
            raise DatasetError("dataset 'npz:' names no file; write npz:PATH/TO/FILE.npz")
        return load_npz(name[len(NPZ_PREFIX):])
    raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def load_test_samples(name: str | None, root: str | Path | None = None,
                      samples: int | None = None) -> tuple[np.ndarray, np.ndarray, DataSplit]:
    """The first ``samples`` test samples of a dataset (all when ``None``).

    Args:
        name: dataset name (:func:`load_dataset`); usually the one recorded in a network.
        root: folder with the files.
        samples: how many test samples to keep from the start of the test split.

    Returns:
        ``(x_uint8, y, split)``, ``x_uint8`` C-contiguous.

    Raises:
        DatasetError: no name, or what :func:`load_dataset` raises.
    """
    if not name:
        raise DatasetError("no dataset given and none recorded in the file: pass --dataset")
    split = load_dataset(name, root)
    x, y = split.x_test, split.y_test
    if samples is not None:
        x, y = x[:samples], y[:samples]
    return np.ascontiguousarray(x), y, split


def check_sample_shape(x: np.ndarray, split: DataSplit, input_shape: Sequence[int],
                       source: str | Path, own_dataset: str | None) -> None:
    """Refuse test samples ``x`` (of ``split``) that a model of ``input_shape`` cannot take.

    Raises:
        DatasetError: naming the dataset, the file ``source`` and the dataset to pass instead.
    """
    if tuple(x.shape[1:]) != tuple(input_shape):
        hint = f"--dataset {own_dataset} (its own dataset) or " if own_dataset else ""
        raise DatasetError(
            f"dataset {split.name!r} has samples of shape {tuple(x.shape[1:])}, but {source} "
            f"takes {tuple(input_shape)}; pass {hint}a dataset of that shape")


def check_label_range(split: DataSplit, num_classes: int) -> None:
    """Refuse a test split with a label a model of ``num_classes`` outputs cannot predict (it
    would only count as an error: a wrong dataset, not a bad model).

    Raises:
        DatasetError: naming the dataset, its largest label and the model's classes.
    """
    labels = split.y_test
    if len(labels) and int(labels.max()) >= num_classes:
        raise DatasetError(
            f"dataset {split.name!r} has the label {int(labels.max())} but the model has "
            f"{num_classes} outputs (classes 0..{num_classes - 1}); pass the dataset the model "
            "was trained on (--dataset)")


class _ArrayDataset(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, augment: bool) -> None:
        self.x, self.y, self.augment = x, y, augment

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.x[index]
        if self.augment:
            # random crop with 4 pixels of zero padding (in normalised space), then flip
            pad = torch.nn.functional.pad(x, (4, 4, 4, 4))
            i, j = torch.randint(0, 9, (2,)).tolist()
            x = pad[:, i: i + x.shape[1], j: j + x.shape[2]]
            if torch.rand(()) < 0.5:
                x = torch.flip(x, dims=(2,))
        return x, self.y[index]


def torch_dataset(split: DataSplit, train: bool, augment: bool = False) -> torch.utils.data.Dataset:
    """A torch dataset of normalised float images and int64 labels.

    Args:
        split: the loaded data.
        train: the training part (else the test part).
        augment: random crop (pad 4) + horizontal flip, the CIFAR augmentation.
    """
    x = split.x_train if train else split.x_test
    y = split.y_train if train else split.y_test
    return _ArrayDataset(normalize(x, split), torch.as_tensor(y), augment)
