"""Loihi resources of a full-width model-zoo network at 32x32, from an exported NetX file.

Resources depend on the architecture and the exported weights' structure, not on training:
the model is built with seeded, untrained weights (QCFS, L = 4), converted, exported to a
temporary .net file, and that file is mapped exactly as ``qcfs-lava resources`` maps it.
Writes benchmarks/results/resources-MODEL-CHIP.json (with the command) and prints the
Markdown tables.

    .venv/bin/python benchmarks/zoo_resources.py --model vgg16 --chip loihi1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from qcfs_lava.analysis.resources import format_resources_markdown, map_resources
from qcfs_lava.convert import convert
from qcfs_lava.io import write_json
from qcfs_lava.model.zoo import build_model
from qcfs_lava.netx import read_netx, write_netx

OUT = Path(__file__).parent / "results"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vgg16", help="model-zoo name (vgg16, resnet20, ...)")
    p.add_argument("--chip", default="loihi1", choices=("loihi1", "loihi2"))
    p.add_argument("--input-size", type=int, default=32)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    torch.manual_seed(args.seed)
    model = build_model(args.model, in_channels=3, num_classes=args.classes,
                        input_size=args.input_size, activation="qcfs", levels=4).eval()
    shape = (3, args.input_size, args.input_size)
    t0 = time.perf_counter()
    net, _ = convert(model, shape, metadata={"model": args.model, "seed": args.seed,
                                             "weights": "seeded, untrained"})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{args.model}.net"
        write_netx(net, path)
        size = path.stat().st_size
        net = read_netx(path)
    t1 = time.perf_counter()
    rep = map_resources(net, args.chip)
    t2 = time.perf_counter()
    text = format_resources_markdown(rep, heading="###")
    print(text)
    write_json(OUT / f"resources-{args.model}-{args.chip}.json", {
        "command": "python " + " ".join(sys.argv),
        "model": args.model, "input_shape": shape, "weights": "seeded, untrained",
        "seed": args.seed, "netx_bytes": size,
        "convert_export_read_s": t1 - t0, "map_s": t2 - t1,
        **rep.to_dict(),
    })
    print(f"\n(convert + export + read {t1 - t0:.1f} s, map {t2 - t1:.1f} s; "
          f"{size / 1e6:.1f} MB .net)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
