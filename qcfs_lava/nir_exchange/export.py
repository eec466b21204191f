"""The float SNN of a QCFS model as a NIR graph.

One small handler per torch module, walking the model in forward order (the layout contract
of :mod:`qcfs_lava.model.zoo`):

- ``Conv2d`` / ``Linear`` become ``Conv2d`` / ``Affine`` nodes; a ``BatchNorm`` after them is
  folded into their weights and bias (float64, rounded to float32 once).
- ``QCFS`` becomes an ``IF`` node with ``v_threshold = lambda`` and ``r = 1``; it emits 0/1,
  and the float SNN's spike height ``lambda`` is multiplied into the weights of every node it
  feeds.
- ``AvgPool2d`` / ``AdaptiveAvgPool2d`` become ``SumPool2d`` (several importers lack
  ``AvgPool2d``); the ``1/k^2`` goes into the weights of the next conv/linear.
- ``Flatten`` becomes ``Flatten(start_dim=0)`` (NIR shapes have no batch axis); ``Dropout``
  and ``Identity`` vanish.
- A residual :class:`~qcfs_lava.model.zoo.BasicBlock` becomes two edges into the ``IF`` node
  after the add: one from the residual path's last conv, one from the shortcut, which is its
  1x1 conv (+BN) or, for an identity shortcut, a 1x1 ``Conv2d`` carrying the identity.

What NIR cannot say (reset by subtraction, fire on ``>=``, the initial potential, ``T``, the
input repeated every step, the readout) is written in namespaced metadata; see
:mod:`qcfs_lava.nir_exchange.semantics`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from qcfs_lava.errors import NirError, UnsupportedLayerError
from qcfs_lava.geometry import conv_output_shape, pair, pool_output_shape
from qcfs_lava.model import walk
from qcfs_lava.model.qcfs import QCFS
from qcfs_lava.model.walk import (
    SUPPORTED,
    adaptive_pool_kernel,
    fold_batchnorm,
    is_block,
    kind_of,
    leaves,
)
from qcfs_lava.model.walk import to_float64 as _np
from qcfs_lava.nir_exchange.semantics import FORMAT, NAMESPACE, VERSION, require_nir

__all__ = ["SUPPORTED", "export_checkpoint", "to_nir"]

@dataclass
class _Value:
    """A tensor of the torch model as the NIR graph carries it.

    ``torch value = gain * NIR value``; ``kind``: ``"input"``, ``"current"`` (a conv/linear
    output, what an IF node may integrate) or ``"spikes"`` (an IF output, maybe pooled).
    """

    node: str
    shape: tuple[int, ...]
    gain: float
    kind: str


@dataclass
class _Pending:
    """A conv/linear whose BatchNorm may still follow."""

    path: str
    src: _Value
    kind: str  # "conv" | "linear"
    weight: np.ndarray
    bias: np.ndarray
    params: dict[str, Any]
    out_shape: tuple[int, ...]


class _Builder:
    def __init__(self, nir, input_shape: tuple[int, ...]):
        self.nir = nir
        self.nodes: dict[str, Any] = {
            "input": nir.Input(input_type={"input": np.array(input_shape)})}
        self.edges: list[tuple[str, str]] = []
        self.cur = _Value("input", tuple(input_shape), 1.0, "input")
        self.pending: _Pending | None = None

    # ---- helpers -----------------------------------------------------------------------
    def _name(self, kind: str, path: str) -> str:
        name = f"{kind}_{path}".replace(".", "_")
        base, i = name, 1
        while name in self.nodes:
            name, i = f"{base}_{i}", i + 1
        return name

    def _meta(self, path: str, **extra) -> dict:
        return {NAMESPACE: {"version": VERSION, "source": path, **extra}}

    def flush(self) -> _Value:
        """Emit the pending conv/linear node; the current value becomes its output."""
        p = self.pending
        if p is None:
            return self.cur
        self.pending = None
        name = self._name("conv" if p.kind == "conv" else "affine", p.path)
        meta = self._meta(p.path, input_scale=float(p.src.gain))
        w, b = p.weight.astype(np.float32), p.bias.astype(np.float32)
        if p.kind == "conv":
            node = self.nir.Conv2d(input_shape=tuple(p.src.shape[1:]), weight=w,
                                   stride=p.params["stride"], padding=p.params["padding"],
                                   dilation=p.params["dilation"], groups=p.params["groups"],
                                   bias=b, metadata=meta)
        else:
            node = self.nir.Affine(weight=w, bias=b, metadata=meta)
        self.nodes[name] = node
        self.edges.append((p.src.node, name))
        self.cur = _Value(name, p.out_shape, 1.0, "current")
        return self.cur

    # ---- handlers ----------------------------------------------------------------------
    def conv(self, path: str, m: nn.Conv2d) -> None:
        src = self.flush()
        if len(src.shape) != 3:
            raise UnsupportedLayerError(f"{path}: Conv2d needs a (C, H, W) input, got "
                                        f"{src.shape}")
        if isinstance(m.padding, str) or m.padding_mode != "zeros":
            raise UnsupportedLayerError(f"{path}: only numeric zero padding is supported")
        k, s, p, d = pair(m.kernel_size), pair(m.stride), pair(m.padding), pair(m.dilation)
        h, wd = conv_output_shape(src.shape[1:], k, s, p, d)
        bias = _np(m.bias) if m.bias is not None else np.zeros(m.out_channels)
        self.pending = _Pending(path, src, "conv", _np(m.weight) * src.gain, bias,
                                {"stride": s, "padding": p, "dilation": d,
                                 "groups": int(m.groups)}, (m.out_channels, h, wd))

    def linear(self, path: str, m: nn.Linear) -> None:
        src = self.flush()
        if src.shape != (m.in_features,):
            raise UnsupportedLayerError(f"{path}: Linear({m.in_features}) receives shape "
                                        f"{src.shape}; put a Flatten before it")
        bias = _np(m.bias) if m.bias is not None else np.zeros(m.out_features)
        self.pending = _Pending(path, src, "linear", _np(m.weight) * src.gain, bias, {},
                                (m.out_features,))

    def batchnorm(self, path: str, bn: nn.Module) -> None:
        p = self.pending
        if p is None:
            raise UnsupportedLayerError(f"{path}: BatchNorm must follow a conv/linear")
        p.weight, p.bias = fold_batchnorm(path, bn, p.weight, p.bias)

    def activation(self, path: str, act: nn.Module, sources: Sequence[_Value] = ()) -> None:
        if not isinstance(act, QCFS):
            raise UnsupportedLayerError(
                f"{path} ({type(act).__name__}): the float SNN needs QCFS activations "
                "(qcfs_lava.model.qcfs.replace_relu_with_qcfs, then fine-tune)")
        sources = list(sources) or [self.flush()]
        for v in sources:
            if v.kind != "current" or v.gain != 1.0:
                raise UnsupportedLayerError(
                    f"{path}: a QCFS activation must directly follow a conv/linear (+BN); "
                    "move pooling after the activation")
        theta = float(act.thresh.detach().float().cpu().reshape(-1)[0])
        if not (math.isfinite(theta) and theta > 0):
            raise UnsupportedLayerError(f"{path}: threshold {theta} must be positive and finite")
        # the float SNN computes v(0) = phi * theta in float32
        v_init = float(np.float32(np.float32(act.phi) * np.float32(theta)))
        shape = sources[0].shape
        name = self._name("if", path)
        self.nodes[name] = self.nir.IF(
            r=np.ones(shape, np.float32), v_threshold=np.full(shape, theta, np.float32),
            v_reset=np.zeros(shape, np.float32),
            metadata=self._meta(path, reset="subtract", fire="ge", v_init=v_init,
                                spike_amplitude=theta, levels=int(act.levels),
                                phi=float(act.phi)))
        self.edges += [(v.node, name) for v in sources]
        self.cur = _Value(name, shape, theta, "spikes")

    def pool(self, path: str, m: nn.Module) -> None:
        src = self.flush()
        if src.kind == "current":
            raise UnsupportedLayerError(f"{path}: average pooling between a conv/linear and its "
                                        "activation is not supported; pool after the activation")
        if len(src.shape) != 3:
            raise UnsupportedLayerError(f"{path}: pooling needs a (C, H, W) input")
        c, h, w = src.shape
        if isinstance(m, nn.AdaptiveAvgPool2d):
            k = s = adaptive_pool_kernel(path, m, h, w)
            p = (0, 0)
        else:
            if m.ceil_mode or (any(pair(m.padding)) and not m.count_include_pad) or \
                    m.divisor_override is not None:
                raise UnsupportedLayerError(f"{path}: AvgPool2d with ceil_mode, divisor_override "
                                            "or padding excluded from the count is not supported")
            k, p = pair(m.kernel_size), pair(m.padding)
            s = pair(m.stride if m.stride is not None else m.kernel_size)
        name = self._name("sumpool", path)
        self.nodes[name] = self.nir.SumPool2d(
            kernel_size=np.array(k), stride=np.array(s), padding=np.array(p),
            metadata=self._meta(path, divisor=float(k[0] * k[1])))
        self.edges.append((src.node, name))
        shape = (c, *pool_output_shape((h, w), k, s, p))
        self.cur = _Value(name, shape, src.gain / (k[0] * k[1]), src.kind)

    def flatten(self, path: str, m: nn.Flatten) -> None:
        src = self.flush()
        if m.start_dim != 1 or m.end_dim != -1:
            raise UnsupportedLayerError(f"{path}: only Flatten(start_dim=1, end_dim=-1) is "
                                        "supported")
        if len(src.shape) == 1:
            return
        name = self._name("flatten", path)
        self.nodes[name] = self.nir.Flatten(input_type={"input": np.array(src.shape)},
                                            start_dim=0, end_dim=-1,
                                            metadata=self._meta(path))
        self.edges.append((src.node, name))
        self.cur = _Value(name, (int(np.prod(src.shape)),), src.gain, src.kind)

    def block(self, path: str, blk: nn.Module) -> None:
        src = self.flush()
        if src.kind == "current":
            raise UnsupportedLayerError(f"{path}: a residual block must follow an activation")
        self.walk(leaves(blk.residual, f"{path}.residual"))
        main = self.flush()
        if main.kind != "current" or main.node == src.node:
            raise UnsupportedLayerError(f"{path}: the residual path must end in a conv (+BN)")
        self.cur = src
        shortcut = [(p, m) for p, m in leaves(blk.shortcut, f"{path}.shortcut")
                    if not _skipped(m)]
        if shortcut:
            if not (isinstance(shortcut[0][1], nn.Conv2d) and len(shortcut) <= 2 and all(
                    isinstance(m, nn.BatchNorm2d) for _, m in shortcut[1:])):
                raise UnsupportedLayerError(f"{path}.shortcut: only empty (identity) or "
                                            "Conv2d(+BatchNorm2d) shortcuts are supported")
            self.walk(shortcut)
            side = self.flush()
        else:
            if src.shape != main.shape:
                raise UnsupportedLayerError(f"{path}: identity shortcut but shapes differ "
                                            f"({src.shape} vs {main.shape})")
            c = src.shape[0]
            self.pending = _Pending(f"{path}.shortcut", src, "conv",
                                    np.eye(c).reshape(c, c, 1, 1) * src.gain, np.zeros(c),
                                    {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1),
                                     "groups": 1}, src.shape)
            side = self.flush()
        if side.shape != main.shape:
            raise UnsupportedLayerError(f"{path}: shortcut shape {side.shape} differs from the "
                                        f"residual path {main.shape}")
        self.activation(f"{path}.act", blk.act, [main, side])

    def skip(self, path: str, m: nn.Module) -> None:
        """Dropout and Identity: nothing at inference."""

    def walk(self, items) -> None:
        for path, m in items:
            if is_block(m):
                self.block(path, m)
                continue
            kind = kind_of(m)
            if kind is None:  # walk.check_supported ran first: not reached
                raise UnsupportedLayerError(f"{path} ({type(m).__name__}): {walk.advice(m)}")
            HANDLERS[kind.name](self, path, m)


#: The NIR node(s) of each module kind (:data:`qcfs_lava.model.walk.MODULE_KINDS`).
HANDLERS: dict[str, Callable[[_Builder, str, nn.Module], None]] = {
    "conv": _Builder.conv,
    "linear": _Builder.linear,
    "batchnorm": _Builder.batchnorm,
    "activation": _Builder.activation,
    "pool": _Builder.pool,
    "flatten": _Builder.flatten,
    "skip": _Builder.skip,
}


def _skipped(m: nn.Module) -> bool:
    kind = kind_of(m)
    return kind is not None and kind.name == "skip"


def to_nir(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    mean: Sequence[float] | float = 0.0,
    std: Sequence[float] | float = 1.0,
    steps: int | None = None,
    metadata: dict[str, Any] | None = None,
):
    """The float SNN of ``model`` as a ``nir.NIRGraph`` (one step of the network).

    Args:
        model: a QCFS model following the layout contract of :mod:`qcfs_lava.model.zoo`
            (not modified).
        input_shape: ``(C, H, W)`` (or ``(F,)``) of one normalised input.
        mean, std: the input normalisation of ``pixels / 255``, recorded in the metadata.
        steps: the ``T`` to record (``None``: none recorded).
        metadata: extra provenance for the graph metadata (plain strings and numbers).

    Returns:
        The graph; its ``metadata["qcfs_lava"]`` holds what NIR cannot say.

    Raises:
        UnsupportedLayerError: one error naming every module that cannot be exported.
        NirError: nir is not installed.
    """
    nir = require_nir()
    if steps is not None and int(steps) < 1:
        raise NirError(f"steps must be >= 1, got {steps}")
    walk.check_supported(model, consumer="NIR export", action="export to NIR")
    qcfs = [m for m in model.modules() if isinstance(m, QCFS)]
    if not qcfs:
        raise UnsupportedLayerError("model has no QCFS activation: nothing to convert to spikes")
    b = _Builder(nir, tuple(int(s) for s in input_shape))
    b.walk(leaves(model))
    out = b.flush()
    if out.kind != "current":
        raise UnsupportedLayerError("the model must end in a Linear (or conv) layer whose "
                                    "outputs are the logits")
    b.nodes["output"] = nir.Output(output_type={"output": np.array(out.shape)})
    b.edges.append((out.node, "output"))
    channels = int(input_shape[0])
    meta: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "neuron": "if-subtract-ge", "input": "repeat",
        "readout": "mean",
        "input_normalization": {
            "scale": 1.0 / 255.0,
            "mean": np.broadcast_to(np.asarray(mean, np.float64), (channels,)).copy(),
            "std": np.broadcast_to(np.asarray(std, np.float64), (channels,)).copy(),
        },
        "levels": int(qcfs[0].levels), "phi": float(qcfs[0].phi),
    }
    if steps is not None:
        meta["steps"] = int(steps)
    for key, value in (metadata or {}).items():
        meta.setdefault(key, value)
    try:
        return nir.NIRGraph(nodes=b.nodes, edges=b.edges, metadata={NAMESPACE: meta})
    except (ValueError, AssertionError) as exc:  # nir's own type check
        raise NirError(f"the NIR graph does not type-check: {exc}") from exc


def export_checkpoint(path: str | Path, out: str | Path, *, steps: int | None = None):
    """Load a training checkpoint, build its NIR graph and write it to ``out`` atomically.

    Returns:
        ``(graph, checkpoint)``.

    Raises:
        CheckpointError: unreadable checkpoint or a non-QCFS model.
        NirError: ``out`` is the checkpoint itself, or nir is not installed.
    """
    from qcfs_lava import __version__
    from qcfs_lava.checkpoint import checkpoint_sha256, load_checkpoint
    from qcfs_lava.errors import CheckpointError
    from qcfs_lava.nir_exchange.semantics import write_nir

    require_nir()
    if Path(out).resolve() == Path(path).resolve():
        raise NirError(f"--out {out} is the checkpoint itself; choose another file name")
    ckpt = load_checkpoint(path)
    if ckpt.activation != "qcfs":
        raise CheckpointError(f"{path}: the model uses {ckpt.activation!r} activations; only "
                              "QCFS models export (train with --activation qcfs)")
    meta = {
        "model": ckpt.model, "dataset": ckpt.dataset,
        "class_names": json.dumps([str(c) for c in ckpt.class_names]),
        "checkpoint": Path(path).name, "checkpoint_sha256": checkpoint_sha256(path),
        "qcfs_lava_version": __version__, "nir_version": _nir_version(),
    }
    graph = to_nir(ckpt.build_model(), ckpt.input_shape, mean=ckpt.mean or 0.0,
                   std=ckpt.std or 1.0, steps=steps, metadata=meta)
    write_nir(graph, out)
    return graph, ckpt


def _nir_version() -> str:
    from importlib.metadata import version

    return version("nir")
