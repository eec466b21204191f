"""Import weights trained with the public QCFS reference code into the model zoo.

Two public code bases trained the QCFS networks of Bu et al. (ICLR 2022): the newer
``putshua/ANN_SNN_QCFS`` (threshold parameter ``thresh``) and the older
``putshua/SNN_conversion_QCFS`` (threshold parameter ``up``). Their state dicts use these keys:

- VGG: ``layer{1..5}.{i}.*`` where each convolution unit is four modules (conv, BN, activation,
  Dropout), so convs sit at 0/4/8, BNs at 1/5/9, activations at 2/6/10; each stage ends in
  ``AvgPool2d(2)``; ``classifier.{1,4,7}`` are the linear layers, ``classifier.{2,5}`` the
  activations.
- ResNet: ``conv1.{0,1,2}`` (conv, BN, activation), ``conv{2..5}_x.{i}.residual_function.{0..4}``,
  ``conv{k}_x.{i}.shortcut.{0,1}`` (only where the shape changes), the activation after the
  residual add ``conv{k}_x.{i}.act`` (new) or ``.relu`` (old), and ``fc``. ResNet-18/34 start
  at 64 channels (stages of 2-2-2-2 / 3-4-6-3 blocks), the CIFAR ResNet-20 at 16 (3-3-3).

Their SNN is exactly the float SNN of ``docs/contract.md`` (section 2) with ``phi = 0.5``:
membrane starts at half the threshold, fires on ``>=``, subtracts the threshold, emits
``spike * thresh``; the image is repeated each step and the readout is the mean over T of the
last linear layer. The imported model therefore
runs unchanged through :mod:`qcfs_lava.snn` and the converter.

Widths are read from the weights, so width-reduced variants import too.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from qcfs_lava.errors import CheckpointError
from qcfs_lava.model.zoo import build_model
from qcfs_lava.validate import check_reference_tensors, check_torch_archive

__all__ = ["REFERENCE_ARCHS", "convert_reference_keys", "import_reference"]

REFERENCE_ARCHS = ("vgg11", "vgg16", "resnet18", "resnet20", "resnet34")

_VGG_UNIT = 4  # conv, BN, activation, Dropout in the reference; conv, BN, activation in ours
_OURS_UNIT = 3


def load_reference(
    state_dict_or_path: Mapping[str, torch.Tensor] | str | Path,
) -> dict[str, torch.Tensor]:
    """A reference state dict (from a file, loaded with ``weights_only=True``, or as given)."""
    if isinstance(state_dict_or_path, (str, Path)):
        path = Path(state_dict_or_path)
        if not path.is_file():
            raise CheckpointError(f"reference checkpoint {path} not found")
        damage = check_torch_archive(path)
        if damage:
            raise CheckpointError(f"cannot read reference checkpoint {path}: {damage}; the file "
                                  "is damaged, copy it again")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:  # keep torch's explanation of what was blocked
            raise CheckpointError(
                f"refusing to load reference checkpoint {path}: "
                f"{' '.join(str(exc).split())} (it is loaded with weights_only=True; save the "
                "plain state dict with torch.save(model.state_dict(), path))"
            ) from exc
        except Exception as exc:  # corrupt or foreign file: torch raises many types
            raise CheckpointError(
                f"cannot read reference checkpoint {path}: {type(exc).__name__}: {exc}; the "
                "file is corrupt or not a torch file"
            ) from exc
    else:
        data = state_dict_or_path
    if not isinstance(data, Mapping):
        raise CheckpointError(f"a reference checkpoint must be a state dict, got {type(data)}")
    for wrapper in ("state_dict", "model"):  # some scripts wrap the state dict
        if wrapper in data and isinstance(data[wrapper], Mapping):
            data = data[wrapper]
    return {re.sub(r"^module\.", "", k): v for k, v in data.items() if torch.is_tensor(v)}


def _rename_vgg(key: str) -> str | None:
    """Reference VGG key -> our key (``None``: a key that has no counterpart)."""
    match = re.fullmatch(r"(layer\d)\.(\d+)\.(\w+)", key)
    if match:
        stage, index, leaf = match.group(1), int(match.group(2)), match.group(3)
        unit, offset = divmod(index, _VGG_UNIT)
        if offset == _VGG_UNIT - 1:
            return None  # Dropout has no parameters; a key here is foreign
        return f"{stage}.{_OURS_UNIT * unit + offset}.{_leaf(leaf)}"
    match = re.fullmatch(r"classifier\.(\d+)\.(\w+)", key)
    if match:
        return f"classifier.{match.group(1)}.{_leaf(match.group(2))}"
    return None


def _rename_resnet(key: str) -> str | None:
    """Reference ResNet key -> our key (``None``: a key that has no counterpart)."""
    parts = key.split(".")
    parts[-1] = _leaf(parts[-1])
    parts = ["residual" if p == "residual_function" else p for p in parts]
    if len(parts) == 4 and parts[2] == "relu":  # old code base: activation after the add
        parts[2] = "act"
    return ".".join(parts)


def _leaf(name: str) -> str:
    return "thresh" if name == "up" else name


def convert_reference_keys(
    state_dict: Mapping[str, torch.Tensor], arch: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a reference state dict to the zoo layout.

    Returns:
        ``(renamed, foreign)``: the renamed tensors and the reference keys that map to nothing.
    """
    rename = _rename_vgg if arch.startswith("vgg") else _rename_resnet
    renamed, foreign = {}, []
    for key, value in state_dict.items():
        new = rename(key)
        if new is None:
            foreign.append(key)
        else:
            renamed[new] = value
    return renamed, foreign


