"""ReLU network -> spiking network without QCFS training: our calibration against peers.

On one trained ReLU checkpoint (and, for reference, a QCFS-trained one of the same
architecture) and the same calibration images (``--samples`` training images, seed 0), every
method's test accuracy at T = 1, 2, 4, ... is measured:

- ours: ``qcfs_lava.calibrate`` (percentile ``--percentile``; each ``--configs`` entry gives
  L, per layer or per channel, and whether ``--finetune-epochs`` of fine-tuning follow),
  converted to the integer network and run in the bit-exact emulator (what Lava computes,
  spike for spike), one run per T;
- SpikingJelly 2.0 ``ann2snn`` (float simulation): ``RateCodingRecipe`` at the same
  percentile, layer-wise (IF neurons, reset by subtraction, membrane from 0) and channel-wise
  with half-threshold start, and ``LocalThresholdBalancingRecipe`` (channel-wise, half
  threshold);
- sinabs 3.1 ``from_model`` (float simulation, membrane from 0) after BatchNorm folding, with
  its defaults (threshold 1, weights as trained) and after sinabs' ``normalize_weights`` at
  the same percentile, each with ``MultiSpike`` (several spikes per step: with threshold 1
  on unnormalized weights a multi-level quantized ReLU) and ``SingleSpike`` (binary spikes,
  as on Loihi).

Peers are optional (``pip install qcfs-lava[bench]``); a missing one is skipped and said so.
Writes a JSON file (default ``benchmarks/results/calibration-<dataset>-<model>.json``) with
the command line, and prints a Markdown table.

    .venv/bin/python benchmarks/bench_calibration.py --relu RELU.pt [--qcfs QCFS.pt] \\
        [--configs 4:layer,4:channel+ft] [--finetune-epochs 2] [--steps 1,2,4,8,16,32] \\
        [--test-samples N] [--data-root DIR]
"""

from __future__ import annotations

import argparse
import copy
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qcfs_lava.calibrate import CalibrationConfig, calibrate, calibration_subset, finetune_
from qcfs_lava.checkpoint import load_checkpoint
from qcfs_lava.convert import convert
from qcfs_lava.data import load_dataset, normalize
from qcfs_lava.emulator import emulate
from qcfs_lava.io import write_json
from qcfs_lava.snn import evaluate_ann

RESULTS = Path(__file__).parent / "results"


DEFAULT_CONFIGS = ("4:layer,4:layer+ft,4:channel,4:channel+ft,2:channel+ft,8:channel+ft,"
                   "16:channel")


def _configs(text: str) -> list[tuple[int, bool, bool]]:
    """``"4:layer,4:channel+ft"`` -> ``[(4, False, False), (4, True, True)]``."""
    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        levels, _, mode = item.strip().partition(":")
        kind, _, ft = mode.partition("+")
        if kind not in ("layer", "channel") or ft not in ("", "ft"):
            raise argparse.ArgumentTypeError(f"bad configuration {item!r}: use L:layer, "
                                             "L:channel, L:layer+ft or L:channel+ft")
        out.append((int(levels), kind == "channel", ft == "ft"))
    return out


def _ints(text: str) -> list[int]:
    return sorted({int(v) for v in text.split(",") if v.strip()})


def integer_snn(model: nn.Module, ckpt, x: np.ndarray, y: np.ndarray, steps: list[int],
                batch_size: int) -> dict[int, float]:
    net, _ = convert(model, tuple(ckpt.input_shape), ckpt.mean, ckpt.std)
    return {t: emulate(net, x, t, labels=y, batch_size=batch_size).accuracy for t in steps}


@torch.no_grad()
def installed_peers(spec: str, runners: dict, skipped: dict) -> list[tuple[str, object]]:
    """``(peer, runner)`` for each peer named in the comma-separated ``spec`` that is installed,
    in ``runners``' order; a peer that is not installed is recorded in ``skipped``."""
    wanted = {s.strip() for s in spec.split(",") if s.strip()}
    found = []
    for peer, fn in runners.items():
        if peer not in wanted:
            continue
        try:
            __import__(peer)
        except ImportError as exc:
            skipped[peer] = f"not installed ({exc}); pip install qcfs-lava[bench]"
            print(f"  {peer}: skipped, {skipped[peer]}")
            continue
        found.append((peer, fn))
    return found


