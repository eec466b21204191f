"""One report per checkpoint: error budget, accuracy vs T, spikes, SynOps, energy, error parts.

:func:`make_report` (and ``qcfs-lava report``) runs the chain
(:func:`qcfs_lava.pipeline.run_chain`) on the test set:

- the QCFS ANN (and a ReLU ANN when its accuracy or checkpoint is given),
- the float SNN (``docs/contract.md`` section 2) at every ``T``, with the per-layer error
  breakdown (:mod:`qcfs_lava.analysis.breakdown`),
- the integer SNN (section 3, batched emulator) at every ``T``,
- optionally Lava on a subset at one ``T``, compared spike for spike with the emulator,

adds exact counts (:mod:`qcfs_lava.analysis.counts`) and energy estimates
(:mod:`qcfs_lava.analysis.energy`) from the emulator runs, and writes ``report.md``,
``report.json`` (every number shown, plus the resolved
configuration) and PNG plots to the output folder, each file atomically.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qcfs_lava.analysis import plots
from qcfs_lava.analysis.counts import OpCounts, count_ops
from qcfs_lava.analysis.energy import (
    ESTIMATE_LABEL,
    EnergyConstants,
    EnergyEstimate,
    estimate_energy,
    format_constants,
    format_energy_table,
)
from qcfs_lava.analysis.resources import format_resources_markdown, map_resources
from qcfs_lava.errors import AnalysisError, NotQcfsCheckpointError
from qcfs_lava.io import to_jsonable, write_json, write_text
from qcfs_lava.pipeline import ErrorBudget

__all__ = ["ReportConfig", "ReportResult", "make_report"]

log = logging.getLogger(__name__)

DEFAULT_STEPS = (1, 2, 4, 8, 16)


@dataclass
class ReportConfig:
    """What a report evaluates (written, resolved, into ``report.json``).

    Attributes:
        checkpoint: path of a qcfs-lava checkpoint (QCFS activations).
        netx: a NetX file exported from ``checkpoint``; its recorded ``T`` is the budget ``T``
            (unless ``budget_steps`` is given), and the report checks that the checkpoint
            converts to exactly that file's network.
        dataset: dataset name; ``None`` uses the checkpoint's.
        steps: the ``T`` values to evaluate.
        budget_steps: the ``T`` of the error budget, the breakdown and the Lava run;
            ``None`` uses the ``T`` recorded in ``netx``, else ``max(steps)``.
        samples: test samples to evaluate (``None``: the whole test split).
        lava_samples: samples to run in the Lava simulator (0: no Lava run).
        data_root: dataset folder (:func:`qcfs_lava.data.load_dataset`).
        seed: seed of the dataset split; must be the one the model was trained with.
        relu_accuracy: accuracy of the ReLU baseline ANN, when known.
        relu_checkpoint: a ReLU baseline checkpoint to evaluate instead.
        energy_overrides: ``{constant name: value}`` replacing published energy constants.
        energy_json: a JSON file of energy constants (applied before ``energy_overrides``).
        batch_size: samples per batch for ANN, float SNN and emulator.
        device: torch device for the emulator and the float models.
        graded: the payload bound ``P`` of the float and integer SNN (1: binary spikes).
    """

    checkpoint: str
    netx: str | None = None
    dataset: str | None = None
    steps: tuple[int, ...] = DEFAULT_STEPS
    budget_steps: int | None = None
    samples: int | None = None
    lava_samples: int = 0
    data_root: str | None = None
    seed: int = 0
    relu_accuracy: float | None = None
    relu_checkpoint: str | None = None
    energy_overrides: dict[str, float] = field(default_factory=dict)
    energy_json: str | None = None
    batch_size: int = 256
    device: str = "cpu"
    graded: int = 1

    def __post_init__(self) -> None:
        self.steps = tuple(sorted({int(t) for t in self.steps}))
        if not self.steps or self.steps[0] < 1:
            raise AnalysisError(f"report: steps must be positive integers, got {self.steps}")
        if self.budget_steps is None:
            self.budget_steps = self._exported_steps() or self.steps[-1]
        self.budget_steps = int(self.budget_steps)
        if self.budget_steps < 1:
            raise AnalysisError(f"report: budget_steps must be >= 1, got {self.budget_steps}")
        if self.budget_steps not in self.steps:
            self.steps = tuple(sorted(self.steps + (self.budget_steps,)))
        if self.samples is not None and int(self.samples) < 1:
            raise AnalysisError(f"report: samples must be >= 1, got {self.samples}")
        if int(self.lava_samples) < 0:
            raise AnalysisError(f"report: lava_samples must be >= 0, got {self.lava_samples}")
        if int(self.batch_size) < 1:
            raise AnalysisError(f"report: batch_size must be >= 1, got {self.batch_size}")

    def _exported_steps(self) -> int | None:
        if self.netx is None:
            return None
        from qcfs_lava.netx import read_netx

        steps = read_netx(self.netx).metadata.get("steps")
        if steps is None:
            raise AnalysisError(f"report: {self.netx} records no T (exported without --steps); "
                                "pass --budget-steps T")
        return int(steps)

    def energy_constants(self) -> EnergyConstants:
        base = (EnergyConstants.from_json(self.energy_json) if self.energy_json
                else EnergyConstants())
        return base.with_overrides(self.energy_overrides)


@dataclass
class ReportResult:
    """What :func:`make_report` produced.

    Attributes:
        out_dir: the output folder.
        markdown: path of ``report.md``.
        json: path of ``report.json``.
        plots: paths of the PNG plots.
        data: the content of ``report.json``.
        counts: ``{T: OpCounts}`` of the emulator runs.
        energy: ``{T: EnergyEstimate}``.
        budget: the error budget (``data["error_budget"]`` is its ``to_dict()``).
    """

    out_dir: Path
    markdown: Path
    json: Path
    plots: list[Path]
    data: dict[str, Any]
    counts: dict[int, OpCounts]
    energy: dict[int, EnergyEstimate]
    budget: ErrorBudget


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def make_report(config: ReportConfig, out_dir: str | Path, *, progress: bool = False
                ) -> ReportResult:
    """Evaluate a checkpoint and write ``report.md``, ``report.json`` and plots to ``out_dir``.

    Args:
        config: what to evaluate (:class:`ReportConfig`).
        out_dir: output folder (created).
        progress: show tqdm bars.

    Returns:
        The written paths and every number (:class:`ReportResult`).

    Raises:
        CheckpointError, DatasetError: the checkpoint or dataset cannot be loaded.
        AnalysisError: the checkpoint is not a QCFS model, or the configuration is invalid.
    """
    from qcfs_lava.data import check_sample_shape, load_dataset
    from qcfs_lava.pipeline import load_source, run_chain

    out = Path(out_dir)
    constants = config.energy_constants()
    tb = config.budget_steps
    try:
        from qcfs_lava.convert import ConversionConfig

        source = load_source(config.checkpoint, steps=tb,
                             config=ConversionConfig(spike_payload=int(config.graded)))
    except NotQcfsCheckpointError as exc:
        raise AnalysisError(
            f"{exc}. A report needs a QCFS checkpoint (pass a ReLU one as relu_checkpoint / "
            "--relu-checkpoint)"
        ) from exc
    ckpt, net, qreport = source.checkpoint, source.network, source.quantization
    if ckpt is None:
        raise AnalysisError(f"{config.checkpoint}: a report needs a checkpoint, not a NetX file")
    if config.netx is not None:
        _check_export(config.netx, source.sha256, net, tb)
    dataset = config.dataset or ckpt.dataset
    split = load_dataset(dataset, config.data_root, seed=config.seed)
    n = len(split.y_test) if config.samples is None else min(int(config.samples),
                                                              len(split.y_test))
    x_u8, y = split.x_test[:n], split.y_test[:n].astype(np.int64)
    check_sample_shape(x_u8, split, ckpt.input_shape, config.checkpoint, ckpt.dataset)
    if dataset != ckpt.dataset:
        warnings.warn(f"evaluating a model trained on {ckpt.dataset!r} on {dataset!r}",
                      stacklevel=2)
    out.mkdir(parents=True, exist_ok=True)
    steps = config.steps

    log.info("report: chain on %d samples, T in %s", n, steps)
    chain = run_chain(source, x_u8, y, steps, breakdown=True, record="counts",
                      relu_accuracy=config.relu_accuracy, relu_checkpoint=config.relu_checkpoint,
                      lava_samples=config.lava_samples, lava_steps=tb,
                      batch_size=config.batch_size, device=config.device, progress=progress)
    budget, breakdowns = chain.budget, chain.breakdowns
    hidden = net.layers[:-1]
    densities = [layer.ann_density for layer in breakdowns[tb].layers]
    ann_density = densities if len(densities) == len(hidden) else None

    counts: dict[int, OpCounts] = {}
    energy: dict[int, EnergyEstimate] = {}
    saturations: dict[int, int] = {}
    for t, res in chain.runs.items():
        saturations[t] = int(res.saturations.sum()) if res.saturations is not None else 0
        counts[t] = count_ops(net, res, ann_density)
        energy[t] = estimate_energy(counts[t], constants)
    if any(saturations.values()):
        warnings.warn(f"membrane saturation occurred (per T: {saturations})", stacklevel=2)

    ann_acc, relu_acc = budget.qcfs_ann, budget.relu_ann
    float_snn, integer_snn, lava = budget.float_snn, budget.integer_snn, budget.lava
    plot_paths = _plots(out, steps, tb, ann_acc, relu_acc, float_snn, integer_snn, lava,
                        counts, energy, breakdowns, ckpt.model, dataset)
    data = {
        "title": f"qcfs-lava report: {ckpt.model} on {dataset}",
        "energy_label": ESTIMATE_LABEL,
        "config": asdict(config),
        "checkpoint": {
            "path": str(config.checkpoint),
            "sha256": source.sha256,
            "model": ckpt.model,
            "model_kwargs": ckpt.model_kwargs,
            "dataset": ckpt.dataset,
            "levels": ckpt.levels,
            "phi": ckpt.phi,
            "epoch": ckpt.epoch,
            "best_accuracy": ckpt.best_accuracy,
        },
        "network": {"layers": [layer.name for layer in net.layers], "latency": net.latency,
                    "neurons": [layer.num_neurons for layer in net.layers]},
        "quantization": qreport.as_dicts(),
        "error_budget": budget.to_dict(),
        "accuracy": {"relu_ann": relu_acc, "qcfs_ann": ann_acc, "float_snn": float_snn,
                     "integer_snn": integer_snn},
        "saturations": saturations,
        "counts": {t: c.to_dict() for t, c in counts.items()},
        "energy": {t: e.to_dict() for t, e in energy.items()},
        "breakdown": {t: b.to_dict() for t, b in breakdowns.items()},
        "plots": [p.name for p in plot_paths],
    }
    data["classes"] = _per_class(chain.runs[tb].predictions, y, split.class_names
                                 or ckpt.class_names, tb)
    hidden_names = [layer.name for layer in hidden]
    for b in data["breakdown"].values():  # the integer network's layer names beside torch's
        if len(b["layers"]) == len(hidden_names):
            for row, name in zip(b["layers"], hidden_names, strict=True):
                row["layer"] = name
    # Loihi 1 sends binary spikes only: a graded network maps to Loihi 2
    chip = "loihi2" if net.graded else "loihi1"
    resources = map_resources(net, chip, ops=counts[tb], constants=constants)
    data["resources"] = resources.to_dict()
    data = to_jsonable(data)
    md_path = write_text(out / "report.md",
                         _markdown(data, budget, counts[tb], energy[tb], constants, qreport)
                         + "\n" + format_resources_markdown(resources) + "\n")
    json_path = write_json(out / "report.json", data)
    return ReportResult(out, md_path, json_path, plot_paths, data, counts, energy, budget)


def _per_class(predictions: np.ndarray, labels: np.ndarray, names, tb: int) -> dict:
    """Test images and integer-SNN accuracy at ``T = tb`` per class, by class name."""
    names = [str(n) for n in names]
    rows = []
    for c, name in enumerate(names):
        mask = labels == c
        count = int(mask.sum())
        acc = float((predictions[mask] == c).mean()) if count else None
        rows.append({"class": c, "name": name, "images": count, "integer_snn": acc})
    return {"steps": tb, "rows": rows}


def _check_export(path, sha256: str, net, tb: int) -> None:
    """Refuse a NetX file that is not the checkpoint's conversion at ``T = tb``."""
    from qcfs_lava.netx import netx_checksum, read_netx

    exported = read_netx(path)
    if exported.metadata.get("checkpoint_sha256") != sha256:
        raise AnalysisError(f"report: {path} was exported from another checkpoint (its "
                            "checkpoint_sha256 differs); pass the checkpoint it was exported "
                            "from, or leave out --netx")
    # the same network in an older file format is the same network
    same_version = dataclasses.replace(exported, format_version=net.format_version)
    if netx_checksum(same_version) != netx_checksum(net):
        raise AnalysisError(f"report: {path} is not what the checkpoint converts to at T = {tb} "
                            f"(exported at T = {exported.metadata.get('steps')}, or with other "
                            "settings such as --layer-copies); pass --budget-steps with the "
                            "file's T, or leave out --netx")


