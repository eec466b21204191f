"""The whole deployment on the embedded digits data, in a few minutes (``qcfs-lava demo``).

train -> evaluate (ANN, float SNN) -> convert + export NetX -> read it back and emulate ->
simulate in Lava (spike-for-spike check against the emulator) -> report with plots.

:func:`run_demo` does the work and returns a :class:`DemoResult`; the command prints it. The
steps are announced through ``say`` (the command passes ``print``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["DemoConfig", "DemoResult", "run_demo"]


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs (written, resolved, into ``summary.json``).

    Attributes:
        out: folder for the training run and the report.
        export: NetX file to write.
        epochs: training epochs (``None``: the dataset's recipe).
        steps: ``T`` for the export, Lava and the error budget.
        lava_samples: test samples to simulate in Lava (0: skip Lava).
        retrain: train again even if a finished run exists in ``out``.
    """

    out: str = "runs/demo"
    export: str = "netx_exports/digits-cnn-demo.net"
    epochs: int | None = None
    steps: int = 8
    lava_samples: int = 100
    retrain: bool = False


@dataclass
class DemoResult:
    """What the demo measured and wrote.

    Attributes:
        config: the configuration.
        checkpoint: the trained checkpoint used.
        reused: the training run was reused, not trained now.
        network: the converted integer network (as exported).
        quantization: the converter's report.
        file_accuracy: the emulator's accuracy on the whole test split, from the NetX file.
        test_samples: size of the test split.
        report: the report (:class:`qcfs_lava.report.ReportResult`).
        summary: path of ``summary.json``.
        seconds: wall time.
    """

    config: DemoConfig
    checkpoint: Path
    reused: bool
    network: Any
    quantization: Any
    file_accuracy: float
    test_samples: int
    report: Any
    summary: Path
    seconds: float

    @property
    def lava_identical(self) -> bool:
        """Lava equals the emulator, or Lava did not run (skipped or no samples)."""
        lava = self.report.budget.lava
        return lava is None or not lava.mismatches


def _train(config: DemoConfig, say: Callable[[str], None]) -> tuple[Path, bool]:
    from qcfs_lava.train import TrainConfig, train

    out = Path(config.out)
    best = out / "best.pt"
    if best.exists() and (out / "done").exists() and not config.retrain:
        say(f"      reusing {best} (pass --retrain to train again)")
        return best, True
    cfg = TrainConfig(out_dir=str(out))
    if config.epochs is not None:
        cfg.epochs = config.epochs
    best = train(cfg)
    (out / "done").write_text("training finished\n")
    return best, False


def run_demo(config: DemoConfig, *, say: Callable[[str], None] = lambda message: None
             ) -> DemoResult:
    """Train (or reuse), convert, export, emulate the file, report (with Lava), summarise."""
    from qcfs_lava.data import load_dataset
    from qcfs_lava.io import write_json
    from qcfs_lava.network import format_table
    from qcfs_lava.netx import write_netx
    from qcfs_lava.pipeline import convert_checkpoint, load_source, run_chain
    from qcfs_lava.report import ReportConfig, make_report

    t_start = time.perf_counter()
    out = Path(config.out)
    say(f"[1/5] training a QCFS cnn on digits -> {out}")
    best, reused = _train(config, say)

    say(f"[2/5] converting to the integer network and exporting NetX -> {config.export}")
    net, qreport, _ = convert_checkpoint(best, steps=config.steps)
    write_netx(net, config.export)
    say(format_table(net))
    say(qreport.format())

    say(f"[3/5] reading {config.export} back and emulating the whole test split, "
        f"T={config.steps}")
    split = load_dataset("digits")
    from_file = run_chain(load_source(config.export), split.x_test, split.y_test,
                          [config.steps], progress=True)
    emu = from_file.runs[config.steps]

    say(f"[4/5] report (ANN, float SNN, integer SNN, Lava on {config.lava_samples} samples)")
    report = make_report(
        ReportConfig(checkpoint=str(best), steps=(1, 2, 4, 8, 16, 32),
                     budget_steps=config.steps, lava_samples=config.lava_samples),
        out / "report", progress=True,
    )
    summary = write_json(out / "summary.json", {
        "config": asdict(config),
        "error_budget": report.budget.to_dict(), "integer_snn_from_file": emu.accuracy,
        "report": str(report.markdown), "netx": str(config.export),
    })
    return DemoResult(config, best, reused, net, qreport, emu.accuracy, len(split.y_test),
                      report, summary, time.perf_counter() - t_start)
