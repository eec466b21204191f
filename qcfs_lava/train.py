"""Training QCFS (or ReLU baseline) models: resumable, optionally distributed (torchrun).

A run writes into ``config.out_dir``:

- ``config.json``: the resolved configuration (written before the first epoch);
- ``best.pt``: a :mod:`qcfs_lava.checkpoint` checkpoint of the best test accuracy so far;
- ``last.pt``: model, optimizer, scheduler, RNG state and epoch, written after every epoch, so
  ``resume=True`` continues a killed run where it stopped;
- ``metrics.json``: loss and accuracy per epoch.

Every file is written atomically. Under ``torchrun`` (``WORLD_SIZE > 1``) the training set is
sharded with a ``DistributedSampler``, gradients are averaged by DDP (gloo on CPU, NCCL on
GPU) and only rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from qcfs_lava.checkpoint import Checkpoint, save_checkpoint
from qcfs_lava.data import NPZ_PREFIX, load_dataset, torch_dataset
from qcfs_lava.errors import CheckpointError
from qcfs_lava.io import save_torch, write_json
from qcfs_lava.model.qcfs import QCFS
from qcfs_lava.model.zoo import build_model
from qcfs_lava.progress import bar as progress_bar
from qcfs_lava.progress import line as progress_line
from qcfs_lava.snn import evaluate_ann, train_epoch

__all__ = ["RECIPES", "TrainConfig", "recipe", "train"]

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that defines a training run (written to ``config.json``).

    The defaults are the recipe for the 8x8 digits ``cnn`` with ``L = 4``.

    Attributes:
        model: registered model name (:data:`qcfs_lava.model.zoo.MODELS`).
        dataset: dataset name (:data:`qcfs_lava.data.DATASETS`).
        out_dir: folder for checkpoints, config and metrics.
        activation: ``"qcfs"`` or ``"relu"`` (baseline).
        levels: QCFS quantization levels ``L``.
        phi: QCFS shift (0.5 clip-floor-shift, 0 clip-floor).
        thresh: initial QCFS threshold ``lambda``.
        width: model base width (``None``: the model's default).
        epochs: training epochs.
        batch_size: per-process batch size.
        lr: initial learning rate.
        optimizer: ``"sgd"`` (momentum 0.9) or ``"adam"``; both with a cosine schedule.
        weight_decay: L2 on conv/linear weights (not on biases, BN or thresholds).
        seed: seed for initialisation, shuffling and the dataset split.
        data_root: dataset folder (see :func:`qcfs_lava.data.load_dataset`).
        download: allow torchvision downloads.
        augment: random crop + flip; ``None`` turns it on for CIFAR only.
        num_workers: data-loader workers.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        resume: continue from ``out_dir/last.pt`` if it exists.
        thresh_decay: apply ``weight_decay`` to the QCFS thresholds too (the QCFS reference
            code does; it pulls ``lambda`` down to the activations' scale).
        init_from: a checkpoint of the same model and dataset (typically ReLU) to start from:
            calibrated to QCFS (:func:`qcfs_lava.calibrate.calibrate`, per-layer percentile
            ``init_percentile`` on 1,000 training images) and written as ``init.pt`` before
            the first epoch.
        init_percentile: the calibration percentile for ``init_from``.
        model_kwargs: extra options for :func:`~qcfs_lava.model.zoo.build_model`.
    """

    model: str = "cnn"
    dataset: str = "digits"
    out_dir: str = "runs/cnn-digits"
    activation: str = "qcfs"
    levels: int = 4
    phi: float = 0.5
    thresh: float = 4.0
    width: int | None = None
    epochs: int = 40
    batch_size: int = 64
    lr: float = 0.05
    optimizer: str = "sgd"
    weight_decay: float = 5e-4
    seed: int = 0
    data_root: str | None = None
    download: bool = False
    augment: bool | None = None
    num_workers: int = 0
    device: str = "auto"
    resume: bool = False
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    thresh_decay: bool = False
    init_from: str | None = None
    init_percentile: float = 99.5

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        from qcfs_lava.validate import LEVELS_MAX

        for name in ("epochs", "batch_size", "levels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if int(self.levels) > LEVELS_MAX:
            raise ValueError(f"levels must be at most {LEVELS_MAX}, got {self.levels}")
        if not 0.0 <= float(self.phi) <= 1.0:  # also False for NaN
            raise ValueError(f"phi must be a number in [0, 1], got {self.phi}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


# Per-dataset training recipes: the TrainConfig fields that differ from its defaults (which are
# the digits recipe). CIFAR follows the QCFS reference (SGD 0.1, 300 epochs, lambda0 = 8).
RECIPES: dict[str, dict[str, Any]] = {
    "digits": {},
    "mnist-split": {"epochs": 20, "batch_size": 64, "lr": 0.05},
    "mnist": {"epochs": 20, "batch_size": 128, "lr": 0.05, "width": 32},
    "fashion-mnist": {"epochs": 40, "batch_size": 128, "lr": 0.05, "width": 32},
    "cifar10": {"epochs": 300, "batch_size": 128, "lr": 0.1, "thresh": 8.0},
    "cifar100": {"epochs": 300, "batch_size": 128, "lr": 0.1, "thresh": 8.0},
    "cifar10-subset": {"epochs": 40, "batch_size": 128, "lr": 0.1, "thresh": 8.0},
}


def recipe(dataset: str) -> dict[str, Any]:
    """The committed training recipe for ``dataset`` (TrainConfig overrides)."""
    return dict(RECIPES.get(dataset, {}))


def _setup_distributed(device: str) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return rank, world, dev


def _param_groups(model: nn.Module, weight_decay: float,
                  thresh_decay: bool = False) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            is_weight = isinstance(module, (nn.Conv2d, nn.Linear)) and name == "weight"
            is_thresh = thresh_decay and isinstance(module, QCFS) and name == "thresh"
            (decay if is_weight or is_thresh else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def model_kwargs(config: TrainConfig, split) -> dict[str, Any]:
    """The :func:`~qcfs_lava.model.zoo.build_model` arguments of ``config`` on ``split``."""
    return {
        "in_channels": split.in_channels,
        "num_classes": split.num_classes,
        "input_size": split.input_size,
        "activation": config.activation,
        "levels": int(config.levels),
        "phi": float(config.phi),
        "thresh": float(config.thresh),
        "width": config.width,
        **config.model_kwargs,
    }



def train(
    config: TrainConfig,
    *,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> Path:
    """Train a model as configured; returns the path of the best checkpoint.

    Args:
        config: the run's configuration.
        on_epoch_end: called as ``on_epoch_end(epoch, metrics)`` after each epoch's files are
            written (epoch counts from 1); an exception raised there stops the run, which
            ``resume=True`` can then continue.

    Raises:
        DatasetError: the dataset cannot be loaded.
        CheckpointError: ``resume=True`` but ``last.pt`` is unreadable or from another run.
    """
    rank, world, device = _setup_distributed(config.device)
    out = Path(config.out_dir)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)

    split = load_dataset(config.dataset, config.data_root, seed=config.seed,
                         download=config.download)
    augment = config.augment if config.augment is not None else config.dataset.startswith("cifar")
    train_set = torch_dataset(split, train=True, augment=augment)
    x_test = torch_dataset(split, train=False).x
    y_test = torch.as_tensor(split.y_test)
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True,
                                 seed=config.seed)
    loader = DataLoader(train_set, batch_size=config.batch_size, sampler=sampler,
                        num_workers=config.num_workers, drop_last=False)

    kwargs = model_kwargs(config, split)
    model = build_model(config.model, **kwargs).to(device)
    init_report = None
    if config.init_from and not (config.resume and (out / "last.pt").is_file()):
        init_report = _init_from(config, split, kwargs, model)
    optimizer, scheduler = _optimizer(config, model)
    start_epoch, best_acc, history = 0, -1.0, []
    last_path, best_path = out / "last.pt", out / "best.pt"
    if config.resume and last_path.is_file():
        start_epoch, best_acc, history = _resume(config, last_path, model, optimizer,
                                                 scheduler)

    if rank == 0:
        _write_run_config(config, out, split, kwargs, model, augment=augment, world=world,
                          device=device, init_report=init_report)

    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        net.train()
        batches = progress_bar(loader, desc=f"epoch {epoch + 1}/{config.epochs}",
                               enabled=rank == 0)
        train_loss, train_acc = train_epoch(net, batches, loss_fn, optimizer, device)
        scheduler.step()
        test_acc = evaluate_ann(model, x_test, y_test)
        metrics = {
            "epoch": epoch + 1,
            "loss": train_loss,
            "train_accuracy": train_acc,
            "test_accuracy": test_acc,
            "seconds": time.perf_counter() - t0,
            "lr": optimizer.param_groups[0]["lr"],
        }
        if not math.isfinite(metrics["loss"]):
            log.warning("epoch %d: loss is %s; lower --lr", epoch + 1, metrics["loss"])
        history.append(metrics)
        if rank == 0:
            if test_acc >= best_acc:
                best_acc = test_acc
                save_checkpoint(_checkpoint(config, split, kwargs, model, epoch + 1, best_acc),
                                best_path)
            _save_state(last_path, model, optimizer, scheduler, epoch + 1, best_acc, history)
        else:
            best_acc = max(best_acc, test_acc)
        log.info("epoch %d/%d loss %.4f test %.2f%% (%.1fs)", epoch + 1, config.epochs,
                 metrics["loss"], 100 * test_acc, metrics["seconds"])
        progress_line(f"epoch {epoch + 1}/{config.epochs}: done in {metrics['seconds']:.1f} s "
                      f"(loss {metrics['loss']:.4f}, test {100 * test_acc:.2f}%)",
                      enabled=rank == 0 and not log.isEnabledFor(logging.INFO))
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, metrics)
    if world > 1:
        dist.barrier()
    return best_path


def _optimizer(config: TrainConfig, model: nn.Module):
    """``(optimizer, scheduler)``: SGD (momentum 0.9) or Adam, on a cosine schedule."""
    groups = _param_groups(model, config.weight_decay, config.thresh_decay)
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=0.9)
    else:
        optimizer = torch.optim.Adam(groups, lr=config.lr)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)