def _plots(out, steps, tb, ann_acc, relu_acc, float_snn, integer_snn, lava, counts, energy,
           breakdowns, model_name, dataset) -> list[Path]:
    paths = [
        plots.plot_accuracy_vs_steps(
            out / "accuracy_vs_steps.png", steps, ann_acc, float_snn, integer_snn,
            {tb: lava.accuracy} if lava is not None and lava.accuracy is not None else None,
            relu=relu_acc, title=f"{model_name} on {dataset}",
            lava_samples=lava.samples if lava is not None else None,
        )
    ]
    rates = {t: {layer.name: layer.firing_rate for layer in c.layers if layer.spiking}
             for t, c in counts.items()}
    paths.append(plots.plot_firing_rates(out / "firing_rates.png", rates))
    ops, n = counts[tb], max(counts[tb].num_samples, 1)
    e = energy[tb]
    paths.append(plots.plot_synops_energy(
        out / "synops_energy.png",
        [layer.name for layer in ops.layers],
        [layer.synops / n for layer in ops.layers],
        [layer.input_macs / n for layer in ops.layers],
        [layer.ann_macs / n for layer in ops.layers],
        {
            "Loihi 1 (SNN)": [layer.loihi1_pj / n for layer in e.layers],
            "45 nm (SNN)": [layer.cmos_snn_pj / n for layer in e.layers],
            "45 nm (ANN)": [layer.cmos_ann_pj / n for layer in e.layers],
        },
        tb,
    ))
    b = breakdowns[tb]
    # label bars with the integer network's layer names (one QCFS module per hidden layer,
    # in the same order) rather than torch module paths
    hidden = [layer.name for layer in counts[tb].layers if layer.spiking]
    names = hidden if len(hidden) == len(b.layers) else [layer.name for layer in b.layers]
    paths.append(plots.plot_error_breakdown(
        out / "error_breakdown.png", names,
        [layer.clip_error for layer in b.layers], [layer.quant_error for layer in b.layers],
        [layer.uneven_error for layer in b.layers], tb,
    ))
    return paths


