"""NIR commands.

``qcfs-lava export CHECKPOINT --format nir --out FILE.nir [--steps T]``: the float SNN as a
NIR graph (handled here; ``export`` dispatches to :func:`run_export_nir`), with the resolved
configuration in ``FILE.nir.json``.

``qcfs-lava run-nir FILE.nir [--runner R] [--steps T,...] [--checkpoint CKPT]``: run a NIR
file written by qcfs-lava with the reference executor, qcfs-lava's own import, or the
snntorch / sinabs shims, on a test split; with ``--checkpoint``, compare with the float SNN of
that checkpoint and fail on any different prediction.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qcfs_lava.nir_exchange.runners import RUNNERS


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``run-nir`` command."""
    from qcfs_lava.cli.common import add_data_args, add_force_arg, parse_steps

    p = sub.add_parser(
        "run-nir",
        help="run a NIR file written by qcfs-lava (reference executor, own import, snntorch "
        "or sinabs shim) on a test split",
        description="Run a NIR file written by `qcfs-lava export --format nir` on the test "
        "split and print the accuracy at each T. Runners: reference (qcfs-lava's numpy "
        "executor, float64), import (qcfs-lava's torch import), snntorch / sinabs (the shims, "
        "float32), literal (NIR's own IF: fire on >, reset to v_reset, v(0)=0). With "
        "--checkpoint, the float SNN of that checkpoint runs too and any different prediction "
        "is an error.",
    )
    p.add_argument("file", metavar="FILE.nir", help="NIR file written by qcfs-lava")
    p.add_argument("--runner", choices=RUNNERS, default="reference",
                   help="who runs the file (default reference)")
    p.add_argument("--steps", type=parse_steps, default=None, metavar="T[,T...]",
                   help="time steps (default: the T recorded in the file)")
    add_data_args(p)
    p.add_argument("--checkpoint", default=None, metavar="CKPT",
                   help="compare with the float SNN of this checkpoint (fails on any "
                   "different prediction)")
    p.add_argument("--json", default=None, metavar="FILE.json", help="write the results here")
    add_force_arg(p)
    p.set_defaults(func=run_nir_cmd)


def run_export_nir(args: argparse.Namespace) -> int:
    """``export --format nir``: write the NIR graph and ``FILE.nir.json``."""
    from qcfs_lava import __version__
    from qcfs_lava.cli.common import check_outputs
    from qcfs_lava.io import write_json
    from qcfs_lava.nir_exchange.export import export_checkpoint
    from qcfs_lava.nir_exchange.runners import describe_graph
    from qcfs_lava.nir_exchange.semantics import NAMESPACE, VERSION

    out = Path(args.out)
    # before any work: neither output may be the input, a folder, or a file of another kind
    check_outputs(args, (out, "--out", "hdf5"),
                  (out.with_name(out.name + ".json"), f"--out's {out.name}.json", "json"))
    graph, ckpt = export_checkpoint(args.checkpoint, out, steps=args.steps)
    rows = describe_graph(graph)
    config = {
        "command": "export", "format": "nir", "checkpoint": str(args.checkpoint),
        "checkpoint_sha256": graph.metadata[NAMESPACE]["checkpoint_sha256"], "out": str(out),
        "steps": args.steps, "levels": ckpt.levels, "phi": ckpt.phi,
        "qcfs_lava_version": __version__, "qcfs_lava_nir_version": VERSION,
        "nodes": rows, "edges": [list(e) for e in graph.edges],
    }
    write_json(out.with_name(out.name + ".json"), config)
    width = max(len(r["node"]) for r in rows)
    print(f"{'node':<{width}}  {'type':<10} output")
    for r in rows:
        print(f"{r['node']:<{width}}  {r['type']:<10} {r['output']}")
    print(f"{len(graph.edges)} edges")
    if args.steps is None:
        print("no --steps given: the file records no T; runners take it as an argument")
    print(f"wrote {out} ({out.stat().st_size} bytes) and {out.name}.json")
    return 0


def run_nir_cmd(args: argparse.Namespace) -> int:
    from qcfs_lava.cli.common import check_outputs, load_test_data
    from qcfs_lava.errors import SimulationMismatchError
    from qcfs_lava.io import write_json
    from qcfs_lava.nir_exchange.executor import check_graph
    from qcfs_lava.nir_exchange.runners import run_nir_file
    from qcfs_lava.nir_exchange.semantics import read_nir

    check_outputs(args, (args.json, "--json", "json"))
    # every runner runs only what the reference executor accepts
    sem = check_graph(read_nir(args.file), str(args.file))
    steps = args.steps or [sem.resolve_steps(None, args.file)]
    x, y, _ = load_test_data(args, sem.extra.get("dataset"),
                             num_classes=len(sem.class_names) or None)
    result = run_nir_file(args.file, x, y, steps, runner=args.runner,
                          checkpoint=args.checkpoint)
    print(result.format())
    if args.json:
        write_json(args.json, result.to_dict())
    if result.checkpoint is not None and result.mismatches and args.runner != "literal":
        raise SimulationMismatchError(
            f"{args.file}: the {args.runner} runner's predictions differ from the float SNN of "
            f"{args.checkpoint} on {result.mismatches} (sample, T) pairs; the file and "
            "checkpoint do not match, or the runner does not follow the file's semantics")
    return 0
