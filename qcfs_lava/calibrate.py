r"""Calibration: a network trained with ReLU becomes a QCFS network without QCFS training.

Every ``nn.ReLU`` (or QCFS) is replaced by :class:`~qcfs_lava.model.qcfs.QCFS` whose threshold
``lambda`` is a percentile of the activation on training images; a short fine-tune is
optional. The result is an ordinary QCFS model: :func:`qcfs_lava.convert.convert`, the
emulator, NetX and Lava take it unchanged.

**Statistics.** For activation ``l`` with input ``z`` the statistic is the ``p``-th percentile
(linear interpolation, numpy's default) of ``max(z, 0)`` over every element of the
calibration images (zeros included), per layer or per output channel ``c``:

.. math::
    \lambda_l = P_p\big(\max(z_l, 0)\big), \qquad
    \lambda_{l,c} = P_p\big(\max(z_{l,c}, 0)\big).

**Per-channel thresholds, exactly, on one layer threshold.** QCFS is positively homogeneous:
for ``s > 0``

.. math::
    s\,\lambda\,\mathrm{clip}\Big(\tfrac{1}{L}\big\lfloor \tfrac{zL}{\lambda} + \varphi
    \big\rfloor, 0, 1\Big) = \Lambda\,\mathrm{clip}\Big(\tfrac{1}{L}\big\lfloor
    \tfrac{(s z) L}{\Lambda} + \varphi\big\rfloor, 0, 1\Big), \quad \Lambda = s\lambda .

So with ``Lambda = max_c lambda_c`` and ``s_c = Lambda / lambda_c``, scaling channel ``c``'s
pre-activation by ``s_c`` (the BatchNorm ``weight``/``bias`` after the conv, or the conv's
own rows and bias where there is no BatchNorm) and the next conv/linear's matching input
columns by ``1 / s_c`` gives a network with one threshold ``Lambda`` per layer that computes
the same function as per-channel thresholds ``lambda_c``. Average pooling, dropout and
flatten between the two commute with the per-channel scale. The integer pipeline is
unchanged: it quantizes this float network as any other.

The transform is applied where it is exact and nowhere else; there the per-layer ``lambda``
is used and :attr:`ActivationCalibration.note` says why:

- an activation whose input is a residual add inside a block with an identity shortcut (the
  shortcut carries the previous block's channels unscaled);
- an activation feeding a residual block with an identity shortcut (the same reason);
- an activation whose producer or consumer is not a conv/linear/BatchNorm (e.g. the end of
  the model, a grouped conv, BatchNorm without affine parameters).

In the registry's ResNets that leaves the activation inside every block per channel (every
block output has or feeds an identity shortcut); plain CNNs, VGGs and MLPs are per channel
throughout.

Example:
    >>> result = calibrate(relu_model, x_train_float[:1000], CalibrationConfig(levels=4,
    ...                    per_channel=True))
    >>> net, report = convert(result.model, (1, 28, 28), mean, std)
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from qcfs_lava.errors import CheckpointError, UnsupportedLayerError
from qcfs_lava.model.qcfs import QCFS
from qcfs_lava.model.walk import is_block, kind_of, leaves
from qcfs_lava.progress import counter as progress_counter

__all__ = [
    "ActivationCalibration",
    "CalibrationConfig",
    "CalibrationResult",
    "activation_statistics",
    "calibrate",
    "calibrate_checkpoint",
    "calibration_subset",
    "finetune_",
    "percentile",
]

log = logging.getLogger(__name__)

# float elements of activations held at once while collecting statistics (1 GiB)
_STAT_BUDGET = 1 << 28


@dataclass
class CalibrationConfig:
    """How to calibrate (written next to the output checkpoint).

    Attributes:
        levels: QCFS quantization levels ``L``.
        phi: QCFS shift.
        percentile: ``p`` in ``(0, 100]``; 100 is the maximum.
        per_channel: one ``lambda`` per output channel where exact (see the module doc).
        samples: training images used for the statistics.
        batch_size: images per forward pass (statistics and fine-tune).
        finetune_epochs: epochs of QCFS fine-tuning after calibration (0: none).
        finetune_lr: initial SGD learning rate of the fine-tune (cosine to 0, momentum 0.9).
        weight_decay: L2 on conv/linear weights during the fine-tune.
        seed: seed of the calibration subset and the fine-tune shuffling.
    """

    levels: int = 4
    phi: float = 0.5
    percentile: float = 99.9
    per_channel: bool = False
    samples: int = 1000
    batch_size: int = 256
    finetune_epochs: int = 0
    finetune_lr: float = 0.01
    weight_decay: float = 5e-4
    seed: int = 0

    def __post_init__(self) -> None:
        from qcfs_lava.validate import LEVELS_MAX

        if not 1 <= int(self.levels) <= LEVELS_MAX:
            raise ValueError(f"levels must be 1..{LEVELS_MAX}, got {self.levels}")
        if not 0.0 <= float(self.phi) <= 1.0:  # also False for NaN
            raise ValueError(f"phi must be a number in [0, 1], got {self.phi}")
        if not 0.0 < float(self.percentile) <= 100.0:
            raise ValueError(f"percentile must be in (0, 100], got {self.percentile}")
        for name in ("samples", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if int(self.finetune_epochs) < 0:
            raise ValueError(f"finetune_epochs must be >= 0, got {self.finetune_epochs}")
        if not self.finetune_lr > 0:
            raise ValueError(f"finetune_lr must be > 0, got {self.finetune_lr}")


@dataclass
class ActivationCalibration:
    """The calibration of one activation module.

    Attributes:
        name: module path of the activation in the model.
        layer_lambda: the per-layer percentile ``lambda_l``.
        channel_lambdas: the per-channel percentiles ``lambda_{l,c}`` (``None`` unless
            per-channel statistics were requested). Shape: ``(C,)``.
        per_channel: whether per-channel thresholds were applied (by the exact transform).
        threshold: the QCFS threshold written into the model before any fine-tune
            (``max_c lambda_{l,c}`` when per channel, else ``lambda_l``).
        note: why per-channel thresholds were not applied here, if they were requested.
    """

    name: str
    layer_lambda: float
    channel_lambdas: np.ndarray | None = None
    per_channel: bool = False
    threshold: float = 0.0
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "layer_lambda": self.layer_lambda,
            "channel_lambdas": None if self.channel_lambdas is None
            else [float(v) for v in self.channel_lambdas],
            "per_channel": self.per_channel, "threshold": self.threshold, "note": self.note,
        }


@dataclass
class CalibrationResult:
    """What :func:`calibrate` returns.

    Attributes:
        model: the QCFS model (a new object; the input model is untouched).
        activations: one entry per activation, in forward order.
        config: the configuration used.
        finetune: per-epoch metrics of the fine-tune (empty without one).
    """

    model: nn.Module
    activations: list[ActivationCalibration]
    config: CalibrationConfig
    finetune: list[dict[str, float]] = field(default_factory=list)

    def format(self) -> str:
        """A table: one row per activation."""
        head = f"{'activation':<28} {'lambda (layer)':>14} {'threshold':>10}  per channel"
        lines = [head, "-" * len(head)]
        for a in self.activations:
            if a.per_channel and a.channel_lambdas is not None:
                pc = (f"yes: {len(a.channel_lambdas)} channels, lambda_c "
                      f"{a.channel_lambdas.min():.4g}..{a.channel_lambdas.max():.4g}")
            else:
                pc = "no" + (f" ({a.note})" if a.note else "")
            lines.append(f"{a.name:<28} {a.layer_lambda:>14.4g} {a.threshold:>10.4g}  {pc}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------


def percentile(values: torch.Tensor, q: float, dim: int | None = None) -> torch.Tensor:
    """The ``q``-th percentile with linear interpolation (numpy's default method).

    Works on tensors of any size (``torch.quantile`` refuses more than 2**24 elements).

    Args:
        values: the data.
        q: percentile in ``[0, 100]``.
        dim: reduce along this dimension; ``None`` reduces over every element.

    Shape:
        ``values``: any; returns the shape of ``values`` without ``dim`` (a scalar for
        ``dim=None``).
    """
    if dim is None:
        values, dim = values.reshape(-1), 0
    n = values.shape[dim]
    if n == 0:
        raise ValueError("percentile of an empty tensor")
    pos = (float(q) / 100.0) * (n - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    v = values.to(torch.float64)
    low = torch.kthvalue(v, lo + 1, dim=dim).values
    if frac == 0.0 or hi == lo:
        return low
    high = torch.kthvalue(v, hi + 1, dim=dim).values
    return low + (high - low) * frac


def _activations(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if _role(m) == "activation"]


@torch.no_grad()
def activation_statistics(
    model: nn.Module,
    x_float: torch.Tensor,
    q: float,
    *,
    per_channel: bool = False,
    batch_size: int = 256,
    progress: bool = False,
) -> dict[str, tuple[float, np.ndarray | None]]:
    """Percentile ``q`` of ``max(z, 0)`` at the input ``z`` of every ReLU / QCFS module.

    Args:
        model: the network (not modified; run in eval mode).
        x_float: normalised calibration images.
        q: percentile in ``(0, 100]``.
        per_channel: also one value per channel (dimension 1 of the activation).
        batch_size: images per forward pass.
        progress: show a progress bar.

    Returns:
        ``{module name: (layer value, per-channel values or None)}`` in forward order.

    Raises:
        UnsupportedLayerError: the model has no ReLU/QCFS, or one module is called more than
            once per forward pass (a shared ReLU: give each use its own module).

    Shape:
        ``x_float``: ``(N, C, H, W)`` or ``(N, features)``.
    """
    acts = _activations(model)
    if not acts:
        raise UnsupportedLayerError("the model has no nn.ReLU or QCFS activation to calibrate")
    x_float = torch.as_tensor(x_float)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    # size of each activation for one sample, to group layers within the memory budget
    sizes: dict[str, int] = {}
    calls: dict[str, int] = {}

    def probe(name):
        def hook(_m, inputs, _out):
            sizes[name] = int(inputs[0][0].numel())
            calls[name] = calls.get(name, 0) + 1
        return hook

    handles = [m.register_forward_hook(probe(n)) for n, m in acts]
    try:
        model(x_float[:1].to(device))
    finally:
        for h in handles:
            h.remove()
    shared = [n for n, c in calls.items() if c > 1]
    if shared:
        raise UnsupportedLayerError(
            f"activation modules {shared} are called more than once per forward pass; their "
            "statistics would mix layers: give every use its own nn.ReLU module")
    acts = [(n, m) for n, m in acts if n in sizes]
    n = len(x_float)
    groups: list[list[tuple[str, nn.Module]]] = [[]]
    used = 0
    for name, m in acts:
        need = sizes[name] * n
        if groups[-1] and used + need > _STAT_BUDGET:
            groups.append([])
            used = 0
        groups[-1].append((name, m))
        used += need
    out: dict[str, tuple[float, np.ndarray | None]] = {}
    bar = progress_counter(len(groups) * math.ceil(n / batch_size),
                           desc="calibration statistics", unit="batch", enabled=progress)
    for group in groups:
        store: dict[str, list[torch.Tensor]] = {name: [] for name, _ in group}

        def keep(name, store=store):
            def hook(_m, inputs, _out):
                store[name].append(torch.clamp(inputs[0].detach(), min=0).float().cpu())
            return hook

        handles = [m.register_forward_hook(keep(name)) for name, m in group]
        try:
            for start in range(0, n, batch_size):
                model(x_float[start: start + batch_size].to(device))
                bar.update(1)
        finally:
            for h in handles:
                h.remove()
        for name, _ in group:
            values = torch.cat(store.pop(name))
            layer = float(percentile(values, q))
            channels = None
            if per_channel and values.dim() >= 2:
                per_c = values.transpose(0, 1).reshape(values.shape[1], -1)
                channels = percentile(per_c, q, dim=1).numpy().astype(np.float64)
            out[name] = (layer, channels)
            del values
    bar.close()
    model.train(was_training)
    return {name: out[name] for name, _ in acts}


# --------------------------------------------------------------------------------------
# The per-channel transform
# --------------------------------------------------------------------------------------


#: What each registered module kind (:data:`qcfs_lava.model.walk.MODULE_KINDS`) is to the
#: per-channel transform: parameters scalable per channel (``"weights"``), channels passed
#: through unchanged (``"pass"``), a flatten, or an activation (ReLU too: calibration's input).
ROLES: dict[str, str] = {
    "conv": "weights",
    "linear": "weights",
    "batchnorm": "weights",
    "activation": "activation",
    "pool": "pass",
    "skip": "pass",
    "flatten": "flatten",
}


def _role(m: nn.Module) -> str | None:
    """``m``'s role in the per-channel transform (``None``: an unknown module)."""
    if isinstance(m, nn.ReLU):
        return "activation"
    kind = kind_of(m)
    return None if kind is None else ROLES[kind.name]


class _Scale:
    """Callables that multiply one axis of a module's parameters by a per-channel vector."""

    @staticmethod
    def rows(m: nn.Module) -> Callable[[torch.Tensor], None] | None:
        """Scale output channel ``c`` of ``m`` by ``s_c`` (None: not possible exactly)."""
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if m.weight is None or m.bias is None:
                return None
            params = [m.weight, m.bias]
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            params = [m.weight] + ([m.bias] if m.bias is not None else [])
        else:
            return None

        def apply(s: torch.Tensor) -> None:
            for p in params:
                p.data.mul_(s.to(p.dtype).view(-1, *([1] * (p.dim() - 1))))

        return apply

    @staticmethod
    def columns(m: nn.Module, flattened: bool) -> Callable[[torch.Tensor], None] | None:
        """Scale input channel ``c`` of ``m`` by ``s_c``."""
        if isinstance(m, nn.Conv2d) and m.groups == 1 and not flattened:
            def apply(s: torch.Tensor) -> None:
                m.weight.data.mul_(s.to(m.weight.dtype).view(1, -1, 1, 1))
            return apply
        if isinstance(m, nn.Linear):
            def apply(s: torch.Tensor) -> None:
                per = m.in_features // len(s)
                if per * len(s) != m.in_features:
                    raise UnsupportedLayerError(
                        f"linear layer with {m.in_features} inputs after {len(s)} channels")
                m.weight.data.mul_(s.to(m.weight.dtype).repeat_interleave(per).view(1, -1))
            return apply
        return None


def _producer(seq: list[tuple[str, nn.Module]], i: int):
    for j in range(i - 1, -1, -1):
        m = seq[j][1]
        if _role(m) == "pass":
            continue
        return _Scale.rows(m), seq[j][0]
    return None, "the model input"


def _consumer(seq: list[tuple[str, nn.Module]], i: int):
    flattened = False
    for j in range(i + 1, len(seq)):
        path, m = seq[j]
        if _role(m) == "pass":
            continue
        if _role(m) == "flatten":
            flattened = True
            continue
        if is_block(m):
            if len(m.shortcut) == 0:
                return None, f"{path} has an identity shortcut"
            first = leaves(m.residual)[0][1]
            short = leaves(m.shortcut)[0][1]
            a, b = _Scale.columns(first, flattened), _Scale.columns(short, flattened)
            if a is None or b is None:
                return None, f"{path} does not start with convolutions"

            def both(s: torch.Tensor, a=a, b=b) -> None:
                a(s)
                b(s)

            return both, path
        return _Scale.columns(m, flattened), path
    return None, "the model output"


def _plan(model: nn.Module) -> dict[str, tuple[Callable | None, Callable | None, str]]:
    """For every activation: (scale producer rows, scale consumer columns, note)."""
    plans: dict[str, tuple[Callable | None, Callable | None, str]] = {}

    def visit(seq: list[tuple[str, nn.Module]]) -> None:
        for i, (path, m) in enumerate(seq):
            if _role(m) == "activation":
                rows, where = _producer(seq, i)
                cols, to = _consumer(seq, i)
                plans[path] = (rows, cols, "" if rows and cols else
                               f"not exact: {where if rows is None else to}")
            elif is_block(m):
                inner = leaves(m.residual, f"{path}.residual")
                visit(inner)
                out_rows = None
                note = f"{path}: the identity shortcut carries the block input unscaled"
                if len(m.shortcut):
                    a = _producer(inner, len(inner))[0]
                    short = leaves(m.shortcut, f"{path}.shortcut")
                    b = _producer(short, len(short))[0]
                    if a is not None and b is not None:
                        def out_rows(s: torch.Tensor, a=a, b=b) -> None:
                            a(s)
                            b(s)
                        note = ""
                # the block's output activation feeds what follows the block in `seq`
                cols, to = _consumer(seq, i)
                if out_rows is not None and cols is None:
                    note = f"not exact: {to}"
                plans[f"{path}.act"] = (out_rows, cols, note)

    visit(leaves(model))
    return plans


def _set_module(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, leaf, new)


def calibrate(
    model: nn.Module,
    x_float: torch.Tensor,
    config: CalibrationConfig | None = None,
    *,
    progress: bool = False,
) -> CalibrationResult:
    """Replace every ReLU (or QCFS) of ``model`` by QCFS with calibrated thresholds.

    ``model`` is not modified. No fine-tune here: see :func:`finetune_` (and
    :func:`calibrate_checkpoint`, which does both).

    Args:
        model: a network of conv/linear/BatchNorm/pooling/ReLU modules (the registry's models,
            nested ``nn.Sequential`` and residual blocks included). Every activation must be
            its own module (hooks find them). Activations given as QCFS are recalibrated.
        x_float: normalised calibration images (e.g. ~1000 training images).
        config: levels, phi, percentile, per-channel.
        progress: show a progress bar.

    Returns:
        A :class:`CalibrationResult` whose ``model`` is in eval mode.

    Raises:
        UnsupportedLayerError: no activation, or a shared activation module.

    Shape:
        ``x_float``: ``(N, C, H, W)`` or ``(N, features)``.
    """
    config = config or CalibrationConfig()
    qmodel = copy.deepcopy(model).eval()
    stats = activation_statistics(qmodel, x_float, config.percentile,
                                  per_channel=config.per_channel,
                                  batch_size=config.batch_size, progress=progress)
    plans = _plan(qmodel) if config.per_channel else {}
    out: list[ActivationCalibration] = []
    for name, (layer, channels) in stats.items():
        layer = layer if layer > 0 else 1.0  # a dead layer: any threshold computes zeros
        entry = ActivationCalibration(name, layer, channels, threshold=layer)
        if config.per_channel:
            rows, cols, note = plans.get(name, (None, None, "not exact: not in a plain chain"))
            if channels is None:
                note = "activation has no channel dimension"
            if rows is not None and cols is not None and channels is not None:
                lam = np.where(channels > 0, channels, layer)  # dead channels: any value
                big = float(lam.max())
                scale = torch.as_tensor(big / lam, dtype=torch.float64)
                rows(scale)
                cols(1.0 / scale)
                entry.per_channel, entry.threshold, entry.channel_lambdas = True, big, lam
                note = ""
            entry.note = note
        _set_module(qmodel, name, QCFS(config.levels, config.phi, entry.threshold))
        out.append(entry)
    return CalibrationResult(qmodel.eval(), out, config)


# --------------------------------------------------------------------------------------
# Fine-tune
# --------------------------------------------------------------------------------------


def finetune_(
    model: nn.Module,
    x_float: torch.Tensor,
    y: torch.Tensor,
    config: CalibrationConfig,
    *,
    x_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    progress: bool = False,
) -> list[dict[str, float]]:
    """In place: train ``model`` (thresholds included) for ``config.finetune_epochs`` epochs.

    SGD with momentum 0.9, learning rate ``config.finetune_lr`` on a cosine schedule, weight
    decay on conv/linear weights only, cross-entropy, BatchNorm in training mode.

    Returns:
        Per epoch: ``loss``, ``train_accuracy`` and, given test data, ``test_accuracy``.

    Shape:
        ``x_float``: ``(N, C, H, W)``; ``y``: ``(N,)``.
    """
    from qcfs_lava.progress import bar as progress_bar
    from qcfs_lava.snn import evaluate_ann, train_epoch

    epochs = int(config.finetune_epochs)
    if epochs == 0:
        return []
    device = next(model.parameters()).device
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            is_weight = isinstance(module, (nn.Conv2d, nn.Linear)) and name == "weight"
            (decay if is_weight else no_decay).append(p)
    opt = torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=config.finetune_lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    gen = torch.Generator().manual_seed(int(config.seed))
    x_float, y = torch.as_tensor(x_float), torch.as_tensor(y)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=gen)
        batches = progress_bar(
            ((x_float[idx], y[idx]) for idx in order.split(config.batch_size)),
            desc=f"fine-tune {epoch + 1}/{epochs}", enabled=progress,
            total=math.ceil(len(y) / config.batch_size))
        loss, accuracy = train_epoch(model, batches, loss_fn, opt, device)
        sched.step()
        metrics = {"epoch": epoch + 1, "loss": loss, "train_accuracy": accuracy}
        if x_test is not None and y_test is not None:
            metrics["test_accuracy"] = evaluate_ann(model, x_test, y_test)
        log.info("fine-tune epoch %d/%d %s", epoch + 1, epochs, metrics)
        history.append(metrics)
    model.eval()
    return history


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------


