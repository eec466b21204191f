"""Lava simulator throughput: our QCFS neuron vs lava's stock LIF, fast vs stock Conv.

An exported network (default: the committed digits cnn, ``netx_exports/digits-cnn.net``; pass
``--netx`` for another, e.g. the MNIST-split cnn) is built from Lava processes and run on the
first samples of its dataset's test split, all samples streamed through one Lava run.
Measured, in the same process:

- ``qcfs_fast_conv``: our QcfsNeuron layers, lava's Conv run by the fast exact numpy model;
- ``qcfs_stock_conv``: the same, with lava's stock (scipy) fixed-point Conv model;
- ``lif_fast_conv``: the same synapses with lava's stock bit-accurate LIF neurons (what
  lava-dl's NetX would instantiate; no per-sample reset, so the spikes differ, the work
  per step is comparable): the runtime's own floor.

Wall time includes Lava's compile and start-up (as a user sees it); ``steps_per_s`` is
Lava time steps per second. Writes benchmarks/results/lava-<network>.json.

    .venv/bin/python benchmarks/bench_lava.py [--netx FILE.net] [--samples 64] [--steps 8]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

from qcfs_lava.io import write_json
from qcfs_lava.network import IntegerNetwork

OUT = Path(__file__).parent / "results" / "lava.json"
EXAMPLE = Path(__file__).resolve().parents[1] / "netx_exports" / "digits-cnn.net"


def run_lif(net: IntegerNetwork, x: np.ndarray, steps: int) -> float:
    """Same synapses and input, lava's bit-accurate LIF neurons; returns wall seconds."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.conv.process import Conv
    from lava.proc.lif.process import LIF

    from qcfs_lava.lava_sim import runner
    from qcfs_lava.lava_sim.procs.conv import PyConvModelFast
    from qcfs_lava.lava_sim.procs.io import SampleInput

    t0 = time.perf_counter()
    source = SampleInput(data=runner.to_lava(x, net.input_shape), steps=steps)
    built = runner.LavaNetwork(net=net, steps=steps, num_samples=len(x), record=None,
                               source=source)
    depths = net.depths()
    for layer, depth in zip(net.layers, depths, strict=True):
        proc = LIF(shape=runner.lava_shape(layer.shape), du=4095, dv=0, bias_exp=6,
                   bias_mant=runner.to_lava(np.array(layer.bias)[None] >> 6, layer.shape)[0],
                   vth=layer.vth_mant or (1 << 17) - 1)
        for syn in layer.synapses:
            runner._connect(built, syn, layer, proc, depth, depths)
        built.layers.append(proc)
    head = built.layers[-1]
    cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map={Conv: PyConvModelFast})
    try:
        head.run(condition=RunSteps(num_steps=built.num_steps), run_cfg=cfg)
    finally:
        head.stop()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--netx", default=str(EXAMPLE), help="exported network to run")
    p.add_argument("--dataset", default=None, help="default: the one recorded in the file")
    p.add_argument("--out", default=None, help="default: results/lava-<file stem>.json")
    args = p.parse_args(argv)

    from qcfs_lava.data import load_dataset
    from qcfs_lava.lava_sim import LavaRunConfig, simulate
    from qcfs_lava.netx import read_netx

    net = read_netx(args.netx)
    dataset = args.dataset or net.metadata.get("dataset", "digits")
    x = load_dataset(dataset).x_test[: args.samples]
    out_path = args.out or OUT.with_name(f"lava-{Path(args.netx).stem}.json")
    lava_steps = len(x) * args.steps + net.depths()[-1]
    runs = {
        "qcfs_fast_conv": lambda: simulate(net, x, args.steps).extra["wall_s"],
        "qcfs_stock_conv": lambda: simulate(
            net, x, args.steps, config=LavaRunConfig(fast_conv=False)).extra["wall_s"],
        "lif_fast_conv": lambda: run_lif(net, x, args.steps),
    }
    results = {}
    for name, fn in runs.items():
        times = [fn() for _ in range(args.repeats)]
        best = min(times)
        results[name] = {"wall_s": times, "best_s": best,
                         "samples_per_s": len(x) / best, "steps_per_s": lava_steps / best}
        print(f"{name:16s} best {best:6.2f} s  {len(x) / best:7.2f} samples/s  "
              f"{lava_steps / best:7.1f} Lava steps/s")
    out = {
        "benchmark": "lava",
        "network": str(args.netx),
        "dataset": dataset,
        "layers": [f"{layer.name} {'x'.join(map(str, layer.shape))}" for layer in net.layers],
        "samples": len(x),
        "steps": args.steps,
        "lava_steps_per_run": lava_steps,
        "repeats": args.repeats,
        "results": results,
        "speedup_fast_vs_stock_conv": results["qcfs_stock_conv"]["best_s"]
        / results["qcfs_fast_conv"]["best_s"],
        "qcfs_vs_lif_time_ratio": results["qcfs_fast_conv"]["best_s"]
        / results["lif_fast_conv"]["best_s"],
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "processor": platform.processor()},
        "note": "wall time includes Lava compile and process start-up; CPU only",
    }
    write_json(out_path, out)
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
