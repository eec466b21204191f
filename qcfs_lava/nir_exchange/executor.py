r"""The reference executor: runs a qcfs-lava NIR graph with its documented semantics.

Plain numpy, one small function per NIR node type, so the semantics can be read off the code.
Per sample, the graph runs ``T`` steps; at every step the nodes are evaluated in topological
order, each on the sum of its incoming edges' values of the same step:

- ``Input``: the normalised image, the same at every step;
- ``Conv2d``, ``Affine``, ``Linear``, ``SumPool2d``, ``AvgPool2d``, ``Flatten``, ``Scale``:
  stateless, as NIR defines them (shapes without the batch axis);
- ``IF``: :math:`v(0) = v_{init}`, :math:`v \leftarrow v + I`, :math:`s = [v \ge v_{th}]`,
  :math:`v \leftarrow v - s\,v_{th}` (see :mod:`qcfs_lava.nir_exchange.semantics`);
- ``Output``: recorded every step; ``logits(T)`` is the mean over the first ``T`` steps.

``literal=True`` instead runs NIR's own ``IF`` definition (fire on ``>``, reset to
``v_reset``, ``v(0) = 0``), which is what an importer that ignores the metadata computes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qcfs_lava.errors import NirError
from qcfs_lava.nir_exchange.semantics import (
    graph_semantics,
    neuron_semantics,
    read_nir,
    require_nir,
)

__all__ = ["NirRunResult", "check_graph", "normalize_pixels", "run_nir", "topological_order"]

INPUT_SIZE_MAX = 1 << 24  # values in the Input node (a 4096 x 4096 image); larger is damage


@dataclass
class NirRunResult:
    """Outputs of a NIR run.

    Attributes:
        outputs: the ``Output`` node at every step. Shape: ``(steps, N, num_classes)``.
        spike_counts: per ``IF`` node, spikes per sample over all steps. Shape: ``(N,)``.
        labels: ``(N,)`` ground truth, when given.
    """

    outputs: np.ndarray
    spike_counts: dict[str, np.ndarray]
    labels: np.ndarray | None = None

    @property
    def steps(self) -> int:
        return int(self.outputs.shape[0])

    def logits(self, steps: int | None = None) -> np.ndarray:
        """Mean output over the first ``steps`` steps (all by default). Shape: ``(N, K)``."""
        t = self.steps if steps is None else int(steps)
        return self.outputs[:t].mean(0)

    def predictions(self, steps: int | None = None) -> np.ndarray:
        return self.logits(steps).argmax(1)

    def accuracy(self, steps: int | None = None) -> float | None:
        if self.labels is None or len(self.labels) == 0:
            return None
        return float(np.mean(self.predictions(steps) == self.labels))


def topological_order(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """Node names such that every node follows all its sources (Kahn's algorithm).

    Raises:
        NirError: the graph has a cycle (recurrence is not part of this format).
    """
    preds: dict[str, list[str]] = {name: [] for name in nodes}
    for src, dst in edges:
        if src not in preds or dst not in preds:
            raise NirError(f"the NIR graph has an edge {src!r} -> {dst!r} to or from a node it "
                           "does not have; the file is damaged")
        preds[dst].append(src)
    order, done = [], set()
    pending = list(preds)
    while pending:
        ready = [n for n in pending if all(p in done for p in preds[n])]
        if not ready:
            raise NirError(f"the NIR graph has a cycle through {sorted(pending)}; recurrent "
                           "graphs are not part of the qcfs-lava NIR format")
        for n in ready:
            order.append(n)
            done.add(n)
        pending = [n for n in pending if n not in done]
    return order


def normalize_pixels(x: np.ndarray, mean, std) -> np.ndarray:
    """``(x / 255 - mean) / std`` per channel in float32, as :func:`qcfs_lava.data.normalize`.

    Shape:
        ``x``: ``(N, C, H, W)`` uint8; returns float32 of the same shape.
    """
    m = np.asarray(mean, np.float32).reshape(-1, 1, 1)
    s = np.asarray(std, np.float32).reshape(-1, 1, 1)
    return (np.asarray(x).astype(np.float32) / np.float32(255.0) - m) / s


# ---- stateless nodes ----------------------------------------------------------------------
def _windows(x: np.ndarray, kernel, stride, padding, dilation=(1, 1)) -> np.ndarray:
    """``(N, C, OH, OW, KH, KW)`` view of the zero-padded input's windows."""
    ph, pw = int(padding[0]), int(padding[1])
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    kh, kw = int(kernel[0]), int(kernel[1])
    dh, dw = int(dilation[0]), int(dilation[1])
    span = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    win = np.lib.stride_tricks.sliding_window_view(x, span, axis=(2, 3))
    return win[:, :, :: int(stride[0]), :: int(stride[1]), ::dh, ::dw]


def _conv2d(node, x: np.ndarray) -> np.ndarray:
    if isinstance(node.padding, str):
        raise NirError("Conv2d with string padding is not supported by the reference executor")
    w = np.asarray(node.weight, x.dtype)
    groups = int(np.asarray(node.groups).reshape(-1)[0])
    win = _windows(x, w.shape[2:], node.stride, node.padding, node.dilation)
    co, cig = w.shape[:2]
    outs = []
    for g in range(groups):
        part = win[:, g * cig:(g + 1) * cig]
        wg = w[g * (co // groups):(g + 1) * (co // groups)]
        outs.append(np.einsum("nchwij,ocij->nohw", part, wg, optimize=True))
    y = np.concatenate(outs, axis=1) if groups > 1 else outs[0]
    return y + np.asarray(node.bias, x.dtype).reshape(1, -1, 1, 1)


def _pool(node, x: np.ndarray, mean: bool) -> np.ndarray:
    k = np.broadcast_to(np.asarray(node.kernel_size), (2,))
    s = np.broadcast_to(np.asarray(node.stride), (2,))
    p = np.broadcast_to(np.asarray(node.padding), (2,))
    y = _windows(x, k, s, p).sum(axis=(-2, -1))
    return y / (int(k[0]) * int(k[1])) if mean else y


def _flatten(node, x: np.ndarray) -> np.ndarray:
    nd = x.ndim - 1  # NIR shapes have no batch axis
    start = node.start_dim % nd + 1
    end = node.end_dim % nd + 1
    return x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1:])


def _stateless(nir) -> dict[type, Callable]:
    return {
        nir.Conv2d: _conv2d,
        nir.Affine: lambda n, x: x @ np.asarray(n.weight, x.dtype).T + np.asarray(n.bias,
                                                                                 x.dtype),
        nir.Linear: lambda n, x: x @ np.asarray(n.weight, x.dtype).T,
        nir.Scale: lambda n, x: x * np.asarray(n.scale, x.dtype),
        nir.SumPool2d: lambda n, x: _pool(n, x, mean=False),
        nir.AvgPool2d: lambda n, x: _pool(n, x, mean=True),
        nir.Flatten: _flatten,
        nir.Output: lambda n, x: x,
    }


# ---- checks -------------------------------------------------------------------------------
def _vector(value, what: str, lo: int, lengths: tuple[int, ...], hi: int | None = None
            ) -> tuple[int, ...]:
    """An integer vector of one of ``lengths`` entries in ``[lo, hi]`` (typed, not coerced)."""
    from qcfs_lava.validate import INDEX_MAX, InvalidValueError, exact_int_vector

    try:
        return exact_int_vector(value, what, lo, INDEX_MAX if hi is None else hi, lengths)
    except (InvalidValueError, TypeError, ValueError) as exc:
        raise NirError(f"{exc}; the file is damaged or not a qcfs-lava export") from None


def _ints(value, what: str, lo: int, length: int = 2) -> tuple[int, ...]:
    """A scalar or ``length`` integers >= ``lo``, as ``length`` integers."""
    out = _vector(value, what, lo, (1, length))
    return out * length if len(out) == 1 else out


def _check_node(nir, name: str, node) -> None:
    """Types, shapes and finiteness of one node's parameters (before anything runs)."""
    where = f"node {name!r} ({type(node).__name__})"
    for key, value in node.to_dict().items():
        if key in ("type", "metadata") or isinstance(value, (str, dict)):
            continue
        arr = np.asarray(value)
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise NirError(f"{where}: {key} holds NaN or infinite values; the file is damaged")
        if arr.dtype.kind not in "biuf":
            raise NirError(f"{where}: {key} must be numeric, got {arr.dtype}")
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = np.asarray(node.weight)
        if w.ndim != 2 or 0 in w.shape:
            raise NirError(f"{where}: weight must be a non-empty matrix, got shape {w.shape}")
        if isinstance(node, nir.Affine) and np.asarray(node.bias).shape not in ((w.shape[0],),):
            raise NirError(f"{where}: bias has shape {np.asarray(node.bias).shape}, the weight "
                           f"{w.shape} needs ({w.shape[0]},)")
    elif isinstance(node, nir.Conv2d):
        if isinstance(node.padding, str):
            raise NirError(f"{where}: string padding {node.padding!r} is not supported")
        w = np.asarray(node.weight)
        if w.ndim != 4 or 0 in w.shape:
            raise NirError(f"{where}: weight must be (C_out, C_in/groups, kH, kW), got {w.shape}")
        groups = _ints(node.groups, f"{where} groups", 1, 1)[0]
        if w.shape[0] % groups:
            raise NirError(f"{where}: groups {groups} does not divide the {w.shape[0]} output "
                           "channels")
        _ints(node.stride, f"{where} stride", 1)
        _ints(node.dilation, f"{where} dilation", 1)
        _ints(node.padding, f"{where} padding", 0)
        bias = np.asarray(node.bias)
        if bias.shape not in ((), (1,), (w.shape[0],)):
            raise NirError(f"{where}: bias has shape {bias.shape}, needs ({w.shape[0]},)")
    elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        _ints(node.kernel_size, f"{where} kernel_size", 1)
        _ints(node.stride, f"{where} stride", 1)
        _ints(node.padding, f"{where} padding", 0)
    elif isinstance(node, nir.Flatten):
        for key in ("start_dim", "end_dim"):
            _vector(getattr(node, key), f"{where} {key}", -8, (1,), hi=8)


def check_graph(graph, where: str = "graph"):
    """Everything the reference executor needs, checked before any run: the metadata
    (:func:`graph_semantics`), one ``Input`` and one ``Output``, every other node fed and
    feeding (no unconnected node), no cycle, supported node types with well-typed, finite
    parameters, and shapes that chain (one sample, one step, run for real).

    The snntorch and sinabs shims and the torch import call it too, so they run only graphs
    the reference executor accepts.

    Returns:
        The graph's :class:`~qcfs_lava.nir_exchange.semantics.GraphSemantics`.

    Raises:
        NirError: what is wrong, naming the node.
    """
    nir = require_nir()
    sem = graph_semantics(graph, where)
    nodes = graph.nodes
    try:
        edges = [(str(a), str(b)) for a, b in graph.edges]
    except (TypeError, ValueError):
        raise NirError(f"{where}: the edges are not (source, target) pairs") from None
    inputs = [n for n, node in nodes.items() if isinstance(node, nir.Input)]
    outputs = [n for n, node in nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NirError(f"{where}: the graph needs exactly one Input and one Output node, has "
                       f"{inputs} and {outputs}")
    topological_order(nodes, edges)  # unknown endpoints, cycles
    fed = {d for _, d in edges}
    feeding = {s for s, _ in edges}
    for name in nodes:
        if name != inputs[0] and name not in fed:
            raise NirError(f"{where}: node {name!r} has no incoming edge (unconnected); the "
                           "graph is damaged or not a qcfs-lava export")
        if name != outputs[0] and name not in feeding:
            raise NirError(f"{where}: node {name!r} feeds nothing (unconnected); the graph is "
                           "damaged or not a qcfs-lava export")
    if inputs[0] in fed or outputs[0] in feeding:
        raise NirError(f"{where}: the Input node may not be fed, nor the Output node feed")
    ops = _stateless(nir)
    for name, node in nodes.items():
        if isinstance(node, nir.IF):
            neuron_semantics(name, node)
        elif not isinstance(node, nir.Input) and type(node) not in ops:
            raise NirError(f"{where}: node {name!r}: NIR type {type(node).__name__} is not "
                           "supported by the reference executor (supported: IF, Input, "
                           f"{', '.join(t.__name__ for t in ops)})")
        _check_node(nir, name, node)
    shape = _vector(nodes[inputs[0]].input_type.get("input"), f"{where} Input shape", 1,
                    (1, 3))
    if math.prod(shape) > INPUT_SIZE_MAX:
        raise NirError(f"{where}: Input shape {shape} is larger than {INPUT_SIZE_MAX} values")
    if len(shape) == 3 and len(sem.mean) not in (1, shape[0]):
        raise NirError(f"{where}: input_normalization has {len(sem.mean)} channels, the Input "
                       f"has {shape[0]}")
    try:
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            # a white image (uint8 255, normalised): every input pixel is non-zero
            probe = np.full((1, *shape), 255, np.uint8)
            if len(shape) == 3:
                probe = normalize_pixels(probe, sem.mean, sem.std)
            _execute(graph, sem, probe.astype(np.float64), 1, literal=False, dtype=np.float64,
                     batch_size=1, strict=True)
    except FloatingPointError as exc:
        raise NirError(f"{where}: the network's values overflow float64 on a white image "
                       f"({exc}); its parameters are absurd: the file is damaged") from None
    except NirError:
        raise
    except (ValueError, IndexError, TypeError, KeyError, ZeroDivisionError,
            OverflowError, MemoryError) as exc:
        raise NirError(f"{where}: the node shapes do not chain ({type(exc).__name__}: "
                       f"{str(exc)[:160]}); the graph is damaged") from None
    return sem


# ---- the run -----------------------------------------------------------------------------
def run_nir(
    graph,
    x: np.ndarray,
    steps: int | None = None,
    *,
    labels: np.ndarray | None = None,
    literal: bool = False,
    dtype=np.float64,
    batch_size: int = 256,
) -> NirRunResult:
    """Run a qcfs-lava NIR graph (or file) on a batch of inputs for ``steps`` steps.

    Args:
        graph: a ``nir.NIRGraph`` or the path of a NIR file.
        x: uint8 images ``(N, C, H, W)`` (normalised with the graph's recorded
            ``input_normalization``) or already normalised float inputs.
        steps: ``T``; default: the ``T`` recorded in the graph.
        labels: ``(N,)`` ground truth, kept in the result for :meth:`NirRunResult.accuracy`.
        literal: run NIR's literal ``IF`` (``>``, reset to ``v_reset``, ``v(0) = 0``) instead
            of the recorded semantics.
        dtype: arithmetic precision (float64 by default).
        batch_size: samples per batch.

    Raises:
        NirError: not a qcfs-lava graph, an unsupported node type, a cycle, or no ``T``.
    """
    if isinstance(graph, (str, Path)):
        graph = read_nir(graph)
    sem = check_graph(graph)
    t_max = sem.resolve_steps(steps)
    x = np.asarray(x)
    if x.dtype == np.uint8:
        x = normalize_pixels(x, sem.mean, sem.std)
    try:  # an overflow is an error, never a RuntimeWarning beside a garbage result
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            return _execute(graph, sem, x, t_max, literal=literal, dtype=dtype,
                            batch_size=batch_size, labels=labels)
    except FloatingPointError as exc:
        raise NirError(f"the network's values leave the range of {np.dtype(dtype).name} "
                       f"({exc}); its weights or thresholds are absurd: the file is damaged or "
                       "was not written by qcfs-lava") from None


def _execute(graph, sem, x: np.ndarray, t_max: int, *, literal: bool, dtype, batch_size: int,
             labels: np.ndarray | None = None, strict: bool = False) -> NirRunResult:
    """The run of :func:`run_nir` on a checked graph and normalised inputs.

    The input of every ``IF`` and ``Output`` node must be finite (BLAS-backed products can
    overflow without numpy noticing); with ``strict`` (the dry run of :func:`check_graph`),
    every node's input must also have the shape the node declares.
    """
    nir = require_nir()
    inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    outputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NirError(f"the graph needs exactly one Input and one Output node, has {inputs} "
                       f"and {outputs}")
    order = topological_order(graph.nodes, graph.edges)
    preds = {name: [s for s, d in graph.edges if d == name] for name in graph.nodes}
    ops = _stateless(nir)
    neurons = {}
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, nir.IF):
            neurons[name] = neuron_semantics(name, node)
        elif not isinstance(node, nir.Input) and type(node) not in ops:
            raise NirError(f"node {name!r}: NIR type {type(node).__name__} is not supported by "
                           f"the reference executor (supported: IF, Input, "
                           f"{', '.join(t.__name__ for t in ops)})")
    # nodes whose value is the same at every step: computed once per batch
    static = set(inputs)
    for name in order:
        if preds[name] and name not in neurons and all(p in static for p in preds[name]):
            static.add(name)

    n = len(x)
    out_steps = []
    counts = {name: np.zeros(n, np.int64) for name in neurons}
    for start in range(0, n, batch_size):
        xb = x[start:start + batch_size].astype(dtype)
        nb = len(xb)
        v: dict[str, np.ndarray] = {}
        fixed: dict[str, np.ndarray] = {inputs[0]: xb}
        rows = []
        for _ in range(t_max):
            values = dict(fixed)
            for name in order:
                if name in values:
                    continue
                total = values[preds[name][0]]
                for p in preds[name][1:]:
                    total = total + values[p]
                if strict:
                    _check_input_shape(name, graph.nodes[name], total)
                if (name in neurons or name == outputs[0]) and not np.all(np.isfinite(total)):
                    raise FloatingPointError(f"the input of node {name!r} overflows")
                if name in neurons:
                    values[name] = _if_step(name, neurons[name], graph.nodes[name], total, v,
                                            literal)
                    counts[name][start:start + nb] += values[name].reshape(nb, -1).sum(1).astype(
                        np.int64)
                else:
                    values[name] = ops[type(graph.nodes[name])](graph.nodes[name], total)
                    if name in static:
                        fixed[name] = values[name]
            rows.append(values[outputs[0]])
        out_steps.append(np.stack(rows))
    outputs_all = np.concatenate(out_steps, axis=1) if out_steps else np.zeros((t_max, 0, 0))
    return NirRunResult(outputs_all, counts, None if labels is None else np.asarray(labels))


def _check_input_shape(name: str, node, total: np.ndarray) -> None:
    """``total`` (one batch) has the input shape ``node`` declares, when it declares one."""
    declared = (getattr(node, "input_type", None) or {}).get("input")
    if declared is None or np.asarray(declared).size == 0:
        return
    want = tuple(int(v) for v in np.asarray(declared).reshape(-1))
    if tuple(total.shape[1:]) != want:
        raise NirError(f"node {name!r} ({type(node).__name__}) declares input shape {want} but "
                       f"receives {tuple(total.shape[1:])}; the graph is damaged")


def _if_step(name, sem, node, total: np.ndarray, v: dict, literal: bool) -> np.ndarray:
    """One step of an ``IF`` node; ``v`` holds the membranes of the batch."""
    th = np.asarray(sem.v_threshold, total.dtype)
    if name not in v:
        v[name] = np.zeros_like(total) if literal else np.full_like(total, sem.v_init)
    u = v[name] + total
    if literal:
        s = (u > np.asarray(node.v_threshold, total.dtype)).astype(total.dtype)
        v[name] = np.where(s > 0, np.asarray(node.v_reset, total.dtype), u)
    else:
        s = (u >= th).astype(total.dtype)
        v[name] = u - s * th
    return s
