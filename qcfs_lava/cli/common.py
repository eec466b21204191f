"""Arguments and helpers shared by several commands."""

from __future__ import annotations

import argparse

import numpy as np

from qcfs_lava.errors import DatasetError


def parse_steps(text: str) -> list[int]:
    """``"1,2,4,8"`` -> ``[1, 2, 4, 8]`` (positive integers)."""
    try:
        steps = sorted({int(s) for s in str(text).split(",") if s.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"steps must be comma-separated integers, got {text!r}") from None
    if not steps or steps[0] < 1:
        raise argparse.ArgumentTypeError(f"steps must be positive, got {text!r}")
    return steps


def add_data_args(p: argparse.ArgumentParser) -> None:
    """``--dataset``, ``--data-root``, ``--samples``."""
    p.add_argument("--dataset", default=None,
                   help="dataset name (digits, mnist-split, mnist, fashion-mnist, cifar10, "
                   "cifar100, cifar10-subset) or npz:FILE.npz for your own arrays (x uint8 "
                   "NCHW/NHWC, y labels); default: the one recorded in the network/checkpoint")
    p.add_argument("--data-root", default=None, help="folder holding the dataset files")
    p.add_argument("--samples", type=int, default=None,
                   help="use only the first N test samples (default: all)")


def load_test_data(args: argparse.Namespace, default_dataset: str | None):
    """The test split chosen by ``args`` -> ``(x_uint8, y, split)``."""
    from qcfs_lava.data import load_dataset

    name = args.dataset or default_dataset
    if not name:
        raise DatasetError("no dataset given and none recorded in the file: pass --dataset")
    split = load_dataset(name, args.data_root)
    x, y = split.x_test, split.y_test
    if args.samples is not None:
        x, y = x[: args.samples], y[: args.samples]
    return np.ascontiguousarray(x), y, split