def _markdown(data: dict, budget: ErrorBudget, ops: OpCounts, energy: EnergyEstimate,
              constants: EnergyConstants, qreport) -> str:
    tb = data["config"]["budget_steps"]
    lines = (_md_budget(data, budget, tb) + _md_accuracy(data, tb) + _md_operations(ops, tb)
             + _md_energy(energy, constants, tb) + _md_breakdown(data, tb)
             + _md_configuration(data, qreport))
    return "\n".join(lines)


def _md_budget(data: dict, budget: ErrorBudget, tb: int) -> list[str]:
    """Title, the run in one line, and the error budget at ``T = tb``."""
    b = data["error_budget"]
    ck = data["checkpoint"]
    return [
        f"# {data['title']}",
        "",
        f"Checkpoint `{ck['path']}` (sha256 `{ck['sha256'][:16]}...`), model `{ck['model']}`, "
        f"L = {ck['levels']}, phi = {ck['phi']}; {b['samples']} test samples; "
        f"latency {data['network']['latency']} steps + T.",
        "",
        f"## Error budget (T = {tb})",
        "",
        f"T = {tb}: " + (f"the T of the exported file `{data['config']['netx']}`, which "
                         "the checkpoint converts to exactly" if data["config"]["netx"]
                         else "the largest T evaluated (no exported file given: `--netx "
                         "FILE.net` takes its T)" if tb == max(data["config"]["steps"])
                         else "chosen with `--budget-steps`") + ".",
        "",
        budget.format_markdown(tb),
    ]


