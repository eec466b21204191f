"""Glue between the stages: checkpoint -> integer network, and the error budget (SPEC 6).

Used by the CLI, the notebooks and the report, so each of them does the same thing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qcfs_lava import __version__
from qcfs_lava.errors import CheckpointError
from qcfs_lava.network import IntegerNetwork
from qcfs_lava.results import SpikeRunResult, compare_results

logger = logging.getLogger(__name__)

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path: str | Path) -> bool:
    """True when ``path`` starts with the HDF5 signature (a NetX file)."""
    try:
        with open(path, "rb") as f:
            return f.read(8) == HDF5_SIGNATURE
    except OSError:
        return False


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
        lava: ``{T: accuracy}`` on the Lava-simulated subset (first ``lava_samples``).
        lava_emulator: ``{T: accuracy}`` of the emulator on that same subset.
        lava_mismatches: ``{T: number of differing fields}`` (must be 0).
        lava_samples: size of the simulated subset.
        runs: the integer-SNN results per ``T`` (not serialised).
    """

    steps: list[int]
    samples: int
    ann: float | None = None
    relu_ann: float | None = None
    float_snn: dict[int, float] = field(default_factory=dict)
    integer_snn: dict[int, float] = field(default_factory=dict)
    lava: dict[int, float] = field(default_factory=dict)
    lava_emulator: dict[int, float] = field(default_factory=dict)
    lava_mismatches: dict[int, int] = field(default_factory=dict)
    lava_samples: int = 0
    runs: dict[int, SpikeRunResult] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps, "samples": self.samples, "ann": self.ann,
            "relu_ann": self.relu_ann,
            "float_snn": {str(t): a for t, a in self.float_snn.items()},
            "integer_snn": {str(t): a for t, a in self.integer_snn.items()},
            "lava": {str(t): a for t, a in self.lava.items()},
            "lava_emulator": {str(t): a for t, a in self.lava_emulator.items()},
            "lava_mismatches": {str(t): m for t, m in self.lava_mismatches.items()},
            "lava_samples": self.lava_samples,
        }

    def format(self) -> str:
        """A table: one row per ``T``."""
        def pct(v):
            return "-" if v is None else f"{100 * v:6.2f}%"

        head = f"{'T':>5} {'ANN':>8} {'float SNN':>10} {'int SNN':>9}"
        if self.lava:
            head += f" {'Lava':>8} {'emu(sub)':>9} {'mismatch':>8}"
        lines = [f"error budget on {self.samples} test samples"
                 + (f" (Lava on the first {self.lava_samples})" if self.lava else ""),
                 head, "-" * len(head)]
        for t in self.steps:
            row = (f"{t:>5} {pct(self.ann):>8} {pct(self.float_snn.get(t)):>10} "
                   f"{pct(self.integer_snn.get(t)):>9}")
            if self.lava:
                row += (f" {pct(self.lava.get(t)):>8} {pct(self.lava_emulator.get(t)):>9} "
                        f"{self.lava_mismatches.get(t, '-'):>8}")
            lines.append(row)
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
    lava_samples: int = 0,
    record: str | None = None,
    batch_size: int = 256,
    device: str = "cpu",
    progress: bool = False,
) -> ErrorBudget:
    """ANN -> float SNN -> integer SNN (-> Lava) accuracy for each ``T`` in ``steps``.

    Args:
        net: the integer network.
        x, y: uint8 test images ``(N, *net.input_shape)`` and labels.
        steps: the ``T`` values.
        model: the float QCFS model (for the ANN and float-SNN columns), or ``None``.
        mean, std: the model's input normalisation (required with ``model``).
        lava_samples: also simulate the first ``lava_samples`` samples in Lava and compare
            them with the emulator spike for spike.
        record: what the emulator records (``"counts"`` for SynOps).
    """
    from qcfs_lava.emulator import emulate

    steps = sorted({int(t) for t in steps})
    budget = ErrorBudget(steps=steps, samples=int(len(y)))
    if model is not None:
        import torch

        from qcfs_lava.snn import evaluate_ann, simulate_snn

        xf = (torch.as_tensor(x, dtype=torch.float32) / 255.0
              - torch.as_tensor(np.asarray(mean, dtype=np.float32)).view(-1, 1, 1)) \
            / torch.as_tensor(np.asarray(std, dtype=np.float32)).view(-1, 1, 1)
        yt = torch.as_tensor(y)
        budget.ann = evaluate_ann(model, xf, yt, batch_size)
        budget.float_snn = simulate_snn(model, xf, yt, steps, batch_size).accuracy
    for t in steps:
        res = emulate(net, x, t, labels=y, record=record, batch_size=batch_size, device=device,
                      progress=progress)
        budget.runs[t] = res
        budget.integer_snn[t] = res.accuracy
    if lava_samples:
        from qcfs_lava.lava_sim import simulate

        n = min(int(lava_samples), len(y))
        budget.lava_samples = n
        for t in steps:
            lava = simulate(net, x[:n], t, labels=y[:n], record="counts", progress=progress)
            emu = emulate(net, x[:n], t, labels=y[:n], record="counts", batch_size=batch_size)
            mism = compare_results(lava, emu)
            for m in mism:
                logger.error("T=%d: Lava and emulator differ: %s", t, m)
            budget.lava[t] = lava.accuracy
            budget.lava_emulator[t] = emu.accuracy
            budget.lava_mismatches[t] = len(mism)
    return budget
