"""The one chain runner: checkpoint or NetX file -> integer network -> every measured stage.

:func:`run_chain` is the only place the stages run one after another: the source is loaded
once (:func:`load_source`, one hash), converted, emulated for each ``T``, and optionally
compared with the QCFS ANN, the float SNN, the per-layer error breakdown and a Lava run. It
returns one :class:`ChainResult`; ``qcfs-lava emulate``, ``qcfs-lava report``, ``qcfs-lava
demo`` and the notebooks only format it. The error budget has one schema,
:class:`ErrorBudget`, wherever it is written (see ``docs/contract.md``, "Error budget").
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qcfs_lava import __version__
from qcfs_lava.errors import CheckpointError, LavaUnavailableError, NotQcfsCheckpointError
from qcfs_lava.network import IntegerNetwork
from qcfs_lava.results import SpikeRunResult

if TYPE_CHECKING:
    from qcfs_lava.analysis.breakdown import ErrorBreakdown
    from qcfs_lava.checkpoint import Checkpoint
    from qcfs_lava.convert import ConversionConfig, QuantizationReport

log = logging.getLogger(__name__)


def is_hdf5(path: str | Path) -> bool:
    """True when ``path`` is an HDF5 file (a NetX file, with or without a digest header)."""
    from qcfs_lava.safe_hdf5 import file_kind

    return file_kind(path) == "hdf5"


@dataclass(frozen=True)
class Source:
    """A loaded network source: a checkpoint (converted in memory) or a NetX file.

    Attributes:
        path: the file it came from.
        network: the integer network.
        quantization: the converter's per-layer report (``None`` for a NetX file).
        checkpoint: the loaded checkpoint (``None`` for a NetX file).
        sha256: hex SHA-256 of the checkpoint file (``None`` for a NetX file).
    """

    path: Path
    network: IntegerNetwork
    quantization: QuantizationReport | None = None
    checkpoint: Checkpoint | None = None
    sha256: str | None = None


def _require_qcfs(path: str | Path, ckpt: Checkpoint) -> None:
    if ckpt.activation != "qcfs":
        raise NotQcfsCheckpointError(
            f"{path}: the model uses {ckpt.activation!r} activations; only QCFS models convert "
            "(train with --activation qcfs)"
        )


def load_source(path: str | Path, *, steps: int | None = None,
                layer_copies: int | None = None,
                config: ConversionConfig | None = None) -> Source:
    """Load a NetX file, or load, hash and convert a checkpoint (each exactly once).

    Args:
        path: a NetX file (recognised by its HDF5 signature) or a checkpoint written by
            ``qcfs-lava train`` (loaded with ``weights_only``).
        steps: the ``T`` the network is meant to run at (recorded in its metadata).
        layer_copies: overrides ``config.layer_copies`` (checkpoints only).
        config: the conversion settings (:class:`~qcfs_lava.convert.ConversionConfig`;
            ``None``: the defaults). Checkpoints only; the fields that differ from their
            defaults are recorded in the network's metadata.

    Raises:
        CheckpointError: the file is missing or unreadable (:class:`NotQcfsCheckpointError`:
            the model has no QCFS activations).
        NetxFormatError: the NetX file is corrupt or of an unsupported version.
    """
    from qcfs_lava.checkpoint import checkpoint_sha256, load_checkpoint
    from qcfs_lava.convert import ConversionConfig, convert

    config = (config or ConversionConfig()).with_layer_copies(layer_copies)
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if is_hdf5(path):
        from qcfs_lava.netx import read_netx

        return Source(path, read_netx(path))
    ckpt = load_checkpoint(path)
    _require_qcfs(path, ckpt)
    sha = checkpoint_sha256(path)
    meta: dict[str, Any] = {
        "checkpoint": path.name,
        "checkpoint_sha256": sha,
        "model": ckpt.model,
        "dataset": ckpt.dataset,
        "class_names": [str(c) for c in ckpt.class_names],
        "qcfs_lava_version": __version__,
    }
    if steps is not None:
        meta["steps"] = int(steps)
    meta.update(config.non_defaults())
    mean, std = ckpt.normalization()
    net, report = convert(ckpt.build_model(), tuple(ckpt.input_shape), mean, std, metadata=meta,
                          config=config)
    return Source(path, net, report, ckpt, sha)


def convert_checkpoint(path: str | Path, *, steps: int | None = None,
                       layer_copies: int | None = None,
                       config: ConversionConfig | None = None):
    """Load a training checkpoint and convert it to an integer network.

    Args:
        path: a checkpoint written by ``qcfs-lava train`` (loaded with ``weights_only``).
        steps: the ``T`` the network is meant to run at (recorded in its metadata).
        layer_copies: overrides ``config.layer_copies``.
        config: the conversion settings (``None``: the defaults).

    Returns:
        ``(network, report, checkpoint)``.
    """
    from qcfs_lava.checkpoint import load_checkpoint

    if is_hdf5(path):
        load_checkpoint(path)  # raises: a NetX file is not a checkpoint
    src = load_source(path, steps=steps, layer_copies=layer_copies, config=config)
    return src.network, src.quantization, src.checkpoint


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:6.2f}%"


def _pct_md(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


@dataclass(frozen=True)
class LavaCheck:
    """A Lava run compared spike for spike with the emulator (:func:`check_lava`).

    Attributes:
        samples: samples run in Lava.
        steps: ``T`` of the run.
        accuracy: Lava's accuracy on those samples.
        integer_snn_accuracy_same_subset: the emulator's accuracy on the same samples.
        mismatches: differing spike and output-potential entries (must be 0).
        mismatch_details: the differences, described (:func:`qcfs_lava.results.compare_results`).
        lava_extra: the Lava runner's extra information (timings).
        skipped: why Lava did not run (it could not be imported); every other field is then
            its default.
    """

    samples: int = 0
    steps: int = 0
    accuracy: float | None = None
    integer_snn_accuracy_same_subset: float | None = None
    mismatches: int = 0
    mismatch_details: tuple[str, ...] = ()
    lava_extra: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None

    @property
    def identical(self) -> bool:
        """Lava ran and equals the emulator in every compared field."""
        return self.skipped is None and not self.mismatches and not self.mismatch_details

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LavaCheck:
        """The inverse of :meth:`to_dict`."""
        if "skipped" in data:
            return cls(skipped=data["skipped"])
        return cls(**{**data, "mismatch_details": tuple(data.get("mismatch_details", ()))})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"skipped": reason}``, or every other field."""
        if self.skipped is not None:
            return {"skipped": self.skipped}
        return {
            "samples": self.samples,
            "steps": self.steps,
            "accuracy": self.accuracy,
            "integer_snn_accuracy_same_subset": self.integer_snn_accuracy_same_subset,
            "mismatches": self.mismatches,
            "mismatch_details": list(self.mismatch_details),
            "lava_extra": self.lava_extra,
        }

    def format(self) -> str:
        """One line of text."""
        if self.skipped is not None:
            return f"Lava run skipped: {self.skipped}"
        return (f"Lava at T={self.steps} on {self.samples} samples: {_pct(self.accuracy)} "
                f"(emulator on the same: {_pct(self.integer_snn_accuracy_same_subset)}), "
                f"{self.mismatches} mismatches")

    def format_markdown(self) -> list[str]:
        """Rows that continue :meth:`ErrorBudget.format_markdown`'s table, and a note."""
        if self.skipped is not None:
            return ["", f"Lava run skipped: {self.skipped}"]
        return [
            f"| integer SNN, emulator, on the Lava subset ({self.samples} samples) | "
            f"{_pct_md(self.integer_snn_accuracy_same_subset)} |",
            f"| Lava simulation ({self.samples} samples) | {_pct_md(self.accuracy)} |",
            "",
            f"Emulator-vs-Lava mismatches (spike and output-potential entries): "
            f"**{self.mismatches}** (must be 0).",
        ]


