"""NetX commands.

``qcfs-lava export CHECKPOINT --out FILE.net [--steps T]``: convert a trained QCFS checkpoint
into the integer network and write it as a lava-dl NetX file, with the resolved export
configuration and quantization report next to it (``FILE.net.json``).

``qcfs-lava inspect FILE.net``: verify a NetX file written by qcfs-lava and describe it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``export`` and ``inspect`` commands."""
    p = sub.add_parser(
        "export",
        help="convert a QCFS checkpoint to the integer network and write a NetX (.net) file",
        description="Fold and quantize a trained QCFS checkpoint into the integer spiking "
        "network (Loihi ranges) and write it as a lava-dl NetX HDF5 file. The export "
        "configuration and the per-layer quantization report are written to FILE.net.json.",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint from `qcfs-lava train`")
    p.add_argument("--out", required=True, metavar="FILE.net", help="NetX file to write")
    p.add_argument(
        "--steps", type=int, default=None, metavar="T",
        help="time steps T the network is meant to run (recorded in the file's metadata)",
    )
    p.set_defaults(func=run_export)

    p = sub.add_parser(
        "inspect",
        help="describe a NetX (.net) file: layers, neurons, metadata; verifies its checksum",
        description="Read a NetX HDF5 file written by qcfs-lava, verify its checksum and print "
        "its layer table and metadata.",
    )
    p.add_argument("file", metavar="FILE.net", help="NetX HDF5 file written by qcfs-lava")
    p.set_defaults(func=run_inspect)


def _write_json(obj: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def run_export(args: argparse.Namespace) -> int:
    from qcfs_lava import __version__
    from qcfs_lava.checkpoint import checkpoint_sha256, load_checkpoint
    from qcfs_lava.convert import convert
    from qcfs_lava.errors import CheckpointError
    from qcfs_lava.network import format_table
    from qcfs_lava.netx import netx_checksum, write_netx

    if args.steps is not None and args.steps < 1:
        raise CheckpointError(f"--steps must be >= 1, got {args.steps}")
    ckpt = load_checkpoint(args.checkpoint)
    metadata: dict[str, Any] = {
        "checkpoint_sha256": checkpoint_sha256(args.checkpoint),
        "checkpoint": Path(args.checkpoint).name,
        "model": ckpt.model,
        "dataset": ckpt.dataset,
        "class_names": [str(c) for c in ckpt.class_names],
    }
    if args.steps is not None:
        metadata["steps"] = int(args.steps)
    mean = ckpt.mean if ckpt.mean else 0.0
    std = ckpt.std if ckpt.std else 1.0
    net, report = convert(
        ckpt.build_model(), tuple(ckpt.input_shape), mean, std, metadata=metadata
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_netx(net, out)
    config = {
        "command": "export",
        "checkpoint": str(args.checkpoint),
        "checkpoint_sha256": metadata["checkpoint_sha256"],
        "out": str(out),
        "steps": args.steps,
        "levels": net.levels,
        "phi": net.phi,
        "qcfs_lava_version": __version__,
        "netx_checksum": netx_checksum(net),
        "quantization": report.as_dicts(),
    }
    _write_json(config, out.with_name(out.name + ".json"))
    print(format_table(net))
    print()
    print(report.format())
    print()
    print(f"wrote {out} ({out.stat().st_size} bytes) and {out.name}.json")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from qcfs_lava.netx import describe_netx

    print(describe_netx(args.file))
    return 0
