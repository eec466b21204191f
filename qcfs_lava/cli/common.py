"""Arguments and helpers shared by several commands."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from qcfs_lava.errors import DatasetError

# options that name a file a command reads (never overwritten by any of its outputs)
INPUT_OPTIONS = ("source", "file", "checkpoint", "state_dict", "relu_checkpoint", "init_from",
                 "energy_json")


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


def levels_arg(text: str) -> int:
    """An argparse type: quantization levels L, an integer in ``1..LEVELS_MAX`` (what every
    reader accepts: a checkpoint with more would be refused as damaged)."""
    from qcfs_lava.validate import LEVELS_MAX

    value = positive_int(text)
    if value > LEVELS_MAX:
        raise argparse.ArgumentTypeError(f"must be at most {LEVELS_MAX}, got {value}")
    return value


def phi_arg(text: str) -> float:
    """An argparse type: the QCFS shift phi, a finite number in ``[0, 1]``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] (0.5 or 0), got {text!r}")
    return value


def steps_arg(text: str) -> int:
    """An argparse type: a T to record in a file, an integer in ``1..STEPS_MAX``."""
    from qcfs_lava.validate import STEPS_MAX

    value = positive_int(text)
    if value > STEPS_MAX:
        raise argparse.ArgumentTypeError(f"a recorded T must be at most {STEPS_MAX}, got {value}")
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


def command_inputs(args: argparse.Namespace) -> list[str]:
    """Every file ``args`` names for reading: networks, checkpoints, an ``npz:`` dataset, a
    ``--data-root`` that is a file."""
    from qcfs_lava.data import NPZ_PREFIX

    paths = [str(v) for k in INPUT_OPTIONS if (v := getattr(args, k, None))]
    dataset = getattr(args, "dataset", None)
    if isinstance(dataset, str) and dataset.startswith(NPZ_PREFIX) and dataset != NPZ_PREFIX:
        paths.append(dataset[len(NPZ_PREFIX):])
    root = getattr(args, "data_root", None)
    if root and Path(root).is_file():
        paths.append(str(root))
    return paths


def command_config(args: argparse.Namespace) -> dict:
    """The options of a command as recorded in its JSON output (no internal fields)."""
    return {k: v for k, v in vars(args).items() if k != "func" and not k.startswith("_")}


def check_outputs(args: argparse.Namespace, *outputs: tuple[str | Path | None, str, str],
                  inputs: tuple[str | Path, ...] = ()) -> None:
    """Apply the output rule (:func:`qcfs_lava.validate.check_output_path`) to every file the
    command will write, before any work.

    Args:
        args: the parsed command line (its inputs and ``--force`` are taken from it).
        outputs: ``(path, option, kind)`` per output; a ``None`` path is skipped.
        inputs: inputs beyond those named by the options (e.g. a recorded dataset file).
    """
    from qcfs_lava.validate import check_output_path

    every_input = command_inputs(args) + [str(p) for p in inputs]
    written: list[str] = []
    for path, arg, kind in outputs:
        if path is None:
            continue
        check_output_path(path, arg=arg, kind=kind, inputs=every_input,
                          force=bool(getattr(args, "force", False)), others=written)
        written.append(str(path))
    args._checked_outputs = [(p, a, k) for p, a, k in outputs if p is not None]


def load_test_data(args: argparse.Namespace, default_dataset: str | None,
                   num_classes: int | None = None):
    """The test split chosen by ``args`` -> ``(x_uint8, y, split)``.

    With ``num_classes`` (the model's outputs), a label the model cannot predict is refused:
    it would only count as an error.

    A dataset file taken from the network's metadata is an input too: the outputs checked by
    :func:`check_outputs` are checked against it before it is read.
    """
    from qcfs_lava.data import NPZ_PREFIX, load_dataset

    name = args.dataset or default_dataset
    if not name:
        raise DatasetError("no dataset given and none recorded in the file: pass --dataset")
    checked = getattr(args, "_checked_outputs", None)
    if checked and name.startswith(NPZ_PREFIX) and name != NPZ_PREFIX:
        check_outputs(args, *checked, inputs=(name[len(NPZ_PREFIX):],))
    split = load_dataset(name, args.data_root)
    x, y = split.x_test, split.y_test
    if num_classes is not None and len(y) and int(y.max()) >= num_classes:
        raise DatasetError(
            f"dataset {split.name!r} has the label {int(y.max())} but the model has "
            f"{num_classes} outputs (classes 0..{num_classes - 1}); pass the dataset the model "
            "was trained on (--dataset)")
    if args.samples is not None:
        x, y = x[: args.samples], y[: args.samples]
    return np.ascontiguousarray(x), y, split
