"""Emulator speed against its cost floor: T float forward passes of the same model.

On the MNIST split's test part (2,000 images, 28x28) at T=8, the integer emulator runs the
converted network; the floor is T forward passes of the float model (BatchNorm folded away
is not assumed: the float model is run as trained) on the same batches, measured in the same
process, alternating, best of several repeats. Writes benchmarks/results/emulator.json.

    .venv/bin/python benchmarks/bench_emulator.py [--model cnn] [--steps 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from qcfs_lava.convert import convert
from qcfs_lava.data import load_dataset, normalize
from qcfs_lava.emulator import emulate
from qcfs_lava.io import write_json
from qcfs_lava.model.zoo import build_model

OUT = Path(__file__).parent / "results" / "emulator.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="cnn")
    p.add_argument("--dataset", default="mnist-split")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--checkpoint", default=None, help="trained checkpoint (default: random init)")
    args = p.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    split = load_dataset(args.dataset)
    x, y = split.x_test, split.y_test
    if args.checkpoint:
        from qcfs_lava.checkpoint import load_checkpoint

        model = load_checkpoint(args.checkpoint).build_model()
    else:
        torch.manual_seed(0)
        model = build_model(args.model, in_channels=split.in_channels,
                            num_classes=split.num_classes, input_size=split.input_size,
                            thresh=1.0).eval()
    net, _ = convert(model, x.shape[1:], split.mean, split.std)
    xf = normalize(x, split)

    def float_floor() -> float:
        t0 = time.perf_counter()
        with torch.no_grad():
            for lo in range(0, len(y), args.batch_size):
                xb = xf[lo:lo + args.batch_size]
                for _ in range(args.steps):
                    model(xb)
        return time.perf_counter() - t0

    def emulator() -> float:
        t0 = time.perf_counter()
        emulate(net, x, args.steps, batch_size=args.batch_size)
        return time.perf_counter() - t0

    float_floor(), emulator()  # warm-up
    floor_s, emu_s = [], []
    for _ in range(args.repeats):
        floor_s.append(float_floor())
        emu_s.append(emulator())
    counts_s = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        emulate(net, x, args.steps, batch_size=args.batch_size, record="counts")
        counts_s.append(time.perf_counter() - t0)
    result = {
        "model": args.model if not args.checkpoint else args.checkpoint,
        "dataset": args.dataset, "samples": int(len(y)), "steps": args.steps,
        "batch_size": args.batch_size, "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, CPU",
        "float_floor_s": min(floor_s), "emulator_s": min(emu_s),
        "emulator_counts_s": min(counts_s),
        "ratio": min(emu_s) / min(floor_s),
        "ratio_counts": min(counts_s) / min(floor_s),
        "emulator_samples_per_s": len(y) / min(emu_s),
        "all_float_floor_s": floor_s, "all_emulator_s": emu_s,
    }
    write_json(OUT, result)
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("all_")}, indent=2))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
