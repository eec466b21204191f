"""``qcfs-lava demo``: the whole deployment on the embedded digits data, in a few minutes.

train -> evaluate (ANN, float SNN) -> convert + export NetX -> read it back and emulate ->
simulate in Lava (spike-for-spike check against the emulator) -> report with plots.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="train, convert, export, emulate, simulate in Lava and report, on digits",
        description="The main job: a QCFS cnn on scikit-learn's digits, end to end. Reuses a "
        "finished training run in --out unless --retrain is given.",
    )
    p.add_argument("--out", default="runs/demo", help="folder for the run and the report")
    p.add_argument("--export", default="netx_exports/digits-cnn-demo.net",
                   help="NetX file to write")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: recipe)")
    p.add_argument("--steps", type=int, default=8, help="T for export, Lava and the budget")
    p.add_argument("--lava-samples", type=int, default=100,
                   help="test samples to simulate in Lava (0: skip Lava)")
    p.add_argument("--retrain", action="store_true", help="train again even if a run exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qcfs_lava.data import load_dataset
    from qcfs_lava.io import write_json
    from qcfs_lava.network import format_table
    from qcfs_lava.netx import write_netx
    from qcfs_lava.pipeline import convert_checkpoint, load_source, run_chain
    from qcfs_lava.report import ReportConfig, make_report
    from qcfs_lava.train import TrainConfig, train

    t_start = time.perf_counter()
    out = Path(args.out)
    best = out / "best.pt"
    print(f"[1/5] training a QCFS cnn on digits -> {out}")
    if best.exists() and (out / "done").exists() and not args.retrain:
        print(f"      reusing {best} (pass --retrain to train again)")
    else:
        cfg = TrainConfig(out_dir=str(out))
        if args.epochs is not None:
            cfg.epochs = args.epochs
        best = train(cfg)
        (out / "done").write_text("training finished\n")

    print(f"[2/5] converting to the integer network and exporting NetX -> {args.export}")
    net, qreport, ckpt = convert_checkpoint(best, steps=args.steps)
    write_netx(net, args.export)
    print(format_table(net))
    print(qreport.format())

    print(f"[3/5] reading {args.export} back and emulating the whole test split, T={args.steps}")
    split = load_dataset("digits")
    from_file = run_chain(load_source(args.export), split.x_test, split.y_test, [args.steps],
                          progress=True)
    emu = from_file.runs[args.steps]

    print(f"[4/5] report (ANN, float SNN, integer SNN, Lava on {args.lava_samples} samples)")
    report = make_report(
        ReportConfig(checkpoint=str(best), steps=(1, 2, 4, 8, 16, 32),
                     budget_steps=args.steps, lava_samples=args.lava_samples),
        out / "report", progress=True,
    )
    budget = report.budget
    counts = report.counts[args.steps]
    energy = report.energy[args.steps]

    print("[5/5] summary")
    print(budget.format(steps=[args.steps]))
    lines = [
        f"  integer SNN (T={args.steps:>2}, file)  {100 * emu.accuracy:.2f}%"
        f"  ({len(split.y_test)} samples)",
    ]
    lines += [
        f"  spikes per sample           {counts.per_sample('spikes'):.0f}",
        f"  SynOps per sample           {counts.per_sample('synops'):.0f} "
        f"(+ {counts.per_sample('input_macs'):.0f} first-layer MACs)",
        f"  energy per sample (estimates) Loihi 1: {energy.per_sample_uj('loihi1'):.3f} uJ; "
        f"45 nm: SNN {energy.per_sample_uj('cmos_snn'):.3f} uJ vs ANN "
        f"{energy.per_sample_uj('cmos_ann'):.3f} uJ",
        f"  report                      {report.markdown}",
        f"  plots                       {', '.join(str(p) for p in report.plots)}",
        f"  NetX file                   {args.export}",
        f"  total time                  {time.perf_counter() - t_start:.0f} s",
    ]
    print("\n".join(lines))
    write_json(out / "summary.json", {
        "config": {k: v for k, v in vars(args).items() if k != "func"},
        "error_budget": budget.to_dict(), "integer_snn_from_file": emu.accuracy,
        "report": str(report.markdown), "netx": str(args.export),
    })
    if budget.lava is not None and budget.lava.mismatches:
        print("error: the Lava run and the emulator differ; they must be identical")
        return 1
    return 0
