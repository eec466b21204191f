"""Arguments and helpers shared by several commands."""

from __future__ import annotations

import argparse


def parse_steps(text: str) -> list[int]:
    """``"1,2,4,8"`` -> ``[1, 2, 4, 8]``: sorted, unique, positive integers.

    The one parser of comma-separated integer lists on the command line (``--steps``,
    ``--levels``).
    """
    try:
        steps = sorted({int(s) for s in str(text).split(",") if s.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 1,2,4,8, got {text!r}") from None
    if not steps or steps[0] < 1:
        raise argparse.ArgumentTypeError(
            f"expected at least one positive integer, like 1,2,4,8, got {text!r}")
    return steps


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (``--samples``, ``--steps``...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_force_arg(p: argparse.ArgumentParser) -> None:
    """``--force``: allow replacing an existing output file of another kind."""
    p.add_argument("--force", action="store_true",
                   help="replace an existing output file even if it is of another kind (an "
                   "input file is never replaced)")


def add_data_args(p: argparse.ArgumentParser) -> None:
    """``--dataset``, ``--data-root``, ``--samples``."""
    p.add_argument("--dataset", default=None,
                   help="dataset name (digits, mnist-split, mnist, fashion-mnist, cifar10, "
                   "cifar100, cifar10-subset) or npz:FILE.npz for your own arrays (x uint8 "
                   "NCHW/NHWC, y labels); default: the one recorded in the network/checkpoint")
    p.add_argument("--data-root", default=None, help="folder holding the dataset files")
    p.add_argument("--samples", type=positive_int, default=None,
                   help="use only the first N test samples (default: all)")


def load_test_data(args: argparse.Namespace, default_dataset: str | None):
    """The test split chosen by ``args`` -> ``(x_uint8, y, split)``."""
    from qcfs_lava.data import load_test_samples

    return load_test_samples(args.dataset or default_dataset, args.data_root, args.samples)
