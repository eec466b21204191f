"""Glue between the stages: checkpoint -> integer network, and the error budget (SPEC 6).

Used by the CLI, the notebooks and the report, so each of them does the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qcfs_lava import __version__
from qcfs_lava.errors import CheckpointError
from qcfs_lava.network import IntegerNetwork
from qcfs_lava.results import SpikeRunResult

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path: str | Path) -> bool:
    """True when ``path`` is an HDF5 file (a NetX file, with or without a digest header)."""
    from qcfs_lava.safe_hdf5 import file_kind

    return file_kind(path) == "hdf5"


def convert_checkpoint(path: str | Path, *, steps: int | None = None):
    """Load a training checkpoint and convert it to an integer network.

    Args:
        path: a checkpoint written by ``qcfs-lava train`` (loaded with ``weights_only``).
        steps: the ``T`` the network is meant to run at (recorded in its metadata).

    Returns:
        ``(network, report, checkpoint)``.
    """
    from qcfs_lava.checkpoint import checkpoint_sha256, load_checkpoint
    from qcfs_lava.convert import convert

    ckpt = load_checkpoint(path)
    if ckpt.activation != "qcfs":
        raise CheckpointError(
            f"{path}: the model uses {ckpt.activation!r} activations; only QCFS models convert "
            "(train with --activation qcfs)"
        )
    meta: dict[str, Any] = {
        "checkpoint": Path(path).name,
        "checkpoint_sha256": checkpoint_sha256(path),
        "model": ckpt.model,
        "dataset": ckpt.dataset,
        "class_names": [str(c) for c in ckpt.class_names],
        "qcfs_lava_version": __version__,
    }
    if steps is not None:
        meta["steps"] = int(steps)
    net, report = convert(ckpt.build_model(), tuple(ckpt.input_shape), ckpt.mean or 0.0,
                          ckpt.std or 1.0, metadata=meta)
    return net, report, ckpt


def load_network(path: str | Path, *, steps: int | None = None):
    """An integer network from a NetX file or a checkpoint (converted in memory).

    Returns:
        ``(network, report_or_None, checkpoint_or_None)``.
    """
    if not Path(path).exists():
        raise CheckpointError(f"{path}: no such file")
    if is_hdf5(path):
        from qcfs_lava.netx import read_netx

        return read_netx(path), None, None
    return convert_checkpoint(path, steps=steps)


@dataclass
class ErrorBudget:
    """Accuracy at each stage of the conversion, for one network and several ``T``.

    Attributes:
        steps: the ``T`` values.
        samples: test samples used for the ANN / float / integer columns.
        ann: QCFS-ANN accuracy (``None`` when only a NetX file is known).
        relu_ann: accuracy of a ReLU baseline, when known.
        float_snn: ``{T: accuracy}`` of the float SNN (SPEC 2).
        integer_snn: ``{T: accuracy}`` of the integer SNN (SPEC 3, emulator).
        runs: the integer-SNN results per ``T`` (not serialised).

    The Lava column (a simulated subset, compared spike for spike) is added by
    :func:`qcfs_lava.analysis.report.make_report` and ``qcfs-lava simulate --check``.
    """

    steps: list[int]
    samples: int
    ann: float | None = None
    relu_ann: float | None = None
    float_snn: dict[int, float] = field(default_factory=dict)
    integer_snn: dict[int, float] = field(default_factory=dict)
    runs: dict[int, SpikeRunResult] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps, "samples": self.samples, "ann": self.ann,
            "relu_ann": self.relu_ann,
            "float_snn": {str(t): a for t, a in self.float_snn.items()},
            "integer_snn": {str(t): a for t, a in self.integer_snn.items()},
        }

    def format(self) -> str:
        """A table: one row per ``T``."""
        def pct(v):
            return "-" if v is None else f"{100 * v:6.2f}%"

        head = f"{'T':>5} {'ANN':>8} {'float SNN':>10} {'int SNN':>9}"
        lines = [f"error budget on {self.samples} test samples", head, "-" * len(head)]
        for t in self.steps:
            lines.append(f"{t:>5} {pct(self.ann):>8} {pct(self.float_snn.get(t)):>10} "
                         f"{pct(self.integer_snn.get(t)):>9}")
        if self.relu_ann is not None:
            lines.append(f"ReLU-ANN baseline: {pct(self.relu_ann)}")
        return "\n".join(lines)


def error_budget(
    net: IntegerNetwork,
    x: np.ndarray,
    y: np.ndarray,
    steps: Sequence[int],
    *,
    model=None,
    mean=None,
    std=None,
    record: str | None = None,
    batch_size: int = 256,
    device: str = "cpu",
    progress: bool = False,
) -> ErrorBudget:
    """ANN -> float SNN -> integer SNN accuracy for each ``T`` in ``steps``.

    Args:
        net: the integer network.
        x, y: uint8 test images ``(N, *net.input_shape)`` and labels.
        steps: the ``T`` values.
        model: the float QCFS model (for the ANN and float-SNN columns), or ``None``.
        mean, std: the model's input normalisation (required with ``model``).
        record: what the emulator records (``"counts"`` for SynOps).
    """
    from qcfs_lava.emulator import emulate

    steps = sorted({int(t) for t in steps})
    budget = ErrorBudget(steps=steps, samples=int(len(y)))
    if model is not None:
        import torch

        from qcfs_lava.data import normalize
        from qcfs_lava.snn import evaluate_ann, simulate_snn

        xf = normalize(x, mean, std)
        yt = torch.as_tensor(y)
        budget.ann = evaluate_ann(model, xf, yt, batch_size)
        budget.float_snn = simulate_snn(model, xf, yt, steps, batch_size).accuracy
    for t in steps:
        res = emulate(net, x, t, labels=y, record=record, batch_size=batch_size, device=device,
                      progress=progress)
        budget.runs[t] = res
        budget.integer_snn[t] = res.accuracy
    return budget
