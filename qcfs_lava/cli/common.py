"""Arguments and helpers shared by several commands."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

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


def _int_at_least(text: str, minimum: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (``--samples``, ``--steps``...)."""
    return _int_at_least(text, 1, "a positive integer")


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
    return _int_at_least(text, 0, "an integer >= 0")


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


def check_dataset_input(args: argparse.Namespace, dataset: str | None) -> None:
    """A dataset file the command will read (``npz:PATH``, e.g. taken from the network's
    metadata) is an input too: check the outputs :func:`check_outputs` has seen against it,
    before it is read."""
    from qcfs_lava.data import NPZ_PREFIX

    checked = getattr(args, "_checked_outputs", None)
    if checked and dataset and dataset.startswith(NPZ_PREFIX) and dataset != NPZ_PREFIX:
        check_outputs(args, *checked, inputs=(dataset[len(NPZ_PREFIX):],))


def load_test_data(args: argparse.Namespace, default_dataset: str | None,
                   input_shape=None, source=None, *, num_classes: int | None = None):
    """The test split chosen by ``args`` -> ``(x_uint8, y, split)``.

    With ``input_shape``, samples of another shape are refused (naming ``source``, the file
    they were meant for, and its own dataset ``default_dataset``). With ``num_classes`` (the
    model's outputs), a label the model cannot predict is refused: it would only count as an
    error.

    A dataset file taken from the network's metadata is an input too
    (:func:`check_dataset_input`).
    """
    from qcfs_lava.data import check_label_range, check_sample_shape, load_test_samples

    name = args.dataset or default_dataset
    check_dataset_input(args, name)
    x, y, split = load_test_samples(name, args.data_root, args.samples)
    if input_shape is not None:
        check_sample_shape(x, split, input_shape, source, default_dataset)
    if num_classes is not None:
        check_label_range(split, num_classes)
    return x, y, split
