"""Checkpoints: a trained model plus everything later stages need to rebuild and feed it.

A checkpoint is a dict saved with ``torch.save`` that holds only tensors and plain types, so it
loads with ``torch.load(..., weights_only=True)``. Keys: ``format`` (:data:`FORMAT`),
``version`` (:data:`VERSION`), ``model`` (name), ``model_kwargs``, ``state_dict``, ``levels``,
``phi``, ``activation``, ``dataset``, ``input_shape`` ``[C, H, W]``, ``num_classes``,
``class_names``, ``mean``, ``std``, ``epoch``, ``best_accuracy``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from qcfs_lava.errors import CheckpointError
from qcfs_lava.io import save_torch
from qcfs_lava.validate import (
    INDEX_MAX,
    LEVELS_MAX,
    InvalidValueError,
    exact_int,
    exact_int_vector,
    finite_float,
    is_plain,
)

__all__ = ["FORMAT", "VERSION", "Checkpoint", "check_checkpoint_dict", "checkpoint_sha256",
           "load_checkpoint", "save_checkpoint"]

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


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        CheckpointError: the file is missing, unreadable, not a qcfs-lava checkpoint, of a newer
            format version, or lacks required fields.
    """
    from qcfs_lava.safe_hdf5 import file_kind
    from qcfs_lava.validate import check_torch_archive

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
    missing = [f.name for f in dataclasses.fields(Checkpoint)
               if _required(f) and f.name not in data]
    if missing:
        raise CheckpointError(f"{path} lacks the fields {missing}; the file is incomplete")
    fields = check_checkpoint_dict(data, path)  # exact types, ranges and lengths
    fields["input_shape"] = tuple(fields["input_shape"])
    return Checkpoint(**fields)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _field_checks() -> dict[str, Callable[[Any, str], Any]]:
    """One check per :class:`Checkpoint` field: exact type and range; returns the plain value."""
    from qcfs_lava.data import DATASETS, NPZ_PREFIX
    from qcfs_lava.model.zoo import ACTIVATIONS, MODELS

    def one_of(choices: Iterable[str]):
        choices = tuple(choices)

        def fn(value, where):
            if not isinstance(value, str) or value not in choices:
                raise InvalidValueError(f"{where} = {value!r} is not one of {', '.join(choices)}")
            return value
        return fn

    def float_list(value, where):
        if not isinstance(value, (list, tuple)):
            raise InvalidValueError(
                f"{where} must be a list of numbers, got {type(value).__name__}")
        return [finite_float(v, f"{where}[{i}]") for i, v in enumerate(value)]

    def str_list(value, where):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise InvalidValueError(f"{where} must be a list of strings")
        return list(value)

    def kwargs(value, where):
        if not isinstance(value, dict) or not is_plain(value):
            raise InvalidValueError(f"{where} must be a dict of str keys and plain values "
                                    f"(numbers, strings, lists), got {type(value).__name__}")
        return dict(value)

    def state_dict(value, where):
        if not isinstance(value, dict) or not value:
            raise InvalidValueError(f"{where} must be a non-empty dict of tensors")
        bad = [k for k, v in value.items() if not isinstance(k, str) or not torch.is_tensor(v)]
        if bad:
            raise InvalidValueError(f"{where} has entries that are not str -> tensor: {bad[:5]}")
        nonfinite = [k for k, v in value.items()
                     if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if nonfinite:
            raise InvalidValueError(f"{where} has NaN or infinite values in {nonfinite[:5]}")
        return dict(value)

    def dataset(value, where):
        # a user's own arrays are recorded as ``npz:PATH`` (the file is checked when loaded)
        if isinstance(value, str) and value.startswith(NPZ_PREFIX) and len(value) > len(NPZ_PREFIX):
            return value
        return one_of(DATASETS)(value, where)

    return {
        "model": one_of(MODELS),
        "model_kwargs": kwargs,
        "state_dict": state_dict,
        "levels": lambda v, w: exact_int(v, w, 1, LEVELS_MAX),
        "phi": lambda v, w: finite_float(v, w, 0.0, 1.0),
        "activation": one_of(ACTIVATIONS),
        "dataset": dataset,
        "input_shape": lambda v, w: exact_int_vector(v, w, 1, INDEX_MAX, 3),
        "num_classes": lambda v, w: exact_int(v, w, 1, INDEX_MAX),
        "class_names": str_list,
        "mean": float_list,
        "std": float_list,
        "epoch": lambda v, w: exact_int(v, w, 0, None),
        "best_accuracy": lambda v, w: None if v is None else finite_float(v, w, 0.0, 1.0),
    }


def check_checkpoint_dict(data: Mapping[str, Any], path: str | Path) -> dict[str, Any]:
    """Validate every field of a loaded checkpoint dict (types, ranges, lengths).

    The fields, which are required and their defaults come from :class:`Checkpoint`.

    Returns:
        The :class:`Checkpoint` fields converted to plain Python values (ints, floats, lists).

    Raises:
        CheckpointError: one message listing every bad field, naming the file and the fix.
    """
    checks = _field_checks()
    problems: list[str] = []
    out: dict[str, Any] = {}

    def check(key: str, fn, required: bool = True, default: Any = None) -> None:
        if key not in data:
            if required:
                problems.append(f"'{key}' is missing")
            out[key] = default
            return
        try:
            out[key] = fn(data[key], f"'{key}'")
        except InvalidValueError as exc:
            problems.append(str(exc))

    try:
        exact_int(data["version"], "'version'", 1, None)
    except KeyError:
        problems.append("'version' is missing")
    except InvalidValueError as exc:
        problems.append(str(exc))
    for f in dataclasses.fields(Checkpoint):
        default = None if _required(f) else (
            f.default if f.default_factory is dataclasses.MISSING else f.default_factory())
        check(f.name, checks[f.name], required=_required(f), default=default)
    if not problems:
        problems += _consistency_problems(out)
    if problems:
        raise CheckpointError(
            f"checkpoint {path} is invalid: {'; '.join(problems)}; the file is damaged or was "
            "not written by qcfs-lava: train again or re-import the reference weights"
        )
    return out


def _consistency_problems(out: Mapping[str, Any]) -> list[str]:
    problems = []
    channels = out["input_shape"][0]
    for key in ("mean", "std"):
        if out[key] and len(out[key]) != channels:
            problems.append(f"'{key}' has {len(out[key])} values for {channels} input "
                            "channels")
    if any(s <= 0 for s in out["std"]):
        problems.append("'std' must be positive")
    if out["class_names"] and len(out["class_names"]) != out["num_classes"]:
        problems.append(f"'class_names' has {len(out['class_names'])} names for "
                        f"{out['num_classes']} classes")
    return problems


def checkpoint_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a checkpoint file (to tie reports to the exact weights)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
