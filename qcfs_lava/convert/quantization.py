"""Quantize: folded float layers -> :class:`~qcfs_lava.network.IntegerNetwork`.

``docs/contract.md``, section 3: per layer one weight step ``delta`` so the largest
effective weight uses the weight range, then the exponent ``e`` (state units per float unit
``S = 2**(e+1) / delta``) as large as the threshold and bias mantissas allow. The input
normalisation folds into the first layer so the network takes uint8 pixels.

Effective float weights: a synapse from the input sees ``x_int / (255 * std_c)`` (the mean
goes into the bias, position by position where padding makes it non-uniform); a synapse
from hidden layer ``j`` sees binary spikes of amplitude ``theta_j``. The settings
(weight bits, synapse and layer copies) come in a :class:`ConversionConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from qcfs_lava import hardware as hw
from qcfs_lava.convert.config import ConversionConfig
from qcfs_lava.convert.folding import FloatLayer, FloatSynapse
from qcfs_lava.errors import QuantizationError
from qcfs_lava.network import INPUT, IntegerNetwork, NeuronLayer, Synapse

__all__ = [
    "OUTPUT_HEADROOM_STEPS",
    "VTH_MANT_TARGET",
    "LayerQuantization",
    "QuantizationReport",
    "quantize",
]

# Target threshold mantissa: 2**10 keeps v_th = 2**16 state units, so the 24-bit membrane
# spans [-128, +128) thresholds: a silent neuron can sink 128 thresholds below zero before it
# saturates (no saturation on the digits cnn / ResNet-20 up to T = 64), while threshold and
# bias still resolve 1 / 1024 of the threshold (8-bit weights dominate the error).
VTH_MANT_TARGET = 1 << 10
# Output layer: keep `OUTPUT_HEADROOM_STEPS` worst-case steps inside the 24-bit state.
OUTPUT_HEADROOM_STEPS = 16


@dataclass
class LayerQuantization:
    """What the quantizer chose for one layer and the error it introduced."""

    name: str
    scale: float  # state units per float unit of membrane potential
    weight_exp: int
    weight_step: float  # float value of one unit of the stored (2q) weight
    qmax: int
    vth_mant: int | None
    threshold: float | None
    threshold_error: float | None  # relative: |v_th / scale - theta| / theta
    max_weight_error: float  # float units, largest |w_int * step - w_float|
    max_weight: float  # largest |effective float weight| (for scale)
    max_bias_error: float  # float units
    bias_max_abs_mant: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class QuantizationReport:
    """Per-layer quantization choices and errors."""

    layers: list[LayerQuantization] = field(default_factory=list)

    def as_dicts(self) -> list[dict[str, Any]]:
        return [row.as_dict() for row in self.layers]

    def format(self) -> str:
        head = (f"{'name':<18} {'e':>3} {'scale':>11} {'vth_mant':>8} {'thr err':>9} "
                f"{'max|w|':>9} {'w err':>9} {'w err/|w|':>9} {'b err':>9}")
        lines = [head, "-" * len(head)]
        for r in self.layers:
            lines.append(
                f"{r.name:<18} {r.weight_exp:>3} {r.scale:>11.4g} "
                f"{'-' if r.vth_mant is None else r.vth_mant:>8} "
                f"{'-' if r.threshold_error is None else f'{r.threshold_error:.2e}':>9} "
                f"{r.max_weight:>9.3g} {r.max_weight_error:>9.2e} "
                f"{r.max_weight_error / max(r.max_weight, 1e-300):>9.2e} "
                f"{r.max_bias_error:>9.2e}"
            )
        return "\n".join(lines)


def _input_amplitude(syn: FloatSynapse, in_shape, std: np.ndarray) -> np.ndarray:
    """Per-weight float amplitude of the input (1 / (255 * std_c)), broadcast to weights."""
    c = in_shape[0]
    if syn.kind == "conv":
        per_in = (1.0 / (hw.INPUT_MAX * std)).reshape(syn.groups, -1)
        co = syn.weight.shape[0]
        amp = np.repeat(per_in, co // syn.groups, axis=0)  # (co, cin/groups)
        return amp[:, :, None, None]
    per_feature = np.repeat(1.0 / (hw.INPUT_MAX * std), int(np.prod(in_shape)) // c)
    return per_feature[None, :]


def _input_bias(syn: FloatSynapse, in_shape, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Float contribution of ``-mean/std`` through the synapse, per output neuron."""
    const = np.broadcast_to((-mean / std).reshape((-1,) + (1,) * (len(in_shape) - 1)), in_shape)
    with torch.no_grad():
        out = syn.apply(torch.from_numpy(np.ascontiguousarray(const))[None])[0].numpy()
    return out


