"""Benchmark workloads: the registry's deep networks at 32x32 with seeded weights.

Speed does not depend on what the weights learned, so the benchmarks use seeded, untrained
networks (QCFS thresholds at 1.0, BatchNorm statistics as initialised) and real CIFAR-10
images of the ``cifar10-subset`` dataset, found on the data search path
(:func:`qcfs_lava.data.default_cifar10_subset_dir`), or seeded random pixels when it is absent.
"""

from __future__ import annotations

import numpy as np
import torch

from qcfs_lava.convert import convert
from qcfs_lava.data import default_cifar10_subset_dir
from qcfs_lava.model.zoo import build_model
from qcfs_lava.network import IntegerNetwork

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def cifar_images(count: int) -> np.ndarray:
    """``count`` uint8 CIFAR-10 images ``(N, 3, 32, 32)`` (seeded noise if the file is absent)."""
    path = default_cifar10_subset_dir() / "cifar10_train_subset.npz"
    if path.exists():
        with np.load(path) as data:
            return np.ascontiguousarray(data["x"][-count:])
    return np.random.default_rng(0).integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)


def seeded_model(name: str, seed: int = 0) -> torch.nn.Module:
    """A registry model at 32x32, 10 classes, seeded weights, QCFS thresholds 1.0."""
    torch.manual_seed(seed)
    return build_model(name, in_channels=3, num_classes=10, input_size=32, thresh=1.0).eval()


def seeded_network(name: str, seed: int = 0) -> tuple[torch.nn.Module, IntegerNetwork]:
    """The seeded model and its integer network."""
    model = seeded_model(name, seed)
    net, _ = convert(model, (3, 32, 32), CIFAR_MEAN, CIFAR_STD)
    return model, net
