"""``qcfs-lava inspect FILE.net``: describe a NetX file written by ``qcfs-lava export``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``inspect`` command."""
    p = sub.add_parser(
        "inspect",
        help="describe a NetX (.net) file: layers, neurons, metadata; verifies its checksum",
        description="Read a NetX HDF5 file written by qcfs-lava, verify its checksum and print "
        "its layer table and metadata.",
    )
    p.add_argument("file", metavar="FILE.net", help="NetX HDF5 file written by qcfs-lava")
    p.set_defaults(func=run_inspect)


def run_inspect(args: argparse.Namespace) -> int:
    from qcfs_lava.netx import describe_netx

    print(describe_netx(args.file))
    return 0