def _choose_exp(ok) -> int | None:
    for e in range(hw.WEIGHT_EXP_MAX, hw.WEIGHT_EXP_MIN - 1, -1):
        if ok(e):
            return e
    return None


def _effective_weights(layer: FloatLayer, layers: list[FloatLayer], shapes: list[tuple],
                       mean: np.ndarray, std: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Step 1: the float weights each synapse really applies, and the full float bias map.

    A synapse from the input sees ``x_int / (255 * std_c)`` (its ``-mean/std`` goes into the
    bias); a synapse from hidden layer ``j`` sees binary spikes of amplitude ``theta_j``.
    """
    eff = []
    bias_f = np.broadcast_to(
        layer.bias.reshape((-1,) + (1,) * (len(layer.shape) - 1)), layer.shape
    ).astype(np.float64)
    for syn in layer.synapses:
        src_shape = shapes[syn.source + 1]
        if syn.source == INPUT:
            eff.append(syn.weight * _input_amplitude(syn, src_shape, std))
            bias_f = bias_f + _input_bias(syn, src_shape, mean, std).reshape(layer.shape)
        else:
            eff.append(syn.weight * layers[syn.source].thresh)
    return eff, bias_f


@dataclass
class _Weights:
    """Step 2's result: 8-bit weights of one layer."""

    q: list[np.ndarray]  # per synapse, in [-qmax, qmax]
    synapses: tuple[Synapse, ...]  # the integer synapses (stored weight 2q)
    step: float  # float value of q = 1
    qmax: int
    max_w: float


def _quantize_weights(layer: FloatLayer, eff: list[np.ndarray],
                      config: ConversionConfig) -> _Weights:
    """Step 2: one weight step per layer so the largest weight uses the weight range (or, with
    ``config.synapse_copies > 1``, the smallest synapse's largest weight; see
    :func:`_weight_step`).

    ``qmax`` halves until the worst-case conv sums stay inside lava Conv's 24-bit clamp.
    """
    ranges = config.ranges
    max_w = max(float(np.abs(w).max(initial=0.0)) for w in eff)
    if max_w == 0.0:
        max_w = 1.0  # all-zero layer: any step works
    qmax = ranges.weight_qmax
    while True:
        step = _weight_step(eff, qmax, max_w, config)  # float value of q = 1
        limit = qmax * max(_copies_max(eff, config), 1)
        q = [np.clip(np.round(w / step), -limit, limit).astype(np.int64) for w in eff]
        ints = tuple(Synapse(s.source, s.kind, 2 * part, **s.geometry())
                     for s, qq in zip(layer.synapses, q, strict=True)
                     for part in _split_weights(qq, qmax))
        worst = max(
            s.max_abs_sum(hw.INPUT_MAX if s.source == INPUT else 1)
            for s in ints if s.kind == "conv"
        ) if any(s.kind == "conv" for s in ints) else 0
        if worst <= ranges.synapse_out_max or qmax <= 1:
            break
        qmax //= 2
    if worst > ranges.synapse_out_max:
        raise QuantizationError(f"layer {layer.name}: its conv sums cannot fit 24 bits")
    return _Weights(q, ints, step, qmax, max_w)


class _Exponent:
    """The scale ``S(e) = 2**(e+1) / step`` (stored weight ``2q`` carries ``step/2`` per unit)
    and the bias mantissas it implies."""

    def __init__(self, step: float, bias_per_channel: np.ndarray,
                 ranges: hw.IntegerRanges) -> None:
        self.step, self.bias, self.ranges = step, bias_per_channel, ranges

    def scale(self, e: int) -> float:
        return 2.0 ** (e + 1) / self.step

    def bias_mant(self, e: int) -> np.ndarray:
        return np.round(self.bias * self.scale(e) / (1 << hw.BIAS_EXP)).astype(np.int64)

    def bias_fits(self, e: int) -> bool:
        bm = self.bias_mant(e)
        return bm.size == 0 or (bm.min() >= self.ranges.bias_mant_min
                                and bm.max() <= self.ranges.bias_mant_max)


def _hidden_exponent(layer: FloatLayer, ex: _Exponent, max_w: float, phi: float
                     ) -> tuple[int, int, int, float]:
    """Step 3 (hidden layer): the largest exponent whose threshold mantissa stays within
    :data:`VTH_MANT_TARGET` (else within 17 bits) and whose biases fit 13 bits.

    Returns:
        ``(e, vth_mant, v_init, relative threshold error)``.
    """
    theta = layer.thresh

    def vth(e: int) -> int:
        return int(round(theta * ex.scale(e) / (1 << hw.VTH_SHIFT)))

    e = _choose_exp(lambda e: 1 <= vth(e) <= VTH_MANT_TARGET and ex.bias_fits(e))
    if e is None:
        e = _choose_exp(lambda e: 1 <= vth(e) <= hw.VTH_MANT_MAX and ex.bias_fits(e))
    if e is None:
        raise QuantizationError(
            f"layer {layer.name}: no exponent in [{hw.WEIGHT_EXP_MIN}, "
            f"{hw.WEIGHT_EXP_MAX}] fits threshold {theta:.4g} and biases up to "
            f"{np.abs(ex.bias).max():.4g} with weights up to {max_w:.4g} "
            "into the 17-bit threshold and 13-bit bias mantissas; retrain with weight "
            "decay or a larger threshold"
        )
    vth_mant = vth(e)
    v_th_state = hw.vth_from_mant(vth_mant)
    v_init = int(round(phi * v_th_state))
    return e, vth_mant, v_init, abs(v_th_state / ex.scale(e) - theta) / theta


def _output_exponent(layer: FloatLayer, ex: _Exponent, synapses: tuple[Synapse, ...]) -> int:
    """Step 3 (output layer): the largest exponent that keeps
    :data:`OUTPUT_HEADROOM_STEPS` worst-case steps inside the 24-bit state and the biases in
    13 bits (else only the biases)."""
    worst_a = max(
        s.max_abs_sum(hw.INPUT_MAX if s.source == INPUT else 1) for s in synapses
    ) * len(synapses)

    def fits_out(e: int) -> bool:
        a = worst_a * 2.0**e if e >= 0 else worst_a / 2.0**-e
        return ex.bias_fits(e) and a * OUTPUT_HEADROOM_STEPS <= ex.ranges.state_max

    e = _choose_exp(fits_out)
    if e is None:
        e = _choose_exp(ex.bias_fits)
    if e is None:
        raise QuantizationError(f"layer {layer.name}: output bias does not fit the "
                                "13-bit mantissa at any exponent")
    return e


def _quantize_layer(layer: FloatLayer, eff: list[np.ndarray], bias_f: np.ndarray, *,
                    spiking: bool, phi: float, config: ConversionConfig
                    ) -> tuple[NeuronLayer, LayerQuantization]:
    """Steps 2-4 for one layer: weights, exponent, then the integers and their errors."""
    w = _quantize_weights(layer, eff, config)
    ex = _Exponent(w.step, _per_channel(bias_f, layer.shape), config.ranges)
    if spiking:
        e, vth_mant, v_init, thr_err = _hidden_exponent(layer, ex, w.max_w, phi)
        theta = layer.thresh
    else:
        e = _output_exponent(layer, ex, w.synapses)
        vth_mant, v_init, theta, thr_err = None, 0, None, None
    bm = ex.bias_mant(e)
    w_err = max(float(np.abs(qq * w.step - wf).max(initial=0.0))
                for qq, wf in zip(w.q, eff, strict=True))
    b_err = float(np.abs(bm * (1 << hw.BIAS_EXP) / ex.scale(e) - ex.bias).max(initial=0.0))
    int_layer = NeuronLayer(layer.name, layer.shape, w.synapses, e, bm, vth_mant, v_init)
    row = LayerQuantization(
        name=layer.name, scale=ex.scale(e), weight_exp=e, weight_step=w.step / 2, qmax=w.qmax,
        vth_mant=vth_mant, threshold=theta, threshold_error=thr_err,
        max_weight_error=w_err, max_weight=w.max_w, max_bias_error=b_err,
        bias_max_abs_mant=int(np.abs(bm).max(initial=0)),
    )
    return int_layer, row


def quantize(
    layers: list[FloatLayer],
    input_shape: tuple[int, ...],
    mean,
    std,
    *,
    levels: int,
    phi: float,
    metadata: dict | None = None,
    layer_copies: int | None = None,
    config: ConversionConfig | None = None,
) -> tuple[IntegerNetwork, QuantizationReport]:
    """Quantize folded float layers to the Loihi integer ranges (``docs/contract.md``, section 3).

    Per layer, in named steps: effective float weights (:func:`_effective_weights`), 8-bit
    weights (:func:`_quantize_weights`), the exponent (:func:`_hidden_exponent` /
    :func:`_output_exponent`), then threshold, bias mantissas and their errors
    (:func:`_quantize_layer`).

    Args:
        layers: output of :func:`fold`.
        input_shape: ``(C, H, W)`` or ``(N,)``.
        mean, std: per-channel input normalisation: the model's float input is
            ``(x_uint8 / 255 - mean) / std``.
        levels, phi: the QCFS parameters (recorded; ``phi`` sets ``v_init``).
        metadata: extra facts to store in the network.
        layer_copies: overrides ``config.layer_copies`` (``None``: the config's).
        config: the conversion settings (``None``: the defaults, Loihi's).

    Returns:
        The integer network and the per-layer quantization report.

    Raises:
        QuantizationError: a layer cannot be represented (e.g. its bias is too large relative
            to its weights for the 13-bit mantissa at any allowed exponent).
    """
    config = (config or ConversionConfig()).with_layer_copies(layer_copies)
    c_in = input_shape[0]
    mean = np.broadcast_to(np.asarray(mean, dtype=np.float64).reshape(-1), (c_in,))
    std = np.broadcast_to(np.asarray(std, dtype=np.float64).reshape(-1), (c_in,))
    if np.any(std <= 0):
        raise QuantizationError("input std must be positive")
    shapes = [tuple(input_shape)]  # index 0 <-> INPUT
    report = QuantizationReport()
    int_layers = []
    for li, layer in enumerate(layers):
        spiking = layer.thresh is not None
        if spiking != (li < len(layers) - 1):
            raise QuantizationError(f"layer {layer.name}: only the last layer may lack an "
                                    "activation, and it must lack one")
        eff, bias_f = _effective_weights(layer, layers, shapes, mean, std)
        int_layer, row = _quantize_layer(layer, eff, bias_f, spiking=spiking, phi=phi,
                                         config=config)
        int_layers.append(int_layer)
        report.layers.append(row)
        shapes.append(layer.shape)
    meta = {"input_mean": mean.tolist(), "input_std": std.tolist(), **(metadata or {})}
    net = IntegerNetwork(tuple(input_shape), tuple(int_layers), int(levels), float(phi), meta,
                         ranges=config.ranges)
    return net, report


def _weight_step(eff: list[np.ndarray], qmax: int, max_w: float,
                 config: ConversionConfig) -> float:
    """Float value of ``q = 1``: the largest weight maps to ``qmax``, unless copies are allowed.

    With ``config.layer_copies = k > 1``, a layer with one synapse takes
    ``max_w / (k * qmax)``.

    With ``config.synapse_copies = k > 1``, a layer with several synapses takes its step from
    the synapse with the smallest largest weight (so it uses the whole weight range), but no
    finer than ``max_w / (k * qmax)``; larger synapses are then split into copies.
    """
    if len(eff) < 2:
        return max_w / (qmax * max(_copies_max(eff, config), 1))
    if config.synapse_copies <= 1:
        return max_w / qmax
    peaks = [float(np.abs(w).max(initial=0.0)) for w in eff]
    smallest = min((p for p in peaks if p > 0.0), default=max_w)
    return max(smallest / qmax, max_w / (qmax * config.synapse_copies))


def _copies_max(eff: list[np.ndarray], config: ConversionConfig) -> int:
    """The copy limit of a layer with these synapses (``config.layer_copies`` for one,
    ``config.synapse_copies`` for several)."""
    if len(eff) >= 2:
        return config.synapse_copies
    return config.layer_copies


def _split_weights(q: np.ndarray, qmax: int) -> list[np.ndarray]:
    """Integer weights ``q`` as ``k`` parts within ``[-qmax, qmax]`` that add up to ``q``."""
    peak = int(np.abs(q).max(initial=0))
    k = max(1, -(-peak // qmax))
    if k == 1:
        return [q]
    base = np.sign(q) * (np.abs(q) // k)
    rest = q - k * base  # same sign as q, |rest| < k
    return [base + np.sign(rest) * (np.abs(rest) > i) for i in range(k)]


def _per_channel(bias_full: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Collapse a full bias map to per-channel when it is uniform over positions."""
    if len(shape) == 1:
        return bias_full
    flat = bias_full.reshape(shape[0], -1)
    if np.allclose(flat, flat[:, :1], rtol=0, atol=1e-12 * max(1.0, np.abs(flat).max())):
        return flat[:, 0].copy()
    return bias_full


