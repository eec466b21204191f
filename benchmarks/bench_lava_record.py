"""What recording costs in a Lava run: plain, counts and check side by side, new and previous way.

A seeded full-width network at 32x32 (see ``workloads.py``) runs through the public API,
each configuration at ``--samples-low`` and ``--samples-high`` samples of ``T`` steps in a
fresh Lava run; the per-step time is the difference of the two walls over the difference of
Lava steps, so start-up (building and starting the processes) cancels while everything that
grows with the samples (the run, per-sample record reads) stays. The same slope is taken of
CPU time (this process and its reaped children, i.e. Lava's processes: user + system), which
other jobs on a shared machine disturb less than wall time. ``read_s_per_sample`` is the
time this process spends reading the records back after the ``--samples-high`` run.
Configurations, in one process, one after the other, ``--repeats`` rounds (the smallest
slope is kept):

- ``plain``: ``simulate(record=None)``: spike totals only;
- ``counts``: ``simulate(record="counts")``: per-neuron counts kept in the neuron models and
  written once per run (what ``simulate`` does);
- ``check``: ``counts`` plus the keyed spike-train digests (the Lava part of
  ``simulate --check``);
- ``prev_counts``: per-neuron counts through a Var read with ``Var.get`` (the previous way);
- ``prev_check``: full spike trains through a Var (the previous ``--check``'s Lava part).

The emulator's part of each check (counts + digests now, full trains before) is timed the
same way and reported apart; ``*_total`` adds it. Counts of ``counts`` and ``prev_counts``
and the digests of ``check`` and the emulator are compared. Writes
benchmarks/results/lava-record-<model>.json.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_lava_record.py --model vgg16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from workloads import cifar_images, seeded_network  # noqa: E402

from qcfs_lava.io import write_json  # noqa: E402
from qcfs_lava.lava_sim import LavaRunConfig, simulate  # noqa: E402

RESULTS = Path(__file__).parent / "results"
KEY = 20261204
CONFIGS = ("plain", "counts", "check", "prev_counts", "prev_check")


def _lava(net, x, steps, config: str):
    if config == "plain":
        return simulate(net, x, steps)
    if config == "counts":
        return simulate(net, x, steps, record="counts")
    if config == "check":
        return simulate(net, x, steps, record="counts", digest_key=KEY)
    var = LavaRunConfig(record_transport="var")
    if config == "prev_counts":
        return simulate(net, x, steps, record="counts", config=var)
    if config == "prev_check":
        return simulate(net, x, steps, record="spikes", config=var)
    raise ValueError(config)


def _emulator(net, x, steps, config: str):
    from qcfs_lava.emulator import emulate

    if config == "check":
        return emulate(net, x, steps, record="counts", digest_key=KEY)
    return emulate(net, x, steps, record="spikes")


def _cpu() -> float:
    self_, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                    resource.RUSAGE_CHILDREN))
    return self_.ru_utime + self_.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(fn):
    """``(wall s, cpu s, result)`` of ``fn()``."""
    t0, c0 = time.perf_counter(), _cpu()
    out = fn()
    return time.perf_counter() - t0, _cpu() - c0, out


def in_model_cost(net, steps: int, density: float = 0.1, repeats: int = 5) -> dict:
    """CPU seconds per Lava step that the neuron models' recording adds, all hidden layers
    summed: the record store of :mod:`qcfs_lava.lava_sim.procs.neuron` fed random spikes
    (``density``), counts alone and counts with digests (best of ``repeats``)."""
    from qcfs_lava.lava_sim.procs.neuron import _RecordStore
    from qcfs_lava.lava_sim.runner import lava_shape

    rng = np.random.default_rng(0)
    out = {}
    for name, key in (("counts", None), ("counts_and_digests", KEY)):
        best = None
        for _ in range(repeats):
            total = 0.0
            for index, layer in enumerate(net.layers[:-1]):
                p = {"num_samples": 1, "steps": steps, "record": "counts", "digest_key": key,
                     "layer_index": index, "shape": lava_shape(layer.shape)}
                store = _RecordStore(p, layer.num_neurons)
                spikes = rng.random((steps, layer.num_neurons)) < density
                t0 = time.process_time()
                for t in range(steps):
                    store.add(spikes[t], 0, t)
                total += time.process_time() - t0
            best = total if best is None else min(best, total)
        out[name] = best / steps
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vgg16", choices=["vgg16", "resnet18"])
    p.add_argument("--steps", type=int, default=8, help="time steps T per sample")
    p.add_argument("--samples-low", type=int, default=1)
    p.add_argument("--samples-high", type=int, default=4)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help=f"comma-separated subset of {','.join(CONFIGS)}, or none")
    p.add_argument("--emulator-samples", type=int, default=0,
                   help="also time the emulator alone on this many samples (one batch), "
                   "with and without digests: its cost per sample at scale")
    p.add_argument("--in-model", action="store_true",
                   help="also time the neuron models' recording code alone (CPU s per step)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    import torch

    _, net = seeded_network(args.model)
    lo, hi, steps = args.samples_low, args.samples_high, args.steps
    x = cifar_images(hi)
    load_start = os.getloadavg()
    configs = [c for c in args.configs.split(",") if c and c != "none"]
    slope: dict[str, float] = {}
    cpu_slope: dict[str, float] = {}
    emu_slope: dict[str, float] = {}
    walls: dict[str, list] = {c: [] for c in configs}
    read_s: dict[str, float] = {}
    kept: dict[str, object] = {}
    for r in range(args.repeats):
        for config in configs:
            t_lo, c_lo, _ = _timed(lambda c=config: _lava(net, x[:lo], steps, c))
            t_hi, c_hi, res = _timed(lambda c=config: _lava(net, x[:hi], steps, c))
            s = (t_hi - t_lo) / ((hi - lo) * steps)
            cs = (c_hi - c_lo) / ((hi - lo) * steps)
            walls[config].append([t_lo, t_hi, c_lo, c_hi])
            slope[config] = min(slope.get(config, s), s)
            cpu_slope[config] = min(cpu_slope.get(config, cs), cs)
            kept[config] = res
            read_s[config] = min(read_s.get(config, res.extra["read_s"]), res.extra["read_s"])
            if config in ("check", "prev_check"):
                e_lo, _, _ = _timed(lambda c=config: _emulator(net, x[:lo], steps, c))
                e_hi, _, emu = _timed(lambda c=config: _emulator(net, x[:hi], steps, c))
                es = max(0.0, (e_hi - e_lo) / ((hi - lo) * steps))
                emu_slope[config] = min(emu_slope.get(config, es), es)
                kept[f"{config}_emulator"] = emu
            print(f"round {r}: {config}: {s:.4f} s/step, {cs:.4f} cpu s/step (walls "
                  f"{t_lo:.1f} s, {t_hi:.1f} s; cpu {c_lo:.1f} s, {c_hi:.1f} s)", flush=True)
    emulator_batch = None
    if args.emulator_samples:
        from qcfs_lava.emulator import emulate

        xe = cifar_images(args.emulator_samples)
        m = len(xe)
        emulator_batch = {"samples": m}
        for name, kw in (("counts", {}), ("counts_and_digests", {"digest_key": KEY}),
                         ("spikes", None)):
            record = "spikes" if kw is None else "counts"
            wall, cpu, _ = _timed(lambda r=record, k=kw or {}: emulate(net, xe, steps, record=r,
                                                                      batch_size=m, **k))
            emulator_batch[name] = {"s_per_step": wall / (m * steps),
                                    "cpu_s_per_step": cpu / (m * steps)}
            print(f"emulator {name}: {wall / (m * steps):.4f} s per sample-step", flush=True)
    in_model = in_model_cost(net, steps) if args.in_model else None
    if in_model:
        print(f"in-model recording, CPU s per step: {in_model}", flush=True)
    same = {}
    if "counts" in kept and "prev_counts" in kept:
        same["counts_equal_prev_counts"] = all(
            np.array_equal(a, b) for a, b in zip(kept["counts"].neuron_counts,
                                                 kept["prev_counts"].neuron_counts,
                                                 strict=True))
    if "check" in kept:
        same["digests_equal_emulator"] = bool(np.array_equal(
            kept["check"].digests, kept["check_emulator"].digests))
        same["check_counts_equal_emulator"] = all(
            np.array_equal(a, b) for a, b in zip(kept["check"].neuron_counts,
                                                 kept["check_emulator"].neuron_counts,
                                                 strict=True))
    base = slope.get("plain")
    totals = {f"{c}_total": slope[c] + emu_slope[c] for c in emu_slope}
    out = {
        "benchmark": "lava-record",
        "command": "python benchmarks/bench_lava_record.py " + " ".join(argv or sys.argv[1:]),
        "model": args.model, "input": "3x32x32 CIFAR-10 images, seeded weights",
        "layers": len(net.layers),
        "hidden_neurons": int(sum(layer.num_neurons for layer in net.layers[:-1])),
        "steps": steps, "samples": [lo, hi], "repeats": args.repeats,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads "
                   f"{torch.get_num_threads()}",
        "load_average_at_start": load_start,
        "load_average": os.getloadavg(),
        "s_per_step": slope,
        "cpu_s_per_step": cpu_slope,
        "cpu_ratio_to_plain": ({k: v / cpu_slope["plain"] for k, v in cpu_slope.items()}
                               if "plain" in cpu_slope else None),
        "emulator_s_per_step": emu_slope,
        "with_emulator_s_per_step": totals,
        "ratio_to_plain": {k: v / base for k, v in {**slope, **totals}.items()} if base else None,
        "check_over_counts": (slope["check"] / slope["counts"]
                              if "check" in slope and "counts" in slope else None),
        "cpu_check_over_counts": (cpu_slope["check"] / cpu_slope["counts"]
                                  if "check" in cpu_slope and "counts" in cpu_slope else None),
        "read_s_per_sample": {k: v / hi for k, v in read_s.items()},
        "emulator_batch": emulator_batch,
        "in_model_record_cpu_s_per_step": in_model,
        "walls_and_cpu_s": walls,
        "identical": same,
    }
    path = Path(args.out) if args.out else RESULTS / f"lava-record-{args.model}.json"
    write_json(path, out)
    print(json.dumps({k: out[k] for k in ("s_per_step", "cpu_s_per_step",
                                          "with_emulator_s_per_step", "ratio_to_plain",
                                          "cpu_ratio_to_plain", "check_over_counts",
                                          "cpu_check_over_counts",
                                          "identical")}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