def _resume(config: TrainConfig, last_path: Path, model: nn.Module, optimizer,
            scheduler) -> tuple[int, float, list[dict[str, float]]]:
    """Restore the training state from ``last_path``: ``(epoch, best accuracy, history)``."""
    from qcfs_lava.validate import check_torch_archive

    damage = check_torch_archive(last_path)
    if damage:
        raise CheckpointError(f"cannot resume from {last_path}: {damage}; the file is "
                              "damaged: delete it to start over, or choose another --out")
    try:
        state = torch.load(last_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # empty, truncated, foreign or unsafe: torch raises many types
        raise CheckpointError(
            f"cannot resume from {last_path}: {type(exc).__name__}: {exc}; the file is "
            "empty, damaged or not written by `qcfs-lava train`: delete it to start over, "
            "or choose another --out"
        ) from exc
    if not isinstance(state, dict):
        raise CheckpointError(
            f"cannot resume from {last_path}: it holds a {type(state).__name__}, not the "
            "training state `qcfs-lava train` writes: delete it or choose another --out"
        )
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start_epoch, best_acc = int(state["epoch"]), float(state["best_accuracy"])
        history = json.loads(state["history"])
    except (KeyError, RuntimeError, ValueError, OSError, TypeError, AttributeError) as exc:
        raise CheckpointError(
            f"cannot resume from {last_path}: {exc}; it belongs to another configuration or "
            "is corrupt: delete it or choose another --out"
        ) from exc
    if start_epoch > config.epochs:
        raise CheckpointError(
            f"cannot resume from {last_path}: it has already trained {start_epoch} epochs, "
            f"more than --epochs {config.epochs}; pass --epochs {start_epoch} or more (or "
            "choose another --out)"
        )
    log.info("resuming %s from epoch %d", last_path.parent, start_epoch)
    return start_epoch, best_acc, history


def _save_state(last_path: Path, model: nn.Module, optimizer, scheduler, epoch: int,
                best_acc: float, history: list[dict[str, float]]) -> None:
    """Write ``last.pt`` (what :func:`_resume` reads) and ``metrics.json`` beside it."""
    save_torch(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": torch.get_rng_state(),
            "epoch": epoch,
            "best_accuracy": best_acc,
            "history": json.dumps(history),
        },
        last_path,
    )
    write_json(last_path.parent / "metrics.json", history, sort_keys=True)


