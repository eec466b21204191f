"""Run a NIR file with one of the runners and compare it with the float SNN of a checkpoint.

``qcfs-lava run-nir`` is this module plus argparse and printing:

- :data:`RUNNERS`: ``reference`` (the numpy executor, float64), ``import`` (qcfs-lava's torch
  import), ``snntorch`` / ``sinabs`` (the shims, float32) and ``literal`` (NIR's own IF: fire
  on ``>``, reset to ``v_reset``, ``v(0) = 0``).
- :func:`runner_outputs`: the per-step outputs of one runner.
- :func:`run_nir_file`: accuracy at each ``T`` and, given a checkpoint, the prediction
  mismatches against its float SNN, as a :class:`NirRunResult`.
- :func:`describe_graph`: one row per node (what ``export --format nir`` prints and records).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RUNNERS", "NirRunResult", "describe_graph", "run_nir_file", "runner_outputs"]

RUNNERS = ("reference", "import", "snntorch", "sinabs", "literal")
BATCH = 256


def runner_outputs(runner: str, path: str | Path, x_uint8: np.ndarray, steps: int) -> np.ndarray:
    """The outputs of ``runner`` on ``x_uint8`` for ``steps`` steps.

    Shape:
        ``x_uint8``: ``(N, C, H, W)``; returns ``(steps, N, classes)``.
    """
    from qcfs_lava.nir_exchange.executor import normalize_pixels, run_nir
    from qcfs_lava.nir_exchange.semantics import graph_semantics, read_nir

    if runner not in RUNNERS:
        raise ValueError(f"runner {runner!r} is not one of {', '.join(RUNNERS)}")
    graph = read_nir(path)
    if runner in ("reference", "literal"):
        return run_nir(graph, x_uint8, steps, literal=runner == "literal").outputs
    sem = graph_semantics(graph, path)
    xf = normalize_pixels(x_uint8, sem.mean, sem.std)
    if runner == "import":
        import torch

        from qcfs_lava.nir_exchange.importer import from_nir

        net = from_nir(graph)
        return np.concatenate([net.run(torch.as_tensor(xf[i:i + BATCH]), steps).numpy()
                               for i in range(0, len(xf), BATCH)], axis=1)
    from qcfs_lava.nir_exchange import shims

    run = shims.run_snntorch if runner == "snntorch" else shims.run_sinabs
    return run(graph, xf, steps)


def _float_snn_outputs(checkpoint: str | Path, x_uint8: np.ndarray, steps: int) -> np.ndarray:
    """``(steps, N, classes)`` outputs of the float SNN of ``checkpoint``."""
    import torch

    from qcfs_lava.checkpoint import load_checkpoint
    from qcfs_lava.data import normalize
    from qcfs_lava.snn import snn_outputs

    ckpt = load_checkpoint(checkpoint)
    xf = normalize(x_uint8, ckpt.mean, ckpt.std)
    model = ckpt.build_model()
    return torch.cat([snn_outputs(model, xf[i:i + BATCH], steps)
                      for i in range(0, len(xf), BATCH)], 1).numpy()


@dataclass(frozen=True)
class NirRunResult:
    """One runner on one NIR file: accuracy per ``T``, optionally against the float SNN.

    Attributes:
        file: the NIR file.
        runner: one of :data:`RUNNERS`.
        samples: test samples run.
        seconds: the runner's wall time.
        steps: ``{T: row}``; a row has ``accuracy`` and, with a checkpoint,
            ``float_snn_accuracy``, ``prediction_mismatches`` and ``max_abs_output_difference``.
        checkpoint: the checkpoint compared with, or ``None``.
    """

    file: str
    runner: str
    samples: int
    seconds: float
    steps: dict[int, dict[str, Any]] = field(default_factory=dict)
    checkpoint: str | None = None

    @property
    def mismatches(self) -> int:
        """Different predictions from the float SNN, summed over ``T`` (0 without one)."""
        return sum(row.get("prediction_mismatches", 0) for row in self.steps.values())

    def to_dict(self) -> dict[str, Any]:
        """What ``run-nir --json`` writes."""
        return {"command": "run-nir", "file": self.file, "runner": self.runner,
                "samples": self.samples, "seconds": round(self.seconds, 3),
                "steps": {str(t): dict(row) for t, row in self.steps.items()}}

    def format(self) -> str:
        """A table, one row per ``T``."""
        compared = self.checkpoint is not None
        lines = [f"{self.runner} runner, {self.samples} samples, {self.seconds:.1f} s",
                 f"{'T':>4} {'accuracy':>9}"
                 + ("  float SNN  mismatches  max|d out|" if compared else "")]
        for t, row in self.steps.items():
            line = f"{t:>4} {100 * row['accuracy']:8.2f}%"
            if compared:
                line += (f"  {100 * row['float_snn_accuracy']:8.2f}%"
                         f"  {row['prediction_mismatches']:>10}"
                         f"  {row['max_abs_output_difference']:.3g}")
            lines.append(line)
        return "\n".join(lines)


def run_nir_file(path: str | Path, x_uint8: np.ndarray, y: np.ndarray, steps: Sequence[int],
                 *, runner: str = "reference",
                 checkpoint: str | Path | None = None) -> NirRunResult:
    """Run ``runner`` on the NIR file for ``max(steps)`` steps; score every ``T`` in ``steps``.

    Args:
        path: a NIR file written by qcfs-lava.
        x_uint8, y: test images ``(N, C, H, W)`` and labels ``(N,)``.
        steps: the ``T`` values to score (one run of the largest).
        runner: one of :data:`RUNNERS`.
        checkpoint: compare with the float SNN of this checkpoint.

    Raises:
        NirError: the runner's outputs are not finite (absurd weights or thresholds).
    """
    steps = [int(t) for t in steps]
    t0 = time.perf_counter()
    out = runner_outputs(runner, path, x_uint8, max(steps))
    seconds = time.perf_counter() - t0
    if not np.all(np.isfinite(out)):
        from qcfs_lava.errors import NirError

        raise NirError(f"{path}: the {runner} runner's outputs overflow (inf or NaN); the "
                       "network's weights or thresholds are absurd: the file is damaged or was "
                       "not written by qcfs-lava")
    ref = None if checkpoint is None else _float_snn_outputs(checkpoint, x_uint8, max(steps))
    rows: dict[int, dict[str, Any]] = {}
    for t in steps:
        pred = out[:t].mean(0).argmax(1)
        row: dict[str, Any] = {"accuracy": float(np.mean(pred == y))}
        if ref is not None:
            ref_pred = ref[:t].mean(0).argmax(1)
            row["float_snn_accuracy"] = float(np.mean(ref_pred == y))
            row["prediction_mismatches"] = int(np.sum(pred != ref_pred))
            row["max_abs_output_difference"] = float(np.abs(out[:t] - ref[:t]).max())
        rows[t] = row
    return NirRunResult(str(path), runner, int(len(y)), seconds, rows,
                        None if checkpoint is None else str(checkpoint))


def describe_graph(graph) -> list[dict[str, Any]]:
    """One row per node of a NIR graph: ``node``, ``type``, ``output`` shape, ``source``."""
    from qcfs_lava.nir_exchange.semantics import NAMESPACE

    rows = []
    for name, node in graph.nodes.items():
        shape = node.output_type.get("output") if node.output_type else None
        meta = node.metadata.get(NAMESPACE, {}) if node.metadata else {}
        rows.append({"node": name, "type": type(node).__name__,
                     "output": None if shape is None else [int(s) for s in shape],
                     "source": meta.get("source")})
    return rows
