"""Arguments and helpers shared by several commands."""

from __future__ import annotations

import argparse
import importlib


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


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (``--lr``...)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
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


def add_graded_arg(p: argparse.ArgumentParser) -> None:
    """``--graded P``: the largest payload of one spike (graded spikes; 1: binary)."""
    p.add_argument(
        "--graded", type=positive_int, default=None, metavar="P",
        help="graded spikes: every hidden neuron sends an integer payload up to P (Loihi 2; "
        "P = L, the QCFS levels, makes the SNN at T = 1 the QCFS ANN). Default 1 (binary) "
        "for a checkpoint; a NetX file carries its own P, and --graded must then match it",
    )


def graded_payload(args: argparse.Namespace, net=None) -> int:
    """The payload bound ``--graded`` asks for (1 when not given), checked against ``net``
    (a network read from a NetX file, which carries its own) when given.

    Raises:
        UsageError: ``--graded`` is out of range or differs from the network's.
    """
    from qcfs_lava import hardware as hw
    from qcfs_lava.errors import UsageError

    payload = getattr(args, "graded", None)
    if payload is not None and not 1 <= payload <= hw.PAYLOAD_MAX:
        raise UsageError(f"--graded must be 1..{hw.PAYLOAD_MAX}, got {payload}")
    if net is not None:
        if payload is not None and payload != net.payload:
            raise UsageError(
                f"--graded {payload}: the NetX file was exported with payload bound "
                f"{net.payload}; drop --graded, or export the checkpoint again with "
                f"--graded {payload}")
        return net.payload
    return 1 if payload is None else int(payload)


class RegistryHelp(str):
    """A help text that lists the names of a library registry, read when the help is shown.

    ``RegistryHelp("dataset name ({names})", "qcfs_lava.data", "DATASETS")``: the module is
    imported only when argparse formats the help, so building the parser (and ``--help``)
    does not import torch, and the list is the library's own.
    """

    def __new__(cls, template: str, module: str, attribute: str) -> RegistryHelp:
        obj = super().__new__(cls, template)
        obj.module, obj.attribute = module, attribute
        return obj

    def names(self) -> tuple[str, ...]:
        return tuple(getattr(importlib.import_module(self.module), self.attribute))

    def __mod__(self, params) -> str:  # argparse expands help with ``help % params``
        return str.__mod__(str(self).replace("{names}", ", ".join(self.names())), params)


DATASETS_HELP = "qcfs_lava.data", "DATASETS"
MODELS_HELP = "qcfs_lava.model.zoo", "MODELS"


# the T values evaluate and report sweep by default (one list for every command)
STEPS_TO_COMPARE = (1, 2, 4, 8, 16, 32)


def add_data_args(p: argparse.ArgumentParser, samples: int | None = None) -> None:
    """``--dataset``, ``--data-root``, ``--samples`` (default ``samples``; None: all)."""
    p.add_argument("--dataset", default=None,
                   help=RegistryHelp("dataset: one of {names} (npz:PATH: your own arrays, x "
                                     "uint8 NCHW/NHWC and y labels); default: the one "
                                     "recorded in the network/checkpoint", *DATASETS_HELP))
    p.add_argument("--data-root", default=None, help="folder holding the dataset files")
    p.add_argument("--samples", type=positive_int, default=samples, metavar="N",
                   help="use only the first N test samples (default: "
                   + ("all" if samples is None else str(samples)) + ")")


def load_test_data(args: argparse.Namespace, default_dataset: str | None,
                   input_shape=None, source=None):
    """The test split chosen by ``args`` -> ``(x_uint8, y, split)``.

    With ``input_shape``, samples of another shape are refused (naming ``source``, the file
    they were meant for, and its own dataset ``default_dataset``).
    """
    from qcfs_lava.data import check_sample_shape, load_test_samples

    x, y, split = load_test_samples(args.dataset or default_dataset, args.data_root,
                                    args.samples)
    if input_shape is not None:
        check_sample_shape(x, split, input_shape, source, default_dataset)
    return x, y, split