def calibration_subset(n_train: int, samples: int, seed: int) -> np.ndarray:
    """Indices of the training images used for the statistics (sorted, deterministic)."""
    rng = np.random.default_rng(seed)
    if samples >= n_train:
        return np.arange(n_train)
    return np.sort(rng.choice(n_train, size=samples, replace=False))


def calibrate_checkpoint(
    path: str | Path,
    config: CalibrationConfig,
    *,
    data_root: str | Path | None = None,
    data_seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
):
    """Calibrate a checkpoint (ReLU or QCFS) on its own training data; optionally fine-tune.

    Args:
        path: a checkpoint written by ``qcfs-lava train`` (any activation).
        config: the calibration.
        data_root: folder of the dataset files (see :func:`qcfs_lava.data.load_dataset`).
        data_seed: seed of the dataset's train/test split (``qcfs-lava train --seed``; 0 by
            default), so that calibration and fine-tune see training images only.
        device: torch device for statistics and fine-tune.
        progress: show progress bars.

    Returns:
        ``(checkpoint, result, accuracies)``: the QCFS :class:`~qcfs_lava.checkpoint.Checkpoint`
        (every other command accepts it), the :class:`CalibrationResult`, and test
        accuracies ``{"source_ann", "calibrated_ann", "finetuned_ann"}`` (fractions; the
        last only with a fine-tune).

    Raises:
        CheckpointError: unreadable checkpoint.
        DatasetError: the checkpoint's dataset cannot be loaded.
    """
    from qcfs_lava.checkpoint import Checkpoint, load_checkpoint
    from qcfs_lava.data import load_dataset, normalize
    from qcfs_lava.model.zoo import build_model
    from qcfs_lava.snn import evaluate_ann

    ckpt = load_checkpoint(path)
    source = ckpt.build_model().to(device)
    split = load_dataset(ckpt.dataset, data_root, seed=data_seed)
    if tuple(split.x_train.shape[1:]) != tuple(ckpt.input_shape):
        raise CheckpointError(
            f"{path}: the model takes inputs {tuple(ckpt.input_shape)} but dataset "
            f"{ckpt.dataset!r} has {tuple(split.x_train.shape[1:])}; pass the data it was "
            "trained on")
    mean = ckpt.mean or split.mean.tolist()
    std = ckpt.std or split.std.tolist()
    x_test = normalize(split.x_test, mean, std)
    y_test = torch.as_tensor(split.y_test)
    index = calibration_subset(len(split.y_train), config.samples, config.seed)
    x_cal = normalize(split.x_train[index], mean, std)
    acc = {"source_ann": evaluate_ann(source, x_test, y_test)}
    result = calibrate(source, x_cal, config, progress=progress)
    acc["calibrated_ann"] = evaluate_ann(result.model, x_test, y_test)
    if config.finetune_epochs:
        torch.manual_seed(config.seed)
        x_train = normalize(split.x_train, mean, std)
        result.finetune = finetune_(result.model, x_train, torch.as_tensor(split.y_train),
                                    config, x_test=x_test, y_test=y_test, progress=progress)
        acc["finetuned_ann"] = evaluate_ann(result.model, x_test, y_test)
    kwargs = dict(ckpt.model_kwargs) | {"activation": "qcfs", "levels": int(config.levels),
                                        "phi": float(config.phi)}
    rebuilt = build_model(ckpt.model, **kwargs)
    state = result.model.state_dict()
    rebuilt.load_state_dict(state)  # the calibrated model is the registry's QCFS layout
    out = Checkpoint(
        model=ckpt.model, model_kwargs=kwargs, state_dict={k: v.cpu() for k, v in state.items()},
        levels=int(config.levels), phi=float(config.phi), activation="qcfs",
        dataset=ckpt.dataset, input_shape=tuple(ckpt.input_shape),
        num_classes=ckpt.num_classes, class_names=list(ckpt.class_names), mean=list(mean),
        std=list(std), epoch=ckpt.epoch + int(config.finetune_epochs),
        best_accuracy=acc.get("finetuned_ann", acc["calibrated_ann"]),
    )
    return out, result, acc


def config_dict(config: CalibrationConfig) -> dict[str, Any]:
    """``config`` as a JSON-ready dict."""
    return dataclasses.asdict(config)
