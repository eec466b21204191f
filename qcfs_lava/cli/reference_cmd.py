"""``qcfs-lava import-reference``: a reference QCFS state dict -> a qcfs-lava checkpoint."""

from __future__ import annotations

import argparse
import math

from qcfs_lava.cli.common import RegistryHelp, levels_arg

# Input normalisation the reference code uses for its datasets (per channel, of x / 255).
REFERENCE_NORMALIZATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
}
CLASS_COUNTS = {"cifar10": 10, "cifar100": 100, "mnist": 10, "fashion-mnist": 10,
                "mnist-split": 10, "digits": 10}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-reference",
        help="turn a state dict of the public QCFS reference code into a qcfs-lava checkpoint",
        description="Import a VGG16 / ResNet-18/20/34 state dict saved by the QCFS reference "
        "code (both code bases: '.thresh' or '.up' thresholds) into a qcfs-lava checkpoint that "
        "export, emulate, simulate and report accept. The file is loaded with weights_only.",
    )
    p.add_argument("state_dict", metavar="STATE_DICT.pth")
    p.add_argument("--arch", required=True,
                   help=RegistryHelp("one of {names}", "qcfs_lava.model.reference",
                                     "REFERENCE_ARCHS"))
    p.add_argument("--levels", type=levels_arg, required=True,
                   help="quantization levels L the reference model was trained with")
    p.add_argument("--dataset", default="cifar10",
                   help="dataset the model was trained on (sets classes and normalisation)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="classes of the output layer (default: the dataset's)")
    p.add_argument("--input-size", type=int, default=32,
                   help="image side in pixels (default 32)")
    p.add_argument("--in-channels", type=int, default=3,
                   help="image channels (default 3)")
    p.add_argument("--mean", default=None, help="per-channel mean of x/255, e.g. 0.49,0.48,0.45")
    p.add_argument("--std", default=None, help="per-channel std of x/255")
    p.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing --out of another kind (the input is never replaced)")
    p.set_defaults(func=run)


def _floats(text: str | None, n: int, default) -> list[float]:
    if text is None:
        return [float(v) for v in default]
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        from qcfs_lava.errors import CheckpointError

        raise CheckpointError(f"--mean/--std must be comma-separated numbers, got {text!r}") \
            from None
    if not all(math.isfinite(v) for v in vals):
        from qcfs_lava.errors import CheckpointError

        raise CheckpointError(f"--mean/--std must be finite numbers, got {text!r}")
    return vals * n if len(vals) == 1 else vals


def run(args: argparse.Namespace) -> int:
    from qcfs_lava.checkpoint import Checkpoint, save_checkpoint
    from qcfs_lava.cli.common import check_outputs
    from qcfs_lava.errors import CheckpointError
    from qcfs_lava.model.reference import (
        import_reference,
        load_reference,
        reference_model_kwargs,
    )

    check_outputs(args, (args.out, "--out", "torch"))
    if args.levels < 1 or (args.num_classes is not None and args.num_classes < 1) or \
            args.input_size < 1 or args.in_channels < 1:
        raise CheckpointError("--levels, --num-classes, --input-size and --in-channels must be "
                              ">= 1")
    num_classes = args.num_classes or CLASS_COUNTS.get(args.dataset)
    if num_classes is None:
        raise CheckpointError(f"unknown dataset {args.dataset!r}: pass --num-classes")
    mean0, std0 = REFERENCE_NORMALIZATION.get(args.dataset, ((0.0,), (1.0,)))
    mean = _floats(args.mean, args.in_channels, mean0 * (args.in_channels // len(mean0) or 1))
    std = _floats(args.std, args.in_channels, std0 * (args.in_channels // len(std0) or 1))
    if len(mean) != args.in_channels or len(std) != args.in_channels:
        raise CheckpointError("--mean/--std need one value per input channel")
    sd = load_reference(args.state_dict)
    model = import_reference(sd, args.arch, num_classes, args.levels, args.in_channels,
                             args.input_size)
    kwargs = reference_model_kwargs(sd, args.arch, num_classes, args.levels, args.in_channels,
                                    args.input_size)
    ckpt = Checkpoint(
        model=args.arch, model_kwargs=kwargs, state_dict=model.state_dict(),
        levels=args.levels, phi=0.5, activation="qcfs", dataset=args.dataset,
        input_shape=(args.in_channels, args.input_size, args.input_size),
        num_classes=num_classes, class_names=[str(i) for i in range(num_classes)],
        mean=mean, std=std,
    )
    save_checkpoint(ckpt, args.out)
    print(f"wrote {args.out}: {args.arch} (width {kwargs['width']}), L={args.levels}, "
          f"{num_classes} classes, mean {mean}, std {std}")
    print(f"next: qcfs-lava export {args.out} --out model.net --steps 32")
    return 0
