"""``qcfs-lava demo``: :func:`qcfs_lava.demo.run_demo` with its steps and summary printed."""

from __future__ import annotations

import argparse


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
    from qcfs_lava.demo import DemoConfig, run_demo

    config = DemoConfig(out=args.out, export=args.export, epochs=args.epochs, steps=args.steps,
                        lava_samples=args.lava_samples, retrain=args.retrain)
    result = run_demo(config, say=print)
    report, steps = result.report, config.steps
    counts, energy = report.counts[steps], report.energy[steps]
    print("[5/5] summary")
    print(result.report.budget.format(steps=[steps]))
    print("\n".join([
        f"  integer SNN (T={steps:>2}, file)  {100 * result.file_accuracy:.2f}%"
        f"  ({result.test_samples} samples)",
        f"  spikes per sample           {counts.per_sample('spikes'):.0f}",
        f"  SynOps per sample           {counts.per_sample('synops'):.0f} "
        f"(+ {counts.per_sample('input_macs'):.0f} first-layer MACs)",
        f"  energy per sample (estimates) Loihi 1: {energy.per_sample_uj('loihi1'):.3f} uJ; "
        f"45 nm: SNN {energy.per_sample_uj('cmos_snn'):.3f} uJ vs ANN "
        f"{energy.per_sample_uj('cmos_ann'):.3f} uJ",
        f"  report                      {report.markdown}",
        f"  plots                       {', '.join(str(p) for p in report.plots)}",
        f"  NetX file                   {config.export}",
        f"  summary                     {result.summary}",
        f"  total time                  {result.seconds:.0f} s",
    ]))
    if not result.lava_identical:
        print("error: the Lava run and the emulator differ; they must be identical")
        return 1
    return 0