def _write_run_config(config: TrainConfig, out: Path, split, kwargs: dict[str, Any],
                      model: nn.Module, *, augment: bool, world: int, device: torch.device,
                      init_report: dict | None) -> None:
    """``config.json`` (the resolved configuration) and, after ``--init-from``, ``init.pt``."""
    resolved = dataclasses.asdict(config) | {
        "augment": augment,
        "world_size": world,
        "device_resolved": str(device),
        "model_kwargs_resolved": kwargs,
        "train_samples": len(split.y_train),
        "test_samples": len(split.y_test),
    }
    if init_report is not None:
        resolved["init"] = init_report
    write_json(out / "config.json", resolved, sort_keys=True)
    if init_report is not None:
        save_checkpoint(_checkpoint(config, split, kwargs, model, 0,
                                    init_report["calibrated_ann"]), out / "init.pt")


def _init_from(config: TrainConfig, split, kwargs: dict[str, Any], model: nn.Module) -> dict:
    """Load ``config.init_from`` into ``model`` (calibrated to QCFS when training QCFS)."""
    from qcfs_lava.calibrate import CalibrationConfig, calibrate, calibration_subset
    from qcfs_lava.checkpoint import load_checkpoint
    from qcfs_lava.data import normalize

    source_path = Path(config.init_from)
    source = load_checkpoint(source_path)
    if source.model != config.model or tuple(source.input_shape) != tuple(
            split.x_train.shape[1:]) or source.num_classes != split.num_classes:
        raise CheckpointError(
            f"--init-from {source_path}: a {source.model!r} for inputs "
            f"{tuple(source.input_shape)} and {source.num_classes} classes cannot start a "
            f"{config.model!r} on {config.dataset!r} (inputs {tuple(split.x_train.shape[1:])}, "
            f"{split.num_classes} classes); pass a checkpoint of the same model and data")
    src_model = source.build_model()
    x_test, y_test = normalize(split.x_test, split), torch.as_tensor(split.y_test)
    report = {"checkpoint": str(source_path.resolve()), "activation": source.activation,
              "source_ann": evaluate_ann(src_model, x_test, y_test)}
    if config.activation == "qcfs":
        cal = CalibrationConfig(levels=int(config.levels), phi=float(config.phi),
                                percentile=float(config.init_percentile), seed=config.seed)
        index = calibration_subset(len(split.y_train), cal.samples, cal.seed)
        result = calibrate(src_model, normalize(split.x_train[index], split), cal)
        src_model = result.model
        report["thresholds"] = {a.name: a.threshold for a in result.activations}
        report["percentile"] = float(config.init_percentile)
    try:
        model.load_state_dict(src_model.state_dict())
    except RuntimeError as exc:
        raise CheckpointError(
            f"--init-from {source_path}: its weights do not fit the configured model ({exc}); "
            "train with the same --width/--hidden options") from None
    report["calibrated_ann"] = evaluate_ann(model, x_test, y_test)
    return report


def _checkpoint(config, split, kwargs, model, epoch, best_acc) -> Checkpoint:
    return Checkpoint(
        model=config.model,
        model_kwargs=kwargs,
        state_dict=model.state_dict(),
        levels=config.levels,
        phi=config.phi,
        activation=config.activation,
        dataset=split.name if config.dataset.startswith(NPZ_PREFIX) else config.dataset,
        input_shape=tuple(split.x_train.shape[1:]),
        num_classes=split.num_classes,
        class_names=split.class_names,
        mean=split.mean.tolist(),
        std=split.std.tolist(),
        epoch=epoch,
        best_accuracy=best_acc,
    )
