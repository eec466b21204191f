"""Fold: a trained QCFS model -> float layers (exact, float64).

Walk the model (:mod:`qcfs_lava.model.walk`) with one small handler per module kind:
BatchNorm folds into the conv/linear before it, AvgPool folds exactly into the conv or
linear after it (a 2x2 stride-2 average pool followed by a 3x3 conv is one 6x6 stride-2
conv), Dropout/Identity vanish, residual blocks become a layer with two incoming synapses.
Every unsupported module is collected and reported in one error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from qcfs_lava.errors import QuantizationError, UnsupportedLayerError
from qcfs_lava.geometry import conv_output_shape, pair
from qcfs_lava.model import walk
from qcfs_lava.model.qcfs import QCFS
from qcfs_lava.model.walk import (
    MODULE_KINDS,
    SUPPORTED,
    ModuleKind,
    adaptive_pool_kernel,
    advice,
    fold_batchnorm,
    is_block,
    kind_of,
    leaves,
    to_float64,
)
from qcfs_lava.network import INPUT, SynapseGeometry

__all__ = [
    "HANDLERS",
    "SUPPORTED",
    "FloatLayer",
    "FloatSynapse",
    "ModuleHandler",
    "check_supported",
    "fold",
    "handler_for",
]


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


def check_supported(model: nn.Module) -> None:
    """Raise one :class:`UnsupportedLayerError` naming every unsupported module."""
    walk.check_supported(model, consumer="convert", action="convert")


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
        w = _finite(f"{path}.weight", to_float64(m.weight))
        b = (np.zeros(w.shape[0]) if m.bias is None
             else _finite(f"{path}.bias", to_float64(m.bias)))
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
        syn = FloatSynapse(source, "conv", w.copy(), pair(m.stride), pair(m.padding),
                           pair(m.dilation), int(m.groups))
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
        weight, bias = fold_batchnorm(path, bn, syn.weight, bias)
        return FloatSynapse(syn.source, syn.kind, weight, **syn.geometry()), bias

    def activate(self, path: str, act: nn.Module) -> None:
        if self.pending is None:
            raise UnsupportedLayerError(f"{path}: activation without a conv/linear before it")
        if not isinstance(act, QCFS):
            raise UnsupportedLayerError(f"{path} ({type(act).__name__}): {advice(act)}")
        self.pending.thresh = float(act.thresh.detach().cpu().reshape(-1)[0])
        if not math.isfinite(self.pending.thresh) or self.pending.thresh <= 0:
            raise QuantizationError(f"{path}: threshold {self.pending.thresh} must be a "
                                    "positive finite number")
        self.layers.append(self.pending)
        self.cur, self.shape = len(self.layers) - 1, self.pending.shape
        self.pending = None

    # ---- the walk: one handler per module kind (HANDLERS) ------------------------------
    def walk(self, items) -> None:
        for path, m in items:
            if is_block(m):
                self.block(path, m)
                continue
            handler = handler_for(m)
            if handler is None:  # check_supported ran first; a module in an odd position
                raise UnsupportedLayerError(f"{path} ({type(m).__name__}): {advice(m)}")
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
            if any(pair(m.padding)) or m.ceil_mode or not m.count_include_pad or \
                    m.divisor_override is not None:
                raise UnsupportedLayerError(f"{path}: AvgPool2d with padding, ceil_mode or "
                                            "divisor_override is not supported")
            k = pair(m.kernel_size)
            s = pair(m.stride if m.stride is not None else m.kernel_size)
        self.pool, self.pool_in_shape = (k, s), self.shape
        self.shape = (c, (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1)

    def block(self, path: str, blk: nn.Module) -> None:
        if self.pending is not None or self.pool is not None:
            raise UnsupportedLayerError(f"{path}: a residual block must follow an activation")
        src, src_shape = self.cur, self.shape
        res = [(p, m) for p, m in leaves(blk.residual, f"{path}.residual") if not _skipped(m)]
        # everything up to the last conv/linear is ordinary layers
        last = max(i for i, (_, m) in enumerate(res) if isinstance(m, (nn.Conv2d, nn.Linear)))
        self.walk(res[:last])
        self.walk(res[last:])  # last conv (+BN) -> pending
        main = self.pending
        if main is None:
            raise UnsupportedLayerError(f"{path}: residual path must end in a conv/linear")
        sc = [(p, m) for p, m in leaves(blk.shortcut, f"{path}.shortcut") if not _skipped(m)]
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
    """How one kind of source module folds.

    Attributes:
        kind: the registered module kind (:data:`qcfs_lava.model.walk.MODULE_KINDS`).
        fold: ``fold(folder, path, module)``, a :class:`_Folder` method.
    """

    kind: ModuleKind
    fold: Callable[[_Folder, str, nn.Module], None]

    @property
    def types(self) -> tuple[type[nn.Module], ...]:
        return self.kind.types

    @property
    def label(self) -> str:
        return self.kind.label


#: The fold of each module kind. A residual block (``residual``/``shortcut``/``act``
#: attributes) is recognised by shape, not type, and handled by :meth:`_Folder.block`.
_FOLDS: dict[str, Callable[[_Folder, str, nn.Module], None]] = {
    "conv": _Folder.linear,
    "linear": _Folder.linear,
    "batchnorm": _Folder.batchnorm,
    "activation": _Folder.activate,
    "pool": _Folder.avgpool,
    "flatten": _Folder.flatten,
    "skip": _Folder.skip,
}
#: One handler per registered module kind, in the registry's order.
HANDLERS: tuple[ModuleHandler, ...] = tuple(ModuleHandler(k, _FOLDS[k.name]) for k in MODULE_KINDS)
_BY_KIND = {h.kind.name: h for h in HANDLERS}


def handler_for(m: nn.Module) -> ModuleHandler | None:
    """The handler of ``m``'s kind, or ``None`` when it is not supported."""
    kind = kind_of(m)
    return None if kind is None else _BY_KIND[kind.name]


def _skipped(m: nn.Module) -> bool:
    kind = kind_of(m)
    return kind is not None and kind.name == "skip"


def fold(model: nn.Module, input_shape: tuple[int, ...]) -> list[FloatLayer]:
    """Fold ``model`` into float layers (exact). The model is not modified.

    Layers are named after their module path when it is readable (``layer1.0``), else
    ``conv1``, ``conv2``, ``fc3``... in network order.
    """
    check_supported(model)
    return fold_checked(model, input_shape)


def fold_checked(model: nn.Module, input_shape: tuple[int, ...]) -> list[FloatLayer]:
    """:func:`fold` for a model :func:`check_supported` has accepted."""
    folder = _Folder(tuple(input_shape))
    with torch.no_grad():
        folder.walk(leaves(model))
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
