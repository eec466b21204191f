"""Sizing: fan-in, input and output axons, synaptic memory, and the cores each limit asks for.

A layer's neurons are taken in position-major order (``y, x, c``) and cut into equal chunks,
one per core, of the largest size that keeps every chunk within every per-core limit. Layers
are sized from the last to the first, because a layer's output axons depend on how its
consumers are cut (see :mod:`qcfs_lava.analysis.resources` for the model).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from qcfs_lava import hardware as hw
from qcfs_lava.network import INPUT, IntegerNetwork, Synapse

# the per-core limits that size a layer, in the order the report lists them
_PER_CORE = ("compartments", "input_axons", "output_axons", "synaptic_memory_bits",
             "synapses_per_core")


# --------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------


def _taps(n_in: int, n_out: int, kernel: int, stride: int, pad: int, dil: int) -> list:
    """For each output index along one axis, the input indices its kernel reads."""
    out = []
    for o in range(n_out):
        idx = o * stride - pad + np.arange(kernel) * dil
        out.append(idx[(idx >= 0) & (idx < n_in)])
    return out


def _syn_taps(syn: Synapse, src: tuple[int, ...], h: int, w: int) -> tuple[list, list]:
    """Row and column taps of a conv synapse from a ``src`` map onto an ``h x w`` map."""
    kh, kw = syn.kernel_size
    rows = _taps(src[1], h, kh, syn.stride[0], syn.padding[0], syn.dilation[0])
    cols = _taps(src[2], w, kw, syn.stride[1], syn.padding[1], syn.dilation[1])
    return rows, cols


def _as_chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(C, H, W)`` of a layer shape; a flat ``(N,)`` layer is ``(N, 1, 1)``."""
    return (shape[0], shape[1], shape[2]) if len(shape) == 3 else (shape[0], 1, 1)