def _cumulative(run_steps, x: torch.Tensor, y: torch.Tensor, steps: list[int],
                batch_size: int) -> dict[int, float]:
    """Accuracy at each T of ``sum_{t<=T} output(t)`` for a stepwise simulator."""
    correct = dict.fromkeys(steps, 0)
    for start in range(0, len(y), batch_size):
        xb, yb = x[start: start + batch_size], y[start: start + batch_size]
        outs = run_steps(xb, max(steps))  # (T, N, classes)
        total = outs.cumsum(0)
        for t in steps:
            correct[t] += int((total[t - 1].argmax(1) == yb).sum())
    return {t: c / len(y) for t, c in correct.items()}


def spikingjelly_rows(model, x_cal, x_test, y_test, steps, percentile, batch_size):
    from spikingjelly.activation_based import ann2snn, functional

    loader = [(x_cal[i: i + batch_size], None) for i in range(0, len(x_cal), batch_size)]
    recipes = {
        f"SpikingJelly RateCoding {percentile}%, layer-wise": ann2snn.RateCodingRecipe(
            dataloader=loader, mode=f"{percentile}%"),
        f"SpikingJelly RateCoding {percentile}%, channel-wise, half threshold":
            ann2snn.RateCodingRecipe(dataloader=loader, mode=f"{percentile}%",
                                     channel_wise=True, half_threshold=True),
        "SpikingJelly LocalThresholdBalancing (channel-wise, half threshold)":
            ann2snn.LocalThresholdBalancingRecipe(dataloader=loader),
    }
    rows = []
    for name, recipe in recipes.items():
        t0 = time.perf_counter()
        snn = ann2snn.FXConverter(recipe=recipe, device="cpu").convert(copy.deepcopy(model))
        snn.eval()

        def run(xb, t_max, snn=snn):
            functional.reset_net(snn)
            return torch.stack([snn(xb) for _ in range(t_max)])

        acc = _cumulative(run, x_test, y_test, steps, batch_size)
        rows.append({"method": name, "family": "spikingjelly", "simulation": "float",
                     "accuracy": acc, "seconds": time.perf_counter() - t0})
        print(f"  {name}: {_fmt(acc, steps)}", flush=True)
    return rows


