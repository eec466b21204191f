"""NetX commands.

``qcfs-lava export CHECKPOINT --out FILE.net [--steps T]``: convert a trained QCFS checkpoint
into the integer network and write it as a lava-dl NetX file, with the resolved export
configuration and quantization report next to it (``FILE.net.json``).

``qcfs-lava inspect FILE.net``: verify a NetX file written by qcfs-lava and describe it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qcfs_lava.cli.common import (
    add_force_arg,
    add_graded_arg,
    check_outputs,
    graded_payload,
    steps_arg,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``export`` and ``inspect`` commands."""
    p = sub.add_parser(
        "export",
        help="convert a QCFS checkpoint to the integer network and write a NetX (.net) file",
        description="Fold and quantize a trained QCFS checkpoint into the integer spiking "
        "network (Loihi ranges) and write it as a lava-dl NetX HDF5 file. The export "
        "configuration and the per-layer quantization report are written to FILE.net.json. "
        "With --format nir, write the float SNN as a NIR graph instead (and FILE.nir.json).",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint from `qcfs-lava train`")
    p.add_argument("--out", required=True, metavar="FILE.net", help="NetX file to write")
    p.add_argument(
        "--steps", type=steps_arg, default=None, metavar="T",
        help="time steps T the network is meant to run (recorded in the file's metadata)",
    )
    p.add_argument(
        "--layer-copies", type=int, default=1, metavar="K",
        help="put every single-synapse layer on a K times finer weight grid, its weights "
        "carried by up to K exact synapse copies (1..64; up to K times the layer's synaptic "
        "operations and synapse memory; default 1)",
    )
    add_graded_arg(p)
    add_force_arg(p)
    p.add_argument(
        "--format", choices=("netx", "nir"), default="netx",
        help="netx: the integer network as lava-dl NetX (default); nir: the float SNN as a "
        "NIR graph (needs the optional extra: pip install 'qcfs-lava[nir]')",
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


def run_export(args: argparse.Namespace) -> int:
    from qcfs_lava import __version__
    from qcfs_lava.convert import ConversionConfig
    from qcfs_lava.errors import CheckpointError
    from qcfs_lava.network import format_table
    from qcfs_lava.netx import export_config_path, write_netx
    from qcfs_lava.pipeline import convert_checkpoint

    if args.steps is not None and args.steps < 1:
        raise CheckpointError(f"--steps must be >= 1, got {args.steps}")
    if not 1 <= args.layer_copies <= 64:
        raise CheckpointError(f"--layer-copies must be 1..64, got {args.layer_copies}")
    payload = graded_payload(args)
    if args.format == "nir" and payload != 1:
        from qcfs_lava.errors import NirError

        raise NirError(
            f"--format nir --graded {payload}: NIR's IF node emits binary spikes (0/1) and has "
            "no graded payload, so a graded float SNN would be read as a binary one by every "
            "importer; export NIR without --graded (the binary float SNN), or the graded "
            "network as NetX (--format netx --graded P)")
    if args.format == "nir":
        from qcfs_lava.cli.nir_cmds import run_export_nir

        return run_export_nir(args)
    out = Path(args.out)
    # before any work: neither output may be the input, a folder, or a file of another kind
    check_outputs(args, (out, "--out", "hdf5"),
                  (export_config_path(out), f"--out's {out.name}.json", "json"))
    conversion = ConversionConfig(layer_copies=args.layer_copies, spike_payload=payload)
    net, report, _ = convert_checkpoint(args.checkpoint, steps=args.steps, config=conversion)
    config = {
        "command": "export",
        "checkpoint": str(args.checkpoint),
        "checkpoint_sha256": net.metadata["checkpoint_sha256"],
        "out": str(out),
        "steps": args.steps,
        "layer_copies": args.layer_copies,
        "graded": payload,
        "levels": net.levels,
        "phi": net.phi,
        "qcfs_lava_version": __version__,
        "quantization": report.as_dicts(),
    }
    write_netx(net, out, config=config)  # FILE.net and FILE.net.json, replaced as a pair
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