def _shape(sd: Mapping[str, torch.Tensor], key: str, arch: str) -> torch.Size:
    if key not in sd:
        raise CheckpointError(
            f"reference state dict for {arch!r} has no {key!r}; is it a {arch} checkpoint of "
            f"putshua/ANN_SNN_QCFS or putshua/SNN_conversion_QCFS? (first keys: "
            f"{list(sd)[:5]})"
        )
    return sd[key].shape


def reference_model_kwargs(
    sd: Mapping[str, torch.Tensor],
    arch: str,
    num_classes: int,
    levels: int,
    in_channels: int = 3,
    input_size: int = 32,
) -> dict:
    """The :func:`~qcfs_lava.model.zoo.build_model` arguments matching reference weights.

    Widths are read from the weights (the first conv's output channels; VGG's hidden size).
    """
    if arch.startswith("vgg"):
        first = _shape(sd, "layer1.0.weight", arch)
        extra = {"hidden": int(_shape(sd, "classifier.1.weight", arch)[0])}
    else:
        first = _shape(sd, "conv1.0.weight", arch)
        extra = {}
    if first[1] != in_channels:
        raise CheckpointError(
            f"reference {arch} takes {first[1]} input channels, not in_channels={in_channels}"
        )
    return dict(in_channels=in_channels, num_classes=num_classes, input_size=input_size,
                activation="qcfs", levels=levels, phi=0.5, width=int(first[0]), **extra)


def import_reference(
    state_dict_or_path: Mapping[str, torch.Tensor] | str | Path,
    arch: str,
    num_classes: int,
    levels: int,
    in_channels: int = 3,
    input_size: int = 32,
) -> nn.Module:
    """Build a zoo model holding the weights of a reference QCFS checkpoint.

    Args:
        state_dict_or_path: the reference state dict, or the path of a file holding it
            (loaded with ``weights_only=True``; a ``module.`` prefix is stripped).
        arch: one of :data:`REFERENCE_ARCHS`.
        num_classes: number of logits (checked against the weights).
        levels: quantization levels ``L`` the reference model was trained with (not stored in
            its state dict).
        in_channels: image channels (checked against the weights).
        input_size: image side (checked against the VGG classifier's input).

    Returns:
        The zoo model (``phi = 0.5``), weights loaded, in eval mode.

    Raises:
        CheckpointError: unreadable file, unknown arch, or missing/unexpected/mis-shaped keys
            (all listed in one message).
    """
    if arch not in REFERENCE_ARCHS:
        raise CheckpointError(
            f"unknown reference arch {arch!r}; choose one of {', '.join(REFERENCE_ARCHS)}"
        )
    sd = load_reference(state_dict_or_path)
    kwargs = reference_model_kwargs(sd, arch, num_classes, levels, in_channels, input_size)
    try:
        model = build_model(arch, **kwargs)
    except ValueError as exc:
        raise CheckpointError(f"cannot build {arch} for the reference weights: {exc}") from exc
    renamed, foreign = convert_reference_keys(sd, arch)
    ours = model.state_dict()
    missing = [k for k in ours if k not in renamed and not k.endswith("num_batches_tracked")]
    unexpected = foreign + [k for k in renamed if k not in ours]
    # exact shapes (a transposed matrix is not "the same number of elements"), finite values,
    # positive thresholds
    mismatched = check_reference_tensors(renamed, ours, arch)
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"reference {arch} weights do not fit (num_classes={num_classes}, "
            f"input_size={input_size}, width={kwargs['width']}): missing {missing}; unexpected "
            f"{unexpected}; wrong shape or values {mismatched}. Check arch, num_classes and "
            "input_size, and that the file holds trained weights."
        )
    merged = {k: renamed.get(k, v).reshape(v.shape).to(v.dtype) for k, v in ours.items()}
    model.load_state_dict(merged)
    return model.eval()
