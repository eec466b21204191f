"""Checkpoints: a trained model plus everything later stages need to rebuild and feed it.

A checkpoint is a dict saved with ``torch.save`` that holds only tensors and plain types, so it
loads with ``torch.load(..., weights_only=True)``. Keys: ``format`` (:data:`FORMAT`),
``version`` (:data:`VERSION`), ``model`` (name), ``model_kwargs``, ``state_dict``, ``levels``,
``phi``, ``activation``, ``dataset``, ``input_shape`` ``[C, H, W]``, ``num_classes``,
``class_names``, ``mean``, ``std``, ``epoch``, ``best_accuracy``.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from qcfs_lava.errors import CheckpointError
from qcfs_lava.io import save_torch

__all__ = ["FORMAT", "VERSION", "Checkpoint", "checkpoint_sha256", "load_checkpoint",
           "save_checkpoint"]

FORMAT = "qcfs-lava-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        model: registered model name (see :data:`qcfs_lava.model.zoo.MODELS`).
        model_kwargs: keyword arguments of :func:`~qcfs_lava.model.zoo.build_model`.
        state_dict: the weights.
        levels: QCFS quantization levels ``L``.
        phi: QCFS shift.
        activation: ``"qcfs"`` or ``"relu"``.
        dataset: dataset name.
        input_shape: ``(C, H, W)``.
        num_classes: number of logits.
        class_names: one name per class.
        mean: per-channel input mean (of ``x / 255``).
        std: per-channel input standard deviation.
        epoch: epochs trained.
        best_accuracy: best test accuracy seen during training (fraction), or ``None``.
    """

    model: str
    model_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    levels: int
    phi: float
    activation: str
    dataset: str
    input_shape: tuple[int, int, int]
    num_classes: int
    class_names: list[str] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    epoch: int = 0
    best_accuracy: float | None = None

    def build_model(self) -> nn.Module:
        """The model with these weights, in eval mode."""
        from qcfs_lava.model.zoo import build_model

        try:
            model = build_model(self.model, **self.model_kwargs)
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(
                f"checkpoint model {self.model!r} cannot be built from its model_kwargs "
                f"{self.model_kwargs}: {exc}; the checkpoint is damaged, train again"
            ) from exc
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            raise CheckpointError(
                f"checkpoint weights do not fit model {self.model!r} {self.model_kwargs}: {exc}"
            ) from exc
        return model.eval()

    def normalization(self) -> tuple[np.ndarray, np.ndarray]:
        """The input normalisation ``(mean, std)`` of the float model, one value per channel.

        The recorded ``mean``/``std`` (every checkpoint ``qcfs-lava train`` writes has them);
        a checkpoint without them is taken to see ``x / 255`` as is (mean 0, std 1). This is
        the only place that chooses: the converter folds exactly this normalisation into the
        first layer, and every float evaluation feeds the model with it.

        Returns:
            ``(mean, std)`` float64 arrays. Shape: ``(C,)`` each.
        """
        channels = int(self.input_shape[0])
        mean = np.asarray(self.mean if self.mean else [0.0] * channels, dtype=np.float64)
        std = np.asarray(self.std if self.std else [1.0] * channels, dtype=np.float64)
        return mean, std

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": self.model,
            "model_kwargs": dict(self.model_kwargs),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict.items()},
            "levels": int(self.levels),
            "phi": float(self.phi),
            "activation": self.activation,
            "dataset": self.dataset,
            "input_shape": [int(s) for s in self.input_shape],
            "num_classes": int(self.num_classes),
            "class_names": [str(c) for c in self.class_names],
            "mean": [float(m) for m in self.mean],
            "std": [float(s) for s in self.std],
            "epoch": int(self.epoch),
            "best_accuracy": None if self.best_accuracy is None else float(self.best_accuracy),
        }


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> Path:
    """Write ``checkpoint`` atomically to ``path``."""
    return save_torch(checkpoint.to_dict(), path)


_REQUIRED = ("model", "model_kwargs", "state_dict", "levels", "phi", "activation", "dataset",
             "input_shape", "num_classes")


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        CheckpointError: the file is missing, unreadable, not a qcfs-lava checkpoint, of a newer
            format version, or lacks required fields.
    """
    from qcfs_lava.safe_hdf5 import file_kind
    from qcfs_lava.validate import check_checkpoint_dict, check_torch_archive

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; train one with `qcfs-lava train`")
    if file_kind(path) == "hdf5":
        raise CheckpointError(
            f"{path} is a NetX (.net) file, not a checkpoint; `emulate`, `simulate` and "
            "`inspect` take NetX files, this command needs the checkpoint (.pt) it was exported "
            "from"
        )
    damage = check_torch_archive(path)
    if damage:
        raise CheckpointError(
            f"cannot read checkpoint {path}: {damage}; the file is damaged (retrain or copy it "
            "again)"
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # keep torch's whole explanation of what was blocked
        raise CheckpointError(
            f"refusing to load checkpoint {path}: {' '.join(str(exc).split())} (qcfs-lava "
            "loads checkpoints with weights_only=True and never runs code from a file; write "
            "checkpoints with `qcfs-lava train` or `import-reference`)"
        ) from exc
    except Exception as exc:  # torch raises many types for corrupt/foreign files
        raise CheckpointError(
            f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}; the file is "
            "corrupt or not a torch file (retrain or copy it again)"
        ) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a qcfs-lava checkpoint (no format marker {FORMAT!r}); import "
            "reference QCFS weights with qcfs_lava.model.reference.import_reference"
        )
    version = data.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
        raise CheckpointError(f"{path} has checkpoint version {version}; this "
                              f"qcfs-lava reads version <= {VERSION}: upgrade qcfs-lava")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"{path} lacks the fields {missing}; the file is incomplete")
    fields = check_checkpoint_dict(data, path)  # exact types, ranges and lengths
    return Checkpoint(
        model=fields["model"],
        model_kwargs=fields["model_kwargs"],
        state_dict=fields["state_dict"],
        levels=fields["levels"],
        phi=fields["phi"],
        activation=fields["activation"],
        dataset=fields["dataset"],
        input_shape=tuple(fields["input_shape"]),
        num_classes=fields["num_classes"],
        class_names=fields["class_names"],
        mean=fields["mean"],
        std=fields["std"],
        epoch=fields["epoch"],
        best_accuracy=fields["best_accuracy"],
    )


def checkpoint_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a checkpoint file (to tie reports to the exact weights)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
