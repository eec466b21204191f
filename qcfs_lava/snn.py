r"""The float SNN (``docs/contract.md``, section 2): each QCFS becomes an integrate-and-fire neuron.

For every hidden activation layer with threshold :math:`\theta = \lambda`:

.. math::
    v(0) &= \varphi\,\theta \\
    v(t) &= v(t-1) + z(t) \\
    s(t) &= \theta\,[v(t) \ge \theta] \\
    v(t) &\leftarrow v(t) - s(t)

The same normalised image enters the first layer at every step; the logits at ``T`` are the
mean of the classifier outputs over the first ``T`` steps, so one pass of ``max(steps)`` steps
yields the accuracy at every requested ``T``.

The float ANN side lives here too: :func:`evaluate_ann` (accuracy) and :func:`train_epoch`
(one optimisation pass), which training, calibration and fine-tuning share.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from qcfs_lava.errors import UnsupportedLayerError
from qcfs_lava.model.qcfs import QCFS
from qcfs_lava.progress import bar

__all__ = [
    "IFNeuron",
    "SNNResult",
    "evaluate_ann",
    "evaluate_snn",
    "simulate_snn",
    "snn_outputs",
    "to_snn",
    "train_epoch",
]


class IFNeuron(nn.Module):
    r"""Integrate-and-fire neuron with soft reset, the spiking twin of :class:`QCFS`.

    .. math::
        v \leftarrow v + x;\quad s = [v \ge \theta];\quad v \leftarrow v - \theta\,s;
        \quad \text{output } a\,s

    with amplitude :math:`a = \theta` (the float SNN: spikes carry the threshold, as the QCFS
    output does) or :math:`a = 1` (``unit_spikes``: the ``IF`` node of a NIR graph). The
    membrane starts at ``phi * theta``, or at ``v_init`` when given; call :meth:`reset`
    before each new input.

    Args:
        thresh: threshold ``theta`` (the QCFS ``lambda``).
        phi: initial membrane as a fraction of ``theta``.
        v_init: initial membrane as a value (instead of ``phi``).
        unit_spikes: emit 1 per spike instead of ``theta``.

    Shape:
        any; element-wise, the state takes the shape of the first input.
    """

    def __init__(self, thresh: float | torch.Tensor, phi: float = 0.0, *,
                 v_init: float | None = None, unit_spikes: bool = False) -> None:
        super().__init__()
        thresh = torch.as_tensor(thresh)
        if not thresh.is_floating_point():
            thresh = thresh.to(torch.get_default_dtype())
        self.register_buffer("thresh", thresh.detach().clone().reshape(1))
        self.register_buffer("v_init", None if v_init is None else torch.tensor([float(v_init)]))
        self.phi = float(phi)
        self.unit_spikes = bool(unit_spikes)
        self.v: torch.Tensor | None = None
        self.spikes = 0.0  # total spikes since the last reset_counts()
        self.neurons = 0  # neurons per sample

    def reset(self) -> None:
        self.v = None

    def reset_counts(self) -> None:
        self.spikes = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.thresh.to(x.dtype)
        if self.v is None:
            start = self.phi * theta if self.v_init is None else self.v_init.to(x.dtype)
            self.v = torch.full_like(x, 0.0) + start
            self.neurons = int(x[0].numel())
        self.v = self.v + x
        fired = (self.v >= theta).to(x.dtype)
        self.spikes += float(fired.sum())
        out = fired * theta
        self.v = self.v - out
        return fired if self.unit_spikes else out

    def extra_repr(self) -> str:
        start = f"phi={self.phi}" if self.v_init is None else f"v_init={self.v_init.item():.4g}"
        return (f"thresh={self.thresh.item():.4g}, {start}"
                + (", unit_spikes=True" if self.unit_spikes else ""))


def _check(model: nn.Module) -> None:
    bad = [name for name, m in model.named_modules() if isinstance(m, (nn.MaxPool2d, nn.ReLU))]
    if bad:
        raise UnsupportedLayerError(
            f"the float SNN needs QCFS activations and average pooling; found ReLU/MaxPool2d at "
            f"{bad}: train with activation 'qcfs' (replace_relu_with_qcfs) and AvgPool2d"
        )
    if not any(isinstance(m, QCFS) for m in model.modules()):
        raise UnsupportedLayerError("model has no QCFS activation: nothing to convert to spikes")


def _swap(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, QCFS):
            setattr(module, name, IFNeuron(child.thresh.detach().clone(), child.phi))
        else:
            _swap(child)


def to_snn(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every :class:`QCFS` replaced by an :class:`IFNeuron`.

    Raises:
        UnsupportedLayerError: the model has ReLU or MaxPool2d, or no QCFS at all.
    """
    _check(model)
    snn = copy.deepcopy(model).eval()
    _swap(snn)
    return snn


