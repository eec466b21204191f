"""From a trained QCFS model to an :class:`~qcfs_lava.network.IntegerNetwork`.

Two stages:

1. **fold** (exact, float64): walk the model with one small handler per module type;
   BatchNorm folds into the conv/linear before it, AvgPool folds exactly into the conv or
   linear after it (a 2x2 stride-2 average pool followed by a 3x3 conv is one 6x6 stride-2
   conv), Dropout/Identity vanish, residual blocks become a layer with two incoming
   synapses. Every unsupported module is collected and reported in one error.
2. **quantize** (``docs/contract.md``, section 3): per layer one weight step ``delta`` so
   the largest effective weight uses the 8-bit range, then the exponent ``e`` (state units per float
   unit ``S = 2**(e+1) / delta``) as large as the threshold and bias mantissas allow. The
   input normalisation folds into the first layer so the network takes uint8 pixels.

Effective float weights: a synapse from the input sees ``x_int / (255 * std_c)`` (the mean
goes into the bias, position by position where padding makes it non-uniform); a synapse
from hidden layer ``j`` sees binary spikes of amplitude ``theta_j``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from qcfs_lava import hardware as hw
from qcfs_lava.errors import QuantizationError, UnsupportedLayerError
from qcfs_lava.model.qcfs import QCFS
from qcfs_lava.network import (
    INPUT,
    IntegerNetwork,
    NeuronLayer,
    Synapse,
    SynapseGeometry,
    conv_output_shape,
)

# Target threshold mantissa: 2**10 keeps v_th = 2**16 state units, so the 24-bit membrane
# spans [-128, +128) thresholds: a silent neuron can sink 128 thresholds below zero before it
# saturates (no saturation on the digits cnn / ResNet-20 up to T = 64), while threshold and
# bias still resolve 1 / 1024 of the threshold (8-bit weights dominate the error).
VTH_MANT_TARGET = 1 << 10
# Output layer: keep `OUTPUT_HEADROOM_STEPS` worst-case steps inside the 24-bit state.
OUTPUT_HEADROOM_STEPS = 16
WEIGHT_QMAX = (hw.WEIGHT_MAX // hw.WEIGHT_STEP)  # 127
# A layer with several synapses (a residual add) has one weight grid. With k > 1 the grid is
# set by its smallest synapse and a larger one (the identity shortcut, whose weight is the
# source's threshold) is carried by up to k identical synapses whose 8-bit weights add up to
# it: exact in every stage (each stage sums all synapses of a layer), k times the shortcut's
# synaptic operations. 1 keeps one synapse per source (the grid set by the largest weight).
SYNAPSE_COPIES_MAX = 1
# A layer with one synapse: with k > 1 its grid is k times finer than its largest weight needs
# (log2(k) more bits of resolution for every channel), and the weights are carried by up to k
# synapse copies whose 8-bit weights add up to them. Exact in every stage, like the shortcut
# copies; up to k times the layer's synaptic operations and synapse memory. 1: one synapse.
LAYER_COPIES_MAX = 1


# --------------------------------------------------------------------------------------
# Fold: model -> float layers
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FloatSynapse(SynapseGeometry):
    """A folded float synapse (torch weight layout, float64; fields of
    :class:`~qcfs_lava.network.SynapseGeometry`)."""

    weight: np.ndarray

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Float64 forward of this synapse on ``x`` (batch first)."""
        w = torch.from_numpy(self.weight)
        if self.kind == "dense":
            return x.reshape(x.shape[0], -1) @ w.T
        return F.conv2d(x, w, None, self.stride, self.padding, self.dilation, self.groups)


