"""Lava simulator throughput: our QCFS neuron vs lava's stock LIF, fast vs stock Conv.

A digits-sized CNN (input 1x8x8, conv 16x8x8, conv 32x4x4, dense 10: the topology of the
`demo` network) is built from Lava processes and run on the first samples of the digits test
split, all samples streamed through one Lava run. Measured, in the same process:

- ``qcfs_fast_conv``: our QcfsNeuron layers, lava's Conv run by the fast exact numpy model;
- ``qcfs_stock_conv``: the same, with lava's stock (scipy) fixed-point Conv model;
- ``lif_fast_conv``: the same synapses with lava's stock bit-accurate LIF neurons (what
  lava-dl's NetX would instantiate; no per-sample reset, so the spikes differ, the work
  per step is comparable).

Wall time includes Lava's compile and start-up (as a user sees it); ``steps_per_s`` is
Lava time steps per second. Writes benchmarks/results/lava.json.

    .venv/bin/python benchmarks/bench_lava.py [--samples 64] [--steps 8] [--repeats 2]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

from qcfs_lava.io import write_json
from qcfs_lava.network import INPUT, IntegerNetwork, NeuronLayer, Synapse

OUT = Path(__file__).parent / "results" / "lava.json"


def digits_network(seed: int = 0) -> IntegerNetwork:
    """Random integers on the demo CNN's topology (the speed does not depend on training)."""
    rng = np.random.default_rng(seed)

    def w(shape, half):
        return 2 * rng.integers(-half, half + 1, size=shape)

    layers = (
        NeuronLayer("conv1", (16, 8, 8), (Synapse(INPUT, "conv", w((16, 1, 3, 3), 60),
                                                  padding=1),), -1,
                    rng.integers(-200, 200, 16), 500, 500 << 5),
        NeuronLayer("conv2", (32, 4, 4), (Synapse(0, "conv", w((32, 16, 6, 6), 40), stride=2,
                                                  padding=2),), 6,
                    rng.integers(-200, 200, 32), 900, 900 << 5),
        NeuronLayer("fc3", (10,), (Synapse(1, "dense", w((10, 512), 60)),), 4,
                    np.zeros(10, int), None, 0),
    )
    return IntegerNetwork((1, 8, 8), layers, levels=4, phi=0.5)


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
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)

    from qcfs_lava.data import load_dataset
    from qcfs_lava.lava_sim import LavaRunConfig, simulate

    net = digits_network()
    x = load_dataset("digits").x_test[: args.samples]
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
        "network": "digits CNN topology 1x8x8 -> conv16x8x8 -> conv32x4x4 -> dense10",
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
    write_json(args.out, out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
