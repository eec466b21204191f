"""Batched, bit-exact emulation of an :class:`~qcfs_lava.network.IntegerNetwork` (SPEC 3).

Whole batches advance one logical step at a time, with torch on CPU or GPU. The arithmetic
provably loses nothing:

- synaptic sums ``acc = sum w * s`` run in float32 only when every partial sum is an
  integer below ``2**24`` in magnitude (bound: ``max_out sum |w| * max_input``, checked per
  synapse when the network is compiled), otherwise in float64 (exact below ``2**53``);
  TF32 is switched off, and on GPUs convolutions run as unfold + matmul (no Winograd/FFT);
- the shift ``acc * 2**e`` / ``floor(acc / 2**-e)`` and the membrane run in float64,
  where every value that occurs (``|acc| * 2**13 < 2**53``) is an exact integer.

The input layer's synaptic sums do not change over the ``T`` steps (the image is sent
every step), so they are computed once per batch.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from qcfs_lava import hardware as hw
from qcfs_lava.errors import NetworkValidationError
from qcfs_lava.network import INPUT, IntegerNetwork, Synapse
from qcfs_lava.results import SpikeRunResult, argmax_first

FLOAT32_EXACT = 1 << 24


@dataclass
class _CompiledSynapse:
    source: int
    kind: str
    weight: torch.Tensor
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    unfold_conv: bool

    def __call__(self, s: torch.Tensor) -> torch.Tensor:
        s = s.to(self.weight.dtype)
        if self.kind == "dense":
            return s.reshape(s.shape[0], -1) @ self.weight.T
        if not self.unfold_conv:
            return F.conv2d(s, self.weight, None, self.stride, self.padding, self.dilation,
                            self.groups)
        return _conv_unfold(s, self.weight, self.stride, self.padding, self.dilation,
                            self.groups)


def _conv_unfold(s, w, stride, padding, dilation, groups) -> torch.Tensor:
    """Convolution as unfold + matmul: plain sums of products, exact for integer data."""
    n, c, h, wd = s.shape
    co, cig, kh, kw = w.shape
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    cols = F.unfold(s, (kh, kw), dilation, padding, stride)  # (n, c*kh*kw, oh*ow)
    cols = cols.reshape(n, groups, cig * kh * kw, oh * ow)
    wg = w.reshape(groups, co // groups, cig * kh * kw)
    out = torch.einsum("gok,ngkp->ngop", wg, cols)
    return out.reshape(n, co, oh, ow)


def _compile(net: IntegerNetwork, device: torch.device) -> list[list[_CompiledSynapse]]:
    compiled = []
    for layer in net.layers:
        syns = []
        for syn in layer.synapses:
            syns.append(_compile_synapse(syn, device))
        compiled.append(syns)
    return compiled


def _compile_synapse(syn: Synapse, device: torch.device) -> _CompiledSynapse:
    max_in = hw.INPUT_MAX if syn.source == INPUT else 1
    dtype = torch.float32 if syn.max_abs_sum(max_in) < FLOAT32_EXACT else torch.float64
    w = torch.tensor(syn.weight, dtype=dtype, device=device)
    return _CompiledSynapse(syn.source, syn.kind, w, syn.stride, syn.padding, syn.dilation,
                            syn.groups, unfold_conv=device.type != "cpu")


@contextlib.contextmanager
def _exact_matmul():
    """Switch off TF32 (which rounds fp32 products to 10-bit mantissas) while emulating."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _check_input(net: IntegerNetwork, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == len(net.input_shape):
        x = x[None]
    if tuple(x.shape[1:]) != net.input_shape:
        raise NetworkValidationError(
            f"input batch has sample shape {tuple(x.shape[1:])}, the network expects "
            f"{net.input_shape}"
        )
    if x.dtype != np.uint8:
        if x.size and (x.min() < 0 or x.max() > hw.INPUT_MAX or not np.array_equal(x, np.round(x))):
            raise NetworkValidationError("inputs must be unsigned 8-bit integers (0..255)")
        x = x.astype(np.uint8)
    return x