def _md_accuracy(data: dict, tb: int) -> list[str]:
    """Accuracy per class at ``T = tb`` and accuracy against T."""
    acc = data["accuracy"]
    lines = [
        "",
        f"## Accuracy per class (integer SNN, T = {tb})",
        "",
        "| class | name | test images | accuracy |",
        "|---:|---|---:|---:|",
    ]
    lines += [f"| {r['class']} | {r['name']} | {r['images']} | {_pct(r['integer_snn'])} |"
              for r in data["classes"]["rows"]]
    lines += [
        "",
        "## Accuracy vs time steps",
        "",
        "![accuracy](accuracy_vs_steps.png)",
        "",
        "| T | float SNN | integer SNN | membrane saturations |",
        "|---:|---:|---:|---:|",
    ]
    for t in data["config"]["steps"]:
        lines.append(f"| {t} | {_pct(acc['float_snn'][str(t)])} | "
                     f"{_pct(acc['integer_snn'][str(t)])} | {data['saturations'][str(t)]} |")
    return lines


def _md_operations(ops: OpCounts, tb: int) -> list[str]:
    """Spikes, SynOps and MACs per layer and sample."""
    n = max(ops.num_samples, 1)
    lines = [
        "",
        f"## Spikes and operations per sample (T = {tb})",
        "",
        "![firing rates](firing_rates.png)",
        "",
        "| layer | neurons | spikes | firing rate | SynOps | input MACs | ANN MACs | "
        "ANN density |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for layer in ops.layers:
        dens = "-" if layer.ann_density is None else f"{layer.ann_density:.3f}"
        lines.append(
            f"| {layer.name} | {layer.neurons} | {layer.spikes / n:.1f} | "
            f"{layer.firing_rate:.4f} | {layer.synops / n:.0f} | {layer.input_macs / n:.0f} | "
            f"{layer.ann_macs / n:.0f} | {dens} |"
        )
    lines.append(
        f"| **total** | {sum(la.neurons for la in ops.layers)} | "
        f"{ops.per_sample('spikes'):.1f} | {ops.firing_rate:.4f} | "
        f"{ops.per_sample('synops'):.0f} | {ops.per_sample('input_macs'):.0f} | "
        f"{ops.per_sample('ann_macs'):.0f} | |"
    )
    return lines + [
        "",
        "SynOps count each spike once per synapse it drives (exact fan-out, borders included); "
        "the first layer receives the graded image every step and is counted in MACs.",
    ]


def _md_energy(energy: EnergyEstimate, constants: EnergyConstants, tb: int) -> list[str]:
    """The energy estimates and the constants they use."""
    return [
        "",
        f"## Energy estimates per sample (T = {tb})",
        "",
        f"*{ESTIMATE_LABEL}*",
        "",
        "![synops and energy](synops_energy.png)",
        "",
        format_energy_table(energy),
        "",
        format_constants(constants),
        "",
        f"For orientation only: lava-dl's PilotNet SNN benchmark on one Loihi 2 chip reports "
        f"about {constants.loihi2_pilotnet_mj:g} mJ of dynamic energy per inference (a "
        "different network; Loihi 2 has no public per-operation table, so it is not modelled).",
    ]


def _md_breakdown(data: dict, tb: int) -> list[str]:
    """The conversion error per layer, by bucket."""
    lines = [
        "",
        f"## Conversion error per layer (float SNN vs QCFS ANN, T = {tb})",
        "",
        "![error breakdown](error_breakdown.png)",
        "",
        "Units of the layer threshold. Buckets: clipping (ANN pre-activation outside "
        "[0, lambda]), quantization (ANN value off the grid k theta / T), unevenness (the "
        "rest). Intrinsic: ReLU-vs-clip loss and distance to the T grid.",
        "",
        "| layer | theta | clip (frac / err) | quant (frac / err) | uneven (frac / err) | "
        "total | ReLU clip loss | grid error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in data["breakdown"][str(tb)]["layers"]:
        lines.append(
            f"| {row.get('layer', row['name'])} | {row['threshold']:.3g} | "
            f"{row['clip_fraction']:.3f} / {row['clip_error']:.4f} | "
            f"{row['quant_fraction']:.3f} / {row['quant_error']:.4f} | "
            f"{row['uneven_fraction']:.3f} / {row['uneven_error']:.4f} | "
            f"{row['total_error']:.4f} | {row['relu_clip_error']:.4f} | "
            f"{row['grid_error']:.4f} |"
        )
    return lines


def _md_configuration(data: dict, qreport) -> list[str]:
    """The quantization report and the run's configuration."""
    return [
        "",
        "## Quantization (integer network)",
        "",
        "```",
        qreport.format(),
        "```",
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps(data["config"], indent=2),
        "```",
        "",
    ]
