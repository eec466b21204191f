r"""Where the conversion error comes from, per activation layer, in the paper's terms.

Bu et al. (ICLR 2022) split the difference between an ANN activation and the SNN's average
output into *clipping*, *quantization* and *unevenness* error. We measure it on real inputs:
for each activation layer ``l`` (a :class:`~qcfs_lava.model.qcfs.QCFS` module) we compare,
element by element, the float SNN's (``docs/contract.md``, section 2) average output after
``T`` steps, ``r_l * theta_l`` with ``r_l = spikes / T``, with the QCFS-ANN activation ``a_l``
on the same image. Each element's error ``e = r_l theta_l - a_l`` falls into exactly one bucket:

1. **clipping**: the ANN pre-activation ``z_l`` lies outside ``[0, lambda_l]``
   (``z < 0`` or ``z > lambda``): the value a ReLU network would pass on is cut off;
2. **quantization**: otherwise, if ``a_l`` is off the grid of values the SNN can represent at
   ``T`` steps, ``{k theta_l / T : k = 0..T}`` (``T != L`` makes the ANN's levels
   ``k lambda / L`` partly unreachable);
3. **unevenness**: every other element: ``a_l`` is representable, ``z_l`` is inside the clip
   range, and the remaining difference comes from when the spikes arrive (and from the error
   the layers below pass up).

For each bucket we report the fraction of elements in it and its share of the mean absolute
error, in units of ``theta_l`` (so layers compare): the three shares add up to the layer's
mean ``|e| / theta``. Two intrinsic (SNN-free) quantities are reported alongside: the mean
``|ReLU(z) - clip(z, 0, lambda)| / lambda`` (what clipping costs relative to a ReLU network)
and the mean distance from ``a / theta`` to the nearest point of the ``T``-step grid (the part
of the quantization error no spike timing can remove).

The SNN runs end to end, so errors of lower layers reach the inputs of higher ones: a layer's
numbers include what it inherited.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from qcfs_lava.errors import AnalysisError
from qcfs_lava.model.qcfs import QCFS
from qcfs_lava.progress import bar

__all__ = ["ErrorBreakdown", "LayerErrorBreakdown", "error_breakdown"]

_GRID_TOL = 1e-4  # in units of one grid step theta / T


@dataclass(frozen=True)
class LayerErrorBreakdown:
    """Conversion error of one activation layer at ``T`` steps (units of ``theta``).

    Attributes:
        name: module name of the QCFS activation in the model.
        threshold: ``theta = lambda`` of the layer.
        elements: activations compared (neurons x samples).
        clip_fraction, quant_fraction, uneven_fraction: share of elements in each bucket.
        clip_error, quant_error, uneven_error: each bucket's contribution to the mean
            ``|r theta - a| / theta`` (sum over the bucket divided by all elements).
        total_error: mean ``|r theta - a| / theta`` (the sum of the three).
        mean_signed_error: mean ``(r theta - a) / theta``.
        relu_clip_error: mean ``|ReLU(z) - clip(z, 0, lambda)| / lambda``.
        grid_error: mean distance of ``a / theta`` to the nearest ``k / T``.
        ann_density: fraction of nonzero ANN activations.
        snn_rate: mean firing rate ``r``.
    """

    name: str
    threshold: float
    elements: int
    clip_fraction: float
    quant_fraction: float
    uneven_fraction: float
    clip_error: float
    quant_error: float
    uneven_error: float
    total_error: float
    mean_signed_error: float
    relu_clip_error: float
    grid_error: float
    ann_density: float
    snn_rate: float


@dataclass(frozen=True)
class ErrorBreakdown:
    """The per-layer breakdown at one ``T``, with the ANN and float-SNN accuracy."""

    steps: int
    samples: int
    layers: tuple[LayerErrorBreakdown, ...]
    ann_accuracy: float | None
    snn_accuracy: float | None

    def to_dict(self) -> dict:
        return {
            "steps": self.steps,
            "samples": self.samples,
            "ann_accuracy": self.ann_accuracy,
            "snn_accuracy": self.snn_accuracy,
            "layers": [asdict(layer) for layer in self.layers],
        }


_SUMS = ("n", "clip_n", "quant_n", "uneven_n", "clip_e", "quant_e", "uneven_e", "abs_e",
         "signed_e", "relu_clip", "grid", "ann_nz", "rate")


def _accumulate(acc: dict, z: torch.Tensor, a: torch.Tensor, rate: torch.Tensor,
                theta: float, steps: int) -> None:
    z, a, rate = z.double(), a.double(), rate.double()
    err = (rate * theta - a) / theta
    clip = (z < 0) | (z > theta)
    pos = a / theta * steps
    off_grid = (pos - torch.round(pos)).abs() > _GRID_TOL
    quant = ~clip & off_grid
    uneven = ~clip & ~off_grid
    abs_e = err.abs()
    acc["n"] += z.numel()
    acc["clip_n"] += int(clip.sum())
    acc["quant_n"] += int(quant.sum())
    acc["uneven_n"] += int(uneven.sum())
    acc["clip_e"] += float(abs_e[clip].sum())
    acc["quant_e"] += float(abs_e[quant].sum())
    acc["uneven_e"] += float(abs_e[uneven].sum())
    acc["abs_e"] += float(abs_e.sum())
    acc["signed_e"] += float(err.sum())
    acc["relu_clip"] += float((z.clamp(min=0) - z.clamp(0, theta)).abs().sum()) / theta
    acc["grid"] += float((pos - torch.round(pos)).abs().sum()) / steps
    acc["ann_nz"] += int((a != 0).sum())
    acc["rate"] += float(rate.sum())


def _layer_result(name: str, theta: float, acc: dict) -> LayerErrorBreakdown:
    n = max(acc["n"], 1)
    return LayerErrorBreakdown(
        name=name,
        threshold=theta,
        elements=int(acc["n"]),
        clip_fraction=acc["clip_n"] / n,
        quant_fraction=acc["quant_n"] / n,
        uneven_fraction=acc["uneven_n"] / n,
        clip_error=acc["clip_e"] / n,
        quant_error=acc["quant_e"] / n,
        uneven_error=acc["uneven_e"] / n,
        total_error=acc["abs_e"] / n,
        mean_signed_error=acc["signed_e"] / n,
        relu_clip_error=acc["relu_clip"] / n,
        grid_error=acc["grid"] / n,
        ann_density=acc["ann_nz"] / n,
        snn_rate=acc["rate"] / n,
    )


@torch.no_grad()
def error_breakdown(
    model: nn.Module,
    x_float: torch.Tensor,
    steps: int | Sequence[int],
    labels: torch.Tensor | np.ndarray | None = None,
    batch_size: int = 128,
    progress: bool = False,
    payload: int = 1,
) -> dict[int, ErrorBreakdown]:
    """Measure clipping, quantization and unevenness error per QCFS layer (module docstring).

    One float-SNN pass of ``max(steps)`` steps serves every requested ``T``.

    Args:
        model: a QCFS model (:func:`qcfs_lava.model.zoo.build_model` layout); not modified.
        x_float: normalised inputs. Shape: ``(N, *input_shape)``.
        steps: one ``T`` or several.
        labels: ``(N,)`` ground truth, for the ANN and float-SNN accuracy.
        batch_size: samples per batch.
        progress: show a tqdm bar over batches.
        payload: the float SNN's payload bound ``P`` (1: binary spikes; see
            :mod:`qcfs_lava.snn`).

    Returns:
        ``{T: ErrorBreakdown}``.

    Raises:
        AnalysisError: the model has no QCFS activation or ``steps`` is not positive.
    """
    from qcfs_lava.snn import IFNeuron, to_snn

    step_list = sorted({int(steps)} if np.isscalar(steps) else {int(t) for t in steps})
    if not step_list or step_list[0] < 1:
        raise AnalysisError(f"error_breakdown: steps must be positive integers, got {steps}")
    names = [name for name, m in model.named_modules() if isinstance(m, QCFS)]
    if not names:
        raise AnalysisError(
            "error_breakdown: the model has no QCFS activation; the breakdown compares QCFS-ANN "
            "activations with the float SNN (train with activation 'qcfs')"
        )
    was_training = model.training
    model.eval()
    modules = dict(model.named_modules())
    thetas = {name: float(modules[name].thresh.detach().reshape(-1)[0]) for name in names}
    snn = to_snn(model, payload)
    snn_modules = dict(snn.named_modules())
    device = next(model.parameters()).device
    snn.to(device)

    ann_io: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    counts: dict[str, torch.Tensor] = {}

    def ann_hook(name):
        def hook(_m, inputs, output):
            ann_io[name] = (inputs[0].detach(), output.detach())
        return hook

    def snn_hook(name):
        def hook(_m, _inputs, output):
            fired = (output > 0).to(torch.int32)
            counts[name] = fired if name not in counts else counts[name] + fired
        return hook

    handles = [modules[n].register_forward_hook(ann_hook(n)) for n in names]
    for n in names:
        if not isinstance(snn_modules.get(n), IFNeuron):
            raise AnalysisError(f"error_breakdown: no spiking neuron replaced QCFS {n!r}")
        handles.append(snn_modules[n].register_forward_hook(snn_hook(n)))

    sums = {t: {n: dict.fromkeys(_SUMS, 0) for n in names} for t in step_list}
    correct_ann, correct_snn = 0, dict.fromkeys(step_list, 0)
    x_float = torch.as_tensor(x_float)
    y = None if labels is None else torch.as_tensor(np.asarray(labels)).long()
    total = len(x_float)
    try:
        for lo in bar(range(0, total, batch_size), desc="error breakdown", enabled=progress):
            xb = x_float[lo:lo + batch_size].to(device)
            logits = model(xb)
            if y is not None:
                correct_ann += int((logits.argmax(1).cpu() == y[lo:lo + batch_size]).sum())
            for m in snn.modules():
                if isinstance(m, IFNeuron):
                    m.reset()
            counts.clear()
            out_sum = None
            for t in range(1, step_list[-1] + 1):
                out = snn(xb)
                out_sum = out if out_sum is None else out_sum + out
                if t not in correct_snn:
                    continue
                if y is not None:
                    correct_snn[t] += int((out_sum.argmax(1).cpu() == y[lo:lo + batch_size]).sum())
                for n in names:
                    z, a = ann_io[n]
                    _accumulate(sums[t][n], z, a, counts[n].double() / t, thetas[n], t)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {
        t: ErrorBreakdown(
            steps=t,
            samples=total,
            layers=tuple(_layer_result(n, thetas[n], sums[t][n]) for n in names),
            ann_accuracy=None if y is None else correct_ann / max(total, 1),
            snn_accuracy=None if y is None else correct_snn[t] / max(total, 1),
        )
        for t in step_list
    }