def emulate(
    net: IntegerNetwork,
    x: np.ndarray,
    steps: int,
    *,
    labels: np.ndarray | None = None,
    record: str | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> SpikeRunResult:
    """Run the integer network exactly, a whole batch per step.

    Args:
        net: the integer network.
        x: uint8 inputs. Shape: ``(N, *net.input_shape)``.
        steps: time steps ``T`` per sample.
        labels: ground truth ``(N,)``, for accuracy.
        record: ``None`` (counts per layer only), ``"counts"`` (also per-neuron spike counts,
            needed for exact SynOps) or ``"spikes"`` (also full spike trains).
        batch_size: samples per batch.
        device: torch device.
        progress: show a tqdm bar over batches.

    Returns:
        A :class:`SpikeRunResult` with ``backend="emulator"``.
    """
    if int(steps) < 1:
        raise NetworkValidationError(f"steps must be >= 1, got {steps}")
    if record not in (None, "counts", "spikes"):
        raise ValueError(f"record must be None, 'counts' or 'spikes', got {record!r}")
    steps = int(steps)
    x = _check_input(net, x)
    device = torch.device(device)
    compiled = _compile(net, device)
    hidden = net.layers[:-1]
    n = x.shape[0]
    potentials = np.zeros((n, net.num_classes), dtype=np.int64)
    spike_counts = np.zeros((n, len(hidden)), dtype=np.int64)
    saturations = np.zeros((n, len(net.layers)), dtype=np.int64)
    neuron_counts = ([np.zeros((n, *lay.shape), dtype=np.int32) for lay in hidden]
                     if record else None)
    spikes = ([np.zeros((n, steps, *lay.shape), dtype=bool) for lay in hidden]
              if record == "spikes" else None)
    params = [
        (
            torch.tensor(np.array(lay.bias), dtype=torch.float64, device=device),
            float(lay.v_th) if lay.spiking else None,
            float(lay.v_init),
            2.0 ** lay.weight_exp,
            lay.weight_exp,
        )
        for lay in net.layers
    ]
    batches = range(0, n, batch_size)
    with torch.no_grad(), _exact_matmul():
        for lo in tqdm(batches, desc="emulate", unit="batch", disable=not progress):
            hi = min(lo + batch_size, n)
            xb = torch.as_tensor(x[lo:hi], device=device).to(torch.float32)
            b = hi - lo
            # Synaptic sums from the input are the same every step.
            fixed = [
                sum((syn(xb).to(torch.float64) for syn in syns if syn.source == INPUT),
                    start=torch.zeros((), dtype=torch.float64, device=device))
                for syns in compiled
            ]
            v = [torch.full((b, *lay.shape), p[2], dtype=torch.float64, device=device)
                 for lay, p in zip(net.layers, params, strict=True)]
            counts = [torch.zeros((b, *lay.shape), dtype=torch.int32, device=device)
                      for lay in hidden]
            sat = torch.zeros((b, len(net.layers)), dtype=torch.int64, device=device)
            for t in range(steps):
                out: list[torch.Tensor] = []
                for li, (syns, (bias, v_th, _, mult, e)) in enumerate(
                        zip(compiled, params, strict=True)):
                    acc = fixed[li]
                    for syn in syns:
                        if syn.source != INPUT:
                            acc = acc + syn(out[syn.source]).to(torch.float64)
                    a = acc * mult
                    if e < 0:
                        a = torch.floor(a)
                    vl = v[li] + a + bias
                    over = (vl > hw.STATE_MAX) | (vl < hw.STATE_MIN)
                    sat[:, li] += over.reshape(b, -1).sum(1)
                    vl = vl.clamp_(hw.STATE_MIN, hw.STATE_MAX)
                    if v_th is not None:
                        s = vl >= v_th
                        vl = vl - s * v_th
                        counts[li] += s
                        if spikes is not None:
                            spikes[li][lo:hi, t] = s.cpu().numpy()
                        out.append(s.to(torch.float32))
                    v[li] = vl
            pot = (v[-1] - params[-1][2]).reshape(b, -1)
            potentials[lo:hi] = pot.cpu().numpy().astype(np.int64)
            for li, c in enumerate(counts):
                spike_counts[lo:hi, li] = c.reshape(b, -1).sum(1).cpu().numpy()
                if neuron_counts is not None:
                    neuron_counts[li][lo:hi] = c.cpu().numpy()
            saturations[lo:hi] = sat.cpu().numpy()
    return SpikeRunResult(
        steps=steps,
        layer_names=tuple(lay.name for lay in net.layers),
        potentials=potentials,
        predictions=argmax_first(potentials),
        spike_counts=spike_counts,
        neuron_counts=tuple(neuron_counts) if neuron_counts is not None else None,
        spikes=tuple(spikes) if spikes is not None else None,
        saturations=saturations,
        labels=None if labels is None else np.asarray(labels, dtype=np.int64),
        backend="emulator",
    )
