"""Low latency with binary spikes: our QCFS routes against peers, accuracy, spikes and SynOps.

Every row is a spiking network built from networks of one architecture trained on one dataset,
measured on the same test images at each T:

- ours (``--ours NAME=CKPT``, repeatable): QCFS checkpoints (trained from scratch, trained
  from a calibrated ReLU run, SNN fine-tuned...), converted to the integer network and run in
  the bit-exact emulator (what Lava computes, spike for spike); spikes and SynOps per image
  are exact counts (``qcfs_lava.analysis.counts``);
- peers on the ReLU checkpoint ``--relu`` (float simulations): SpikingJelly 2.0
  ``RateCodingRecipe`` channel-wise with half threshold (its strongest recipe) and sinabs 3.1
  ``from_model`` with ``SingleSpike`` after 99.9% weight normalization and with its defaults
  (binary spikes, as on Loihi). Their spikes are counted with hooks on their neurons and their
  SynOps with our integer network's fan-out of the same layers (same architecture, same
  layer order); a peer whose layers do not line up gets no SynOps.

Each row also carries its own ANN accuracy, so the table shows accuracy as a percent of it; a
fine-tuned checkpoint (``finetune-snn`` wrote ``CKPT.json`` naming its source) is measured
against the ANN of the checkpoint it was tuned from (``route_ann``), since the fine-tune trades
its own ANN for the SNN.
Writes JSON (``--out``), prints a Markdown table, and draws two plots next to the JSON:
accuracy vs T per method, and accuracy vs SynOps per image.

    .venv/bin/python benchmarks/bench_low_latency.py --relu RELU.pt \\
        --ours "QCFS from scratch=A.pt" --ours "QCFS from ReLU=B.pt" --steps 1,2,4,8,16
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from bench_calibration import _cumulative, _fold_bn, installed_peers  # noqa: E402

from qcfs_lava.analysis.counts import count_ops, fan_out  # noqa: E402
from qcfs_lava.calibrate import calibration_subset  # noqa: E402
from qcfs_lava.checkpoint import load_checkpoint  # noqa: E402
from qcfs_lava.convert import convert  # noqa: E402
from qcfs_lava.data import load_dataset, normalize  # noqa: E402
from qcfs_lava.emulator import emulate  # noqa: E402
from qcfs_lava.io import write_json  # noqa: E402
from qcfs_lava.snn import evaluate_ann  # noqa: E402

RESULTS = Path(__file__).parent / "results"
PAPER = {"VGG-16 (paper, CIFAR-10)": {2: 0.95, 4: 0.98, 8: 0.99},
         "ResNet-20 (paper, CIFAR-10)": {2: 0.80, 4: 0.91, 8: 0.98}}


def _ints(text: str) -> list[int]:
    return sorted({int(v) for v in text.split(",") if v.strip()})


def ours_row(name: str, path: str, x: np.ndarray, y: np.ndarray, steps: list[int],
             batch_size: int) -> dict:
    t0 = time.perf_counter()
    ckpt = load_checkpoint(path)
    model = ckpt.build_model()
    net, _ = convert(model, tuple(ckpt.input_shape), ckpt.mean, ckpt.std)
    acc, spikes, synops = {}, {}, {}
    for t in steps:
        res = emulate(net, x, t, labels=y, batch_size=batch_size, record="counts")
        ops = count_ops(net, res)
        acc[t], spikes[t], synops[t] = res.accuracy, ops.per_sample("spikes"), \
            ops.per_sample("synops")
        print(f"    {name} T={t}: {100 * acc[t]:.2f}%", flush=True)
    ann = evaluate_ann(model, normalize(x, ckpt.mean, ckpt.std), torch.as_tensor(y))
    row = {"method": f"qcfs-lava: {name}", "family": "ours", "simulation": "integer",
           "checkpoint": path, "ann": ann, "accuracy": acc, "spikes": spikes,
           "synops": synops}
    source = _fine_tuned_from(path)
    if source is not None:  # the fine-tune trades its ANN: count against the route's ANN
        base = load_checkpoint(source)
        row["fine_tuned_from"] = source
        row["route_ann"] = evaluate_ann(base.build_model(), normalize(x, base.mean, base.std),
                                        torch.as_tensor(y))
    row["seconds"] = time.perf_counter() - t0
    return row


def _fine_tuned_from(path: str) -> str | None:
    """The checkpoint a chain of ``finetune-snn`` runs started from, read from each
    ``PATH.json`` (None if ``path`` is not a fine-tuned checkpoint or a source is gone)."""
    source = None
    for _ in range(16):  # a chain of fine-tunes: follow it to the trained network
        sidecar = Path(f"{path}.json")
        info = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        if info.get("command") != "finetune-snn":
            return source
        path = info.get("source")
        if not path or not Path(path).is_file():
            return None
        source = path
    return None


def _spike_hooks(modules: list[nn.Module]) -> tuple[list[np.ndarray | None], list]:
    counts: list[np.ndarray | None] = [None] * len(modules)

    def hook(i):
        def record(_module, _inputs, out):
            c = (out.detach() != 0).sum(0).double().numpy()
            counts[i] = c if counts[i] is None else counts[i] + c
        return record

    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(modules)]
    return counts, handles


def _peer_row(name: str, family: str, make, relu_net, x_test, y_test, steps,
              batch_size) -> dict:
    """Accuracy at each T, spikes and SynOps per image at each T (one pass per T for counts).

    ``make(t)`` returns ``(run, neurons)``: ``run(xb, t)`` gives the outputs of ``t`` steps
    ``(t, N, classes)`` from a fresh state; ``neurons`` are the spiking modules in layer order.
    """
    t0 = time.perf_counter()
    run, _ = make(max(steps))
    acc = _cumulative(run, x_test, y_test, steps, batch_size)
    spikes, synops = {}, {}
    fans = [fan_out(relu_net, i) for i in range(len(relu_net.layers) - 1)]
    for t in steps:
        run, neurons = make(t)
        counts, handles = _spike_hooks(neurons)
        with torch.no_grad():
            for start in range(0, len(y_test), batch_size):
                run(x_test[start: start + batch_size], t)
        for h in handles:
            h.remove()
        n = len(y_test)
        spikes[t] = sum(float(c.sum()) for c in counts if c is not None) / n
        aligned = len(counts) == len(fans) and all(
            c is not None and c.shape == f.shape for c, f in zip(counts, fans, strict=True))
        synops[t] = (sum(float((c * f).sum()) for c, f in zip(counts, fans, strict=True)) / n
                     if aligned else None)
    print(f"    {name}: " + " ".join(f"T={t}:{100 * acc[t]:.2f}" for t in steps), flush=True)
    return {"method": name, "family": family, "simulation": "float", "accuracy": acc,
            "spikes": spikes, "synops": synops, "seconds": time.perf_counter() - t0}


def spikingjelly_row(model, x_cal, x_test, y_test, steps, batch_size, relu_net) -> dict:
    from spikingjelly.activation_based import ann2snn, functional, neuron

    loader = [(x_cal[i: i + batch_size], None) for i in range(0, len(x_cal), batch_size)]
    recipe = ann2snn.RateCodingRecipe(dataloader=loader, mode="99.9%", channel_wise=True,
                                      half_threshold=True)
    snn = ann2snn.FXConverter(recipe=recipe, device="cpu").convert(copy.deepcopy(model)).eval()
    neurons = [m for m in snn.modules() if isinstance(m, neuron.BaseNode)]

    def run(xb, t_max):
        functional.reset_net(snn)
        return torch.stack([snn(xb) for _ in range(t_max)])

    return _peer_row("SpikingJelly 2.0 RateCoding 99.9%, channel-wise, half threshold",
                     "spikingjelly", lambda t: (run, neurons), relu_net, x_test, y_test, steps,
                     batch_size)


def sinabs_rows(model, x_cal, x_test, y_test, steps, batch_size, relu_net) -> list[dict]:
    import sinabs
    from sinabs.activation import SingleSpike
    from sinabs.layers import IAF
    from sinabs.utils import normalize_weights

    folded = _fold_bn(model)
    children = list(folded.named_children())
    if any(not isinstance(m, (nn.Conv2d, nn.Linear, nn.ReLU, nn.AvgPool2d, nn.Flatten,
                              nn.AdaptiveAvgPool2d)) for _, m in children):
        return []  # residual blocks: sinabs' from_model takes sequential networks only
    relus = [n for n, m in children if isinstance(m, nn.ReLU)]
    params = []
    for name in relus:
        index = [n for n, _ in children].index(name)
        params.append(next(n for n, m in reversed(children[:index])
                           if isinstance(m, (nn.Conv2d, nn.Linear))))
    normalized = copy.deepcopy(folded)
    with torch.no_grad():
        normalize_weights(normalized, x_cal, relus, params, percentile=99.9)
    rows = []
    for what, ann in (("99.9% weight normalization", normalized), ("defaults", folded)):

        def make(t, ann=ann):
            # from_model's layers fold time into the batch: (N * t, ...) in, num_timesteps=t
            snn = sinabs.from_model(copy.deepcopy(ann), spike_fn=SingleSpike,
                                    num_timesteps=t).spiking_model.eval()

            def run(xb, t_run):
                sinabs.reset_states(snn)
                rep = xb.unsqueeze(1).expand(len(xb), t_run, *xb.shape[1:])
                out = snn(rep.reshape(-1, *xb.shape[1:]))
                return out.reshape(len(xb), t_run, -1).transpose(0, 1)

            return run, [m for m in snn.modules() if isinstance(m, IAF)]

        rows.append(_peer_row(f"sinabs 3.1 from_model, {what}, SingleSpike", "sinabs", make,
                              relu_net, x_test, y_test, steps, batch_size))
    return rows


def _reference_ann(row: dict) -> float | None:
    """The ANN a row is measured against: its own, or for a fine-tuned row the route's."""
    return row.get("route_ann", row.get("ann"))


