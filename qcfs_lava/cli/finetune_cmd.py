"""``qcfs-lava finetune-snn CKPT --steps T --epochs N --out OUT.pt``: tune the SNN at its T."""

from __future__ import annotations

import argparse
from pathlib import Path

from qcfs_lava.cli.common import check_outputs, parse_steps, positive_float, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune-snn",
        help="train a QCFS checkpoint's float SNN at the deployment T (surrogate gradient)",
        description="Train the float SNN of a QCFS checkpoint through T steps with a triangle "
        "surrogate gradient, with the deployed semantics (fire on >=, subtract, v(0) = phi * "
        "threshold, binary spikes, the same input every step, BatchNorm statistics frozen), "
        "and write the tuned network as an ordinary QCFS checkpoint that export, emulate, "
        "simulate and report accept. Writes OUT and OUT.json (configuration, thresholds, "
        "accuracies).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("checkpoint", metavar="CKPT", help="QCFS checkpoint (train or calibrate)")
    p.add_argument("--steps", type=positive_int, required=True,
                   help="the deployment T the SNN is trained at")
    p.add_argument("--epochs", type=positive_int, default=2, help="passes over the training split")
    p.add_argument("--loss-steps", type=parse_steps, default=None,
                   help="comma-separated T values whose prefix-mean logits enter the loss "
                   "(e.g. 1,2,4: stays good at smaller T); default: just --steps")
    p.add_argument("--lr", type=positive_float, default=3e-4,
                   help="Adam learning rate (cosine to 0)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per step")
    p.add_argument("--fixed-thresholds", action="store_true",
                   help="keep the ANN's thresholds (default: train them)")
    p.add_argument("--seed", type=int, default=0, help="shuffling and augmentation seed")
    p.add_argument("--split-seed", type=int, default=0,
                   help="seed of the dataset's train/test split (the training run's --seed)")
    p.add_argument("--data-root", default=None, help="folder holding the dataset files")
    p.add_argument("--out", required=True, help="tuned QCFS checkpoint to write (.pt)")
    p.add_argument("--force", action="store_true", help="replace an existing --out checkpoint")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from qcfs_lava.checkpoint import save_checkpoint
    from qcfs_lava.errors import CheckpointError
    from qcfs_lava.finetune import FinetuneConfig, finetune_checkpoint
    from qcfs_lava.io import write_json

    src, out = Path(args.checkpoint), Path(args.out)
    # before any work: the input is never replaced, an existing checkpoint only with --force
    check_outputs(args, (out, "--out", "torch"), (f"{out}.json", f"--out's {out.name}.json",
                                                   "json"))
    if out.exists() and not args.force:
        raise CheckpointError(f"--out {out} exists; pass --force to replace it, or choose "
                              "another file")
    try:
        config = FinetuneConfig(steps=args.steps, epochs=args.epochs,
                                loss_steps=tuple(args.loss_steps or ()), lr=args.lr,
                                batch_size=args.batch_size,
                                train_thresholds=not args.fixed_thresholds, seed=args.seed,
                                data_seed=args.split_seed)
    except ValueError as exc:
        raise CheckpointError(f"finetune-snn: {exc}; fix the option") from None
    ckpt, result, acc = finetune_checkpoint(src, config, data_root=args.data_root, progress=True)
    print(f"float SNN at T={args.steps} on the test split: {100 * acc['snn_before']:.2f}% -> "
          f"{100 * acc['snn_after']:.2f}% (QCFS ANN of the tuned network "
          f"{100 * acc['ann_after']:.2f}%)")
    save_checkpoint(ckpt, out)
    write_json(Path(f"{out}.json"), {
        "command": "finetune-snn", "source": str(src.resolve()), "out": str(out.resolve()),
        "config": dataclasses.asdict(config) | {"data_root": args.data_root},
        "accuracy": acc, "history": result.history,
        "thresholds": {k: {"before": b, "after": a} for k, (b, a) in result.thresholds.items()},
    })
    print(f"wrote {out} and {out}.json")
    print(f"next: qcfs-lava emulate {out} --steps 1,2,4,8")
    return 0
