"""Command-line interface: ``qcfs-lava <command> ...``.

Each sub-command lives in its own module of this package and exposes ``register(subparsers)``
(adds its parser, with ``func`` set as default) ; this module only wires them together.
Imports are lazy so that ``qcfs-lava --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from qcfs_lava import __version__

# command name -> module of qcfs_lava.cli that registers it
COMMANDS = {
    "calibrate": "calibrate_cmd",
    "demo": "demo",
    "emulate": "emulate",
    "finetune-snn": "finetune_cmd",
    "import-reference": "reference_cmd",
    "inspect": "netx_cmds",
    "export": "netx_cmds",
    "report": "report_cmds",
    "resources": "resources_cmd",
    "sweep": "report_cmds",
    "train": "train",
    "evaluate": "train",
    "simulate": "simulate",
    "run-nir": "nir_cmds",
}


# environment variables the library reads, shown in the top-level help
ENVIRONMENT = {
    "QCFS_LAVA_DATA": "folders (separated by ':') searched for datasets before the "
    "repository's data/ and ../shared/data",
    "QCFS_LAVA_MNIST_DIR": "folder of MNIST's IDX files (mnist, mnist-split)",
    "QCFS_LAVA_CIFAR10_SUBSET_DIR": "folder of cifar10_train_subset.npz (cifar10-subset)",
    "QCFS_LAVA_PROGRESS": "bars, lines or off: progress display (default: bars on a terminal, "
    "one line per stage otherwise)",
}


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already states a default.

    Options whose default is None or False say in their own help what leaving them out means.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (type(text) is str and action.option_strings and "default" not in text.lower()
                and action.default not in (None, False, argparse.SUPPRESS)):
            value = action.default
            if isinstance(value, (list, tuple)):
                value = ",".join(str(v) for v in value)
            text += f" (default: {value})".replace("%", "%%")
        return text


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    width = max(len(name) for name in ENVIRONMENT)
    parser = argparse.ArgumentParser(
        prog="qcfs-lava",
        description="QCFS networks from PyTorch to Lava: train, convert to an integer spiking "
        "network, export lava-dl NetX, emulate, simulate in Lava, report. "
        "`qcfs-lava COMMAND --help` lists each option with its default.",
        epilog="environment variables:\n" + "\n".join(
            f"  {name:<{width}}  {text}" for name, text in ENVIRONMENT.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"qcfs-lava {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in dict.fromkeys(COMMANDS.values()):
        importlib.import_module(f"qcfs_lava.cli.{module}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from qcfs_lava.errors import QcfsLavaError

    try:
        return int(args.func(args) or 0)
    except QcfsLavaError as exc:
        print(f"qcfs-lava {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"qcfs-lava {args.command}: interrupted; files being written were not replaced",
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` or similar: stop quietly
        sys.stderr.close()
        return 141
    except OSError as exc:  # a write the path checks could not foresee (disk full, ...)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"qcfs-lava {args.command}: error: {where}{exc.strerror or exc}; check the path, "
              "its permissions and the free disk space", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
