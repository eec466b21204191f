"""A dataset as uint8 arrays (:class:`DataSplit`), the normalisation every stage uses, and the
split and statistics helpers of the loaders."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from qcfs_lava.errors import DatasetError


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


def _stats(x: np.ndarray, chunk_bytes: int = _STATS_CHUNK_BYTES) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of ``x / 255``.

    Up to 64 MiB of images in one float64 pass; above that, in chunks from exact integer sums,
    so that no float64 copy of a large array (8 bytes per pixel) is ever made.
    """
    if x.nbytes <= chunk_bytes:
        xf = x.astype(np.float64) / 255.0
        mean = xf.mean(axis=(0, 2, 3))
        std = xf.std(axis=(0, 2, 3))
        return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)
    channels = x.shape[1]
    total = np.zeros(channels, dtype=np.uint64)
    squares = np.zeros(channels, dtype=np.uint64)
    step = max(1, (chunk_bytes // 8) // max(1, x[0].size))
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


def _tail_split(y: np.ndarray, per_class) -> tuple[np.ndarray, np.ndarray]:
    """Per class, in file order: the last ``per_class(count)`` images are the test part."""
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        index = np.flatnonzero(y == c)
        n = int(per_class(len(index)))
        if n > 0:
            test[index[len(index) - n:]] = True
    return np.flatnonzero(~test), np.flatnonzero(test)