def _position_major(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A ``shape`` array (C, H, W order) flattened in position-major (y, x, c) order."""
    values = np.asarray(values).reshape(shape)
    if len(shape) == 3:
        values = values.transpose(1, 2, 0)
    return values.ravel()


# --------------------------------------------------------------------------------------
# Fan-in
# --------------------------------------------------------------------------------------


def _synapse_fan_in(syn: Synapse, src: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Fan-in of every neuron through one synapse (layer shape)."""
    if syn.kind == "dense":
        return np.full(shape, int(syn.weight.shape[1]), dtype=np.int64)
    c, h, w = _as_chw(shape)
    th, tw = _syn_taps(syn, src, h, w)
    per = np.outer([len(t) for t in th], [len(t) for t in tw]) * int(syn.weight.shape[1])
    return np.broadcast_to(per[None], (c, h, w)).reshape(shape).astype(np.int64)


def layer_fan_in(net: IntegerNetwork, index: int) -> np.ndarray:
    """Fan-in (input axons) of every neuron of layer ``index``, over all its synapses.

    Returns:
        int64 array of the layer's shape (C, H, W order).
    """
    layer = net.layers[index]
    total = np.zeros(layer.shape, dtype=np.int64)
    for syn in layer.synapses:
        total += _synapse_fan_in(syn, net.source_shape(syn.source), layer.shape)
    return total


# --------------------------------------------------------------------------------------
# Per-core quantities of a chunking
# --------------------------------------------------------------------------------------


def _chunk_sums(values: np.ndarray, n: int) -> np.ndarray:
    """Sums of consecutive chunks of ``n`` entries."""
    cs = np.concatenate([[0], np.cumsum(values, dtype=np.int64)])
    starts = np.arange(0, len(values), n)
    ends = np.minimum(starts + n, len(values))
    return cs[ends] - cs[starts]


class _AxonUnion:
    """Input axons of position-major chunks of a layer: the union of their fan-ins."""

    def __init__(self, net: IntegerNetwork, index: int):
        layer = net.layers[index]
        self.c, self.h, self.w = _as_chw(layer.shape)
        self.dense = 0
        self.convs = []
        self._max: dict[int, int] = {}
        for syn in layer.synapses:
            if syn.kind == "dense":
                self.dense += int(syn.weight.shape[1])
                continue
            src = net.source_shape(syn.source)
            rows, cols = _syn_taps(syn, src, self.h, self.w)
            cog = self.c // syn.groups
            self.convs.append((syn.groups, int(syn.weight.shape[1]), cog, src, rows, cols))

    def max_axons(self, n: int) -> int:
        """Largest input-axon count over the chunks of ``n`` neurons."""
        if n not in self._max:
            total_n = self.c * self.h * self.w
            self._max[n] = max((self.axons(a, min(a + n, total_n))
                                for a in range(0, total_n, n)), default=0)
        return self._max[n]

    def axons(self, a: int, b: int) -> int:
        """Input axons of the neurons ``a..b-1`` (position-major order)."""
        total = self.dense
        for groups, cig, cog, src, rows, cols in self.convs:
            mask = np.zeros((groups, src[1], src[2]), dtype=bool)
            p_first, p_last = a // self.c, (b - 1) // self.c
            for p in range(p_first, p_last + 1):
                c_lo = a - p * self.c if p == p_first else 0
                c_hi = b - 1 - p * self.c if p == p_last else self.c - 1
                oy, ox = divmod(p, self.w)
                r, q = rows[oy], cols[ox]
                if len(r) and len(q):
                    mask[c_lo // cog:c_hi // cog + 1, r[0]:r[-1] + 1, q[0]:q[-1] + 1] |= (
                        _window(src[1], src[2], r, q)[None])
            total += int(mask.sum()) * cig
        return total


def _window(h: int, w: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Boolean mask of ``rows x cols``, cropped to their bounding box."""
    out = np.zeros((rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1), dtype=bool)
    out[np.ix_(rows - rows[0], cols - cols[0])] = True
    return out


def _largest_n(cap: int, ok: Callable[[int], bool]) -> int | None:
    """Largest ``n`` in ``[1, cap]`` with ``ok(n)`` (assumed monotone), else ``None``."""
    if ok(cap):
        return cap
    if not ok(1):
        return None
    lo, hi = 1, cap  # ok(lo), not ok(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _memory_bits_per_synapse(compartments: int) -> int:
    """Bits of one dense synapse on a core of ``compartments`` (weight + index)."""
    return hw.WEIGHT_PRECISION_BITS + hw.synapse_index_bits(compartments)


# --------------------------------------------------------------------------------------
# Output axons: the destination cores a source neuron reaches
# --------------------------------------------------------------------------------------


def _inverse_taps(taps: list, n_in: int) -> list[list[int]]:
    """For each input index along one axis, the output indices whose kernel reads it."""
    out: list[list[int]] = [[] for _ in range(n_in)]
    for o, t in enumerate(taps):
        for i in t:
            out[i].append(o)
    return out


def _reached(net: IntegerNetwork, syn: Synapse, dst_index: int, n_dst: int
             ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Destination cores (local to the destination layer) each source neuron reaches.

    Returns:
        ``(key, sets)``: ``key[j]`` for each source neuron ``j`` in position-major order,
        and ``sets[key]`` the sorted local core indices of that key.
    """
    src = net.source_shape(syn.source)
    dst = net.layers[dst_index]
    n_src = int(np.prod(src))
    k_dst = math.ceil(dst.num_neurons / n_dst)
    if syn.kind == "dense":
        return np.zeros(n_src, dtype=np.int64), [np.arange(k_dst)]
    cin, hin, win = src
    c, h, w = _as_chw(dst.shape)
    groups, cig = syn.groups, int(syn.weight.shape[1])
    cog = c // groups
    rows, cols = _syn_taps(syn, src, h, w)
    out_rows, out_cols = _inverse_taps(rows, hin), _inverse_taps(cols, win)
    sets = []
    for iy in range(hin):
        for ix in range(win):
            pos = (np.asarray(out_rows[iy])[:, None] * w + np.asarray(out_cols[ix])[None, :])
            pos = pos.ravel()
            for g in range(groups):
                lo = (pos * c + g * cog) // n_dst
                hi = (pos * c + (g + 1) * cog - 1) // n_dst
                mark = np.zeros(k_dst, dtype=bool)
                for a, b in zip(lo, hi, strict=True):
                    mark[a:b + 1] = True
                sets.append(np.flatnonzero(mark))
    j = np.arange(n_src)
    p, ch = j // cin, j % cin
    return p * groups + ch // cig, sets


# --------------------------------------------------------------------------------------
# Sizing every layer
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerSize:
    """How a layer is cut into cores, and what each neuron needs.

    Attributes:
        neurons_per_core: neurons of each (equal) chunk.
        cores_by_limit: cores each per-core limit asks for (``None``: no split fits).
        infeasible: per limit that no split fits, what a single neuron needs.
        fan_in: input axons per neuron, position-major.
        messages: destination cores per neuron (its output axons), position-major.
        reached: per consumer, ``(layer index, key, sets)`` from :func:`_reached`.
        axons: the layer's input-axon union, or ``None`` when the chip has no public
            input-axon limit.
    """

    neurons_per_core: int
    cores_by_limit: dict[str, int | None]
    infeasible: dict[str, int]
    fan_in: np.ndarray
    messages: np.ndarray
    reached: list
    axons: _AxonUnion | None

    @property
    def cores(self) -> int:
        return math.ceil(len(self.fan_in) / self.neurons_per_core)


def consumers_of(net: IntegerNetwork) -> list[list[tuple[int, Synapse]]]:
    """Per layer, the ``(layer index, synapse)`` pairs that read it."""
    consumers: list[list[tuple[int, Synapse]]] = [[] for _ in net.layers]
    for i, layer in enumerate(net.layers):
        for syn in layer.synapses:
            if syn.source != INPUT:
                consumers[syn.source].append((i, syn))
    return consumers


def size_layers(net: IntegerNetwork, lim: dict[str, int | None],
                consumers: list[list[tuple[int, Synapse]]]) -> list[LayerSize]:
    """Size every layer, from the last to the first.

    Args:
        net: the integer network.
        lim: the chip's per-core limits (``None`` or absent: not public, not checked).
        consumers: :func:`consumers_of` ``net``.
    """
    sizes: list[LayerSize] = [None] * len(net.layers)  # type: ignore[list-item]
    for i in range(len(net.layers) - 1, -1, -1):
        sizes[i] = _size_layer(net, i, lim, consumers[i], sizes)
    return sizes


def _size_layer(net: IntegerNetwork, i: int, lim: dict, consumers: list, sizes: list
                ) -> LayerSize:
    layer = net.layers[i]
    n = layer.num_neurons
    fan_in = _position_major(layer_fan_in(net, i), layer.shape)
    reached = []
    msgs = np.zeros(n, dtype=np.int64)
    for d, syn in consumers:
        key, sets = _reached(net, syn, d, sizes[d].neurons_per_core)
        reached.append((d, key, sets))
        msgs += np.array([len(s) for s in sets], dtype=np.int64)[key]
    union = _AxonUnion(net, i) if lim.get("input_axons") else None
    cands, infeasible = _chunk_sizes(n, lim, fan_in, msgs, union, bool(consumers))
    feasible = [v for v in cands.values() if v is not None]
    return LayerSize(
        neurons_per_core=math.ceil(n / math.ceil(n / min(feasible))),  # equal chunks
        cores_by_limit={k: (None if v is None else math.ceil(n / v)) for k, v in cands.items()},
        infeasible=infeasible,
        fan_in=fan_in,
        messages=msgs,
        reached=reached,
        axons=union,
    )


def _chunk_sizes(n: int, lim: dict, fan_in: np.ndarray, msgs: np.ndarray,
                 union: _AxonUnion | None, has_consumers: bool
                 ) -> tuple[dict[str, int | None], dict[str, int]]:
    """The largest chunk each per-core limit allows, and what one neuron needs where no
    chunk fits."""
    top = min(lim["compartments"], n)
    # limit -> (chunk of m neurons fits, what a single neuron needs)
    checks: dict[str, tuple[Callable[[int], bool], Callable[[], int]]] = {}
    if union is not None:
        checks["input_axons"] = (lambda m: union.max_axons(m) <= lim["input_axons"],
                                 lambda: int(fan_in.max()))
    if lim.get("output_axons") and has_consumers:
        checks["output_axons"] = (lambda m: _chunk_sums(msgs, m).max() <= lim["output_axons"],
                                  lambda: int(msgs.max()))
    if lim.get("synaptic_memory_bits"):
        checks["synaptic_memory_bits"] = (
            lambda m: _chunk_sums(fan_in, m).max() * _memory_bits_per_synapse(m)
            <= lim["synaptic_memory_bits"],
            lambda: int(fan_in.max()) * _memory_bits_per_synapse(1))
    if lim.get("synapses_per_core"):
        checks["synapses_per_core"] = (
            lambda m: _chunk_sums(fan_in, m).max() <= lim["synapses_per_core"],
            lambda: int(fan_in.max()))
    cands: dict[str, int | None] = {"compartments": top}
    infeasible: dict[str, int] = {}
    for key, (ok, need) in checks.items():
        cands[key] = _largest_n(top, ok)
        if cands[key] is None:
            infeasible[key] = need()
    return cands, infeasible


def _weight_bits_used(layer) -> int:
    qmax = max(int(np.abs(s.weight).max(initial=0)) // hw.WEIGHT_STEP for s in layer.synapses)
    return qmax.bit_length() + 1


def _sign_mode(layer) -> str:
    lo = min(int(s.weight.min(initial=0)) for s in layer.synapses)
    hi = max(int(s.weight.max(initial=0)) for s in layer.synapses)
    # the runner always passes the mixed sign mode (qcfs_lava.hardware); say what the
    # weights alone would allow
    if lo < 0 < hi or (lo == 0 and hi == 0):
        return "mixed"
    return "mixed (all excitatory)" if hi > 0 else "mixed (all inhibitory)"
