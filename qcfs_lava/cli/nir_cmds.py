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
import time
from pathlib import Path

RUNNERS = ("reference", "import", "snntorch", "sinabs", "literal")


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
    p.add_argument("--runner", choices=RUNNERS, default="reference")
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
    from qcfs_lava.nir_exchange.semantics import NAMESPACE, VERSION

    out = Path(args.out)
    # before any work: neither output may be the input, a folder, or a file of another kind
    check_outputs(args, (out, "--out", "hdf5"),
                  (out.with_name(out.name + ".json"), f"--out's {out.name}.json", "json"))
    graph, ckpt = export_checkpoint(args.checkpoint, out, steps=args.steps)
    rows = []
    for name, node in graph.nodes.items():
        shape = node.output_type.get("output") if node.output_type else None
        meta = node.metadata.get(NAMESPACE, {}) if node.metadata else {}
        rows.append({"node": name, "type": type(node).__name__,
                     "output": None if shape is None else [int(s) for s in shape],
                     "source": meta.get("source")})
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


def _outputs(runner: str, path: str, x_uint8, steps: int):
    """``(steps, N, classes)`` outputs of one runner."""
    import numpy as np

    from qcfs_lava.nir_exchange.executor import normalize_pixels, run_nir
    from qcfs_lava.nir_exchange.semantics import graph_semantics, read_nir

    graph = read_nir(path)
    if runner in ("reference", "literal"):
        return run_nir(graph, x_uint8, steps, literal=runner == "literal").outputs
    sem = graph_semantics(graph, path)
    xf = normalize_pixels(x_uint8, sem.mean, sem.std)
    if runner == "import":
        import torch

        from qcfs_lava.nir_exchange.importer import from_nir

        net = from_nir(graph)
        return np.concatenate([net.run(torch.as_tensor(xf[i:i + 256]), steps).numpy()
                               for i in range(0, len(xf), 256)], axis=1)
    from qcfs_lava.nir_exchange import shims

    run = shims.run_snntorch if runner == "snntorch" else shims.run_sinabs
    return run(graph, xf, steps)


def run_nir_cmd(args: argparse.Namespace) -> int:
    import numpy as np

    from qcfs_lava.cli.common import check_outputs, load_test_data
    from qcfs_lava.errors import SimulationMismatchError
    from qcfs_lava.io import write_json
    from qcfs_lava.nir_exchange.executor import check_graph
    from qcfs_lava.nir_exchange.semantics import read_nir

    check_outputs(args, (args.json, "--json", "json"))
    graph = read_nir(args.file)
    sem = check_graph(graph, str(args.file))  # every runner runs only what the reference accepts
    steps = args.steps or [sem.resolve_steps(None, args.file)]
    x, y, _ = load_test_data(args, sem.extra.get("dataset"), len(sem.class_names) or None)
    t0 = time.perf_counter()
    out = _outputs(args.runner, args.file, x, max(steps))
    seconds = time.perf_counter() - t0
    if not np.all(np.isfinite(out)):
        from qcfs_lava.errors import NirError

        raise NirError(f"{args.file}: the {args.runner} runner's outputs overflow (inf or NaN); "
                       "the network's weights or thresholds are absurd: the file is damaged or "
                       "was not written by qcfs-lava")
    result = {"command": "run-nir", "file": str(args.file), "runner": args.runner,
              "samples": int(len(y)), "seconds": round(seconds, 3), "steps": {}}
    ref = None
    if args.checkpoint:
        import torch

        from qcfs_lava.checkpoint import load_checkpoint
        from qcfs_lava.data import normalize
        from qcfs_lava.snn import snn_outputs

        ckpt = load_checkpoint(args.checkpoint)
        xf = normalize(x, ckpt.mean, ckpt.std)
        model = ckpt.build_model()
        ref = torch.cat([snn_outputs(model, xf[i:i + 256], max(steps))
                         for i in range(0, len(xf), 256)], 1).numpy()
    head = f"{'T':>4} {'accuracy':>9}" + ("  float SNN  mismatches  max|d out|" if ref is not None
                                          else "")
    print(f"{args.runner} runner, {len(y)} samples, {seconds:.1f} s")
    print(head)
    mismatched = 0
    for t in steps:
        pred = out[:t].mean(0).argmax(1)
        row = {"accuracy": float(np.mean(pred == y))}
        line = f"{t:>4} {100 * row['accuracy']:8.2f}%"
        if ref is not None:
            ref_pred = ref[:t].mean(0).argmax(1)
            row["float_snn_accuracy"] = float(np.mean(ref_pred == y))
            row["prediction_mismatches"] = int(np.sum(pred != ref_pred))
            row["max_abs_output_difference"] = float(np.abs(out[:t] - ref[:t]).max())
            mismatched += row["prediction_mismatches"]
            line += (f"  {100 * row['float_snn_accuracy']:8.2f}%"
                     f"  {row['prediction_mismatches']:>10}"
                     f"  {row['max_abs_output_difference']:.3g}")
        result["steps"][str(t)] = row
        print(line)
    if args.json:
        write_json(args.json, result)
    if ref is not None and mismatched and args.runner != "literal":
        raise SimulationMismatchError(
            f"{args.file}: the {args.runner} runner's predictions differ from the float SNN of "
            f"{args.checkpoint} on {mismatched} (sample, T) pairs; the file and checkpoint do "
            "not match, or the runner does not follow the file's semantics")
    return 0
