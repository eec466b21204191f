"""The paper's three experiments at small scale (``qcfs-lava sweep``).

Bu et al. (ICLR 2022) show, and this sweep reproduces on a small dataset:

1. **ANN accuracy vs L** for ReLU (one run, independent of L), clip-floor (``phi = 0``) and
   clip-floor-shift (``phi = 0.5``): few levels cost little ANN accuracy.
2. **SNN accuracy vs T at one L** (default 4), clip-floor vs clip-floor-shift: the shift
   removes most of the error at small T.
3. **SNN accuracy vs T for several L** (clip-floor-shift): small L converges in fewer steps.

Every model is trained with :func:`qcfs_lava.train.train` into ``OUT/runs/<run>/``; the float
SNN is :func:`qcfs_lava.snn.simulate_snn`. With ``resume`` (default) a run whose
``config.json`` matches is not trained again. Results go to ``OUT/sweep.json``,
``OUT/sweep.md`` and three PNG plots, each written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qcfs_lava.analysis import plots
from qcfs_lava.errors import AnalysisError
from qcfs_lava.io import write_json, write_text

__all__ = ["SweepConfig", "SweepResult", "run_sweep"]

log = logging.getLogger(__name__)


@dataclass
class SweepConfig:
    """Configuration of a sweep (written, resolved, into ``sweep.json``).

    Attributes:
        dataset: dataset name (:data:`qcfs_lava.data.DATASETS`).
        model: registered model (:data:`qcfs_lava.model.zoo.MODELS`).
        levels: the ``L`` values of experiments 1 and 3.
        steps: the ``T`` values of experiments 2 and 3.
        shift_levels: the ``L`` of experiment 2 (added to ``levels`` if missing).
        epochs, batch_size, lr, optimizer, weight_decay, width, seed: training recipe
            (:class:`qcfs_lava.train.TrainConfig`).
        samples: test samples for the evaluations (``None``: all).
        data_root: dataset folder.
        device: training / evaluation device (``"auto"``, ``"cpu"``, ``"cuda"``).
        resume: reuse trained runs whose configuration matches.
        model_kwargs: extra model options.
    """

    dataset: str = "digits"
    model: str = "cnn"
    levels: tuple[int, ...] = (1, 2, 4, 8, 16)
    steps: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    shift_levels: int = 4
    epochs: int = 40
    batch_size: int = 64
    lr: float = 0.05
    optimizer: str = "sgd"
    weight_decay: float = 5e-4
    width: int | None = None
    seed: int = 0
    samples: int | None = None
    data_root: str | None = None
    device: str = "auto"
    resume: bool = True
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.levels = tuple(sorted({int(v) for v in self.levels} | {int(self.shift_levels)}))
        self.steps = tuple(sorted({int(t) for t in self.steps}))
        if self.levels[0] < 1:
            raise AnalysisError(f"sweep: levels must be >= 1, got {self.levels}")
        if not self.steps or self.steps[0] < 1:
            raise AnalysisError(f"sweep: steps must be positive integers, got {self.steps}")
        if self.samples is not None and int(self.samples) < 1:
            raise AnalysisError(f"sweep: samples must be >= 1, got {self.samples}")

    def runs(self) -> dict[str, dict[str, Any]]:
        """Run name -> the activation options of its model."""
        out = {"relu": {"activation": "relu", "levels": self.shift_levels, "phi": 0.5}}
        for lv in self.levels:
            out[f"cf-L{lv}"] = {"activation": "qcfs", "levels": lv, "phi": 0.0}
            out[f"cfs-L{lv}"] = {"activation": "qcfs", "levels": lv, "phi": 0.5}
        return out


@dataclass
class SweepResult:
    """What :func:`run_sweep` produced: the numbers and the written files."""

    out_dir: Path
    data: dict[str, Any]
    json: Path
    markdown: Path
    plots: list[Path]


_IGNORED_KEYS = ("out_dir", "resume", "device", "num_workers", "augment")


def _train_config(config: SweepConfig, name: str, options: dict, out: Path):
    from qcfs_lava.train import TrainConfig

    return TrainConfig(
        model=config.model, dataset=config.dataset, out_dir=str(out / "runs" / name),
        activation=options["activation"], levels=options["levels"], phi=options["phi"],
        width=config.width, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
        optimizer=config.optimizer, weight_decay=config.weight_decay, seed=config.seed,
        data_root=config.data_root, device=config.device,
        model_kwargs=dict(config.model_kwargs),
    )


def _reusable(train_cfg) -> bool:
    run = Path(train_cfg.out_dir)
    best, cfg_file = run / "best.pt", run / "config.json"
    if not (best.is_file() and cfg_file.is_file()):
        return False
    try:
        saved = json.loads(cfg_file.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    want = json.loads(json.dumps(asdict(train_cfg)))
    return all(saved.get(k) == v for k, v in want.items() if k not in _IGNORED_KEYS)


def run_sweep(config: SweepConfig, out_dir: str | Path, *, progress: bool = False
              ) -> SweepResult:
    """Train the sweep's models, evaluate the three experiments, write results and plots.

    Args:
        config: the sweep (:class:`SweepConfig`).
        out_dir: output folder.
        progress: show tqdm bars in evaluation.

    Returns:
        The numbers and written paths (:class:`SweepResult`).
    """
    import torch

    from qcfs_lava.checkpoint import load_checkpoint
    from qcfs_lava.data import load_dataset, normalize
    from qcfs_lava.model.zoo import build_model
    from qcfs_lava.snn import evaluate_ann, simulate_snn
    from qcfs_lava.train import model_kwargs, train

    out = Path(out_dir)
    split = load_dataset(config.dataset, config.data_root, seed=config.seed)
    # an unknown model or one the images do not fit is refused before the folder exists
    for name, options in config.runs().items():
        build_model(config.model, **model_kwargs(_train_config(config, name, options, out),
                                                 split))
    out.mkdir(parents=True, exist_ok=True)
    n = len(split.y_test) if config.samples is None else min(int(config.samples),
                                                              len(split.y_test))
    y = torch.as_tensor(split.y_test[:n])
    x_float = normalize(split.x_test[:n], split)

    ann: dict[str, float] = {}
    snn: dict[str, dict[int, float]] = {}
    trained: dict[str, bool] = {}
    for name, options in config.runs().items():
        train_cfg = _train_config(config, name, options, out)
        reuse = config.resume and _reusable(train_cfg)
        if not reuse:
            log.info("sweep: training %s", name)
            train(dataclasses.replace(train_cfg, resume=config.resume))
        trained[name] = not reuse
        model = load_checkpoint(Path(train_cfg.out_dir) / "best.pt").build_model()
        ann[name] = evaluate_ann(model, x_float, y)
        needs_snn = options["activation"] == "qcfs" and (
            options["phi"] == 0.5 or options["levels"] == config.shift_levels
        )
        if needs_snn:
            snn[name] = simulate_snn(model, x_float, y, config.steps).accuracy
        log.info("sweep: %s ANN %.4f", name, ann[name])

    lv = config.levels
    exp1 = {
        "relu": ann["relu"],
        "clip_floor": {v: ann[f"cf-L{v}"] for v in lv},
        "clip_floor_shift": {v: ann[f"cfs-L{v}"] for v in lv},
    }
    ls = config.shift_levels
    exp2 = {"levels": ls, "clip_floor": snn[f"cf-L{ls}"], "clip_floor_shift": snn[f"cfs-L{ls}"],
            "ann": {"clip_floor": ann[f"cf-L{ls}"], "clip_floor_shift": ann[f"cfs-L{ls}"]}}
    exp3 = {v: snn[f"cfs-L{v}"] for v in lv}
    plot_paths = [
        plots.plot_sweep_lines(
            out / "ann_vs_levels.png", lv,
            {"clip-floor": exp1["clip_floor"], "clip-floor-shift": exp1["clip_floor_shift"]},
            "quantization levels L", f"ANN accuracy vs L ({config.model}, {config.dataset})",
            hlines={"ReLU": exp1["relu"]},
        ),
        plots.plot_sweep_lines(
            out / "snn_shift_vs_steps.png", config.steps,
            {"clip-floor": exp2["clip_floor"], "clip-floor-shift": exp2["clip_floor_shift"]},
            "time steps T", f"SNN accuracy vs T at L={ls}",
        ),
        plots.plot_sweep_lines(
            out / "snn_levels_vs_steps.png", config.steps,
            {f"L={v}": exp3[v] for v in lv}, "time steps T",
            "SNN accuracy vs T (clip-floor-shift)",
        ),
    ]
    data = {
        "config": asdict(config),
        "samples": n,
        "trained_now": trained,
        "ann_accuracy": ann,
        "snn_accuracy": snn,
        "ann_vs_levels": exp1,
        "snn_shift_vs_steps": exp2,
        "snn_levels_vs_steps": exp3,
        "plots": [p.name for p in plot_paths],
    }
    json_path = write_json(out / "sweep.json", data)
    md_path = write_text(out / "sweep.md", _markdown(config, n, exp1, exp2, exp3))
    return SweepResult(out, json.loads(json_path.read_text()), json_path, md_path, plot_paths)


def _pct(v: float) -> str:
    return f"{100 * v:.2f}"


def _markdown(config: SweepConfig, n: int, exp1: dict, exp2: dict, exp3: dict) -> str:
    steps = config.steps
    lines = [
        f"# QCFS sweep: {config.model} on {config.dataset}",
        "",
        f"{n} test samples; {config.epochs} epochs per model; accuracy in %.",
        "",
        "## 1. ANN accuracy vs quantization levels L",
        "",
        "![ANN vs L](ann_vs_levels.png)",
        "",
        "| L | " + " | ".join(str(v) for v in config.levels) + " |",
        "|---|" + "---:|" * len(config.levels),
        "| clip-floor | " + " | ".join(_pct(exp1["clip_floor"][v]) for v in config.levels)
        + " |",
        "| clip-floor-shift | "
        + " | ".join(_pct(exp1["clip_floor_shift"][v]) for v in config.levels) + " |",
        "",
        f"ReLU ANN: {_pct(exp1['relu'])}.",
        "",
        f"## 2. SNN accuracy vs T at L = {exp2['levels']}: clip-floor vs clip-floor-shift",
        "",
        "![shift](snn_shift_vs_steps.png)",
        "",
        "| T | " + " | ".join(str(t) for t in steps) + " | ANN |",
        "|---|" + "---:|" * (len(steps) + 1),
        "| clip-floor | " + " | ".join(_pct(exp2["clip_floor"][t]) for t in steps)
        + f" | {_pct(exp2['ann']['clip_floor'])} |",
        "| clip-floor-shift | " + " | ".join(_pct(exp2["clip_floor_shift"][t]) for t in steps)
        + f" | {_pct(exp2['ann']['clip_floor_shift'])} |",
        "",
        "## 3. SNN accuracy vs T for several L (clip-floor-shift)",
        "",
        "![levels](snn_levels_vs_steps.png)",
        "",
        "| L \\ T | " + " | ".join(str(t) for t in steps) + " |",
        "|---|" + "---:|" * len(steps),
    ]
    for v in config.levels:
        lines.append(f"| {v} | " + " | ".join(_pct(exp3[v][t]) for t in steps) + " |")
    lines += ["", "## Configuration", "", "```json",
              json.dumps(asdict(config), indent=2), "```", ""]
    return "\n".join(lines)