@dataclass
class FloatLayer:
    """A folded layer: synapses summed, plus bias, then QCFS (``thresh``) or nothing."""

    name: str
    shape: tuple[int, ...]
    synapses: list[FloatSynapse]
    bias: np.ndarray  # (C,) per channel / feature
    thresh: float | None = None


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def adaptive_pool_kernel(path: str, m: nn.Module, h: int, w: int) -> tuple[int, int]:
    """Kernel (= stride) of an ``AdaptiveAvgPool2d`` on an ``h x w`` map, if it is uniform."""
    out = _pair(m.output_size)
    if h % out[0] or w % out[1]:
        raise UnsupportedLayerError(f"{path}: AdaptiveAvgPool2d{out} on {h}x{w} is not "
                                    "a uniform pooling")
    return (h // out[0], w // out[1])


def _is_block(m: nn.Module) -> bool:
    return all(hasattr(m, a) for a in ("residual", "shortcut", "act")) and isinstance(
        m.residual, nn.Sequential
    )


def _leaves(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """Flatten nested ``nn.Sequential`` containers into (path, module) in forward order."""
    out = []
    children = list(model.named_children()) if isinstance(model, nn.Sequential) else None
    if children is None:
        return [(prefix or type(model).__name__, model)]
    for name, child in children:
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(child, nn.Sequential):
            out += _leaves(child, path)
        else:
            out.append((path, child))
    return out


def _advice(m: nn.Module) -> str:
    if isinstance(m, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
        return "max pooling has no exact spiking equivalent: retrain with AvgPool2d"
    if isinstance(m, (nn.ReLU, nn.ReLU6, nn.LeakyReLU)):
        return ("conversion needs QCFS activations with trained thresholds: "
                "use qcfs_lava.model.qcfs.replace_relu_with_qcfs and fine-tune")
    return "replace it with a supported module"


def check_supported(model: nn.Module) -> None:
    """Raise one :class:`UnsupportedLayerError` naming every unsupported module."""
    if not isinstance(model, nn.Sequential):
        raise UnsupportedLayerError(
            f"convert expects an nn.Sequential model (the registry's models are), got "
            f"{type(model).__name__}"
        )
    bad = []

    def visit(seq_items):
        for path, m in seq_items:
            if _is_block(m):
                visit(_leaves(m.residual, f"{path}.residual"))
                visit(_leaves(m.shortcut, f"{path}.shortcut"))
                visit([(f"{path}.act", m.act)])
            elif handler_for(m) is None:
                bad.append(f"{path} ({type(m).__name__}): {_advice(m)}")

    visit(_leaves(model))
    if bad:
        raise UnsupportedLayerError(
            "cannot convert these modules:\n  " + "\n  ".join(bad) + f"\nSupported: {SUPPORTED}."
        )


def _finite(name: str, arr: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(arr)):
        raise QuantizationError(f"{name} contains NaN or inf values; the model cannot be "
                                "converted (check the training run)")
    return arr


class _Folder:
    """Walks a model, producing :class:`FloatLayer` s."""

    def __init__(self, input_shape: tuple[int, ...]):
        self.layers: list[FloatLayer] = []
        self.cur = INPUT
        self.shape = tuple(input_shape)
        self.pool: tuple[tuple[int, int], tuple[int, int]] | None = None  # (kernel, stride)
        self.pool_in_shape: tuple[int, ...] | None = None
        self.pending: FloatLayer | None = None
        self.pending_name = ""

    # ---- helpers ---------------------------------------------------------------------
    def _compose_pool(self, syn: FloatSynapse, path: str) -> FloatSynapse:
        """Fold a pending AvgPool2d into the synapse that follows it (exactly)."""
        (kh, kw), (sh, sw) = self.pool
        cin, hin, win = self.pool_in_shape
        w = syn.weight
        if syn.kind == "dense":
            hp, wp = (hin - kh) // sh + 1, (win - kw) // sw + 1
            wd = w.reshape(w.shape[0], cin, hp, wp)
            out = np.zeros((w.shape[0], cin, hin, win))
            for py in range(hp):
                for px in range(wp):
                    out[:, :, py * sh:py * sh + kh, px * sw:px * sw + kw] += (
                        wd[:, :, py, px, None, None] / (kh * kw)
                    )
            return FloatSynapse(syn.source, "dense", out.reshape(w.shape[0], -1))
        if syn.dilation != (1, 1):
            raise UnsupportedLayerError(f"{path}: AvgPool2d before a dilated conv cannot be "
                                        "folded; use dilation 1")
        if (hin - kh) % sh or (win - kw) % sw:
            raise UnsupportedLayerError(
                f"{path}: AvgPool2d(kernel {kh}x{kw}, stride {sh}x{sw}) does not tile its "
                f"{hin}x{win} input exactly, so it cannot be folded into the next conv; use an "
                "input size divisible by the pool stride"
            )
        if any(syn.padding) and (kh > sh or kw > sw):
            raise UnsupportedLayerError(f"{path}: overlapping AvgPool2d before a padded conv "
                                        "cannot be folded exactly")
        co, ci, KH, KW = w.shape
        out = np.zeros((co, ci, kh + sh * (KH - 1), kw + sw * (KW - 1)))
        for dy in range(KH):
            for dx in range(KW):
                out[:, :, sh * dy:sh * dy + kh, sw * dx:sw * dx + kw] += (
                    w[:, :, dy, dx, None, None] / (kh * kw)
                )
        return FloatSynapse(
            syn.source, "conv", out,
            stride=(sh * syn.stride[0], sw * syn.stride[1]),
            padding=(sh * syn.padding[0], sw * syn.padding[1]),
            groups=syn.groups,
        )

    def _linear_op(self, path: str, m: nn.Module, source: int, in_shape) -> tuple:
        """A conv/linear module -> (FloatSynapse, bias, out_shape), pool folded in."""
        w = _finite(f"{path}.weight", m.weight.detach().double().cpu().numpy())
        b = (np.zeros(w.shape[0]) if m.bias is None
             else _finite(f"{path}.bias", m.bias.detach().double().cpu().numpy()))
        if isinstance(m, nn.Linear):
            syn = FloatSynapse(source, "dense", w.copy())
            if self.pool is not None:
                syn = self._compose_pool(syn, path)
            need = int(np.prod(self.pool_in_shape if self.pool else in_shape))
            if syn.weight.shape[1] != need:
                raise UnsupportedLayerError(
                    f"{path}: Linear expects {syn.weight.shape[1]} inputs, gets {need}"
                )
            self.pool = None
            return syn, b, (w.shape[0],)
        if isinstance(m.padding, str) or m.padding_mode != "zeros":
            raise UnsupportedLayerError(f"{path}: only numeric zero padding is supported")
        syn = FloatSynapse(source, "conv", w.copy(), _pair(m.stride), _pair(m.padding),
                           _pair(m.dilation), int(m.groups))
        src_shape = in_shape
        if self.pool is not None:
            syn = self._compose_pool(syn, path)
            src_shape = self.pool_in_shape
            self.pool = None
        if len(src_shape) != 3:
            raise UnsupportedLayerError(f"{path}: Conv2d needs a (C, H, W) input, got {src_shape}")
        h, wd = conv_output_shape(src_shape[1:], syn.weight.shape[2:], syn.stride, syn.padding,
                                  syn.dilation)
        return syn, b, (w.shape[0], h, wd)

    @staticmethod
    def _fold_bn(path: str, bn: nn.Module, syn: FloatSynapse, bias: np.ndarray):
        if bn.running_mean is None or not bn.track_running_stats:
            raise UnsupportedLayerError(f"{path}: BatchNorm without running statistics")
        mean = bn.running_mean.detach().double().cpu().numpy()
        var = bn.running_var.detach().double().cpu().numpy()
        gamma = (np.ones_like(mean) if bn.weight is None
                 else bn.weight.detach().double().cpu().numpy())
        beta = np.zeros_like(mean) if bn.bias is None else bn.bias.detach().double().cpu().numpy()
        scale = _finite(f"{path}", gamma / np.sqrt(var + bn.eps))
        if scale.shape[0] != syn.weight.shape[0]:
            raise UnsupportedLayerError(f"{path}: BatchNorm size does not match the layer before")
        w = syn.weight * scale.reshape((-1,) + (1,) * (syn.weight.ndim - 1))
        syn = FloatSynapse(syn.source, syn.kind, w, **syn.geometry())
        return syn, (bias - mean) * scale + beta

    def activate(self, path: str, act: nn.Module) -> None:
        if self.pending is None:
            raise UnsupportedLayerError(f"{path}: activation without a conv/linear before it")
        if not isinstance(act, QCFS):
            raise UnsupportedLayerError(f"{path} ({type(act).__name__}): {_advice(act)}")
        self.pending.thresh = float(act.thresh.detach().cpu().reshape(-1)[0])
        if not math.isfinite(self.pending.thresh) or self.pending.thresh <= 0:
            raise QuantizationError(f"{path}: threshold {self.pending.thresh} must be a "
                                    "positive finite number")
        self.layers.append(self.pending)
        self.cur, self.shape = len(self.layers) - 1, self.pending.shape
        self.pending = None

    # ---- the walk: one handler per module type (HANDLERS) ------------------------------
    def walk(self, items) -> None:
        for path, m in items:
            if _is_block(m):
                self.block(path, m)
                continue
            handler = handler_for(m)
            if handler is None:  # check_supported ran first; a module in an odd position
                raise UnsupportedLayerError(f"{path} ({type(m).__name__}): {_advice(m)}")
            handler.fold(self, path, m)

    def skip(self, path: str, m: nn.Module) -> None:
        """Dropout and Identity: nothing at inference."""

    def linear(self, path: str, m: nn.Module) -> None:
        if self.pending is not None:
            raise UnsupportedLayerError(
                f"{path}: two conv/linear layers without an activation between them; "
                "merge them or put a QCFS activation between"
            )
        syn, b, shape = self._linear_op(path, m, self.cur, self.shape)
        self.pending = FloatLayer(path, shape, [syn], b)

    def batchnorm(self, path: str, m: nn.Module) -> None:
        if self.pending is None or len(self.pending.synapses) != 1:
            raise UnsupportedLayerError(f"{path}: BatchNorm must follow a conv/linear")
        syn, b = self._fold_bn(path, m, self.pending.synapses[0], self.pending.bias)
        self.pending.synapses[0], self.pending.bias = syn, b

    def flatten(self, path: str, m: nn.Module) -> None:
        if m.start_dim != 1:
            raise UnsupportedLayerError(f"{path}: only Flatten(start_dim=1) is supported")

    def avgpool(self, path: str, m: nn.Module) -> None:
        if self.pending is not None or self.pool is not None:
            raise UnsupportedLayerError(
                f"{path}: AvgPool2d must follow an activation (or the input) and precede a "
                "conv/linear to be folded exactly"
            )
        if len(self.shape) != 3:
            raise UnsupportedLayerError(f"{path}: pooling needs a (C, H, W) input")
        c, h, w = self.shape
        if isinstance(m, nn.AdaptiveAvgPool2d):
            k = s = adaptive_pool_kernel(path, m, h, w)
        else:
            if any(_pair(m.padding)) or m.ceil_mode or not m.count_include_pad or \
                    m.divisor_override is not None:
                raise UnsupportedLayerError(f"{path}: AvgPool2d with padding, ceil_mode or "
                                            "divisor_override is not supported")
            k = _pair(m.kernel_size)
            s = _pair(m.stride if m.stride is not None else m.kernel_size)
        self.pool, self.pool_in_shape = (k, s), self.shape
        self.shape = (c, (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1)

    def block(self, path: str, blk: nn.Module) -> None:
        if self.pending is not None or self.pool is not None:
            raise UnsupportedLayerError(f"{path}: a residual block must follow an activation")
        src, src_shape = self.cur, self.shape
        res = [(p, m) for p, m in _leaves(blk.residual, f"{path}.residual") if not _skipped(m)]
        # everything up to the last conv/linear is ordinary layers
        last = max(i for i, (_, m) in enumerate(res) if isinstance(m, (nn.Conv2d, nn.Linear)))
        self.walk(res[:last])
        self.walk(res[last:])  # last conv (+BN) -> pending
        main = self.pending
        if main is None:
            raise UnsupportedLayerError(f"{path}: residual path must end in a conv/linear")
        sc = [(p, m) for p, m in _leaves(blk.shortcut, f"{path}.shortcut") if not _skipped(m)]
        if not sc:
            if src_shape != main.shape:
                raise UnsupportedLayerError(f"{path}: identity shortcut but shapes differ "
                                            f"({src_shape} vs {main.shape})")
            c = src_shape[0]
            syn = FloatSynapse(src, "conv", np.ones((c, 1, 1, 1)), groups=c)
            bias = np.zeros(c)
        else:
            ops = [m for _, m in sc]
            if not (isinstance(ops[0], nn.Conv2d) and all(
                    isinstance(o, nn.BatchNorm2d) for o in ops[1:]) and len(ops) <= 2):
                raise UnsupportedLayerError(f"{path}.shortcut: only empty (identity) or "
                                            "Conv2d(+BatchNorm2d) shortcuts are supported")
            syn, bias, shape = self._linear_op(sc[0][0], ops[0], src, src_shape)
            if len(ops) == 2:
                syn, bias = self._fold_bn(sc[1][0], ops[1], syn, bias)
            if shape != main.shape:
                raise UnsupportedLayerError(f"{path}: shortcut shape {shape} differs from the "
                                            f"residual path {main.shape}")
        main.synapses.append(syn)
        main.bias = main.bias + bias
        main.name = path
        self.activate(f"{path}.act", blk.act)


@dataclass(frozen=True)
class ModuleHandler:
    """How one family of source modules folds.

    Attributes:
        types: the module classes it handles.
        label: how the supported list names them (error messages).
        fold: ``fold(folder, path, module)``, a :class:`_Folder` method.
    """

    types: tuple[type[nn.Module], ...]
    label: str
    fold: Callable[[_Folder, str, nn.Module], None]


#: The supported modules, in one place: the checks, the walk and the error message use it.
#: A residual block (``residual``/``shortcut``/``act`` attributes) is recognised by shape, not
#: type, and handled by :meth:`_Folder.block`.
HANDLERS: tuple[ModuleHandler, ...] = (
    ModuleHandler((nn.Conv2d, nn.Linear), "Conv2d, Linear", _Folder.linear),
    ModuleHandler((nn.BatchNorm1d, nn.BatchNorm2d), "BatchNorm1d/2d (after a conv/linear)",
                  _Folder.batchnorm),
    ModuleHandler((QCFS,), "QCFS", _Folder.activate),
    ModuleHandler((nn.AvgPool2d, nn.AdaptiveAvgPool2d), "AvgPool2d, AdaptiveAvgPool2d",
                  _Folder.avgpool),
    ModuleHandler((nn.Flatten,), "Flatten", _Folder.flatten),
    ModuleHandler((nn.Dropout, nn.Identity), "Dropout, Identity", _Folder.skip),
)
SUPPORTED = ", ".join(h.label for h in HANDLERS) + ", residual BasicBlock"


def handler_for(m: nn.Module) -> ModuleHandler | None:
    """The handler of ``m``'s type, or ``None`` when it is not supported."""
    for handler in HANDLERS:
        if isinstance(m, handler.types):
            return handler
    return None


def _skipped(m: nn.Module) -> bool:
    handler = handler_for(m)
    return handler is not None and handler.fold is _Folder.skip


def fold(model: nn.Module, input_shape: tuple[int, ...]) -> list[FloatLayer]:
    """Fold ``model`` into float layers (exact). The model is not modified.

    Layers are named after their module path when it is readable (``layer1.0``), else
    ``conv1``, ``conv2``, ``fc3``... in network order.
    """
    check_supported(model)
    return _fold_checked(model, input_shape)


def _fold_checked(model: nn.Module, input_shape: tuple[int, ...]) -> list[FloatLayer]:
    """:func:`fold` for a model :func:`check_supported` has accepted."""
    folder = _Folder(tuple(input_shape))
    with torch.no_grad():
        folder.walk(_leaves(model))
    if folder.pool is not None:
        raise UnsupportedLayerError("the model ends with a pooling layer; it must end with a "
                                    "Linear/Conv2d producing the logits")
    if folder.pending is None:
        raise UnsupportedLayerError("the model must end with a Linear (or Conv2d) layer without "
                                    "activation: its outputs are the logits")
    folder.layers.append(folder.pending)
    for i, layer in enumerate(folder.layers):
        if layer.name.replace(".", "").isdigit():
            kind = "fc" if layer.synapses[0].kind == "dense" else "conv"
            layer.name = f"{kind}{i + 1}"
    return folder.layers


# --------------------------------------------------------------------------------------
# Quantize: float layers -> IntegerNetwork
# --------------------------------------------------------------------------------------


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
                      layer_copies: int | None = None) -> _Weights:
    """Step 2: one weight step per layer so the largest weight uses the 8-bit range (or, with
    ``SYNAPSE_COPIES_MAX > 1``, the smallest synapse's largest weight; see :func:`_weight_step`).

    ``qmax`` halves until the worst-case conv sums stay inside lava Conv's 24-bit clamp.
    """
    max_w = max(float(np.abs(w).max(initial=0.0)) for w in eff)
    if max_w == 0.0:
        max_w = 1.0  # all-zero layer: any step works
    qmax = WEIGHT_QMAX
    while True:
        step = _weight_step(eff, qmax, max_w, layer_copies)  # float value of q = 1
        limit = qmax * max(_copies_max(eff, layer_copies), 1)
        q = [np.clip(np.round(w / step), -limit, limit).astype(np.int64) for w in eff]
        ints = tuple(Synapse(s.source, s.kind, 2 * part, **s.geometry())
                     for s, qq in zip(layer.synapses, q, strict=True)
                     for part in _split_weights(qq, qmax))
        worst = max(
            s.max_abs_sum(hw.INPUT_MAX if s.source == INPUT else 1)
            for s in ints if s.kind == "conv"
        ) if any(s.kind == "conv" for s in ints) else 0
        if worst <= hw.SYNAPSE_OUT_MAX or qmax <= 1:
            break
        qmax //= 2
    if worst > hw.SYNAPSE_OUT_MAX:
        raise QuantizationError(f"layer {layer.name}: its conv sums cannot fit 24 bits")
    return _Weights(q, ints, step, qmax, max_w)


class _Exponent:
    """The scale ``S(e) = 2**(e+1) / step`` (stored weight ``2q`` carries ``step/2`` per unit)
    and the bias mantissas it implies."""

    def __init__(self, step: float, bias_per_channel: np.ndarray) -> None:
        self.step, self.bias = step, bias_per_channel

    def scale(self, e: int) -> float:
        return 2.0 ** (e + 1) / self.step

    def bias_mant(self, e: int) -> np.ndarray:
        return np.round(self.bias * self.scale(e) / (1 << hw.BIAS_EXP)).astype(np.int64)

    def bias_fits(self, e: int) -> bool:
        bm = self.bias_mant(e)
        return bm.size == 0 or (bm.min() >= hw.BIAS_MANT_MIN and bm.max() <= hw.BIAS_MANT_MAX)


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
        return ex.bias_fits(e) and a * OUTPUT_HEADROOM_STEPS <= hw.STATE_MAX

    e = _choose_exp(fits_out)
    if e is None:
        e = _choose_exp(ex.bias_fits)
    if e is None:
        raise QuantizationError(f"layer {layer.name}: output bias does not fit the "
                                "13-bit mantissa at any exponent")
    return e


def _quantize_layer(layer: FloatLayer, eff: list[np.ndarray], bias_f: np.ndarray, *,
                    spiking: bool, phi: float, layer_copies: int | None = None
                    ) -> tuple[NeuronLayer, LayerQuantization]:
    """Steps 2-4 for one layer: weights, exponent, then the integers and their errors."""
    w = _quantize_weights(layer, eff, layer_copies)
    ex = _Exponent(w.step, _per_channel(bias_f, layer.shape))
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
        layer_copies: :data:`LAYER_COPIES_MAX` for this call (``None``: the module's).

    Returns:
        The integer network and the per-layer quantization report.

    Raises:
        QuantizationError: a layer cannot be represented (e.g. its bias is too large relative
            to its weights for the 13-bit mantissa at any allowed exponent).
    """
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
                                         layer_copies=layer_copies)
        int_layers.append(int_layer)
        report.layers.append(row)
        shapes.append(layer.shape)
    meta = {"input_mean": mean.tolist(), "input_std": std.tolist(), **(metadata or {})}
    net = IntegerNetwork(tuple(input_shape), tuple(int_layers), int(levels), float(phi), meta)
    return net, report


def _weight_step(eff: list[np.ndarray], qmax: int, max_w: float,
                 layer_copies: int | None = None) -> float:
    """Float value of ``q = 1``: the largest weight maps to ``qmax``, unless copies are allowed.

    With ``LAYER_COPIES_MAX = k > 1``, a layer with one synapse takes ``max_w / (k * qmax)``.

    With ``SYNAPSE_COPIES_MAX = k > 1``, a layer with several synapses takes its step from the
    synapse with the smallest largest weight (so it uses the whole 8-bit range), but no finer
    than ``max_w / (k * qmax)``; larger synapses are then split into copies.
    """
    if len(eff) < 2:
        return max_w / (qmax * max(_copies_max(eff, layer_copies), 1))
    if SYNAPSE_COPIES_MAX <= 1:
        return max_w / qmax
    peaks = [float(np.abs(w).max(initial=0.0)) for w in eff]
    smallest = min((p for p in peaks if p > 0.0), default=max_w)
    return max(smallest / qmax, max_w / (qmax * SYNAPSE_COPIES_MAX))


def _copies_max(eff: list[np.ndarray], layer_copies: int | None = None) -> int:
    """The copy limit of a layer with these synapses (``layer_copies``, default
    :data:`LAYER_COPIES_MAX`, for one; :data:`SYNAPSE_COPIES_MAX` for several)."""
    if len(eff) >= 2:
        return SYNAPSE_COPIES_MAX
    return LAYER_COPIES_MAX if layer_copies is None else int(layer_copies)


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


def qcfs_params(model: nn.Module) -> tuple[int, float]:
    """The (levels, phi) shared by every QCFS module of ``model``."""
    found = {(m.levels, m.phi) for m in model.modules() if isinstance(m, QCFS)}
    if len(found) != 1:
        raise UnsupportedLayerError(
            "the model must contain QCFS activations that all share one (levels, phi); "
            f"found {sorted(found) or 'none'}"
        )
    return found.pop()


def convert(
    model: nn.Module,
    input_shape: tuple[int, ...],
    mean=0.0,
    std=1.0,
    *,
    metadata: dict | None = None,
    layer_copies: int | None = None,
) -> tuple[IntegerNetwork, QuantizationReport]:
    """Convert a trained QCFS model into an integer spiking network.

    Args:
        model: an ``nn.Sequential`` of supported modules (the registry's models and imported
            reference checkpoints are). It is not modified.
        input_shape: shape of one input sample, ``(C, H, W)`` or ``(N,)``.
        mean, std: the model's input normalisation, per channel: its float input is
            ``(x_uint8 / 255 - mean) / std``. It folds into the first layer.
        metadata: JSON-serializable facts to record in the network (class names, ...).
        layer_copies: ``k >= 1``: every single-synapse layer on a grid ``k`` times finer, its
            weights carried by up to ``k`` exact synapse copies (:data:`LAYER_COPIES_MAX`;
            ``None``: that default).

    Returns:
        ``(network, report)``: the validated :class:`IntegerNetwork` and the per-layer
        :class:`QuantizationReport`.
    """
    check_supported(model)
    levels, phi = qcfs_params(model)
    layers = _fold_checked(model, input_shape)
    if layer_copies is not None and not 1 <= int(layer_copies) <= 64:
        raise QuantizationError(f"layer_copies must be 1..64, got {layer_copies}")
    return quantize(layers, input_shape, mean, std, levels=levels, phi=phi, metadata=metadata,
                    layer_copies=layer_copies)