def _fold_bn(model: nn.Module) -> nn.Sequential:
    """A flat ``nn.Sequential`` with every BatchNorm folded into the conv/linear before it."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    def leaves(m):
        if isinstance(m, nn.Sequential):
            return [leaf for child in m.children() for leaf in leaves(child)]
        return [m]

    out: list[nn.Module] = []
    for m in leaves(copy.deepcopy(model).eval()):
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            prev = out.pop()
            fuse = fuse_conv_bn_eval if isinstance(prev, nn.Conv2d) else fuse_linear_bn_eval
            out.append(fuse(prev, m))
        elif not isinstance(m, (nn.Dropout, nn.Identity)):
            out.append(m)
    return nn.Sequential(*out).eval()


def sinabs_rows(model, x_cal, x_test, y_test, steps, percentile, batch_size):
    import sinabs
    from sinabs.activation import MultiSpike, SingleSpike
    from sinabs.utils import normalize_weights

    folded = _fold_bn(model)
    children = list(folded.named_children())
    relus = [n for n, m in children if isinstance(m, nn.ReLU)]
    params = []
    for name in relus:  # the parametric layer before each ReLU
        index = [n for n, _ in children].index(name)
        params.append(next(n for n, m in reversed(children[:index])
                           if isinstance(m, (nn.Conv2d, nn.Linear))))
    normalized = copy.deepcopy(folded)
    with torch.no_grad():
        normalize_weights(normalized, x_cal, relus, params, percentile=percentile)
    rows = []
    t_max = max(steps)
    variants = [("defaults (threshold 1, no weight normalization)", folded),
                (f"{percentile}% weight normalization", normalized)]
    for what, ann in variants:
        for label, spike_fn in (("MultiSpike", MultiSpike), ("SingleSpike", SingleSpike)):
            t0 = time.perf_counter()
            snn = sinabs.from_model(copy.deepcopy(ann), spike_fn=spike_fn,
                                    num_timesteps=t_max).spiking_model.eval()

            def run(xb, t_max, snn=snn):
                sinabs.reset_states(snn)
                rep = xb.unsqueeze(1).expand(len(xb), t_max, *xb.shape[1:])
                return snn(rep.reshape(-1, *xb.shape[1:])).reshape(len(xb), t_max,
                                                                   -1).transpose(0, 1)

            acc = _cumulative(run, x_test, y_test, steps, batch_size)
            name = f"sinabs from_model, {what}, {label}"
            rows.append({"method": name, "family": "sinabs", "simulation": "float",
                         "accuracy": acc, "seconds": time.perf_counter() - t0})
            print(f"  {name}: {_fmt(acc, steps)}", flush=True)
    return rows


def _fmt(acc: dict[int, float], steps: list[int]) -> str:
    return " ".join(f"T={t}:{100 * acc[t]:.2f}" for t in steps)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--relu", required=True, help="checkpoint of the ReLU network")
    p.add_argument("--qcfs", default=None, help="QCFS-trained checkpoint (reference rows)")
    p.add_argument("--qcfs-rows", default="trained",
                   help="rows of the --qcfs model: 'trained' (as trained), 'recalibrated' "
                   "(recalibrated per channel, no fine-tune) or both, comma-separated")
    p.add_argument("--configs", type=_configs, default=_configs(DEFAULT_CONFIGS),
                   help="our calibrations: comma-separated L:layer|channel[+ft], e.g. "
                   f"{DEFAULT_CONFIGS}")
    p.add_argument("--steps", type=_ints, default=[1, 2, 4, 8, 16, 32])
    p.add_argument("--percentile", type=float, default=99.9)
    p.add_argument("--samples", type=int, default=1000, help="calibration images")
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument("--finetune-lr", type=float, default=0.01)
    p.add_argument("--test-samples", type=int, default=None, help="default: the whole split")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--data-root", default=None)
    p.add_argument("--peers", default="spikingjelly,sinabs")
    p.add_argument("--out", default=None)
    p.add_argument("--merge", nargs="+", default=None, metavar="PART.json",
                   help="only merge the rows of result files of the same data (runs split "
                   "over several processes) into --out, and print the table")
    args = p.parse_args()
    if args.merge:
        merge(args.merge, args.out)
        return

    relu_ckpt = load_checkpoint(args.relu)
    split = load_dataset(relu_ckpt.dataset, args.data_root)
    mean, std = relu_ckpt.mean, relu_ckpt.std
    x_u8, y_np = split.x_test, split.y_test
    if args.test_samples:
        x_u8, y_np = x_u8[: args.test_samples], y_np[: args.test_samples]
    x_u8 = np.ascontiguousarray(x_u8)
    x_test, y_test = normalize(x_u8, mean, std), torch.as_tensor(y_np)
    index = calibration_subset(len(split.y_train), args.samples, 0)
    x_cal = normalize(split.x_train[index], mean, std)
    x_train, y_train = normalize(split.x_train, mean, std), torch.as_tensor(split.y_train)
    relu = relu_ckpt.build_model()
    steps = args.steps
    result = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "relu_checkpoint": args.relu, "qcfs_checkpoint": args.qcfs,
        "dataset": split.name, "model": relu_ckpt.model, "test_samples": len(y_np),
        "calibration_samples": len(index), "percentile": args.percentile, "steps": steps,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, CPU",
        "relu_ann": evaluate_ann(relu, x_test, y_test), "rows": [],
    }
    print(f"ReLU ANN {100 * result['relu_ann']:.2f}% on {len(y_np)} test images", flush=True)
    rows = result["rows"]

    qcfs_rows = {r.strip() for r in args.qcfs_rows.split(",")}
    if args.qcfs:
        qckpt = load_checkpoint(args.qcfs)
        qmodel = qckpt.build_model()
    if args.qcfs and "trained" in qcfs_rows:
        t0 = time.perf_counter()
        acc = integer_snn(qmodel, qckpt, x_u8, y_np, steps, args.batch_size)
        rows.append({"method": f"qcfs-lava, QCFS-trained (L={qckpt.levels})", "family": "ours",
                     "simulation": "integer", "levels": qckpt.levels,
                     "ann": evaluate_ann(qmodel, x_test, y_test), "accuracy": acc,
                     "seconds": time.perf_counter() - t0})
        print(f"  {rows[-1]['method']}: {_fmt(acc, steps)}", flush=True)
    if args.qcfs and "recalibrated" in qcfs_rows:
        t0 = time.perf_counter()
        cal = calibrate(qmodel, x_cal, CalibrationConfig(levels=qckpt.levels, phi=qckpt.phi,
                                                         percentile=args.percentile,
                                                         per_channel=True))
        acc = integer_snn(cal.model, qckpt, x_u8, y_np, steps, args.batch_size)
        rows.append({"method": f"qcfs-lava, QCFS-trained (L={qckpt.levels}), recalibrated "
                     "per channel", "family": "ours", "simulation": "integer",
                     "levels": qckpt.levels, "ann": evaluate_ann(cal.model, x_test, y_test),
                     "accuracy": acc, "seconds": time.perf_counter() - t0})
        print(f"  {rows[-1]['method']}: {_fmt(acc, steps)}", flush=True)

    for levels, per_channel, finetune in args.configs:
        kind = "per channel" if per_channel else "per layer"
        t0 = time.perf_counter()
        config = CalibrationConfig(levels=levels, percentile=args.percentile,
                                   per_channel=per_channel, samples=args.samples,
                                   finetune_epochs=args.finetune_epochs if finetune else 0,
                                   finetune_lr=args.finetune_lr)
        cal = calibrate(relu, x_cal, config)
        name = f"qcfs-lava calibrate L={levels}, {kind}"
        history = []
        if finetune:
            torch.manual_seed(0)
            history = finetune_(cal.model, x_train, y_train, config)
            name += f", +{args.finetune_epochs} fine-tune epochs"
        acc = integer_snn(cal.model, relu_ckpt, x_u8, y_np, steps, args.batch_size)
        rows.append({"method": name, "family": "ours", "simulation": "integer",
                     "levels": levels, "per_channel": per_channel,
                     "finetune_epochs": config.finetune_epochs,
                     "ann": evaluate_ann(cal.model, x_test, y_test), "accuracy": acc,
                     "finetune": history, "seconds": time.perf_counter() - t0})
        print(f"  {name}: ANN {100 * rows[-1]['ann']:.2f} {_fmt(acc, steps)}", flush=True)

    result["skipped"] = {}
    for _peer, fn in installed_peers(args.peers, {"spikingjelly": spikingjelly_rows,
                                                 "sinabs": sinabs_rows}, result["skipped"]):
        rows += fn(relu, x_cal, x_test, y_test, steps, args.percentile, args.batch_size)

    _best(result)
    default = RESULTS / f"calibration-{split.name}-{relu_ckpt.model}.json"
    out = Path(args.out) if args.out else default
    write_json(out, result)
    _table(result)
    print(f"wrote {out}")


def _best(result: dict) -> None:
    """Best accuracy per T of each family (QCFS-trained reference rows excluded)."""
    for family in ("ours", "spikingjelly", "sinabs"):
        fam = [r for r in result["rows"] if r["family"] == family
               and not r["method"].startswith("qcfs-lava, QCFS-trained")]
        if fam:
            result[f"best_{family}"] = {t: max(r["accuracy"][t] for r in fam)
                                        for t in result["steps"]}


def _table(result: dict) -> None:
    steps = result["steps"]
    print(f"\n| conversion | {' | '.join(f'T={t}' for t in steps)} |")
    print("|---|" + "---:|" * len(steps))
    for r in result["rows"]:
        print(f"| {r['method']} | " + " | ".join(f"{100 * r['accuracy'][t]:.2f}" for t in steps)
              + " |")
    print(f"\nReLU ANN {100 * result['relu_ann']:.2f}% on {result['test_samples']} test images")


def merge(parts: list[str], out: str | None) -> None:
    """Concatenate the rows of several result files made on the same data."""
    import json

    loaded = [json.loads(Path(p).read_text()) for p in parts]
    keys = ("dataset", "model", "test_samples", "calibration_samples", "percentile", "steps",
            "relu_ann")
    for other in loaded[1:]:
        if any(other[k] != loaded[0][k] for k in keys):
            raise SystemExit(f"cannot merge: the parts differ in {keys}")
    result = dict(loaded[0])
    result["command"] = [part["command"] for part in loaded]
    result["rows"] = [row for part in loaded for row in part["rows"]]
    result["qcfs_checkpoint"] = next((p["qcfs_checkpoint"] for p in loaded
                                      if p["qcfs_checkpoint"]), None)
    result["skipped"] = {k: v for p in loaded for k, v in p.get("skipped", {}).items()}
    for row in result["rows"]:
        row["accuracy"] = {int(t): a for t, a in row["accuracy"].items()}
    result["steps"] = [int(t) for t in result["steps"]]
    _best(result)
    default = RESULTS / f"calibration-{result['dataset']}-{result['model']}.json"
    write_json(Path(out) if out else default, result)
    _table(result)
    print(f"wrote {out or default}")


if __name__ == "__main__":
    main()