@dataclass
class ErrorBudget:
    """Accuracy at each stage of the conversion, for one network and several ``T``.

    The one schema of the error budget: ``qcfs-lava emulate --json``, ``report.json`` and the
    demo's ``summary.json`` all write :meth:`to_dict` under ``"error_budget"``; the commands
    print :meth:`format` and the report shows :meth:`format_markdown`.

    Attributes:
        steps: the ``T`` values, ascending.
        samples: test samples used for the ANN / float / integer columns.
        qcfs_ann: QCFS-ANN accuracy (``None`` when only a NetX file is known).
        relu_ann: accuracy of a ReLU baseline, when known.
        float_snn: ``{T: accuracy}`` of the float SNN (empty without a checkpoint).
        integer_snn: ``{T: accuracy}`` of the integer SNN (emulator).
        lava: the Lava check on a subset at one ``T`` (:func:`check_lava`), or ``None``.
    """

    steps: list[int]
    samples: int
    qcfs_ann: float | None = None
    relu_ann: float | None = None
    float_snn: dict[int, float] = field(default_factory=dict)
    integer_snn: dict[int, float | None] = field(default_factory=dict)
    lava: LavaCheck | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; ``T`` keys become strings."""
        return {
            "steps": list(self.steps), "samples": self.samples, "qcfs_ann": self.qcfs_ann,
            "relu_ann": self.relu_ann,
            "float_snn": {str(t): a for t, a in self.float_snn.items()},
            "integer_snn": {str(t): a for t, a in self.integer_snn.items()},
            "lava": None if self.lava is None else self.lava.to_dict(),
        }

    def format(self, steps: Sequence[int] | None = None) -> str:
        """A table: one row per ``T`` (of ``steps``, default all), then the Lava check."""
        head = f"{'T':>5} {'ANN':>8} {'float SNN':>10} {'integer SNN':>11}"
        lines = [f"error budget on {self.samples} test samples", head, "-" * len(head)]
        for t in self.steps if steps is None else steps:
            lines.append(f"{t:>5} {_pct(self.qcfs_ann):>8} {_pct(self.float_snn.get(t)):>10} "
                         f"{_pct(self.integer_snn.get(t)):>11}")
        if self.relu_ann is not None:
            lines.append(f"ReLU-ANN baseline: {_pct(self.relu_ann)}")
        if self.lava is not None:
            lines.append(self.lava.format())
        return "\n".join(lines)

    def format_markdown(self, steps: int) -> str:
        """A Markdown table of every stage at one ``T``, then the Lava check."""
        lines = [
            "| stage | accuracy |",
            "|---|---:|",
            f"| ReLU ANN | {_pct_md(self.relu_ann)} |",
            f"| QCFS ANN | {_pct_md(self.qcfs_ann)} |",
            f"| float SNN (contract section 2) | {_pct_md(self.float_snn.get(steps))} |",
            f"| integer SNN, emulator (contract section 3) | "
            f"{_pct_md(self.integer_snn.get(steps))} |",
        ]
        if self.lava is not None:
            lines += self.lava.format_markdown()
        return "\n".join(lines)


@dataclass
class ChainResult:
    """Everything one pass of the chain measured; callers only format it.

    Attributes:
        source: the loaded network source (network, quantization report, checkpoint, hash).
        budget: the error budget.
        runs: ``{T: SpikeRunResult}`` of the emulator on all samples.
        breakdowns: ``{T: ErrorBreakdown}`` when the breakdown was requested, else empty.
    """

    source: Source
    budget: ErrorBudget
    runs: dict[int, SpikeRunResult] = field(default_factory=dict, repr=False)
    breakdowns: dict[int, ErrorBreakdown] = field(default_factory=dict, repr=False)

    @property
    def network(self) -> IntegerNetwork:
        return self.source.network


def spike_mismatches(a: SpikeRunResult, b: SpikeRunResult) -> int:
    """Differing spike entries plus differing output potentials between two runs."""
    total = 0
    if a.spikes is not None and b.spikes is not None:
        total += sum(int(np.sum(sa != sb)) for sa, sb in zip(a.spikes, b.spikes, strict=True))
    elif a.neuron_counts is not None and b.neuron_counts is not None:
        total += sum(int(np.sum(ca != cb))
                     for ca, cb in zip(a.neuron_counts, b.neuron_counts, strict=True))
    else:
        total += int(np.sum(a.spike_counts != b.spike_counts))
    total += int(np.sum(a.potentials != b.potentials))
    return total


def check_lava(net: IntegerNetwork, x: np.ndarray, y: np.ndarray, steps: int, *,
               batch_size: int = 256, device: str = "cpu") -> LavaCheck:
    """Run ``x`` in the Lava simulator and compare it spike for spike with the emulator.

    Returns:
        The :class:`LavaCheck`; its ``skipped`` says why when Lava cannot be imported (a
        warning is issued). A mismatch also warns: the two must be identical.
    """
    try:
        from qcfs_lava.lava_sim import simulate
    except (ImportError, LavaUnavailableError) as exc:
        warnings.warn(f"Lava run skipped: {exc}", stacklevel=3)
        return LavaCheck(skipped=f"{type(exc).__name__}: {exc}")
    lava_res = simulate(net, x, steps, labels=y, record="spikes")
    return compare_with_emulator(net, x, y, lava_res, batch_size=batch_size, device=device,
                                 stacklevel=4)


def compare_with_emulator(net: IntegerNetwork, x: np.ndarray, y: np.ndarray | None,
                          lava_res: SpikeRunResult, *, batch_size: int = 256,
                          device: str = "cpu", stacklevel: int = 2) -> LavaCheck:
    """Compare a finished Lava run of ``x`` (recorded with ``record="spikes"``) with the
    emulator on the same samples, spike for spike and output potential for output potential.

    A mismatch warns: the two must be identical.
    """
    from qcfs_lava.emulator import emulate
    from qcfs_lava.results import compare_results

    steps = lava_res.steps
    emu_res = emulate(net, x, steps, labels=y, record="spikes", batch_size=batch_size,
                      device=device)
    mismatches = spike_mismatches(emu_res, lava_res)
    details = [str(m) for m in compare_results(emu_res, lava_res)]
    if mismatches:
        warnings.warn(
            f"Lava and the emulator differ on {mismatches} spike/potential entries "
            f"(first: {details[:1]}); they must be identical",
            stacklevel=stacklevel,
        )
    return LavaCheck(
        samples=int(len(x)),
        steps=int(steps),
        accuracy=lava_res.accuracy,
        integer_snn_accuracy_same_subset=emu_res.accuracy,
        mismatches=mismatches,
        mismatch_details=tuple(details),
        lava_extra=lava_res.extra,
    )


def run_chain(
    source: Source,
    x: np.ndarray,
    y: np.ndarray,
    steps: Sequence[int],
    *,
    float_models: bool = True,
    breakdown: bool = False,
    record: str | None = None,
    relu_accuracy: float | None = None,
    relu_checkpoint: str | Path | None = None,
    lava_samples: int = 0,
    lava_steps: int | None = None,
    batch_size: int = 256,
    device: str = "cpu",
    progress: bool = False,
) -> ChainResult:
    """Run every stage of the chain on one test set.

    Args:
        source: from :func:`load_source`.
        x, y: uint8 test images ``(N, *net.input_shape)`` and labels.
        steps: the ``T`` values.
        float_models: evaluate the QCFS ANN and the float SNN (needs a checkpoint source).
        breakdown: also measure the per-layer conversion error
            (:func:`qcfs_lava.analysis.breakdown.error_breakdown`); its single float-SNN pass
            then gives the ANN and float-SNN columns.
        record: what the emulator records (``"counts"`` for SynOps; see ``RecordMode``).
        relu_accuracy: accuracy of a ReLU baseline, when known.
        relu_checkpoint: a ReLU baseline checkpoint to evaluate instead.
        lava_samples: the first ``lava_samples`` samples also run in Lava (0: none).
        lava_steps: ``T`` of the Lava run (default: the largest ``T``).
        batch_size: samples per batch for ANN, float SNN and emulator.
        device: torch device for the emulator and the float models.
        progress: show progress (:mod:`qcfs_lava.progress`).

    Returns:
        The :class:`ChainResult`.
    """
    from qcfs_lava.emulator import emulate
    from qcfs_lava.progress import stage

    steps = sorted({int(t) for t in steps})
    net, ckpt = source.network, source.checkpoint
    budget = ErrorBudget(steps=steps, samples=int(len(y)), relu_ann=relu_accuracy)
    breakdowns: dict[int, Any] = {}
    if ckpt is not None and (float_models or breakdown or relu_checkpoint):
        import torch

        from qcfs_lava.checkpoint import load_checkpoint
        from qcfs_lava.data import normalize
        from qcfs_lava.snn import evaluate_ann, simulate_snn

        mean, std = ckpt.normalization()
        xf = normalize(x, mean, std)
        yt = torch.as_tensor(np.asarray(y))
        model = ckpt.build_model().to(device)
        if relu_checkpoint:
            relu = load_checkpoint(relu_checkpoint)
            with stage("ReLU ANN", progress):
                budget.relu_ann = evaluate_ann(relu.build_model().to(device), xf, yt,
                                               batch_size)
        if breakdown:
            from qcfs_lava.analysis.breakdown import error_breakdown

            with stage(f"error breakdown, T in {steps}", progress):
                breakdowns = error_breakdown(model, xf.to(device), steps, labels=y,
                                             batch_size=batch_size, progress=progress)
            budget.qcfs_ann = breakdowns[steps[-1]].ann_accuracy
            budget.float_snn = {t: breakdowns[t].snn_accuracy for t in steps}
        elif float_models:
            with stage("QCFS ANN", progress):
                budget.qcfs_ann = evaluate_ann(model, xf, yt, batch_size)
            with stage(f"float SNN, T in {steps}", progress):
                budget.float_snn = simulate_snn(model, xf, yt, steps, batch_size).accuracy
    runs: dict[int, SpikeRunResult] = {}
    for t in steps:
        with stage(f"integer SNN, T={t}", progress):
            runs[t] = emulate(net, x, t, labels=y, record=record, batch_size=batch_size,
                              device=device, progress=progress)
        budget.integer_snn[t] = runs[t].accuracy
    if lava_samples:
        k = min(int(lava_samples), len(y))
        tl = int(lava_steps or steps[-1])
        log.info("Lava on %d samples at T=%d", k, tl)
        with stage(f"Lava, {k} samples at T={tl}", progress):
            budget.lava = check_lava(net, x[:k], y[:k], tl, batch_size=batch_size,
                                     device=device)
    return ChainResult(source, budget, runs, breakdowns)