def _percent(row: dict, t: int) -> str:
    ann = _reference_ann(row)
    return f"{100 * row['accuracy'][t] / ann:.0f}%" if ann else "-"


def table(result: dict) -> str:
    steps = result["steps"]
    head = ("| method | ANN | " + " | ".join(f"T={t}" for t in steps) + " | spikes/img (T="
            f"{steps[-1]}) | SynOps/img (T={steps[-1]}) |")
    lines = [head, "|---|---:|" + "---:|" * (len(steps) + 2)]
    for r in result["rows"]:
        ann = _reference_ann(r)
        cells = [f"{100 * r['accuracy'][t]:.1f} ({_percent(r, t)})" for t in steps]
        syn = r["synops"].get(steps[-1])
        lines.append(f"| {r['method']} | {'-' if ann is None else f'{100 * ann:.1f}'} | "
                     + " | ".join(cells)
                     + f" | {r['spikes'][steps[-1]]:,.0f} | "
                     + ("-" if syn is None else f"{syn:,.0f}") + " |")
    for name, ratios in PAPER.items():
        lines.append(f"| {name}: SNN/ANN | - | " + " | ".join(
            f"({100 * ratios[t]:.0f}%)" if t in ratios else "-" for t in steps) + " | - | - |")
    return "\n".join(lines)


