"""Graded spikes on a CIFAR network: accuracy, messages, synaptic events and energy vs P and T.

For each payload bound P (``--payloads``, 1 = binary) the checkpoint is converted with
``ConversionConfig(spike_payload=P)`` and, on the same test images, measured at every T
(``--steps``):

- QCFS-ANN accuracy (once), float-SNN accuracy with payload bound P (one pass of max T), and
  at T = 1 the largest |float SNN - ANN| logit difference and the prediction agreement;
- the integer SNN in the bit-exact emulator (what Lava computes, spike for spike): accuracy,
  saturations, and exact counts (``qcfs_lava.analysis.counts``): messages (spikes sent,
  whatever their payload), synaptic events (messages x fan-out), payload-weighted ops and
  input MACs per image;
- energy per image from those counts (``qcfs_lava.analysis.energy``: Loihi 1 per-event
  constants, which Loihi 2's graded events are not public for; 45 nm with a graded event as
  one MAC) and the ANN's 45 nm energy.

Writes JSON (``--out``), prints a Markdown table and draws accuracy vs energy per image, one
curve per P (``--plot``).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_graded.py \\
        --checkpoint netx_exports/resnet20-cifar10-subset.pt --samples 1000 \\
        --payloads 1,2,4,8 --steps 1,2,4,8
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from qcfs_lava.analysis.counts import count_ops
from qcfs_lava.analysis.energy import EnergyConstants, estimate_energy
from qcfs_lava.convert import ConversionConfig
from qcfs_lava.data import load_dataset, normalize
from qcfs_lava.emulator import emulate
from qcfs_lava.io import write_json
from qcfs_lava.pipeline import load_source
from qcfs_lava.snn import evaluate_ann, simulate_snn, snn_outputs

RESULTS = Path(__file__).parent / "results"


def _ints(text: str) -> list[int]:
    return sorted({int(v) for v in text.split(",") if v.strip()})


def measure(path: str, x: np.ndarray, y: np.ndarray, payloads: list[int], steps: list[int],
            batch_size: int) -> dict:
    first = load_source(path)
    ckpt = first.checkpoint
    model = ckpt.build_model().eval()
    xf = normalize(x, *ckpt.normalization())
    yt = torch.as_tensor(y)
    t0 = time.perf_counter()
    ann = evaluate_ann(model, xf, yt, batch_size)
    with torch.no_grad():
        ann_logits = torch.cat([model(xf[i:i + batch_size]) for i in range(0, len(y),
                                                                           batch_size)])
    constants = EnergyConstants()
    out = {"qcfs_ann": ann, "levels": ckpt.levels, "phi": ckpt.phi, "model": ckpt.model,
           "rows": []}
    ann_cmos = None
    for p in payloads:
        src = load_source(path, steps=max(steps), config=ConversionConfig(spike_payload=p))
        net = src.network
        fsnn = simulate_snn(model, xf, yt, steps, batch_size, payload=p)
        t1 = torch.cat([snn_outputs(model, xf[i:i + batch_size], 1, payload=p)[0]
                        for i in range(0, len(y), batch_size)])
        diff = float((t1 - ann_logits).abs().max())
        agree = float((t1.argmax(1) == ann_logits.argmax(1)).float().mean())
        for t in steps:
            res = emulate(net, x, t, labels=y, record="counts", batch_size=batch_size)
            ops = count_ops(net, res)
            energy = estimate_energy(ops, constants)
            n = max(len(y), 1)
            ann_cmos = energy.per_sample_uj("cmos_ann")
            row = {
                "payload": p, "steps": t, "float_snn": fsnn.accuracy[t],
                "integer_snn": res.accuracy, "saturations": int(res.saturations.sum()),
                "messages_per_image": ops.per_sample("spikes"),
                "payload_per_image": ops.per_sample("payload"),
                "synaptic_events_per_image": ops.per_sample("synops"),
                "graded_events_per_image": ops.per_sample("graded_events"),
                "payload_ops_per_image": ops.per_sample("payload_ops"),
                "input_macs_per_image": ops.total("input_macs") / n,
                "energy_uj_per_image": {"loihi": energy.per_sample_uj("loihi1"),
                                        "cmos_snn": energy.per_sample_uj("cmos_snn")},
            }
            if t == 1:
                row["float_snn_vs_ann_t1"] = {"max_abs_logit_diff": diff,
                                              "prediction_agreement": agree}
            out["rows"].append(row)
            print(f"P={p} T={t}: float {fsnn.accuracy[t]:.4f} int {res.accuracy:.4f} "
                  f"msgs {row['messages_per_image']:.0f} events "
                  f"{row['synaptic_events_per_image']:.0f} "
                  f"E45 {row['energy_uj_per_image']['cmos_snn']:.2f} uJ "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    out["ann_cmos_uj_per_image"] = ann_cmos
    out["energy_note"] = estimate_energy.__module__ + ": " + (
        "Loihi column: Loihi 1 per-event constants (Loihi 2's graded costs are not public); "
        "45 nm: a binary event is an add, a graded event a MAC, the ANN pays a MAC per weight")
    return out


def table(data: dict) -> str:
    lines = ["| P | T | float SNN | integer SNN | messages/img | synaptic events/img | "
             "payload-weighted ops/img | E Loihi (uJ) | E 45 nm (uJ) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in data["rows"]:
        e = r["energy_uj_per_image"]
        lines.append(
            f"| {r['payload']} | {r['steps']} | {100 * r['float_snn']:.1f}% | "
            f"{100 * r['integer_snn']:.1f}% | {r['messages_per_image']:,.0f} | "
            f"{r['synaptic_events_per_image']:,.0f} | {r['payload_ops_per_image']:,.0f} | "
            f"{e['loihi']:.1f} | {e['cmos_snn']:.1f} |")
    lines.append(f"\nQCFS ANN: {100 * data['qcfs_ann']:.1f}%, 45 nm ANN energy "
                 f"{data['ann_cmos_uj_per_image']:.1f} uJ per image")
    return "\n".join(lines)


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, kind, label in ((axes[0], "cmos_snn", "45 nm estimate"),
                            (axes[1], "loihi", "Loihi estimate (Loihi 1 per-event constants)")):
        for p in sorted({r["payload"] for r in data["rows"]}):
            rows = [r for r in data["rows"] if r["payload"] == p]
            xs = [r["energy_uj_per_image"][kind] for r in rows]
            ys = [100 * r["integer_snn"] for r in rows]
            name = "binary (P = 1)" if p == 1 else f"graded P = {p}"
            ax.plot(xs, ys, "o-", label=name)
            for r, xv, yv in zip(rows, xs, ys, strict=True):
                ax.annotate(f"T={r['steps']}", (xv, yv), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        ax.axhline(100 * data["qcfs_ann"], color="k", ls="--", lw=1, label="QCFS ANN")
        if kind == "cmos_snn":
            ax.axvline(data["ann_cmos_uj_per_image"], color="grey", ls=":", lw=1,
                       label="ANN energy (45 nm)")
        ax.set_xscale("log")
        ax.set_xlabel(f"energy per image (uJ, {label})")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("integer SNN accuracy (%)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{data['model']} on {data['dataset']} ({data['samples']} test images), "
                 f"L = {data['levels']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="netx_exports/resnet20-cifar10-subset.pt")
    ap.add_argument("--dataset", default=None, help="default: the checkpoint's")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--payloads", type=_ints, default=[1, 2, 4, 8])
    ap.add_argument("--steps", type=_ints, default=[1, 2, 4, 8])
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--out", default=str(RESULTS / "graded-resnet20-cifar10-subset.json"))
    ap.add_argument("--plot", default="docs/graded/accuracy_vs_energy.png")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ckpt = load_source(args.checkpoint).checkpoint
    dataset = args.dataset or ckpt.dataset
    split = load_dataset(dataset, args.data_root)
    n = min(args.samples, len(split.y_test))
    x, y = split.x_test[:n], split.y_test[:n].astype(np.int64)
    start = time.perf_counter()
    data = measure(args.checkpoint, x, y, args.payloads, args.steps, args.batch_size)
    data.update({
        "dataset": dataset, "samples": n, "checkpoint": args.checkpoint,
        "command": "benchmarks/bench_graded.py " + shlex.join(sys.argv[1:] if argv is None
                                                               else argv),
        "wall_s": time.perf_counter() - start, "machine": platform.platform(),
        "threads": 1,
    })
    write_json(args.out, data)
    plot(data, Path(args.plot))
    print(table(data))
    print(f"wrote {args.out} and {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