def _neurons(snn: nn.Module) -> list[tuple[str, IFNeuron]]:
    return [(n, m) for n, m in snn.named_modules() if isinstance(m, IFNeuron)]


@torch.no_grad()
def snn_outputs(model: nn.Module, x_float: torch.Tensor, steps: int) -> torch.Tensor:
    """Classifier output of the float SNN at every step, for one batch.

    The SNN logits at ``T`` are ``snn_outputs(...)[:T].mean(0)``.

    Shape:
        ``x_float``: ``(N, C, H, W)``; returns ``(steps, N, num_classes)``.
    """
    snn = to_snn(model)
    outputs = [snn(x_float) for _ in range(int(steps))]
    return torch.stack(outputs)


@dataclass
class SNNResult:
    """Float-SNN accuracy for several ``T`` and spike rates per activation layer.

    Attributes:
        accuracy: ``{T: accuracy}`` (fractions).
        spike_rates: ``{layer name: spikes / (neurons * T_max * samples)}``.
        steps: the largest ``T`` simulated.
    """

    accuracy: dict[int, float]
    spike_rates: dict[str, float] = field(default_factory=dict)
    steps: int = 0


def _batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, desc: str):
    n = len(y)
    for start in bar(range(0, n, batch_size), desc=desc, enabled=n > batch_size):
        yield x[start: start + batch_size], y[start: start + batch_size]


@torch.no_grad()
def evaluate_ann(
    model: nn.Module, x_float: torch.Tensor, y: torch.Tensor, batch_size: int = 256
) -> float:
    """Accuracy of the (QCFS or ReLU) ANN on normalised inputs.

    Shape:
        ``x_float``: ``(N, C, H, W)``; ``y``: ``(N,)``.
    """
    x_float, y = torch.as_tensor(x_float), torch.as_tensor(y)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for xb, yb in _batches(x_float, y, batch_size, "ANN"):
        correct += int((model(xb.to(device)).argmax(1).cpu() == yb).sum())
    model.train(was_training)
    return correct / max(len(y), 1)


def train_epoch(model: nn.Module, batches, loss_fn, optimizer, device) -> tuple[float, float]:
    """One optimisation pass over ``batches`` of ``(x, y)``; the model is in training mode.

    ``batches`` may be a :func:`qcfs_lava.progress.bar` (its postfix shows the running loss).

    Returns:
        ``(mean loss, accuracy)`` over the samples seen.
    """
    total, seen, correct = 0.0, 0, 0
    for xb, yb in batches:
        xb, yb = xb.to(device), yb.to(device)
        logits = model(xb)
        loss = loss_fn(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(yb)
        seen += len(yb)
        correct += int((logits.argmax(1) == yb).sum())
        if hasattr(batches, "set_postfix"):
            batches.set_postfix(loss=f"{total / seen:.4f}")
    return total / max(seen, 1), correct / max(seen, 1)

@torch.no_grad()
def simulate_snn(
    model: nn.Module,
    x_float: torch.Tensor,
    y: torch.Tensor,
    steps: Sequence[int],
    batch_size: int = 256,
) -> SNNResult:
    """Run the float SNN of ``model`` for ``max(steps)`` steps; accuracy at each ``T``.

    The user's model is not modified (a deep copy is converted).

    Shape:
        ``x_float``: ``(N, C, H, W)`` normalised images; ``y``: ``(N,)``.
    """
    steps = sorted({int(t) for t in steps})
    if not steps or steps[0] < 1:
        raise ValueError(f"steps must be positive integers, got {steps}")
    t_max = steps[-1]
    snn = to_snn(model)
    device = next(model.parameters()).device
    snn.to(device)
    neurons = _neurons(snn)
    x_float, y = torch.as_tensor(x_float), torch.as_tensor(y)
    correct = dict.fromkeys(steps, 0)
    for xb, yb in _batches(x_float, y, batch_size, f"SNN T={t_max}"):
        xb = xb.to(device)
        for _, neuron in neurons:
            neuron.reset()
        total = None
        for t in range(1, t_max + 1):
            out = snn(xb)
            total = out if total is None else total + out
            if t in correct:
                correct[t] += int((total.argmax(1).cpu() == yb).sum())
    n = max(len(y), 1)
    rates = {
        name: neuron.spikes / max(neuron.neurons * t_max * n, 1) for name, neuron in neurons
    }
    return SNNResult({t: c / n for t, c in correct.items()}, rates, t_max)


def evaluate_snn(
    model: nn.Module,
    x_float: torch.Tensor,
    y: torch.Tensor,
    steps: Sequence[int],
    batch_size: int = 256,
) -> dict[int, float]:
    """Float-SNN accuracy ``{T: accuracy}`` for every ``T`` in ``steps`` (one pass).

    See :func:`simulate_snn` (which also returns spike rates).
    """
    return simulate_snn(model, x_float, y, steps, batch_size).accuracy
