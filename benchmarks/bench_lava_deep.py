"""Lava per-step time on full-width VGG-16 / ResNet-18 at 32x32: our synapse models vs stock.

A seeded network (see ``workloads.py``) is built from Lava processes and run on CIFAR-10
images. Each configuration runs in this same process, one after the other:

- ``blas``: lava's Conv and Dense run by our exact BLAS models (the default);
- ``int64``: the exact int64 per-tap Conv model (the previous default) and our BLAS Dense;
- ``stock``: lava's own fixed-point Conv (scipy) and Dense (integer) models (they cannot run
  ResNets: lava's Conv model keeps ``groups`` in an int8 variable, and the identity
  shortcuts of the 128-512 channel stages have that many groups);
- ``null``: synapse models that receive and send but compute nothing (wrong numbers): the
  runtime's own cost per step for the same processes and messages.

Per-step time is steady state: the network is compiled and started by a first
``run(1 step)``, then ``--steps-timed`` Lava steps are timed (start-up is reported apart).
Every configuration's potentials and spike totals are compared with the first one's.

With ``--profile``, each process model's ``run_spk`` is wrapped (Lava forks its processes, so
the wrappers travel with them) to time its receive, compute and send parts; the totals say
where a Lava step goes: synapse arithmetic, neuron arithmetic, or the runtime's messaging
and waiting. Writes benchmarks/results/lava-deep-<model>.json.

    .venv/bin/python benchmarks/bench_lava_deep.py --model vgg16 [--steps 4] \\
        [--configs blas,int64,stock] [--profile] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from workloads import cifar_images, seeded_network  # noqa: E402

from qcfs_lava.io import write_json  # noqa: E402
from qcfs_lava.lava_sim import runner  # noqa: E402  (makes lava importable: first)

RESULTS = Path(__file__).parent / "results"


def _profiled(cls, folder: str, last_step: int):
    """``cls`` with ``run_spk`` timed; totals written to ``folder`` at ``last_step``.

    Step 1 (start-up: plans built while other processes still start) is left out. Wall
    times of the receive and send calls include waiting for the other processes; the CPU
    time of the rest of ``run_spk`` is its arithmetic.
    """
    base_run = cls.run_spk

    def run_spk(self):
        t = getattr(self, "_prof", None)
        if t is None:
            t = self._prof = {"recv": 0.0, "send": 0.0, "total": 0.0, "cpu": 0.0,
                              "port_cpu": 0.0, "steps": 0}
            for name in ("s_in", "a_in"):
                if getattr(self, name, None) is not None:
                    _wrap(getattr(self, name), "recv", t)
            for name in ("s_out", "a_out"):
                if getattr(self, name, None) is not None:
                    _wrap(getattr(self, name), "send", t)
        counting = self.time_step > 1
        before = {k: t[k] for k in ("recv", "send", "port_cpu")}
        t0, c0 = time.perf_counter(), time.process_time()
        base_run(self)
        if counting:
            t["total"] += time.perf_counter() - t0
            t["cpu"] += time.process_time() - c0 - (t["port_cpu"] - before["port_cpu"])
            t["steps"] += 1
        else:
            t.update(before)
        if self.time_step == last_step:
            name = f"{type(self).__name__}-{os.getpid()}.json"
            Path(folder, name).write_text(json.dumps({"model": type(self).__name__, **t}))

    return type(cls.__name__, (cls,), {"run_spk": run_spk})


def _wrap(port, method: str, totals: dict) -> None:
    inner = getattr(port, method)

    def timed(*args):
        t0, c0 = time.perf_counter(), time.process_time()
        out = inner(*args)
        totals[method] += time.perf_counter() - t0
        totals["port_cpu"] += time.process_time() - c0
        return out

    setattr(port, method, timed)


def _null_model(cls):
    def run_spk(self):
        self.a_out.send(self.a_buf if hasattr(self, "a_buf") else self.a_buff)
        self.s_in.recv()

    return type(cls.__name__ + "Null", (cls,), {"run_spk": run_spk})


def run_config(net, x, steps: int, timed: int, config: str, profile: str | None,
               snapshot: int) -> dict:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense

    from qcfs_lava.lava_sim.procs import conv, dense, io, neuron

    models = {"blas": {Conv: conv.PyConvModelFast, Dense: dense.PyDenseModelFast},
              "int64": {Conv: conv.PyConvModelInt, Dense: dense.PyDenseModelFast},
              "stock": {},
              "null": {Conv: _null_model(conv.PyConvModelFast),
                       Dense: _null_model(dense.PyDenseModelFast)}}[config]
    built = runner.build_network(net, x, steps)
    total = 1 + timed
    if profile:
        from lava.proc.conv.models import PyConvModelFixed
        from lava.proc.dense.models import PyDenseModelBitAcc

        models = {Conv: models.get(Conv, PyConvModelFixed),
                  Dense: models.get(Dense, PyDenseModelBitAcc)}
        for proc, cls in ((neuron.QcfsNeuron, neuron.PyQcfsNeuronModelFixed),
                          (neuron.QcfsOutput, neuron.PyQcfsOutputModelFixed),
                          (io.SampleInput, io.PySampleInputModel),
                          (io.SpikeDelay, io.PySpikeDelayModel)):
            models[proc] = cls
        models = {p: _profiled(c, profile, total) for p, c in models.items()}
    cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=models or None)
    head = built.layers[-1]
    t0 = time.perf_counter()
    head.run(condition=RunSteps(num_steps=1), run_cfg=cfg)
    start = time.perf_counter() - t0
    snapshot = min(snapshot, timed)
    wall = 0.0
    try:
        t0 = time.perf_counter()
        head.run(condition=RunSteps(num_steps=snapshot), run_cfg=cfg)
        wall += time.perf_counter() - t0
        # spike totals per layer after 1 + snapshot steps: equal across configurations
        spikes = [int(np.rint(p.spike_total.get()).sum()) for p in built.layers[:-1]]
        if timed > snapshot:
            t0 = time.perf_counter()
            head.run(condition=RunSteps(num_steps=timed - snapshot), run_cfg=cfg)
            wall += time.perf_counter() - t0
    finally:
        head.stop()
    return {"startup_s": start, "timed_steps": timed, "wall_s": wall,
            "s_per_step": wall / timed, "spikes_after_snapshot": spikes,
            "snapshot_steps": 1 + snapshot}


def summarize_profile(folder: str) -> dict:
    """Per kind of process: count, and per Lava step (summed over its processes) the CPU
    time of the arithmetic, the CPU time spent in port calls (copies, locks) and the wall
    time spent in receive and send (including waiting for other processes)."""
    rows = [json.loads(p.read_text()) for p in Path(folder).glob("*.json")]
    groups: dict = {}
    for r in rows:
        kind = ("synapse" if "Conv" in r["model"] or "Dense" in r["model"] else
                "neuron" if "Qcfs" in r["model"] else "input/delay")
        g = groups.setdefault(kind, {"processes": 0, "steps": r["steps"],
                                     "arithmetic_cpu_ms": 0.0, "port_cpu_ms": 0.0,
                                     "recv_wall_ms": 0.0, "send_wall_ms": 0.0})
        g["processes"] += 1
        steps = max(1, r["steps"])
        g["arithmetic_cpu_ms"] += 1e3 * r["cpu"] / steps
        g["port_cpu_ms"] += 1e3 * r["port_cpu"] / steps
        g["recv_wall_ms"] += 1e3 * r["recv"] / steps
        g["send_wall_ms"] += 1e3 * r["send"] / steps
    return groups


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vgg16", choices=["vgg16", "resnet18", "resnet34"])
    p.add_argument("--samples", type=int, default=1)
    p.add_argument("--steps", type=int, default=4, help="time steps T per sample")
    p.add_argument("--steps-timed", type=int, default=None,
                   help="Lava steps timed after the first (default: all of the run)")
    p.add_argument("--stock-steps", type=int, default=3,
                   help="Lava steps timed for the (slow) stock models")
    p.add_argument("--configs", default="blas,int64,stock")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--check", action="store_true",
                   help="also run simulate() with the default models and compare every "
                   "spike and potential with the emulator")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    import torch

    t0 = time.perf_counter()
    _, net = seeded_network(args.model)
    convert_s = time.perf_counter() - t0
    x = cifar_images(args.samples)
    full = args.samples * args.steps + net.depths()[-1]
    timed = args.steps_timed or full - 1
    results = {}
    for config in args.configs.split(","):
        n = min(timed, args.stock_steps) if config == "stock" else timed
        print(f"{config}: {n} timed Lava steps ...", flush=True)
        results[config] = run_config(net, x, args.steps, n, config, None, args.stock_steps)
        print(json.dumps(results[config]), flush=True)
    profile = None
    if args.profile:
        with tempfile.TemporaryDirectory() as folder:
            res = run_config(net, x, args.steps, timed, "blas", folder, timed)
            profile = {"s_per_step": res["s_per_step"],
                       "per_step_by_kind": summarize_profile(folder)}
        print(json.dumps(profile, indent=1))
    check = None
    if args.check:
        from qcfs_lava.emulator import emulate
        from qcfs_lava.lava_sim import simulate
        from qcfs_lava.results import compare_results

        lava = simulate(net, x, args.steps, record="spikes")
        emu = emulate(net, x, args.steps, record="spikes")
        mismatches = compare_results(lava, emu)
        check = {"samples": len(x), "steps": args.steps,
                 "lava_equals_emulator": not mismatches
                 and bool(np.array_equal(lava.saturations, emu.saturations)),
                 "mismatches": [str(m) for m in mismatches[:5]],
                 "spikes_per_layer": lava.spike_counts.sum(axis=0).tolist(),
                 "saturations": int(lava.saturations.sum())}
        print(json.dumps(check), flush=True)
    first = results[next(iter(results))]
    out = {
        "benchmark": "lava-deep",
        "command": "python benchmarks/bench_lava_deep.py " + " ".join(argv or sys.argv[1:]),
        "model": args.model, "input": "3x32x32 CIFAR-10 images, seeded weights",
        "layers": len(net.layers), "samples": args.samples, "steps": args.steps,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads "
                   f"{torch.get_num_threads()}",
        "convert_s": convert_s, "results": results,
        "speedup_vs": {k: v["s_per_step"] / first["s_per_step"] for k, v in results.items()},
        "identical_spike_totals": len({json.dumps(v["spikes_after_snapshot"])
                                       for k, v in results.items() if k != "null"}) == 1,
        "profile": profile,
        "check": check,
    }
    path = Path(args.out) if args.out else RESULTS / f"lava-deep-{args.model}.json"
    write_json(path, out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
