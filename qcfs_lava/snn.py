r"""The float SNN (``docs/contract.md``, section 2): each QCFS becomes an integrate-and-fire neuron.

For every hidden activation layer with QCFS threshold :math:`\lambda` and payload bound
:math:`P` (the largest payload of one spike; ``P = 1``: binary spikes), the unit threshold is
:math:`\theta = \lambda / P`:

.. math::
    v(0) &= \varphi\,\theta \\
    v(t) &= v(t-1) + z(t) \\
    n(t) &= \min(P, \max(0, \lfloor v(t) / \theta \rfloor)) \\
    s(t) &= \theta\,n(t) \\
    v(t) &\leftarrow v(t) - s(t)

With ``P = 1`` this is the binary neuron ``s = theta [v >= theta]``. With ``P = L`` (the QCFS
levels) the first step's output is ``lambda / L * clip(floor(z L / lambda + phi), 0, L)``, the
QCFS activation itself: at ``T = 1`` the float SNN is the QCFS ANN.

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

import numpy as np
import torch
from torch import nn

from qcfs_lava import hardware as hw
from qcfs_lava.errors import UnsupportedLayerError, UsageError
from qcfs_lava.model.qcfs import QCFS
from qcfs_lava.progress import bar

__all__ = [
    "IFNeuron",
    "check_payload",
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
        v \leftarrow v + x;\quad n = \min(P, \max(0, \lfloor v / \theta \rfloor));\quad
        v \leftarrow v - \theta\,n;\quad \text{output } a\,n

    with the unit threshold ``theta = thresh / payload`` and amplitude :math:`a = \theta` (the
    float SNN: spikes carry the threshold, as the QCFS output does) or :math:`a = 1`
    (``unit_spikes``: the ``IF`` node of a NIR graph). ``payload = 1`` is the binary neuron
    ``n = [v >= theta]``. The membrane starts at ``phi * theta``, or at ``v_init`` when given;
    call :meth:`reset` before each new input.

    A graded neuron keeps ``u = v - phi * theta`` (the input integrated minus what it sent)
    and evaluates ``n = floor(u / thresh * P + phi)`` and ``s = n / P * thresh``, the QCFS
    expression in QCFS's own order of operations: with ``P = L`` its first step is the QCFS
    activation bit for bit, not only up to float rounding.

    Args:
        thresh: the QCFS ``lambda`` (the threshold of a binary neuron).
        phi: initial membrane as a fraction of the unit threshold.
        payload: the largest payload ``P`` of one spike (graded spikes when ``P > 1``).
        v_init: initial membrane as a value (instead of ``phi``; binary neurons only).
        unit_spikes: emit 1 per spike instead of ``theta`` (binary neurons only).

    Shape:
        any; element-wise, the state takes the shape of the first input.
    """

    def __init__(self, thresh: float | torch.Tensor, phi: float = 0.0, payload: int = 1, *,
                 v_init: float | None = None, unit_spikes: bool = False) -> None:
        super().__init__()
        payload = check_payload(payload)
        thresh = torch.as_tensor(thresh)
        if not thresh.is_floating_point():
            thresh = thresh.to(torch.get_default_dtype())
        self.register_buffer("thresh", thresh.detach().clone().reshape(1))
        self.register_buffer("v_init", None if v_init is None else torch.tensor([float(v_init)]))
        self.phi = float(phi)
        self.payload = payload
        self.unit_spikes = bool(unit_spikes)
        if payload != 1 and (v_init is not None or self.unit_spikes):
            raise UsageError("a graded IFNeuron (payload > 1) starts at phi unit thresholds "
                             "and emits payload * theta: v_init and unit_spikes are for "
                             "binary neurons")
        self.v: torch.Tensor | None = None
        self._u: torch.Tensor | None = None  # graded: v - phi * theta
        self.spikes = 0.0  # messages (spikes, whatever their payload) since reset_counts()
        self.payload_sum = 0.0  # payloads summed over those messages
        self.neurons = 0  # neurons per sample

    def reset(self) -> None:
        self.v = None
        self._u = None

    def reset_counts(self) -> None:
        self.spikes = 0.0
        self.payload_sum = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.thresh.to(x.dtype) / self.payload  # the unit threshold
        if self.v is None:
            start = self.phi * theta if self.v_init is None else self.v_init.to(x.dtype)
            self.v = torch.full_like(x, 0.0) + start
            self.neurons = int(x[0].numel())
        if self.payload == 1:
            self.v = self.v + x
            n = (self.v >= theta).to(x.dtype)
            out = n * theta
            self.v = self.v - out
            if self.unit_spikes:
                out = n
        else:
            thresh = self.thresh.to(x.dtype)
            if self._u is None:
                self._u = torch.zeros_like(x)
            self._u = self._u + x
            n = torch.floor(self._u / thresh * self.payload + self.phi).clamp_(0, self.payload)
            out = n / self.payload * thresh
            self._u = self._u - out
            self.v = self._u + self.phi * theta
        self.spikes += float((n > 0).sum())
        self.payload_sum += float(n.sum())
        return out

    def extra_repr(self) -> str:
        start = f"phi={self.phi}" if self.v_init is None else f"v_init={self.v_init.item():.4g}"
        return (f"thresh={self.thresh.item():.4g}, {start}"
                + (f", payload={self.payload}" if self.payload != 1 else "")
                + (", unit_spikes=True" if self.unit_spikes else ""))


