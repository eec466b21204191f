"""``qcfs-lava report`` and ``qcfs-lava sweep``: thin wrappers of :mod:`qcfs_lava.analysis`."""

from __future__ import annotations

import argparse
import logging

from qcfs_lava.cli.common import (
    STEPS_TO_COMPARE,
    non_negative_int,
    parse_steps,
    positive_int,
)
from qcfs_lava.errors import AnalysisError

# sweep options whose default is SweepConfig's (left None here, so it is set in one place)
_SWEEP_OPTIONS = ("dataset", "model", "levels", "steps", "shift_levels", "epochs", "batch_size",
                  "lr", "optimizer", "width", "seed", "samples", "data_root", "device")


def _energy_overrides(items: list[str] | None) -> dict[str, float]:
    from qcfs_lava.analysis.energy import EnergyConstants

    if not items:
        return {}
    resolved = EnergyConstants().with_overrides(items)  # validates names and values
    names = [item.partition("=")[0].strip() for item in items]
    return {name: getattr(resolved, name) for name in names}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` and ``sweep`` commands."""
    p = sub.add_parser(
        "report",
        help="error budget, accuracy vs T, spikes, SynOps, energy estimates and conversion "
        "error of a checkpoint (report.md, report.json, plots)",
        description="Evaluate a QCFS checkpoint: QCFS ANN, float SNN and integer SNN at every T, "
        "optionally Lava on a subset; write DIR/report.md, DIR/report.json and PNG plots.",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="qcfs-lava checkpoint (.pt)")
    p.add_argument("--dataset", default=None, help="dataset name (default: the checkpoint's)")
    p.add_argument("--steps", type=parse_steps, default=STEPS_TO_COMPARE,
                   help="comma-separated time steps T")
    p.add_argument("--netx", default=None, metavar="FILE.net",
                   help="a NetX file exported from CHECKPOINT: its recorded T is the T of the "
                   "error budget, breakdown and Lava run, and the report checks that the "
                   "checkpoint converts to exactly this file")
    p.add_argument("--budget-steps", type=positive_int, default=None, metavar="T",
                   help="T of the error budget, breakdown and Lava run (default: the T of "
                   "--netx, else the largest --steps)")
    p.add_argument("--samples", type=positive_int, default=None,
                   help="test samples (default: all)")
    p.add_argument("--lava-samples", type=non_negative_int, default=0,
                   help="samples to simulate in Lava and compare with the emulator (default 0)")
    p.add_argument("--data-root", default=None, help="dataset folder")
    p.add_argument("--seed", type=int, default=0,
                   help="dataset split seed (the one used in training; default 0)")
    p.add_argument("--relu-accuracy", type=float, default=None,
                   help="known accuracy (fraction) of the ReLU baseline ANN")
    p.add_argument("--relu-checkpoint", default=None, help="ReLU baseline checkpoint to evaluate")
    p.add_argument("--energy-const", action="append", metavar="NAME=VALUE",
                   help="override an energy constant (repeatable), e.g. cmos_ac_pj=0.03")
    p.add_argument("--energy-json", default=None,
                   help="JSON file {name: value} of energy constants")
    p.add_argument("--batch-size", type=positive_int, default=256,
                   help="samples per batch (default 256)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=run_report)

    s = sub.add_parser(
        "sweep",
        help="the paper's three experiments at small scale (ANN vs L, SNN vs T, shift vs none)",
        description="Train ReLU, clip-floor and clip-floor-shift models for several L, then "
        "evaluate ANN accuracy vs L and float-SNN accuracy vs T; write DIR/sweep.md, "
        "DIR/sweep.json and plots. Trained runs are reused unless --no-resume. Options left "
        "out take the defaults of qcfs_lava.sweep.SweepConfig; sweep.json records "
        "the resolved values.",
    )
    s.add_argument("--dataset", default=None, help="dataset name (default digits)")
    s.add_argument("--model", default=None, help="registered model (default cnn)")
    s.add_argument("--levels", type=parse_steps, default=None,
                   help="comma-separated L values (default 1,2,4,8,16)")
    s.add_argument("--steps", type=parse_steps, default=None,
                   help="comma-separated T values (default 1,2,4,8,16,32,64)")
    s.add_argument("--shift-levels", type=positive_int, default=None,
                   help="L of the clip-floor vs clip-floor-shift experiment (default 4)")
    s.add_argument("--epochs", type=positive_int, default=None,
                   help="training epochs of each run (default 40)")
    s.add_argument("--batch-size", type=positive_int, default=None,
                   help="samples per batch (default 64)")
    s.add_argument("--lr", type=float, default=None, help="learning rate (default 0.05)")
    s.add_argument("--optimizer", default=None, choices=("sgd", "adam"),
                   help="optimizer (default sgd)")
    s.add_argument("--width", type=positive_int, default=None,
                   help="model base width (default: the model's usual width)")
    s.add_argument("--seed", type=int, default=None, help="training and split seed (default 0)")
    s.add_argument("--samples", type=positive_int, default=None, help="test samples (default: all)")
    s.add_argument("--data-root", default=None, help="folder holding the dataset files")
    s.add_argument("--device", default=None, help="auto, cpu or cuda (default auto)")
    s.add_argument("--no-resume", action="store_true", help="retrain every run")
    s.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (sweep.md, sweep.json, plots, runs/)")
    s.set_defaults(func=run_sweep_cmd)


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")


def run_report(args: argparse.Namespace) -> int:
    from qcfs_lava.report import ReportConfig, make_report

    _setup_logging()
    if args.lava_samples < 0:
        raise AnalysisError("--lava-samples must be >= 0")
    config = ReportConfig(
        checkpoint=args.checkpoint, netx=args.netx, dataset=args.dataset, steps=args.steps,
        budget_steps=args.budget_steps, samples=args.samples, lava_samples=args.lava_samples,
        data_root=args.data_root, seed=args.seed, relu_accuracy=args.relu_accuracy,
        relu_checkpoint=args.relu_checkpoint,
        energy_overrides=_energy_overrides(args.energy_const), energy_json=args.energy_json,
        batch_size=args.batch_size, device=args.device,
    )
    from pathlib import Path

    from qcfs_lava.checkpoint import load_checkpoint
    from qcfs_lava.errors import OutputPathError

    # the inputs are read and the output folder checked before the folder is created
    for path in (args.checkpoint, args.relu_checkpoint):
        if path is not None:
            load_checkpoint(path)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"--out {out} is a file, not a folder; choose another --out")
    created = not out.exists()
    try:
        result = make_report(config, args.out, progress=True)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # leave no empty output folder behind
        raise
    print(result.budget.format(steps=[config.budget_steps]))
    print(f"wrote {result.markdown}, {result.json} and {len(result.plots)} plots")
    lava = result.budget.lava
    return 1 if lava is not None and lava.mismatches else 0


def run_sweep_cmd(args: argparse.Namespace) -> int:
    from qcfs_lava.sweep import SweepConfig, run_sweep

    _setup_logging()
    options = {k: getattr(args, k) for k in _SWEEP_OPTIONS if getattr(args, k) is not None}
    config = SweepConfig(resume=not args.no_resume, **options)
    result = run_sweep(config, args.out, progress=True)
    print(f"wrote {result.markdown}, {result.json} and {len(result.plots)} plots")
    return 0
