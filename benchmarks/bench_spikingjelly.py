"""QCFS against SpikingJelly 2.0's ann2snn on the same network: accuracy vs T side by side.

A ReLU network (trained with ``qcfs-lava train --activation relu``) is converted by
SpikingJelly's ``RateCodingRecipe`` (Conv-BN fusion, activation statistics on the training
part, IF neurons with reset by subtraction) in each of the ``--modes`` given, by default its
strongest: per-channel thresholds from a percentile or the maximum of each channel's
activations, membranes starting at half threshold (``channel_wise=True,
half_threshold=True``). Each converted SNN runs ``max(T)`` steps on the test part; the
accuracy is read at every T of ``--steps``. On the same images, the QCFS checkpoint's ANN and
float SNN are measured in the same process, or, when ``--qcfs-report`` is given, taken with
the integer SNN from a ``qcfs-lava report`` JSON of that checkpoint (checked: same checkpoint,
same number of test images, every T present). Writes a results JSON with the command line.

Needs the ``bench`` extra (``pip install "qcfs-lava[bench]"``: spikingjelly).

    .venv/bin/python benchmarks/bench_spikingjelly.py \\
        --relu-checkpoint runs/resnet20-relu-c10s/best.pt \\
        --qcfs-checkpoint runs/resnet20-c10s/best.pt \\
        --qcfs-report runs/resnet20-c10s/report/report.json \\
        --out benchmarks/results/spikingjelly-cifar10-subset-resnet20.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from qcfs_lava.checkpoint import checkpoint_sha256, load_checkpoint
from qcfs_lava.data import load_dataset, normalize
from qcfs_lava.io import write_json
from qcfs_lava.snn import evaluate_ann, simulate_snn


def _mode(text: str) -> dict:
    """``"99.9%"``, ``"max"``; a ``layer:`` prefix for one threshold per layer."""
    layer = text.startswith("layer:")
    mode = text.split(":", 1)[1] if layer else text
    return {"label": text, "mode": "Max" if mode.lower() == "max" else mode,
            "channel_wise": not layer, "half_threshold": not layer}


@torch.no_grad()
def run_spikingjelly(model, calib: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                     steps: list[int], spec: dict, batch_size: int) -> dict:
    from spikingjelly.activation_based import ann2snn, functional

    recipe = ann2snn.RateCodingRecipe(
        dataloader=[calib[i:i + batch_size] for i in range(0, len(calib), batch_size)],
        mode=spec["mode"], channel_wise=spec["channel_wise"],
        half_threshold=spec["half_threshold"])
    t0 = time.perf_counter()
    snn = ann2snn.Converter(recipe=recipe, device="cpu").convert(model).eval()
    convert_s = time.perf_counter() - t0
    correct = dict.fromkeys(steps, 0)
    t0 = time.perf_counter()
    for lo in range(0, len(y), batch_size):
        xb, yb = x[lo:lo + batch_size], y[lo:lo + batch_size]
        functional.reset_net(snn)
        total = None
        for t in range(1, max(steps) + 1):
            out = snn(xb)
            total = out if total is None else total + out
            if t in correct:
                correct[t] += int((total.argmax(1) == yb).sum())
        print(f"  {spec['label']}: {min(lo + batch_size, len(y))}/{len(y)} samples", flush=True)
    return {"accuracy": {str(t): c / len(y) for t, c in correct.items()},
            "convert_s": convert_s, "simulate_s": time.perf_counter() - t0,
            "recipe": {k: spec[k] for k in ("mode", "channel_wise", "half_threshold")}}


def _qcfs_side(args, qcfs_ckpt, split, n, y, steps, result) -> None:
    """QCFS ANN, float and integer SNN: from the report if given, else measured here."""
    report = None
    if args.qcfs_report:
        report = json.loads(Path(args.qcfs_report).read_text())
        if report["error_budget"]["samples"] != n:
            sys.exit(f"{args.qcfs_report} covers {report['error_budget']['samples']} samples, "
                     f"not {n}: run the report with the same --samples")
        if report["checkpoint"]["sha256"] != result["qcfs_checkpoint"]["sha256"]:
            sys.exit(f"{args.qcfs_report} was made from another checkpoint")
        missing = [t for t in steps if str(t) not in report["accuracy"]["float_snn"]]
        if missing:
            sys.exit(f"{args.qcfs_report} lacks T = {missing}: run it with these --steps")
    if report is not None:  # the report measured the QCFS side on the same images
        result["qcfs_source"] = args.qcfs_report
        result["qcfs_ann"] = report["accuracy"]["qcfs_ann"]
        result["qcfs_float_snn"] = {str(t): report["accuracy"]["float_snn"][str(t)]
                                    for t in steps}
        result["qcfs_integer_snn"] = {str(t): report["accuracy"]["integer_snn"][str(t)]
                                      for t in steps}
    else:
        qcfs = qcfs_ckpt.build_model().eval()
        x_qcfs = normalize(split.x_test[:n], qcfs_ckpt.mean, qcfs_ckpt.std)
        result["qcfs_source"] = "measured here (float SNN only)"
        result["qcfs_ann"] = evaluate_ann(qcfs, x_qcfs, y)
        result["qcfs_float_snn"] = {str(t): a for t, a in
                                    simulate_snn(qcfs, x_qcfs, y, steps).accuracy.items()}
    print("QCFS float SNN: " + ", ".join(
        f"T={t} {100 * a:.2f}%" for t, a in result["qcfs_float_snn"].items()), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--relu-checkpoint", required=True)
    p.add_argument("--qcfs-checkpoint", default=None,
                   help="the QCFS model of the same architecture (default: SpikingJelly only)")
    p.add_argument("--qcfs-report", default=None, help="qcfs-lava report JSON (integer SNN)")
    p.add_argument("--steps", default="1,2,4,8,16,32,64")
    p.add_argument("--modes", default="99.9%,max",
                   help="comma-separated RateCodingRecipe modes (per channel, half threshold); "
                   "prefix layer: for one threshold per layer")
    p.add_argument("--samples", type=int, default=None, help="first N test images (default all)")
    p.add_argument("--calib-samples", type=int, default=None,
                   help="training images for the statistics (default all)")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    try:
        import spikingjelly  # noqa: F401
    except ImportError:
        sys.exit("spikingjelly is not installed: pip install 'qcfs-lava[bench]'")
    steps = sorted({int(s) for s in args.steps.split(",")})
    relu_ckpt = load_checkpoint(args.relu_checkpoint)
    qcfs_ckpt = load_checkpoint(args.qcfs_checkpoint) if args.qcfs_checkpoint else None
    if relu_ckpt.activation != "relu" or (qcfs_ckpt and qcfs_ckpt.activation != "qcfs"):
        sys.exit("--relu-checkpoint must be a ReLU model and --qcfs-checkpoint a QCFS one")
    split = load_dataset(relu_ckpt.dataset)
    n = len(split.y_test) if args.samples is None else min(args.samples, len(split.y_test))
    y = torch.as_tensor(split.y_test[:n])
    x_relu = normalize(split.x_test[:n], relu_ckpt.mean, relu_ckpt.std)
    k = len(split.y_train) if args.calib_samples is None else args.calib_samples
    calib = normalize(split.x_train[:k], relu_ckpt.mean, relu_ckpt.std)

    result: dict = {
        "command": " ".join(["python", *sys.argv]),
        "dataset": split.name, "test_samples": n, "calibration_samples": k,
        "steps": steps, "threads": torch.get_num_threads(), "machine": platform.processor()
        or platform.machine(),
        "relu_checkpoint": {"path": args.relu_checkpoint,
                            "sha256": checkpoint_sha256(args.relu_checkpoint),
                            "model": relu_ckpt.model, "epoch": relu_ckpt.epoch},
    }
    if qcfs_ckpt is not None:
        result["qcfs_checkpoint"] = {"path": args.qcfs_checkpoint,
                                     "sha256": checkpoint_sha256(args.qcfs_checkpoint),
                                     "model": qcfs_ckpt.model, "epoch": qcfs_ckpt.epoch,
                                     "levels": qcfs_ckpt.levels}
    relu = relu_ckpt.build_model().eval()
    result["relu_ann"] = evaluate_ann(relu, x_relu, y)
    print(f"ReLU ANN {100 * result['relu_ann']:.2f}% on {n} test images", flush=True)
    result["spikingjelly"] = {}
    for text in args.modes.split(","):
        spec = _mode(text.strip())
        model = relu_ckpt.build_model().eval()  # a fresh copy: the converter fuses in place
        out = run_spikingjelly(model, calib, x_relu, y, steps, spec, args.batch_size)
        result["spikingjelly"][spec["label"]] = out
        print(f"SpikingJelly {spec['label']}: " + ", ".join(
            f"T={t} {100 * a:.2f}%" for t, a in out["accuracy"].items()), flush=True)
    if qcfs_ckpt is not None:
        _qcfs_side(args, qcfs_ckpt, split, n, y, steps, result)
    write_json(args.out, result, sort_keys=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
