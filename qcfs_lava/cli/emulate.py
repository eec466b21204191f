"""``qcfs-lava emulate SOURCE``: bit-exact integer SNN accuracy (and the error budget)."""

from __future__ import annotations

import argparse

from qcfs_lava.cli.common import (
    add_data_args,
    add_force_arg,
    add_graded_arg,
    check_outputs,
    command_config,
    graded_payload,
    load_test_data,
    parse_steps,
    positive_int,
)

# T for a checkpoint, or a NetX file that records none
DEFAULT_STEPS = 8


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "emulate",
        help="run the integer SNN exactly (batched emulator) on a dataset",
        description="Emulate the integer spiking network of a checkpoint (converted in memory) "
        "or of an exported NetX file. For a checkpoint, also print the quantization report and "
        "the error budget: QCFS-ANN, float-SNN and integer-SNN accuracy side by side.",
    )
    p.add_argument("source", metavar="CHECKPOINT|FILE.net")
    p.add_argument("--steps", type=parse_steps, default=None, metavar="T[,T...]",
                   help="comma-separated time steps T, e.g. 1,2,4,8 (default: a NetX file's "
                   f"recorded T; else {DEFAULT_STEPS})")
    add_data_args(p)
    p.add_argument("--batch-size", type=positive_int, default=256,
                   help="samples per batch (default 256)")
    p.add_argument("--device", default="cpu", help="torch device for the emulator (default cpu)")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="write every number (and per-sample predictions) as JSON")
    add_graded_arg(p)
    add_force_arg(p)
    p.set_defaults(func=run)


def _recorded_steps(path) -> int | None:
    """The T recorded in a NetX file (None for a checkpoint or a file without one)."""
    from qcfs_lava.pipeline import is_hdf5

    if not is_hdf5(path):
        return None
    from qcfs_lava.netx import read_netx

    steps = read_netx(path).metadata.get("steps")
    return None if steps is None else int(steps)


def run(args: argparse.Namespace) -> int:
    from qcfs_lava.io import write_json
    from qcfs_lava.network import format_table
    from qcfs_lava.pipeline import load_source, run_chain

    # before any work, so finished results are never lost to an unwritable path
    check_outputs(args, (args.json, "--json", "json"))
    if args.steps is None:
        args.steps = [_recorded_steps(args.source) or DEFAULT_STEPS]
    from qcfs_lava.convert import ConversionConfig

    payload = graded_payload(args)
    source = load_source(args.source, steps=max(args.steps),
                         config=ConversionConfig(spike_payload=payload))
    net, report = source.network, source.quantization
    if source.checkpoint is None:
        payload = graded_payload(args, net)
    x, y, split = load_test_data(args, net.metadata.get("dataset"), net.input_shape,
                                 args.source, num_classes=net.num_classes)
    print(format_table(net))
    if report is not None:
        print("\nquantization report (scale = state units per float unit)")
        print(report.format())
    chain = run_chain(source, x, y, args.steps, batch_size=args.batch_size, device=args.device,
                      progress=True)
    budget = chain.budget
    print()
    print(budget.format())
    last = chain.runs[max(args.steps)]
    print(f"\nspikes per sample at T={last.steps}: " + ", ".join(
        f"{name} {last.spike_counts[:, i].mean():.1f}"
        for i, name in enumerate(last.layer_names[:-1])))
    if last.payload_counts is not None:
        print(f"payload per sample at T={last.steps} (graded spikes, P = {net.payload}): "
              + ", ".join(f"{name} {last.payload_counts[:, i].mean():.1f}"
                          for i, name in enumerate(last.layer_names[:-1])))
    sat = int(last.saturations.sum())
    if sat:
        print(f"warning: {sat} membrane updates saturated at the 24-bit limits")
    if args.json:
        out = {
            "command": "emulate", "source": str(args.source), "dataset": split.name,
            "config": {**command_config(args), "graded": payload},
            "error_budget": budget.to_dict(),
            "runs": {str(t): r.to_dict() for t, r in chain.runs.items()},
        }
        if report is not None:
            out["quantization"] = report.as_dicts()
        write_json(args.json, out)
        print(f"wrote {args.json}")
    return 0