def check_payload(payload) -> int:
    """``payload`` as an int in ``[1, PAYLOAD_MAX]``, or a :class:`UsageError` saying why not."""
    if isinstance(payload, bool) or not isinstance(payload, (int, np.integer)) or not (
            1 <= int(payload) <= hw.PAYLOAD_MAX):
        raise UsageError(f"payload (graded spikes' largest payload P) must be an integer in "
                         f"[1, {hw.PAYLOAD_MAX}] (1: binary spikes), got {payload!r}")
    return int(payload)


def _check(model: nn.Module) -> None:
    bad = [name for name, m in model.named_modules() if isinstance(m, (nn.MaxPool2d, nn.ReLU))]
    if bad:
        raise UnsupportedLayerError(
            f"the float SNN needs QCFS activations and average pooling; found ReLU/MaxPool2d at "
            f"{bad}: train with activation 'qcfs' (replace_relu_with_qcfs) and AvgPool2d"
        )
    if not any(isinstance(m, QCFS) for m in model.modules()):
        raise UnsupportedLayerError("model has no QCFS activation: nothing to convert to spikes")


def _swap(module: nn.Module, payload: int) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, QCFS):
            setattr(module, name, IFNeuron(child.thresh.detach().clone(), child.phi, payload))
        else:
            _swap(child, payload)


def to_snn(model: nn.Module, payload: int = 1) -> nn.Module:
    """A deep copy of ``model`` with every :class:`QCFS` replaced by an :class:`IFNeuron`.

    Args:
        model: a model with QCFS activations.
        payload: the largest payload ``P`` of a spike (1: binary spikes).

    Raises:
        UnsupportedLayerError: the model has ReLU or MaxPool2d, or no QCFS at all.
    """
    payload = check_payload(payload)
    _check(model)
    snn = copy.deepcopy(model).eval()
    _swap(snn, payload)
    return snn


def _neurons(snn: nn.Module) -> list[tuple[str, IFNeuron]]:
    return [(n, m) for n, m in snn.named_modules() if isinstance(m, IFNeuron)]


@torch.no_grad()
def snn_outputs(model: nn.Module, x_float: torch.Tensor, steps: int,
                payload: int = 1) -> torch.Tensor:
    """Classifier output of the float SNN at every step, for one batch.

    The SNN logits at ``T`` are ``snn_outputs(...)[:T].mean(0)``.

    Shape:
        ``x_float``: ``(N, C, H, W)``; returns ``(steps, N, num_classes)``.
    """
    snn = to_snn(model, payload)
    outputs = [snn(x_float) for _ in range(int(steps))]
    return torch.stack(outputs)


@dataclass
class SNNResult:
    """Float-SNN accuracy for several ``T`` and spike rates per activation layer.

    Attributes:
        accuracy: ``{T: accuracy}`` (fractions).
        spike_rates: ``{layer name: messages / (neurons * T_max * samples)}`` (spikes sent,
            whatever their payload).
        steps: the largest ``T`` simulated.
        payload: the payload bound ``P`` of the neurons (1: binary spikes).
        payload_rates: ``{layer name: summed payloads / (neurons * T_max * samples)}``
            (equal to ``spike_rates`` for binary spikes).
    """

    accuracy: dict[int, float]
    spike_rates: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    payload: int = 1
    payload_rates: dict[str, float] = field(default_factory=dict)


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
    payload: int = 1,
) -> SNNResult:
    """Run the float SNN of ``model`` for ``max(steps)`` steps; accuracy at each ``T``.

    The user's model is not modified (a deep copy is converted). ``payload`` is the largest
    payload ``P`` of a spike (1: binary spikes; see the module docstring).

    Shape:
        ``x_float``: ``(N, C, H, W)`` normalised images; ``y``: ``(N,)``.
    """
    steps = sorted({int(t) for t in steps})
    if not steps or steps[0] < 1:
        raise ValueError(f"steps must be positive integers, got {steps}")
    t_max = steps[-1]
    snn = to_snn(model, payload)
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
    payload_rates = {
        name: neuron.payload_sum / max(neuron.neurons * t_max * n, 1)
        for name, neuron in neurons
    }
    return SNNResult({t: c / n for t, c in correct.items()}, rates, t_max, int(payload),
                     payload_rates)


def evaluate_snn(
    model: nn.Module,
    x_float: torch.Tensor,
    y: torch.Tensor,
    steps: Sequence[int],
    batch_size: int = 256,
    payload: int = 1,
) -> dict[int, float]:
    """Float-SNN accuracy ``{T: accuracy}`` for every ``T`` in ``steps`` (one pass).

    See :func:`simulate_snn` (which also returns spike rates).
    """
    return simulate_snn(model, x_float, y, steps, batch_size, payload).accuracy