def plots(result: dict, stem: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = result["steps"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in result["rows"]:
        style = "-o" if r["family"] == "ours" else "--s"
        a.plot(steps, [100 * r["accuracy"][t] for t in steps], style, label=r["method"])
        pts = [(r["synops"][t], 100 * r["accuracy"][t]) for t in steps
               if r["synops"].get(t) is not None]
        if pts:
            b.plot(*zip(*pts, strict=True), style, label=r["method"])
    a.set_xscale("log", base=2)
    a.set_xticks(steps, [str(t) for t in steps])
    a.set_xlabel("time steps T")
    a.set_ylabel(f"test accuracy (%), {result['test_samples']} images")
    a.set_title(f"{result['model']} on {result['dataset']}: accuracy vs T")
    b.set_xscale("log")
    b.set_xlabel("synaptic operations per image (SynOps)")
    b.set_ylabel("test accuracy (%)")
    b.set_title("accuracy vs SynOps (points: T = " + ", ".join(map(str, steps)) + ")")
    a.grid(alpha=0.3)
    b.grid(alpha=0.3)
    b.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out = stem.with_suffix(".png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return [out]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--relu", required=True, help="ReLU checkpoint (the peers convert it)")
    p.add_argument("--ours", action="append", default=[], metavar="NAME=CKPT",
                   help="a QCFS checkpoint of ours and its label (repeatable)")
    p.add_argument("--steps", type=_ints, default=[1, 2, 4, 8, 16])
    p.add_argument("--test-samples", type=int, default=None, help="default: the whole split")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--data-root", default=None)
    p.add_argument("--peers", default="spikingjelly,sinabs")
    p.add_argument("--out", required=True, help="JSON file to write (the plot goes beside it)")
    args = p.parse_args()

    relu_ckpt = load_checkpoint(args.relu)
    split = load_dataset(relu_ckpt.dataset, args.data_root)
    x_u8, y_np = split.x_test, split.y_test
    if args.test_samples:
        x_u8, y_np = x_u8[: args.test_samples], y_np[: args.test_samples]
    x_u8 = np.ascontiguousarray(x_u8)
    mean, std = relu_ckpt.mean, relu_ckpt.std
    x_test, y_test = normalize(x_u8, mean, std), torch.as_tensor(y_np)
    x_cal = normalize(split.x_train[calibration_subset(len(split.y_train), 1000, 0)], mean, std)
    relu = relu_ckpt.build_model()
    result = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "dataset": split.name, "model": relu_ckpt.model, "test_samples": len(y_np),
        "steps": args.steps, "relu_checkpoint": args.relu,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, CPU",
        "rows": [], "skipped": {},
    }
    for item in args.ours:
        name, _, path = item.rpartition("=")
        result["rows"].append(ours_row(name, path, x_u8, y_np, args.steps, args.batch_size))
    # the ReLU network's structure gives the peers' fan-out (the QCFS layout, same layers)
    from qcfs_lava.calibrate import CalibrationConfig, calibrate

    structure = calibrate(relu, x_cal[:64], CalibrationConfig(samples=64)).model
    relu_net, _ = convert(structure, tuple(relu_ckpt.input_shape), mean, std)
    relu_ann = evaluate_ann(relu, x_test, y_test)
    for peer, fn in installed_peers(args.peers, {"spikingjelly": spikingjelly_row,
                                                 "sinabs": sinabs_rows}, result["skipped"]):
        rows = fn(relu, x_cal, x_test, y_test, args.steps, args.batch_size, relu_net)
        for row in rows if isinstance(rows, list) else [rows]:
            row["ann"] = relu_ann
            result["rows"].append(row)
        if isinstance(rows, list) and not rows:
            result["skipped"][peer] = "sinabs from_model takes sequential networks only"
    out = Path(args.out)
    write_json(out, result)
    for path in plots(result, out):
        print(f"wrote {path}")
    print(table(result))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
