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
# T for a file that records none (written before T was recorded, or by other tools)
FALLBACK_STEPS = 8


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="run a NetX file in the Lava CPU simulator (optionally check it against the "
        "emulator)",
        description="Load a NetX file written by `qcfs-lava export`, build it from Lava "
        "processes (lava's Dense/Conv synapses, the QCFS neuron) and stream the first "
        f"--samples test samples (default {DEFAULT_SAMPLES}) through one Lava run, at the "
        "T recorded in the file unless --steps is given, recording each neuron's spike count "
        "inside the neuron processes. Prints accuracy and spikes per layer. --check also runs "
        "the batched emulator on the same samples and fails unless every spike and output "
        "potential is identical: both compute a keyed 64-bit digest of every sample's spike "
        "train per layer, and a differing sample range is re-run with full spike trains to "
        "name the first differing layer, sample, step and neuron.",
    )
    p.add_argument("file", metavar="FILE.net")
    p.add_argument("--steps", type=positive_int, default=None, metavar="T",
                   help="time steps T per sample (default: the T recorded in the file, "
                   f"else {FALLBACK_STEPS})")
    add_data_args(p, samples=DEFAULT_SAMPLES)
    p.add_argument("--check", action="store_true",
                   help="compare every spike (through per-sample, per-layer 64-bit digests), "
                   "each neuron's spike count and the potentials with the emulator; name the "
                   "first difference; exit 1 on mismatch")
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


def _resolve_steps(steps: int | None, recorded) -> int:
    """``--steps`` if given (saying when it overrides the file's T), else the file's T."""
    if steps is None:
        if recorded is None:
            print(f"\nthe file records no T: running at T = {FALLBACK_STEPS} (set --steps)")
            return FALLBACK_STEPS
        return int(recorded)
    if recorded is not None and int(recorded) != steps:
        print(f"\n--steps {steps} overrides the T = {int(recorded)} recorded in the file")
    return steps


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
    x, y, split = load_test_data(args, net.metadata.get("dataset"), net.input_shape,
                                 args.file, num_classes=net.num_classes)
    print(format_table(net))
    args.steps = _resolve_steps(args.steps, net.metadata.get("steps"))
    print(f"\nsimulating {len(x)} samples x {args.steps} steps in Lava "
          f"({len(x) * args.steps + net.depths()[-1]} Lava steps) ...")
    config = LavaRunConfig(fast_conv=not args.stock_conv, fast_dense=not args.stock_dense)
    sharded = args.workers > 1 or bool(args.address)
    checked = None
    try:
        if args.check:
            from qcfs_lava.lava_sim.check import check_against_emulator

            checked = check_against_emulator(net, x, args.steps, labels=y,
                                             workers=args.workers, address=args.address,
                                             progress=True, config=config)
            result = checked.lava
        elif sharded:
            from qcfs_lava.lava_sim.shards import simulate_sharded

            result = simulate_sharded(net, x, args.steps, workers=args.workers,
                                      address=args.address, labels=y, record="counts",
                                      progress=True, config=config)
        else:
            result = simulate(net, x, args.steps, labels=y, record="counts", progress=True,
                              config=config)
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
    if sharded:
        print(f"ran {result.extra['shards']} shards on Ray: samples "
              + ", ".join(f"{a}..{b - 1}" for a, b in result.extra["shard_ranges"]))
    wall = result.extra["wall_s"]
    print(f"lava accuracy: {100 * result.accuracy:.2f}% on {result.num_samples} samples "
          f"({wall:.1f} s, {result.num_samples / max(wall, 1e-9):.2f} samples/s)")
    print("spikes per sample: " + ", ".join(
        f"{name} {result.spike_counts[:, i].mean():.1f}"
        for i, name in enumerate(result.layer_names[:-1])))
    sat = int(result.saturations.sum())
    if sat:
        print(f"warning: {sat} membrane updates saturated at the 24-bit limits")
    status = 0
    if checked is not None:
        if not checked.ok:
            print(f"MISMATCH: Lava and the emulator differ; first: {checked.first}")
            for m in checked.mismatches:
                print(f"  per-sample comparison: {m}")
            if checked.rerun is not None:
                a, b = checked.rerun
                print(f"  re-run of samples {a}..{b - 1} with full spike trains:")
                for m in checked.located:
                    print(f"    {m}")
            status = 1
        else:
            print(f"check: Lava equals the emulator (the 64-bit digests of every spike "
                  f"train of {len(x)} samples x {args.steps} steps, each neuron's spike "
                  "count, and the output potentials)")
    if args.json:
        out = {
            "command": "simulate", "file": str(args.file), "dataset": split.name,
            "config": command_config(args),
            "result": result.to_dict(),
            "wall_s": wall,
        }
        if checked is not None:
            out["check"] = {
                "ok": checked.ok,
                "digest_key": result.extra["digest_key"],
                "mismatches": [str(m) for m in checked.mismatches],
                "rerun_samples": list(checked.rerun) if checked.rerun else None,
                "located": [str(m) for m in checked.located],
            }
            out["mismatches"] = [str(m) for m in checked.mismatches + checked.located]
        write_json(args.json, out)
        print(f"wrote {args.json}")
    return status
