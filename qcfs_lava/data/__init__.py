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
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from qcfs_lava.data.npz import (  # noqa: F401  (re-exported: the limits and the readers)
    NPZ_MAX_ARRAY_BYTES,
    NPZ_MAX_CLASSES,
    NPZ_MAX_MEMBERS,
    NPZ_MAX_RATIO,
    NPZ_PREFIX,
    NPZ_RATIO_FREE_BYTES,
    NpzLimits,
    _images,
    _labels,
    _read_npz,
    load_npz,
)
from qcfs_lava.data.split import (  # noqa: F401  (re-exported)
    _STATS_CHUNK_BYTES,
    DataSplit,
    _stats,
    _stratified_split,
    _tail_split,
    normalize,
)
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
    "NpzLimits",
    "load_test_samples",
    "check_sample_shape",
    "normalize",
    "read_idx",
    "torch_dataset",
]

DATASETS = ("digits", "mnist-split", "mnist", "fashion-mnist", "cifar10", "cifar100",
            "cifar10-subset", "npz:PATH")

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
_REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DATA_ENV_VAR = "QCFS_LAVA_DATA"


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


def _default_dir(env_var: str, folder: str) -> Path:
    """``$env_var`` if set, else ``folder`` in the first folder of the data search path that
    has it, else there in the first candidate (the error that follows names it)."""
    env = os.environ.get(env_var)
    if env:
        return Path(env)
    found = find_data(folder)
    return found if found is not None else data_search_path()[0] / folder


def default_mnist_dir() -> Path:
    """``$QCFS_LAVA_MNIST_DIR`` if set, else ``mnist/`` on the data search path.

    When no folder of the search path has ``mnist/``, the first candidate is returned (the
    error that follows names it).
    """
    return _default_dir("QCFS_LAVA_MNIST_DIR", "mnist")


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
    return _default_dir("QCFS_LAVA_CIFAR10_SUBSET_DIR", "cifar10-subset")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
