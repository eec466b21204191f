"""``qcfs-lava train`` and ``qcfs-lava evaluate``: train a QCFS model, measure ANN and float SNN."""

from __future__ import annotations

import argparse
import logging
import time

from qcfs_lava.cli.common import (
    DATASETS_HELP,
    MODELS_HELP,
    STEPS_TO_COMPARE,
    RegistryHelp,
    add_data_args,
    add_force_arg,
    add_graded_arg,
    check_outputs,
    graded_payload,
    levels_arg,
    load_test_data,
    parse_steps,
    phi_arg,
    positive_int,
)

# what an unset training option takes
_RECIPE = "default: the dataset's recipe (qcfs_lava.train.RECIPES), else "


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a QCFS (or ReLU) model; resumable, torchrun-aware",
        description="Train a model of the zoo on a dataset. Unset options take the dataset's "
        "committed recipe (qcfs_lava.train.RECIPES), then TrainConfig's defaults. Writes "
        "config.json, best.pt, last.pt and metrics.json into --out. Under torchrun the run is "
        "data-parallel (gloo on CPU).",
    )
    p.add_argument("--model", default="cnn",
                   help=RegistryHelp("model name ({names}); default cnn", *MODELS_HELP))
    p.add_argument("--dataset", default="digits",
                   help=RegistryHelp("dataset: one of {names} (npz:PATH: your own arrays); "
                                     "default digits", *DATASETS_HELP))
    p.add_argument("--data-root", default=None, help="folder holding the dataset files")
    p.add_argument("--download", action="store_true", help="let torchvision download data")
    p.add_argument("--out", required=True, help="output folder, e.g. runs/cnn-digits")
    p.add_argument("--activation", choices=("qcfs", "relu"), default=None,
                   help=f"QCFS, or ReLU for a baseline to calibrate ({_RECIPE}qcfs)")
    p.add_argument("--levels", type=levels_arg, default=None,
                   help=f"quantization levels L ({_RECIPE}4)")
    p.add_argument("--phi", type=phi_arg, default=None,
                   help=f"QCFS shift: 0.5 clip-floor-shift, 0 clip-floor ({_RECIPE}0.5)")
    p.add_argument("--thresh", type=float, default=None,
                   help=f"initial threshold lambda ({_RECIPE}4.0)")
    p.add_argument("--width", type=int, default=None,
                   help=f"model base width ({_RECIPE}the model's usual width)")
    p.add_argument("--hidden", type=int, default=None,
                   help="VGG classifier hidden units (default 4096; 0: one Linear layer)")
    p.add_argument("--epochs", type=int, default=None, help=f"training epochs ({_RECIPE}40)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help=f"samples per batch ({_RECIPE}64)")
    p.add_argument("--lr", type=float, default=None,
                   help=f"learning rate, cosine schedule ({_RECIPE}0.05)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default=None,
                   help=f"SGD with momentum 0.9, or Adam ({_RECIPE}sgd)")
    p.add_argument("--weight-decay", type=float, default=None,
                   help=f"weight decay on conv/linear weights ({_RECIPE}0.0005)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of initialisation, shuffling and the dataset split (default 0)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random crop + flip (default: on for CIFAR only)")
    p.add_argument("--num-workers", type=int, default=None,
                   help="data-loader worker processes (default 0: load in the main process)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                   help="torch device (default auto: cuda when available)")
    p.add_argument("--resume", action="store_true", help="continue from --out/last.pt")
    p.add_argument("--thresh-decay", action=argparse.BooleanOptionalAction, default=None,
                   help="weight decay on the QCFS thresholds too, as the QCFS reference "
                   "(default: the dataset's recipe)")
    p.add_argument("--init-from", default=None, metavar="CKPT",
                   help="start from this checkpoint of the same model and data (e.g. a ReLU "
                   "run): calibrated to QCFS, written as OUT/init.pt, then trained")
    p.add_argument("--init-percentile", type=float, default=None,
                   help="calibration percentile for --init-from (default 99.5)")
    p.set_defaults(func=run_train)

    e = sub.add_parser(
        "evaluate",
        help="ANN and float-SNN accuracy of a checkpoint",
        description="Accuracy of the QCFS ANN and of its float SNN (docs/contract.md, section "
        "2) for each number of steps T, on the checkpoint's dataset unless --dataset is given.",
    )
    e.add_argument("checkpoint", help="checkpoint file (best.pt)")
    e.add_argument("--steps", type=parse_steps, default=STEPS_TO_COMPARE,
                   help="comma-separated T values")
    add_data_args(e)
    e.add_argument("--batch-size", type=positive_int, default=256,
                   help="samples per batch (default 256)")
    e.add_argument("--json", default=None, help="also write the results to this JSON file")
    add_graded_arg(e)
    add_force_arg(e)
    e.set_defaults(func=run_evaluate)


_FIELDS = ("activation", "levels", "phi", "thresh", "width", "epochs", "batch_size", "lr",
           "optimizer", "weight_decay", "seed", "augment", "num_workers", "device",
           "thresh_decay", "init_from", "init_percentile")


def run_train(args: argparse.Namespace) -> int:
    from qcfs_lava.train import TrainConfig, recipe, train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    options = recipe(args.dataset)
    options.update({k: getattr(args, k) for k in _FIELDS if getattr(args, k) is not None})
    if args.hidden is not None:
        options["model_kwargs"] = {"hidden": args.hidden}
    from qcfs_lava.errors import UsageError

    try:
        config = TrainConfig(model=args.model, dataset=args.dataset, out_dir=args.out,
                             data_root=args.data_root, download=args.download,
                             resume=args.resume, **options)
    except ValueError as exc:
        raise UsageError(f"{exc}; fix the option (see `qcfs-lava train --help`)") from exc
    start = time.perf_counter()
    best = train(config)
    print(f"best checkpoint: {best} ({time.perf_counter() - start:.1f} s)")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    import torch

    from qcfs_lava.checkpoint import checkpoint_sha256, load_checkpoint
    from qcfs_lava.data import normalize
    from qcfs_lava.snn import evaluate_ann, simulate_snn

    # before any work, so finished results are never lost to an unwritable path
    check_outputs(args, (args.json, "--json", "json"))
    ckpt = load_checkpoint(args.checkpoint)
    model = ckpt.build_model()
    x_uint8, y, split = load_test_data(args, ckpt.dataset, ckpt.input_shape, args.checkpoint,
                                       num_classes=ckpt.num_classes)
    x = normalize(x_uint8, *ckpt.normalization())
    y = torch.as_tensor(y)
    ann = evaluate_ann(model, x, y, args.batch_size)
    result = {
        "checkpoint": str(args.checkpoint),
        "sha256": checkpoint_sha256(args.checkpoint),
        "model": ckpt.model,
        "dataset": split.name,
        "samples": len(y),
        "levels": ckpt.levels,
        "phi": ckpt.phi,
        "activation": ckpt.activation,
        "ann_accuracy": ann,
    }
    print(f"{ckpt.model} on {split.name} ({len(y)} test samples), L={ckpt.levels}, "
          f"phi={ckpt.phi}")
    print(f"  ANN ({ckpt.activation}) accuracy: {100 * ann:.2f}%")
    if ckpt.activation == "qcfs":
        payload = graded_payload(args)
        snn = simulate_snn(model, x, y, args.steps, args.batch_size, payload=payload)
        result["snn_accuracy"] = {str(t): a for t, a in snn.accuracy.items()}
        result["spike_rates"] = snn.spike_rates
        if payload != 1:
            result["graded"] = payload
            result["payload_rates"] = snn.payload_rates
            print(f"  graded spikes: payload up to P = {payload}")
        for t, acc in snn.accuracy.items():
            print(f"  float SNN T={t:<4d} accuracy: {100 * acc:.2f}%")
    else:
        print("  (ReLU model: no float SNN; train with --activation qcfs)")
    if args.json:
        from qcfs_lava.io import write_json

        write_json(args.json, result, sort_keys=True)
        print(f"wrote {args.json}")
    return 0
