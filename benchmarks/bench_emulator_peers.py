"""Emulator vs its floor vs SpikingJelly, side by side, on the same network and batches.

For each model, in this same process, alternating, best of ``--repeats``:

- ``floor``: ``T`` forward passes of the float QCFS model (as trained: BatchNorm and QCFS
  activations in place), the cost floor of any ``T``-step simulation of it;
- ``emulator``: our exact integer emulation of ``T`` steps (:func:`qcfs_lava.emulate`);
- ``spikingjelly``: SpikingJelly 2.0's rate-coding conversion of the ReLU version of the
  same network (``ann2snn.Converter(RateCodingRecipe(mode="Max"))``, Conv-BN fused,
  IF neurons) run for ``T`` steps the way its examples validate (``reset_net``, then ``T``
  calls on the image).

Models: the MNIST-split cnn (28x28) and VGG-16 / ResNet-18 at 32x32 (CIFAR-10 images),
seeded weights (speed does not depend on training), and ``resnet20-example``: the trained
ResNet-20 of ``netx_exports/resnet20-cifar10-subset.pt`` on the subset's test images (its
SpikingJelly column converts a seeded ReLU ResNet-20 of the same layout, as no ReLU twin of
that checkpoint is committed). Needs the ``bench`` extra for SpikingJelly
(``pip install --no-deps spikingjelly==2.0.0``); without it that column is skipped.

The emulator compiles a network once (weights to device tensors, exactness bounds) and
keeps it while the network lives; the first call's time, compile included, is reported as
``emulator_first_call_s`` next to the best of the timed calls. Writes
benchmarks/results/emulator-peers.json.

    .venv/bin/python benchmarks/bench_emulator_peers.py \\
        [--models cnn,vgg16,resnet18,resnet20-example] [--steps 8] [--samples 64] \\
        [--batch-size 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from workloads import CIFAR_MEAN, CIFAR_STD, cifar_images  # noqa: E402

from qcfs_lava.convert import convert  # noqa: E402
from qcfs_lava.emulator import emulate  # noqa: E402
from qcfs_lava.io import write_json  # noqa: E402
from qcfs_lava.model.zoo import build_model  # noqa: E402

OUT = Path(__file__).parent / "results" / "emulator-peers.json"
EXAMPLE = Path(__file__).parent.parent / "netx_exports" / "resnet20-cifar10-subset.pt"


def workload(name: str, samples: int):
    """``(qcfs model, relu model, uint8 x, float x, mean, std)`` for a benchmark model."""
    if name == "resnet20-example":
        from qcfs_lava.checkpoint import load_checkpoint
        from qcfs_lava.data import load_dataset, normalize

        ckpt = load_checkpoint(EXAMPLE)
        split = load_dataset("cifar10-subset")
        x = np.ascontiguousarray(split.x_test[:samples])
        torch.manual_seed(0)
        relu = build_model("resnet20", activation="relu", in_channels=3, num_classes=10,
                           input_size=32).eval()
        mean, std = ckpt.normalization()
        return ckpt.build_model().eval(), relu, x, normalize(x, mean, std), mean, std
    if name == "cnn":
        from qcfs_lava.data import load_dataset, normalize

        split = load_dataset("mnist-split")
        x = np.ascontiguousarray(split.x_test[:samples])
        kw = dict(in_channels=1, num_classes=10, input_size=28)
        mean, std = split.mean, split.std
        xf = normalize(x, split)
    else:
        x = cifar_images(samples)
        kw = dict(in_channels=3, num_classes=10, input_size=32)
        mean, std = CIFAR_MEAN, CIFAR_STD
        m = torch.tensor(mean).view(1, 3, 1, 1)
        s = torch.tensor(std).view(1, 3, 1, 1)
        xf = (torch.as_tensor(x).float() / 255 - m) / s
    torch.manual_seed(0)
    qcfs = build_model(name, thresh=1.0, **kw).eval()
    torch.manual_seed(0)
    relu = build_model(name, activation="relu", **kw).eval()
    return qcfs, relu, x, xf, mean, std


def spikingjelly_model(relu: torch.nn.Module, xf: torch.Tensor):
    """SpikingJelly's rate-coding conversion of ``relu``, calibrated on ``xf``."""
    from spikingjelly.activation_based import ann2snn

    loader = [(xf[i:i + 32], torch.zeros(len(xf[i:i + 32]))) for i in range(0, len(xf), 32)]
    recipe = ann2snn.RateCodingRecipe(dataloader=loader, mode="Max")
    return ann2snn.Converter(recipe=recipe, device="cpu").convert(relu).eval()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="cnn,vgg16,resnet18")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    try:
        from spikingjelly.activation_based import functional
    except ImportError:
        functional = None
        print("spikingjelly is not installed (benchmark extra): its column is skipped")
    T, bs = args.steps, args.batch_size
    results = {}
    for name in args.models.split(","):
        qcfs, relu, x, xf, mean, std = workload(name, args.samples)
        net, _ = convert(qcfs, x.shape[1:], mean, std)
        sj = spikingjelly_model(relu, xf) if functional else None

        def floor(model=qcfs, xf=xf):
            t0 = time.perf_counter()
            with torch.no_grad():
                for lo in range(0, len(xf), bs):
                    for _ in range(T):
                        model(xf[lo:lo + bs])
            return time.perf_counter() - t0

        def emulator(net=net, x=x):
            t0 = time.perf_counter()
            emulate(net, x, T, batch_size=bs)
            return time.perf_counter() - t0

        def spikingjelly(sj=sj, xf=xf):
            t0 = time.perf_counter()
            with torch.no_grad():
                for lo in range(0, len(xf), bs):
                    functional.reset_net(sj)
                    img = xf[lo:lo + bs]
                    out = sj(img)
                    for _ in range(1, T):
                        out += sj(img)
            return time.perf_counter() - t0

        runs = {"floor": floor, "emulator": emulator}
        if sj is not None:
            runs["spikingjelly"] = spikingjelly
        first = {k: fn() for k, fn in runs.items()}  # warm-up (the emulator compiles here)
        times = {k: [] for k in runs}
        for _ in range(args.repeats):
            for k, fn in runs.items():
                times[k].append(fn())
        best = {k: min(v) for k, v in times.items()}
        res = {f"{k}_s": v for k, v in best.items()}
        res["emulator_first_call_s"] = first["emulator"]
        res["emulator_over_floor"] = best["emulator"] / best["floor"]
        if "spikingjelly" in best:
            res["emulator_over_spikingjelly"] = best["emulator"] / best["spikingjelly"]
            res["spikingjelly_over_floor"] = best["spikingjelly"] / best["floor"]
        res["all_s"] = times
        results[name] = res
        print(name, json.dumps({k: v for k, v in res.items() if k != "all_s"}), flush=True)
    out = {
        "benchmark": "emulator-peers",
        "command": "python benchmarks/bench_emulator_peers.py " + " ".join(argv or sys.argv[1:]),
        "steps": T, "samples": args.samples, "batch_size": bs, "repeats": args.repeats,
        "weights": "seeded (untrained) except resnet20-example (trained); 32x32 models on "
                   "CIFAR-10 images, cnn on MNIST",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads "
                   f"{torch.get_num_threads()}",
        "results": results,
    }
    write_json(args.out, out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
