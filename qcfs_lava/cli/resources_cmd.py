"""``qcfs-lava resources FILE.net --chip loihi1|loihi2``: will the network fit on Loihi?

Per layer: neurons (compartments), fan-in (input axons), fan-out, synapses, synaptic memory,
the cores each per-core limit asks for and which one binds; then a greedy placement, its
hops per spike and spike traffic, and every violated limit with what to do. With
``--samples`` the network is first run (emulator) on test data, so traffic, hops and the
Loihi 1 energy use measured spike counts.
"""

from __future__ import annotations

import argparse

from qcfs_lava.cli.common import add_force_arg, check_outputs, command_config, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``resources`` command."""
    p = sub.add_parser(
        "resources",
        help="per-layer Loihi resources, limits, placement, hops and spike traffic",
        description="Map an integer network (NetX file or checkpoint) onto Loihi 1 or Loihi 2: "
        "per-layer compartments, input/output axons, synapses and synaptic memory against "
        "the per-core limits (each with its source), a greedy placement with hops per spike, "
        "and every violation with what to do. With --samples, run the emulator first so "
        "that spike traffic, hops and the Loihi 1 energy use measured spike counts.",
    )
    p.add_argument("file", metavar="FILE.net", help="NetX file (or qcfs-lava checkpoint)")
    p.add_argument("--chip", choices=("loihi1", "loihi2"), default="loihi1",
                   help="chip whose limits to check (default: loihi1)")
    p.add_argument("--json", default=None, metavar="FILE", help="write every number as JSON")
    p.add_argument("--samples", type=int, default=None,
                   help="run the emulator on the first N test samples for measured traffic "
                   "and energy (default: no run, structure only)")
    p.add_argument("--steps", type=int, default=None, metavar="T",
                   help="time steps of that run (default: the T recorded in the file, else 8)")
    p.add_argument("--dataset", default=None,
                   help="dataset of that run (default: the one recorded in the file)")
    p.add_argument("--data-root", default=None, help="folder holding the dataset files")
    p.add_argument("--check-pools", action="store_true",
                   help="with --samples: record spike trains and compare, at every step, the "
                   "input currents of each pool-folded layer with those of a separate sum-pool "
                   "layer followed by the smaller kernel (identical currents: same accuracy)")
    p.add_argument("--batch-size", type=positive_int, default=256)
    add_force_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qcfs_lava.analysis.resources import (
        compare_unfolded_pools,
        format_resources_text,
        map_resources,
    )
    from qcfs_lava.errors import AnalysisError
    from qcfs_lava.io import write_json
    from qcfs_lava.pipeline import load_network

    check_outputs(args, (args.json, "--json", "json"))  # before any work
    if args.samples is not None and args.samples < 1:
        raise AnalysisError(f"--samples must be >= 1, got {args.samples}")
    if args.steps is not None and args.steps < 1:
        raise AnalysisError(f"--steps must be >= 1, got {args.steps}")
    net, _, _ = load_network(args.file, steps=args.steps)
    ops = counts = None
    steps = None
    pools: dict = {}
    if args.samples is not None:
        from qcfs_lava.analysis.counts import count_ops
        from qcfs_lava.cli.common import load_test_data
        from qcfs_lava.emulator import emulate

        steps = args.steps or int(net.metadata.get("steps", 8))
        x, y, _ = load_test_data(args, net.metadata.get("dataset"), net.num_classes)
        record = "spikes" if args.check_pools else "counts"
        res = emulate(net, x, steps, labels=y, record=record, batch_size=args.batch_size,
                      progress=True)
        ops = count_ops(net, res)
        counts = res.neuron_counts if res.neuron_counts is not None else tuple(
            s.sum(axis=1, dtype="int64") for s in res.spikes)
        print(f"run: {res.num_samples} samples at T = {steps}, accuracy "
              f"{100 * (res.accuracy or 0):.2f}%\n")
        if args.check_pools:
            pools = compare_unfolded_pools(net, res.spikes)
            for name, v in pools.items():
                verdict = "identical" if v["differing"] == 0 else f"{v['differing']} differ"
                print(f"pool check {name}: {v['pool'][0]}x{v['pool'][1]} pool from "
                      f"{v['source']} kept separate: input currents {verdict} on all "
                      f"{v['entries']} (sample, step, neuron) entries")
            if pools:
                same = all(v["differing"] == 0 for v in pools.values())
                print(f"accuracy with separate sum-pool layers: "
                      f"{f'{100 * (res.accuracy or 0):.2f}% (the same)' if same else 'differs'}"
                      "\n")
    elif args.check_pools:
        raise AnalysisError("--check-pools needs a run: pass --samples N")
    rep = map_resources(net, args.chip, ops=ops, neuron_counts=counts)
    print(format_resources_text(rep))
    if args.json:
        config = command_config(args)
        config["steps"] = steps
        extra = {"pool_check": pools} if args.check_pools else {}
        write_json(args.json, {"command": "resources", "config": config, **rep.to_dict(),
                               **extra})
        print(f"\nwrote {args.json}")
    return 0
