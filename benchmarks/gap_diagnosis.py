"""Where the integer SNN loses against the float SNN: weight precision, layer by layer.

The integer network differs from the float SNN (docs/contract.md, section 2) by its rounding: 8-bit
weights on one grid per layer, 17-bit thresholds, 13-bit biases and the 24-bit membrane. To
tell whether the 8-bit weight grid is what costs accuracy, this script converts the same
checkpoint again with a wider weight range (an experiment only: Loihi's synapses are 8-bit)
and emulates it exactly like the real network, on the same images and T:

- ``8``: the real conversion (what ``export`` writes);
- ``8-copiesK`` for each ``--copies``: 8-bit weights, but a residual add's grid set by its
  smaller path and the larger one (the identity shortcut) carried by up to ``K`` synapse
  copies (``ConversionConfig.synapse_copies``; exact in every stage, hardware-legal);
- ``8-layer-copiesK`` for each ``--layer-copies``: 8-bit weights, every single-synapse
  layer on a grid ``K`` times finer, its weights carried by up to ``K`` synapse copies
  (``ConversionConfig.layer_copies``; exact in every stage, hardware-legal, up to ``K``
  times the layer's synaptic operations);
- ``B`` for each ``--bits``: weights with ``B`` bits instead of 8 (``ConversionConfig.weight_bits``;
  membrane, synaptic sum and bias ranges widened by the same factor, so the headroom in
  thresholds is unchanged; the network carries these ranges and the emulator follows them).

If the gap closes with wider weights, the weight grid is the cause; the per-layer quantization
report (weight step against each synapse's largest weight) then says which layers. Membrane
saturations are counted per layer in every run. Writes a results JSON with the command line.

How much of a gap is noise: every variant also reports its prediction agreement with the float
SNN, and ``--noise-seeds N`` runs the float SNN again on the images plus Gaussian noise of
``--noise`` (normalised units; one uint8 level is about 0.016) with N seeds: the spread of
those accuracies and their agreement with the unperturbed float SNN show how far an
imperceptible change moves a low-T SNN. ``--images all`` uses the training images too (more
images, smaller sampling error; the comparison is float against integer on the same images).

    .venv/bin/python benchmarks/gap_diagnosis.py runs/resnet20-c10s/best.pt --steps 8,16,32 \\
        --out benchmarks/results/gap-resnet20-cifar10-subset.json
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from qcfs_lava.checkpoint import checkpoint_sha256, load_checkpoint
from qcfs_lava.convert import ConversionConfig
from qcfs_lava.data import load_dataset, normalize
from qcfs_lava.emulator import emulate
from qcfs_lava.io import write_json
from qcfs_lava.pipeline import convert_checkpoint
from qcfs_lava.snn import snn_outputs


def _main_path_resolution(net, report) -> dict:
    """Per layer and synapse: largest |q| used (127 = the full 8-bit range)."""
    out = {}
    for layer, q in zip(net.layers, report.layers, strict=True):
        out[layer.name] = {
            "qmax": q.qmax,
            "synapse_max_abs_q": [int(np.abs(s.weight).max(initial=0)) // 2
                                  for s in layer.synapses],
            "weight_step": q.weight_step * 2,
        }
    return out


def _float_snn_predictions(model, xf: torch.Tensor, steps: list[int],
                           batch_size: int) -> dict[int, np.ndarray]:
    """The float SNN's predictions at each ``T`` (mean classifier output over ``T`` steps)."""
    preds = {t: [] for t in steps}
    with torch.no_grad():
        for lo in range(0, len(xf), batch_size):
            out = snn_outputs(model, xf[lo:lo + batch_size], max(steps))
            for t in steps:
                preds[t].append(out[:t].mean(0).argmax(1).numpy())
    return {t: np.concatenate(p) for t, p in preds.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--steps", default="8,16,32")
    p.add_argument("--bits", default="12", help="comma-separated wider weight widths")
    p.add_argument("--copies", default="8", help="comma-separated synapse copy limits")
    p.add_argument("--layer-copies", default="",
                   help="comma-separated copy limits for single-synapse layers")
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--images", choices=("test", "all"), default="test",
                   help="test split only, or training and test images")
    p.add_argument("--noise-seeds", type=int, default=0)
    p.add_argument("--noise", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    steps = sorted({int(s) for s in args.steps.split(",")})
    ckpt = load_checkpoint(args.checkpoint)
    split = load_dataset(ckpt.dataset)
    x, y = split.x_test, split.y_test
    if args.images == "all":
        x, y = np.concatenate([split.x_train, x]), np.concatenate([split.y_train, y])
    n = len(y) if args.samples is None else min(args.samples, len(y))
    x, y = x[:n], y[:n]
    result = {
        "command": " ".join(["python", *sys.argv]),
        "checkpoint": args.checkpoint, "sha256": checkpoint_sha256(args.checkpoint),
        "model": ckpt.model, "dataset": split.name, "images": args.images, "samples": n,
        "steps": steps,
    }
    t0 = time.perf_counter()
    model = ckpt.build_model().eval()
    xf = normalize(x, ckpt.mean, ckpt.std)
    float_pred = _float_snn_predictions(model, xf, steps, args.batch_size)
    result["float_snn"] = {str(t): float(np.mean(p == y)) for t, p in float_pred.items()}
    print("float SNN: " + ", ".join(f"T={t} {100 * a:.2f}%"
                                    for t, a in result["float_snn"].items()), flush=True)
    if args.noise_seeds:
        noisy = {"noise": args.noise, "accuracy": {str(t): [] for t in steps},
                 "agreement": {str(t): [] for t in steps}}
        for seed in range(args.noise_seeds):
            gen = torch.Generator().manual_seed(seed)
            xn = xf + args.noise * torch.randn(xf.shape, generator=gen)
            for t, p in _float_snn_predictions(model, xn, steps, args.batch_size).items():
                noisy["accuracy"][str(t)].append(float(np.mean(p == y)))
                noisy["agreement"][str(t)].append(float(np.mean(p == float_pred[t])))
        result["float_snn_noisy"] = noisy
        print("float SNN + noise: " + ", ".join(
            f"T={t} {100 * np.mean(a):.2f}% (sd {100 * np.std(a):.2f}, agreement "
            f"{100 * np.mean(noisy['agreement'][t]):.2f}%)"
            for t, a in noisy["accuracy"].items()), flush=True)
    result["integer_snn"] = {}
    variants = [("8", 8, 1, 1)]
    variants += [(f"8-copies{int(k)}", 8, int(k), 1) for k in args.copies.split(",")
                 if k.strip()]
    variants += [(f"8-layer-copies{int(k)}", 8, 1, int(k))
                 for k in args.layer_copies.split(",") if k.strip()]
    variants += [(str(int(b)), int(b), 1, 1) for b in args.bits.split(",") if b.strip()]
    for label, bits, copies, layer_copies in variants:
        config = ConversionConfig(weight_bits=bits, synapse_copies=copies,
                                  layer_copies=layer_copies)
        net, report, _ = convert_checkpoint(args.checkpoint, steps=max(steps), config=config)
        runs = {t: emulate(net, x, t, labels=y, batch_size=args.batch_size) for t in steps}
        result["integer_snn"][label] = {
            "weight_bits": bits, "synapse_copies_max": copies,
            "layer_copies_max": layer_copies,
            "accuracy": {str(t): r.accuracy for t, r in runs.items()},
            "agreement_with_float_snn": {str(t): float(np.mean(r.predictions == float_pred[t]))
                                         for t, r in runs.items()},
            "saturations": {str(t): r.to_dict(per_sample=False)["saturations"]
                            for t, r in runs.items()},
            "layers": _main_path_resolution(net, report),
        }
        print(f"integer SNN, {label}: " + ", ".join(
            f"T={t} {100 * r.accuracy:.2f}% (agreement "
            f"{100 * np.mean(r.predictions == float_pred[t]):.2f}%)"
            for t, r in runs.items()), flush=True)
    result["seconds"] = time.perf_counter() - t0
    write_json(args.out, result, sort_keys=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
