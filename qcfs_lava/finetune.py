r"""SNN fine-tuning: train the float SNN itself at the deployment ``T`` with a surrogate gradient.

A QCFS ANN converted to spikes is exact only as ``T`` grows; at ``T = 1..4`` the spiking
network's rate code is far from the ANN's quantized activation. This module trains the
converted network *as the SNN that will be deployed* and writes the result back as an ordinary
QCFS checkpoint, which every command accepts and converts to the same integer network kind.

**Deployed semantics, exactly.** The forward pass is :mod:`qcfs_lava.snn` unchanged: the same
normalised image enters at every step, each QCFS becomes an integrate-and-fire neuron with
threshold :math:`\theta = \lambda`, membrane :math:`v(0) = \varphi\theta`, a spike of value
:math:`\theta` when :math:`v \ge \theta`, reset by subtraction; the logits at ``T`` are the mean
classifier output over the steps. Only the backward pass differs: the spike's Heaviside step
gets the triangle surrogate derivative

.. math::
    \frac{\partial H}{\partial u} = \max\big(0,\ 1 - |u|\big), \qquad u = v/\theta - 1,

so gradients flow through the membrane over the ``T`` steps (backpropagation through time).
BatchNorm layers stay in evaluation mode (their statistics are frozen; their affine parameters
train), because the integer converter folds BatchNorm with its running statistics.

**Thresholds are trainable** (``train_thresholds=True``, the default): the threshold is the
layer's spike value and its firing scale at once, and the best scale for a rate code of ``T``
steps differs from the best ANN clip; the tuned value is written back as the QCFS ``lambda``,
which the converter reads as the layer threshold. ``False`` keeps the ANN's thresholds.

**Loss.** Cross-entropy of the mean logits at ``T``; with several ``loss_steps`` (e.g.
``(1, 2, 4)``) the mean of the cross-entropies of the prefix means at each of them, so that a
network tuned for ``T = 4`` stays good at ``T = 1`` and ``2`` (one forward pass of the largest).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from qcfs_lava.checkpoint import Checkpoint, load_checkpoint
from qcfs_lava.model.qcfs import QCFS
from qcfs_lava.progress import bar as progress_bar
from qcfs_lava.progress import line as progress_line
from qcfs_lava.snn import IFNeuron, evaluate_ann, evaluate_snn

__all__ = ["FinetuneConfig", "FinetuneResult", "SurrogateIF", "finetune_snn", "finetune_checkpoint"]


class _TriangleStep(torch.autograd.Function):
    """Heaviside ``[u >= 0]`` forward; triangle ``max(0, 1 - |u|)`` backward."""

    @staticmethod
    def forward(ctx, u: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(u)
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (u,) = ctx.saved_tensors
        return grad * torch.clamp(1.0 - u.abs(), min=0.0)


class SurrogateIF(IFNeuron):
    r"""The float SNN's :class:`~qcfs_lava.snn.IFNeuron`, trainable by backpropagation in time.

    Same forward values as the parent (fire on ``v >= theta``, a spike is worth ``theta``,
    subtract, ``v(0) = phi * theta``); the spike's step function has the triangle surrogate
    gradient. The threshold is a parameter (trained or frozen with ``requires_grad``).
    """

    def __init__(self, thresh: float | torch.Tensor, phi: float, trainable: bool = True) -> None:
        super().__init__(thresh, phi)
        theta = self.thresh.detach().clone()
        del self.thresh
        self.thresh = nn.Parameter(theta, requires_grad=trainable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.thresh.to(x.dtype)
        if self.v is None:
            self.v = torch.zeros_like(x) + self.phi * theta
            self.neurons = int(x[0].numel())
        self.v = self.v + x
        fired = _TriangleStep.apply(self.v / theta - 1.0)
        self.spikes += float(fired.detach().sum())
        out = fired * theta
        self.v = self.v - out
        return out


def _to_trainable_snn(model: nn.Module, train_thresholds: bool) -> nn.Module:
    snn = copy.deepcopy(model)

    def swap(module: nn.Module) -> None:
        for name, child in list(module.named_children()):
            if isinstance(child, QCFS):
                setattr(module, name, SurrogateIF(child.thresh.detach().clone(), child.phi,
                                                  train_thresholds))
            else:
                swap(child)

    swap(snn)
    if not any(isinstance(m, SurrogateIF) for m in snn.modules()):
        raise ValueError("the model has no QCFS activation: nothing to fine-tune as an SNN")
    return snn


def _write_back(model: nn.Module, snn: nn.Module) -> None:
    """Copy the tuned weights and thresholds of ``snn`` into the QCFS ``model`` (in place)."""
    state = {k: v.detach().clone() for k, v in snn.state_dict().items()}
    model.load_state_dict(state)


def snn_steps_forward(snn: nn.Module, x: torch.Tensor, steps: int) -> torch.Tensor:
    """Classifier outputs of a (trainable) SNN at every step, from a fresh state.

    Shape:
        returns ``(steps, N, classes)``; the logits at ``T`` are ``out[:T].mean(0)``.
    """
    for m in snn.modules():
        if isinstance(m, IFNeuron):
            m.reset()
    return torch.stack([snn(x) for _ in range(int(steps))])


def multi_step_loss(outputs: torch.Tensor, y: torch.Tensor,
                    loss_steps: Sequence[int]) -> torch.Tensor:
    """Mean cross-entropy of the prefix-mean logits at each ``T`` of ``loss_steps``."""
    cumulative = outputs.cumsum(0)
    losses = [nn.functional.cross_entropy(cumulative[t - 1] / t, y) for t in loss_steps]
    return torch.stack(losses).mean()


@dataclass(frozen=True)
class FinetuneConfig:
    """How to fine-tune the float SNN (written into the output folder's ``finetune.json``).

    Attributes:
        steps: the deployment ``T`` (the largest of ``loss_steps``).
        epochs: passes over the training split.
        loss_steps: the ``T`` values in the loss (default: just ``steps``).
        lr: initial Adam learning rate (cosine schedule to 0).
        batch_size: images per step.
        train_thresholds: train the thresholds (else keep the ANN's).
        augment: random crop + flip (``None``: on for CIFAR datasets only).
        seed: shuffling and augmentation seed.
        data_seed: the dataset split seed the checkpoint was trained with.
    """

    steps: int = 4
    epochs: int = 2
    loss_steps: tuple[int, ...] = ()
    lr: float = 3e-4
    batch_size: int = 64
    train_thresholds: bool = True
    augment: bool | None = None
    seed: int = 0
    data_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        bad = [t for t in self.loss_steps if not 1 <= int(t) <= self.steps]
        if bad:
            raise ValueError(f"loss_steps must lie in 1..steps={self.steps}, got {bad}")
        if not (isinstance(self.lr, (int, float)) and np.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")

    @property
    def loss_at(self) -> tuple[int, ...]:
        return tuple(sorted({int(t) for t in self.loss_steps})) or (int(self.steps),)


@dataclass
class FinetuneResult:
    """What :func:`finetune_snn` did.

    Attributes:
        model: the tuned QCFS model (eval mode): its float SNN is the tuned SNN.
        history: per epoch: loss, train accuracy at ``steps``, test float-SNN accuracy at
            ``steps`` (when a test set was given), seconds.
        thresholds: per activation, ``(before, after)``.
    """

    model: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    thresholds: dict[str, tuple[float, float]] = field(default_factory=dict)


def finetune_snn(
    model: nn.Module,
    train_set: torch.utils.data.Dataset,
    config: FinetuneConfig,
    *,
    x_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    progress: bool = False,
) -> FinetuneResult:
    """Train ``model``'s float SNN at ``config.steps`` and return the tuned QCFS model.

    ``model`` (a QCFS network) is not modified.

    Args:
        model: the QCFS ANN whose SNN is tuned.
        train_set: ``(x, y)`` pairs of normalised images (as :func:`qcfs_lava.data.torch_dataset`).
        config: steps, epochs, loss steps, learning rate...
        x_test, y_test: evaluated with the deployed float SNN after each epoch, if given.
        progress: progress bars.
    """
    torch.manual_seed(config.seed)
    snn = _to_trainable_snn(model, config.train_thresholds)
    before = {n: float(m.thresh.detach()) for n, m in model.named_modules() if isinstance(m, QCFS)}
    params = [p for p in snn.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True, drop_last=False)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer,
                                                          T_max=config.epochs * len(loader))
    tuned = copy.deepcopy(model).eval()
    result = FinetuneResult(tuned)
    for epoch in range(config.epochs):
        t0, total, seen, correct = time.perf_counter(), 0.0, 0, 0
        snn.eval()  # BatchNorm statistics frozen: the converter folds the running ones
        batches = progress_bar(loader, desc=f"SNN fine-tune epoch {epoch + 1}/{config.epochs}",
                               enabled=progress)
        for xb, yb in batches:
            outputs = snn_steps_forward(snn, xb, config.steps)
            loss = multi_step_loss(outputs, yb, config.loss_at)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                for m in snn.modules():  # a threshold must stay positive
                    if isinstance(m, SurrogateIF):
                        m.thresh.clamp_(min=1e-3)
            total += float(loss.detach()) * len(yb)
            seen += len(yb)
            correct += int((outputs.detach().mean(0).argmax(1) == yb).sum())
            if hasattr(batches, "set_postfix"):
                batches.set_postfix(loss=f"{total / seen:.4f}")
        _write_back(tuned, snn)
        metrics = {"epoch": epoch + 1, "loss": total / max(seen, 1),
                   "train_accuracy": correct / max(seen, 1)}
        if x_test is not None and y_test is not None:
            metrics["test_snn_accuracy"] = float(
                evaluate_snn(tuned, x_test, y_test, [config.steps])[config.steps])
        metrics["seconds"] = time.perf_counter() - t0
        result.history.append(metrics)
        test = metrics.get("test_snn_accuracy")
        progress_line(f"SNN fine-tune epoch {epoch + 1}/{config.epochs}: loss "
                      f"{metrics['loss']:.4f}" + ("" if test is None else
                                                  f", test SNN T={config.steps} {100 * test:.2f}%")
                      + f" ({metrics['seconds']:.0f} s)", enabled=progress)
    after = {n: float(m.thresh.detach()) for n, m in tuned.named_modules() if isinstance(m, QCFS)}
    result.thresholds = {n: (before[n], after[n]) for n in before}
    return result


def finetune_checkpoint(
    path: str | Path,
    config: FinetuneConfig,
    *,
    data_root: str | Path | None = None,
    progress: bool = False,
) -> tuple[Checkpoint, FinetuneResult, dict[str, Any]]:
    """Fine-tune a QCFS checkpoint's SNN on its own training split.

    Returns:
        ``(checkpoint, result, accuracies)``: the tuned checkpoint (every command accepts it),
        the :class:`FinetuneResult` and the float-SNN test accuracies at ``config.steps`` before
        and after (fractions).

    Raises:
        CheckpointError: unreadable checkpoint, or not a QCFS one.
        DatasetError: the checkpoint's dataset cannot be loaded.
    """
    from qcfs_lava.data import load_dataset, normalize, torch_dataset
    from qcfs_lava.errors import CheckpointError

    ckpt = load_checkpoint(path)
    if ckpt.activation != "qcfs":
        raise CheckpointError(
            f"{path}: a {ckpt.activation!r} checkpoint has no spiking twin; calibrate it first "
            "(`qcfs-lava calibrate`) or train with --activation qcfs")
    model = ckpt.build_model()
    split = load_dataset(ckpt.dataset, data_root, seed=config.data_seed)
    if tuple(split.x_train.shape[1:]) != tuple(ckpt.input_shape):
        raise CheckpointError(
            f"{path}: the model takes inputs {tuple(ckpt.input_shape)} but dataset "
            f"{ckpt.dataset!r} has {tuple(split.x_train.shape[1:])}; pass the data it was "
            "trained on")
    if ckpt.mean and ckpt.std:
        split = dataclasses.replace(split, mean=np.asarray(ckpt.mean, dtype=np.float32),
                                    std=np.asarray(ckpt.std, dtype=np.float32))
    augment = config.augment if config.augment is not None else ckpt.dataset.startswith("cifar")
    train_set = torch_dataset(split, train=True, augment=augment)
    x_test, y_test = normalize(split.x_test, split), torch.as_tensor(split.y_test)
    before = evaluate_snn(model, x_test, y_test, [config.steps])[config.steps]
    result = finetune_snn(model, train_set, config, x_test=x_test, y_test=y_test,
                          progress=progress)
    after = evaluate_snn(result.model, x_test, y_test, [config.steps])[config.steps]
    state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
    ann = evaluate_ann(result.model, x_test, y_test)
    out = dataclasses.replace(ckpt, state_dict=state, epoch=ckpt.epoch + config.epochs,
                              best_accuracy=float(ann))
    return out, result, {"snn_before": float(before), "snn_after": float(after), "ann_after": ann}
