"""Report plots (matplotlib, Agg backend), each written atomically to a PNG file.

Every function takes plain numbers (what ``report.json`` holds), so a plot can be redrawn
from the JSON alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

from qcfs_lava.io import atomic_path

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = [
    "plot_accuracy_vs_steps",
    "plot_error_breakdown",
    "plot_firing_rates",
    "plot_sweep_lines",
    "plot_synops_energy",
    "save_figure",
]


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Save ``fig`` as PNG through a temporary file and ``os.replace``; closes the figure."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)
    return path


def plot_accuracy_vs_steps(
    path: str | Path,
    steps: Sequence[int],
    ann: float | None,
    float_snn: Mapping[int, float],
    integer_snn: Mapping[int, float],
    lava: Mapping[int, float] | None = None,
    relu: float | None = None,
    title: str = "",
    lava_samples: int | None = None,
) -> Path:
    """Accuracy vs ``T``: ANN levels as lines, float and integer SNN curves, Lava points.

    ``lava_samples``: how many test samples the Lava points were measured on (in the legend).
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    if relu is not None:
        ax.axhline(100 * relu, color="0.5", ls=":", label="ReLU ANN")
    if ann is not None:
        ax.axhline(100 * ann, color="k", ls="--", label="QCFS ANN")
    ts = [t for t in steps if t in float_snn]
    ax.plot(ts, [100 * float_snn[t] for t in ts], "o-", label="float SNN")
    ts = [t for t in steps if t in integer_snn]
    ax.plot(ts, [100 * integer_snn[t] for t in ts], "s--", label="integer SNN (emulator)")
    if lava:
        ts = sorted(lava)
        ax.plot(ts, [100 * lava[t] for t in ts], "r*", ms=12, ls="none",
                label="Lava simulator" + ("" if lava_samples is None
                                          else f" ({lava_samples} samples)"))
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(steps), [str(t) for t in steps])
    ax.set_xlabel("time steps T")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "Accuracy vs time steps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_firing_rates(path: str | Path, rates: Mapping[int, Mapping[str, float]]) -> Path:
    """Firing rate per hidden layer, one line per ``T``."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for t in sorted(rates):
        names = list(rates[t])
        ax.plot(range(len(names)), [rates[t][n] for n in names], "o-", label=f"T={t}")
    if rates:
        names = list(rates[sorted(rates)[0]])
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_xlabel("layer (integer network)")
    ax.set_ylabel("firing rate (spikes per neuron per step)")
    ax.set_title("Firing rate per layer (integer SNN)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_synops_energy(
    path: str | Path,
    names: Sequence[str],
    synops: Sequence[float],
    macs: Sequence[float],
    ann_macs: Sequence[float],
    energy: Mapping[str, Sequence[float]],
    steps: int,
) -> Path:
    """Per layer and sample: SynOps / MACs (left) and estimated energy (right, log scale)."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    x = range(len(names))
    w = 0.27
    a1.bar([i - w for i in x], synops, w, label="SNN SynOps")
    a1.bar(list(x), macs, w, label="SNN input MACs")
    a1.bar([i + w for i in x], ann_macs, w, label="ANN MACs")
    a1.set_xticks(list(x), list(names), rotation=45, ha="right")
    a1.set_xlabel("layer (integer network)")
    a1.set_ylabel("operations per sample")
    a1.set_title(f"Operations per layer (T={steps})")
    a1.legend(fontsize=8)
    k = len(energy)
    w2 = 0.8 / max(k, 1)
    for j, (label, values) in enumerate(energy.items()):
        a2.bar([i + (j - (k - 1) / 2) * w2 for i in x], [v / 1e3 for v in values], w2,
               label=label)
    a2.set_xticks(list(x), list(names), rotation=45, ha="right")
    a2.set_xlabel("layer (integer network)")
    a2.set_yscale("log")
    a2.set_ylabel("estimated energy per sample (nJ)")
    a2.set_title("Energy per layer (estimates)")
    a2.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_error_breakdown(
    path: str | Path,
    names: Sequence[str],
    clip: Sequence[float],
    quant: Sequence[float],
    uneven: Sequence[float],
    steps: int,
) -> Path:
    """Stacked bars: each layer's mean ``|SNN - ANN| / theta`` split into the three parts."""
    fig, ax = plt.subplots(figsize=(7, 4))
    x = list(range(len(names)))
    ax.bar(x, clip, label="clipping")
    ax.bar(x, quant, bottom=list(clip), label="quantization")
    ax.bar(x, uneven, bottom=[c + q for c, q in zip(clip, quant, strict=True)],
           label="unevenness")
    ax.set_xticks(x, list(names), rotation=45, ha="right")
    ax.set_xlabel("layer (integer network)")
    ax.set_ylabel("mean |float SNN - QCFS ANN| per neuron\n(units of the layer threshold)")
    ax.set_title(f"Conversion error per layer (float SNN, T={steps})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path)


def plot_sweep_lines(
    path: str | Path,
    xs: Sequence[int],
    lines: Mapping[str, Mapping[int, float]],
    xlabel: str,
    title: str,
    hlines: Mapping[str, float] | None = None,
) -> Path:
    """Accuracy curves for a sweep: one line per label, optional horizontal references."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, value in (hlines or {}).items():
        ax.axhline(100 * value, ls="--", color="0.4", label=label)
    for label, points in lines.items():
        ts = [x for x in xs if x in points]
        ax.plot(ts, [100 * points[x] for x in ts], "o-", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(xs), [str(x) for x in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
