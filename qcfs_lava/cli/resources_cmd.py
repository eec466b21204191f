"""``qcfs-lava resources FILE.net --chip loihi1|loihi2``: will the network fit on Loihi?

Per layer: neurons (compartments), fan-in (input axons), fan-out, synapses, synaptic memory,
the cores each per-core limit asks for and which one binds; then a greedy placement, its
hops per spike and spike traffic, and every violated limit with what to do. With
``--samples`` the network is first run (emulator) on test data, so traffic, hops and the
Loihi 1 energy use measured spike counts.
"""

from __future__ import annotations

import argparse

from qcfs_lava.cli.common import (
    add_force_arg,
    check_dataset_input,
    check_outputs,
    command_config,
    positive_int,
)
from qcfs_lava.hardware import CHIPS


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
    p.add_argument("--chip", choices=CHIPS, default="loihi1",
                   help=f"chip whose limits to check: {', '.join(CHIPS)} "
                   "(default: loihi1)")
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
    p.add_argument("--batch-size", type=positive_int, default=256,
                   help="samples per emulator batch (default 256)")
    add_force_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qcfs_lava.analysis.resources import (
        check_run_options,
        format_resources_text,
        format_run_text,
        measure_resources,
    )
    from qcfs_lava.io import write_json
    from qcfs_lava.pipeline import load_source

    check_outputs(args, (args.json, "--json", "json"))  # before any work
    check_run_options(args.samples, args.steps)
    net = load_source(args.file, steps=args.steps).network
    if args.samples is not None:
        check_dataset_input(args, args.dataset or net.metadata.get("dataset"))
    result = measure_resources(
        net, args.chip, samples=args.samples, steps=args.steps, dataset=args.dataset,
        data_root=args.data_root, check_pools=args.check_pools, batch_size=args.batch_size)
    if result.samples is not None:
        print(format_run_text(result))
    print(format_resources_text(result.report))
    if args.json:
        config = command_config(args)
        config["steps"] = result.steps
        write_json(args.json, {"command": "resources", "config": config, **result.to_dict()})
        print(f"\nwrote {args.json}")
    return 0
