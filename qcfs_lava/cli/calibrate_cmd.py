"""``qcfs-lava calibrate CKPT --levels L --out QCFS.pt``: a ReLU checkpoint -> a QCFS one."""

from __future__ import annotations

import argparse
from pathlib import Path

from qcfs_lava.cli.common import (
    add_force_arg,
    check_outputs,
    levels_arg,
    non_negative_int,
    phi_arg,
    positive_float,
    positive_int,
)


def _percentile(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 100], got {text!r}") from None
    if not 0.0 < value <= 100.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 100], got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="turn a ReLU checkpoint into a QCFS one: thresholds from activation statistics",
        description="Replace every ReLU of a checkpoint by QCFS whose threshold lambda is a "
        "percentile of the activation on training images (per layer, or per output channel "
        "with --per-channel, carried exactly into one threshold per layer), optionally "
        "fine-tune briefly, and write a QCFS checkpoint that export, emulate, simulate and "
        "report accept. A QCFS checkpoint is recalibrated the same way. Writes OUT and "
        "OUT.json (configuration, thresholds, accuracies).",
    )
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint from `qcfs-lava train`")
    p.add_argument("--levels", type=levels_arg, required=True,
                   help="quantization levels L of the QCFS activations")
    p.add_argument("--percentile", type=_percentile, default=99.9,
                   help="percentile of the activations that sets lambda (default 99.9)")
    p.add_argument("--per-channel", action="store_true",
                   help="one lambda per output channel (where exact; see the docs)")
    p.add_argument("--finetune-epochs", type=non_negative_int, default=0,
                   help="epochs of QCFS fine-tuning after calibration (default 0)")
    p.add_argument("--lr", type=positive_float, default=0.01,
                   help="fine-tune learning rate (SGD, cosine; default 0.01)")
    p.add_argument("--phi", type=phi_arg, default=0.5, help="QCFS shift (default 0.5)")
    p.add_argument("--samples", type=positive_int, default=1000,
                   help="training images for the statistics (default 1000)")
    p.add_argument("--batch-size", type=positive_int, default=256,
                   help="samples per batch (default 256)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the calibration subset and the fine-tune shuffling")
    p.add_argument("--split-seed", type=int, default=0,
                   help="seed of the dataset's train/test split (the training run's --seed)")
    p.add_argument("--data-root", default=None, help="folder holding the dataset files")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument("--out", required=True, help="QCFS checkpoint to write (.pt)")
    add_force_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qcfs_lava.calibrate import CalibrationConfig, calibrate_checkpoint, config_dict
    from qcfs_lava.checkpoint import save_checkpoint
    from qcfs_lava.io import write_json

    src, out = Path(args.checkpoint), Path(args.out)
    # before any work: neither output may be an input, a folder, or a file of another kind
    check_outputs(args, (out, "--out", "torch"), (f"{out}.json", f"--out's {out.name}.json",
                                                   "json"))
    config = CalibrationConfig(
        levels=args.levels, phi=args.phi, percentile=args.percentile,
        per_channel=args.per_channel, samples=args.samples, batch_size=args.batch_size,
        finetune_epochs=args.finetune_epochs, finetune_lr=args.lr, seed=args.seed,
    )
    ckpt, result, acc = calibrate_checkpoint(src, config, data_root=args.data_root,
                                             data_seed=args.split_seed, device=args.device,
                                             progress=True)
    print(result.format())
    print(f"\ntest accuracy: source ANN {100 * acc['source_ann']:.2f}%, calibrated QCFS ANN "
          f"{100 * acc['calibrated_ann']:.2f}%"
          + (f", after {args.finetune_epochs} fine-tune epochs "
             f"{100 * acc['finetuned_ann']:.2f}%" if "finetuned_ann" in acc else ""))
    save_checkpoint(ckpt, out)
    write_json(Path(f"{out}.json"), {
        "command": "calibrate", "source": str(src), "out": str(out),
        "config": config_dict(config) | {"split_seed": args.split_seed,
                                         "data_root": args.data_root, "device": args.device},
        "accuracy": acc,
        "activations": [a.to_dict() for a in result.activations],
        "finetune": result.finetune,
    })
    print(f"wrote {out} and {out}.json")
    print(f"next: qcfs-lava emulate {out} --steps 1,2,4,8,16,32")
    return 0
