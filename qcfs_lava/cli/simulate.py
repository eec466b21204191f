"""``qcfs-lava simulate FILE.net``: run an exported network in Lava's CPU simulator."""

from __future__ import annotations

import argparse

from qcfs_lava.cli.common import (
    add_data_args,
    add_force_arg,
    check_outputs,
    command_config,
    load_test_data,
    positive_int,
)

DEFAULT_SAMPLES = 16


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="run a NetX file in the Lava CPU simulator (optionally check it against the "
        "emulator)",
        description="Load a NetX file written by `qcfs-lava export`, build it from Lava "
        "processes (lava's Dense/Conv synapses, the QCFS neuron) and stream the first "
        f"--samples test samples (default {DEFAULT_SAMPLES}) through one Lava run. Prints "
        "accuracy and spikes per layer. --check also runs the batched emulator on the same "
        "samples and fails unless every spike and output potential is identical.",
    )
    p.add_argument("file", metavar="FILE.net")
    p.add_argument("--steps", type=positive_int, default=8, help="time steps T per sample")
    add_data_args(p)
    p.set_defaults(samples=DEFAULT_SAMPLES)
    p.add_argument("--check", action="store_true",
                   help="compare spikes and potentials with the emulator; exit 1 on mismatch")
    p.add_argument("--stock-conv", action="store_true",
                   help="use lava's stock (scipy) Conv model instead of the fast exact one")
    p.add_argument("--stock-dense", action="store_true",
                   help="use lava's stock (integer) Dense model instead of the fast exact one")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="split the samples into N contiguous shards, each its own Lava run "
                   "on Ray (needs the extra: pip install \"qcfs-lava[ray]\"); the merged "
                   "result equals a single run")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="Ray cluster to run the shards on: host:port of its head (GCS), "
                   "auto, or ray://head:10001 (Ray Client: pip install \"ray[client]\"); "
                   "default: a local Ray instance with N CPUs")
    p.add_argument("--json", default=None, metavar="FILE", help="write the results as JSON")
    add_force_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qcfs_lava.errors import NetworkValidationError, ShardFailedError
    from qcfs_lava.io import write_json
    from qcfs_lava.lava_sim import LavaRunConfig, simulate
    from qcfs_lava.network import format_table
    from qcfs_lava.netx import read_netx

    if args.workers < 1:
        raise NetworkValidationError(f"--workers must be >= 1, got {args.workers}")
    # before any work, so finished results are never lost to an unwritable path
    check_outputs(args, (args.json, "--json", "json"))
    net = read_netx(args.file)
    x, y, split = load_test_data(args, net.metadata.get("dataset"), net.num_classes)
    print(format_table(net))
    record = "spikes" if args.check else "counts"
    print(f"\nsimulating {len(x)} samples x {args.steps} steps in Lava "
          f"({len(x) * args.steps + net.depths()[-1]} Lava steps) ...")
    config = LavaRunConfig(fast_conv=not args.stock_conv, fast_dense=not args.stock_dense)
    if args.workers > 1 or args.address:
        from qcfs_lava.lava_sim.shards import simulate_sharded

        try:
            result = simulate_sharded(net, x, args.steps, workers=args.workers,
                                      address=args.address, labels=y, record=record,
                                      progress=True, config=config)
        except ShardFailedError as exc:
            print(f"error: {exc}")
            if args.json:
                write_json(args.json, {
                    "command": "simulate", "file": str(args.file), "dataset": split.name,
                    "config": command_config(args),
                    "failed_shards": {f"{a}..{b - 1}": msg
                                      for (a, b), msg in sorted(exc.failures.items())},
                    "completed_shards": {f"{a}..{b - 1}": r.to_dict()
                                         for (a, b), r in sorted(exc.completed.items())},
                })
                print(f"wrote the {len(exc.completed)} finished shards to {args.json}")
            return 1
        print(f"ran {result.extra['shards']} shards on Ray: samples "
              + ", ".join(f"{a}..{b - 1}" for a, b in result.extra["shard_ranges"]))
    else:
        result = simulate(net, x, args.steps, labels=y, record=record, progress=True,
                          config=config)
    wall = result.extra["wall_s"]
    print(f"lava accuracy: {result.accuracy:.4f} on {result.num_samples} samples "
          f"({wall:.1f} s, {result.num_samples / max(wall, 1e-9):.2f} samples/s)")
    print("spikes per sample: " + ", ".join(
        f"{name} {result.spike_counts[:, i].mean():.1f}"
        for i, name in enumerate(result.layer_names[:-1])))
    sat = int(result.saturations.sum())
    if sat:
        print(f"warning: {sat} membrane updates saturated at the 24-bit limits")
    status = 0
    mismatches = None
    if args.check:
        from qcfs_lava.emulator import emulate
        from qcfs_lava.results import compare_results

        emu = emulate(net, x, args.steps, labels=y, record="spikes")
        mismatches = compare_results(result, emu)
        if mismatches:
            print(f"MISMATCH: Lava and the emulator differ; first: {mismatches[0]}")
            for m in mismatches[1:]:
                print(f"  also: {m}")
            status = 1
        else:
            print(f"check: Lava equals the emulator (every spike of {len(x)} samples x "
                  f"{args.steps} steps, and the output potentials)")
    if args.json:
        out = {
            "command": "simulate", "file": str(args.file), "dataset": split.name,
            "config": command_config(args),
            "result": result.to_dict(),
            "wall_s": wall,
        }
        if mismatches is not None:
            out["mismatches"] = [str(m) for m in mismatches]
        write_json(args.json, out)
        print(f"wrote {args.json}")
    return status
