"""Will it fit on Loihi? Per-layer resources, limits, a placement, hops and spike traffic.

Everything here is numpy only and works on an :class:`~qcfs_lava.network.IntegerNetwork`
(for example one read from a NetX file). The limits come from :data:`qcfs_lava.hardware.
CHIP_LIMITS`, each with its source; a limit with no public number is not checked and the
output says so.

Model (per layer ``l``; the mapping a compiler would make with discrete axons):

- **compartments**: one per neuron.
- **fan-in** of a neuron: the source neurons that feed it, over all its incoming synapses
  (``C_in / groups * kH * kW`` inside a conv, fewer at the borders; ``in_features`` for a
  dense synapse). With one input axon per source neuron, this is the input axons the neuron
  needs; the input axons of a core are the union of the fan-ins of its neurons.
- **synapses**: the sum of the fan-ins (a zero weight is still a synapse).
- **synaptic memory**, *dense* (explicit) storage: every synapse stores its weight and a
  compartment index, ``synapses * (weight_bits + index_bits)`` bits, with ``index_bits``
  from nengo-loihi's encoding for the compartments of the core (packing into 64-bit words
  ignored). A convolution's *shared-kernel* figure (each kernel stored once, border
  variants and per-core copies ignored) is shown beside it as the lower bound a compiler
  that shares kernels could reach; the limits are checked with dense storage.
- **output axons** of a core: one per (neuron, destination core it reaches).

**Placement** (greedy, documented): layers in network order, each on its own consecutive
cores (no core holds two layers); a layer's neurons in position-major order (``y, x, c``,
so a core holds all channels of a patch of positions) cut into equal chunks of the largest
size that keeps every chunk within every per-core limit. Layers are sized from the last to
the first, because a layer's output axons depend on how its consumers are cut. Cores
``0..127`` are chip 0, and so on. A core's place on the mesh: ``cores_per_tile`` cores
share a router tile, tiles fill rows of ``mesh_width`` tiles, chips sit on a near-square
grid (``ceil(sqrt(chips))`` per row) and their meshes join; the
**hops** of a message are the Manhattan distance between the source and destination tiles.
Every spike of neuron ``j`` is sent once to each destination core that holds one of its
targets (its *messages*); its hops are the sum over those messages. Input pixels come from
the host and are not placed.

**Energy with hops** (Loihi 1, :mod:`.energy`): the ``hops = 0`` estimate plus
``e_hop * spikes_l * hops_per_spike_l`` per layer, with the measured spike counts of a run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from qcfs_lava import hardware as hw
from qcfs_lava.analysis.counts import OpCounts, synapse_fan_out
from qcfs_lava.analysis.energy import EnergyConstants, estimate_energy
from qcfs_lava.errors import AnalysisError
from qcfs_lava.network import INPUT, IntegerNetwork, Synapse

__all__ = [
    "LayerResources",
    "compare_unfolded_pools",
    "PoolFold",
    "ResourceReport",
    "Violation",
    "format_resources_markdown",
    "format_resources_text",
    "layer_fan_in",
    "map_resources",
    "pool_factor",
    "unfold_pool",
]

# limit key -> what to do when a single neuron (a chunk that cannot be split) breaks it
_PER_CORE = ("compartments", "input_axons", "output_axons", "synaptic_memory_bits",
             "synapses_per_core")


# --------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------


def _taps(n_in: int, n_out: int, kernel: int, stride: int, pad: int, dil: int) -> list:
    """For each output index along one axis, the input indices its kernel reads."""
    out = []
    for o in range(n_out):
        idx = o * stride - pad + np.arange(kernel) * dil
        out.append(idx[(idx >= 0) & (idx < n_in)])
    return out


def _as_chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(C, H, W)`` of a layer shape; a flat ``(N,)`` layer is ``(N, 1, 1)``."""
    return (shape[0], shape[1], shape[2]) if len(shape) == 3 else (shape[0], 1, 1)


def _position_major(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A ``shape`` array (C, H, W order) flattened in position-major (y, x, c) order."""
    values = np.asarray(values).reshape(shape)
    if len(shape) == 3:
        values = values.transpose(1, 2, 0)
    return values.ravel()


def layer_fan_in(net: IntegerNetwork, index: int) -> np.ndarray:
    """Fan-in (input axons) of every neuron of layer ``index``, over all its synapses.

    Returns:
        int64 array of the layer's shape (C, H, W order).
    """
    layer = net.layers[index]
    c, h, w = _as_chw(layer.shape)
    total = np.zeros((c, h, w), dtype=np.int64)
    for syn in layer.synapses:
        src = net.source_shape(syn.source)
        if syn.kind == "dense":
            total += int(syn.weight.shape[1])
            continue
        kh, kw = syn.kernel_size
        th = _taps(src[1], h, kh, syn.stride[0], syn.padding[0], syn.dilation[0])
        tw = _taps(src[2], w, kw, syn.stride[1], syn.padding[1], syn.dilation[1])
        per_pos = np.outer([len(t) for t in th], [len(t) for t in tw])
        total += int(syn.weight.shape[1]) * per_pos[None, :, :]
    return total.reshape(layer.shape)


# --------------------------------------------------------------------------------------
# Average pools folded into the next layer
# --------------------------------------------------------------------------------------


def pool_factor(syn: Synapse, src_shape: tuple[int, ...]) -> tuple[int, int] | None:
    """The ``(pH, pW)`` sum pool that ``syn``'s weights factor through exactly, if any.

    A ``pH x pW`` stride-``p`` average pool folded into the layer after it (what the
    converter does) leaves weights that are constant over aligned ``pH x pW`` blocks, with
    stride and padding multiples of the pool (conv) or over ``pH x pW`` blocks of the source
    map (dense). Such a synapse equals a sum pool followed by a smaller synapse with the
    same integer weights, so the factorization is exact, whatever produced it.

    Returns:
        The largest such pool (area > 1), or ``None``.
    """
    w = syn.weight
    if len(src_shape) != 3 or not np.any(w):
        return None
    _, hin, win = src_shape
    if syn.kind == "conv":
        if syn.dilation != (1, 1):
            return None
        kh, kw = syn.kernel_size
        cands = [(p, p) for p in range(min(syn.stride), 1, -1)]
        for ph, pw in cands:
            if (kh % ph or kw % pw or syn.stride[0] % ph or syn.stride[1] % pw
                    or syn.padding[0] % ph or syn.padding[1] % pw or hin % ph or win % pw):
                continue
            blocks = w.reshape(w.shape[0], w.shape[1], kh // ph, ph, kw // pw, pw)
            if np.all(blocks == blocks[:, :, :, :1, :, :1]):
                return (ph, pw)
        return None
    c = src_shape[0]
    cands = [(hin, win)] + [(p, p) for p in range(min(hin, win) // 2, 1, -1)]
    for ph, pw in cands:
        if ph * pw < 2 or hin % ph or win % pw:
            continue
        blocks = w.reshape(w.shape[0], c, hin // ph, ph, win // pw, pw)
        if np.all(blocks == blocks[:, :, :, :1, :, :1]):
            return (ph, pw)
    return None


def unfold_pool(syn: Synapse, src_shape: tuple[int, ...], pool: tuple[int, int]
                ) -> tuple[Synapse, tuple[int, ...]]:
    """Split ``syn`` into a ``pool`` sum pool and the synapse after it.

    Returns:
        ``(synapse, pooled_shape)``: the synapse reading the sum-pooled map (same integer
        weights, one per block), and the pooled map's shape. ``syn`` applied to ``s`` equals
        the returned synapse applied to ``sum_pool(s, pool)``, exactly.
    """
    ph, pw = pool
    c, hin, win = src_shape
    pooled = (c, hin // ph, win // pw)
    w = syn.weight
    if syn.kind == "conv":
        kh, kw = syn.kernel_size
        small = w.reshape(w.shape[0], w.shape[1], kh // ph, ph, kw // pw, pw)[:, :, :, 0, :, 0]
        return Synapse(syn.source, "conv", small,
                       stride=(syn.stride[0] // ph, syn.stride[1] // pw),
                       padding=(syn.padding[0] // ph, syn.padding[1] // pw),
                       groups=syn.groups), pooled
    small = w.reshape(w.shape[0], c, hin // ph, ph, win // pw, pw)[:, :, :, 0, :, 0]
    return Synapse(syn.source, "dense", small.reshape(w.shape[0], -1)), pooled


def _conv_np(x: np.ndarray, syn: Synapse) -> np.ndarray:
    """A synapse applied to a batch ``x`` of ``(B, C, H, W)`` (or ``(B, N)``) maps, int64."""
    w = syn.weight.astype(np.int64)
    if syn.kind == "dense":
        return x.reshape(x.shape[0], -1).astype(np.int64) @ w.T
    ph, pw = syn.padding
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    kh, kw = syn.kernel_size
    dh, dw = syn.dilation
    win = np.lib.stride_tricks.sliding_window_view(
        xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    win = win[:, :, ::syn.stride[0], ::syn.stride[1], ::dh, ::dw]
    g, cig = syn.groups, w.shape[1]
    cog = w.shape[0] // g
    outs = [np.einsum("bchwij,ocij->bohw", win[:, k * cig:(k + 1) * cig],
                      w[k * cog:(k + 1) * cog]) for k in range(g)]
    return np.concatenate(outs, axis=1)


def compare_unfolded_pools(net: IntegerNetwork, spikes: Sequence[np.ndarray]) -> dict[str, dict]:
    """Input currents of each pool-folded synapse, as exported and as sum pool + smaller
    synapse, on recorded spike trains.

    Identical currents at every step mean identical spikes downstream, so the network with
    separate sum-pool layers has exactly the accuracy of the exported one on these samples.

    Args:
        net: the integer network.
        spikes: per hidden layer ``(N, T, *shape)`` spike trains (``record="spikes"``).

    Returns:
        ``{layer name: {"pool", "source", "entries", "differing"}}`` for each synapse from a
        hidden layer that factors through a pool (synapses from the input are skipped).
    """
    out = {}
    for layer in net.layers:
        for syn in layer.synapses:
            if syn.source == INPUT:
                continue
            src = net.source_shape(syn.source)
            pool = pool_factor(syn, src)
            if pool is None:
                continue
            s = np.asarray(spikes[syn.source])
            x = s.reshape((-1,) + tuple(src))
            small, _ = unfold_pool(syn, src, pool)
            c, h, w = src
            summed = x.reshape(x.shape[0], c, h // pool[0], pool[0], w // pool[1],
                               pool[1]).sum(axis=(3, 5), dtype=np.int64)
            a, b = _conv_np(x, syn), _conv_np(summed, small)
            out[layer.name] = {"pool": pool, "source": net.layers[syn.source].name,
                               "entries": int(a.size), "differing": int(np.sum(a != b))}
    return out


@dataclass(frozen=True)
class PoolFold:
    """The cost of a pool folded into a layer, and the alternative of an own sum-pool layer.

    Attributes:
        pool: ``(pH, pW)``.
        folded_fan_in: largest fan-in of the layer as exported (pool folded).
        unfolded_fan_in: largest fan-in of the layer reading a separate sum-pool layer.
        folded_synapses: synapses of the layer as exported.
        unfolded_synapses: synapses of the smaller layer plus those of the pool layer.
        pool_neurons: neurons of the separate sum-pool layer (one per pooled value).
        folded_fits, unfolded_fits: whether the largest fan-in fits the chip's input-axon
            limit (``None`` where that limit is not public).
    """

    source: str
    pool: tuple[int, int]
    folded_fan_in: int
    unfolded_fan_in: int
    folded_synapses: int
    unfolded_synapses: int
    pool_neurons: int
    folded_fits: bool | None
    unfolded_fits: bool | None


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    """A per-core limit a layer breaks.

    Attributes:
        layer: layer name.
        limit: limit key (``input_axons``, ...).
        value: what the layer needs (on one core for ``severity="split"``; for one neuron,
            which cannot be split, for ``severity="error"``).
        allowed: the limit.
        severity: ``"split"`` (the placement splits the layer over cores) or ``"error"``
            (no split helps: the network must change).
        advice: what to do.
    """

    layer: str
    limit: str
    value: int
    allowed: int
    severity: str
    advice: str


@dataclass(frozen=True)
class LayerResources:
    """Resources and placement of one layer (see the module docstring for the model).

    Attributes:
        kind: the kinds of its incoming synapses (``conv+conv`` for a residual layer).
        fan_in_max, fan_in_mean: input axons per neuron; ``fan_out_*`` synapses per neuron
            into its consumers (0 for the output layer).
        weight_bits, sign_mode: weight precision and sign mode as exported (stored values
            ``2 q``, ``q`` signed 8-bit, mixed sign mode); ``weight_bits_used``: bits the
            largest ``|q|`` needs, sign included.
        memory_dense_bits: ``synapses * (weight_bits + index_bits)``; ``memory_shared_bits``
            the same with each conv kernel stored once (``None`` without a conv synapse).
        cores_by_limit: cores each per-core limit asks for (``None``: no split fits).
        binding: the limit asking for the most cores; ``cores`` what the placement uses.
        first_core: global index of its first core; ``*_per_core``: largest over its cores.
        messages_per_spike: destination cores a spike is sent to (spike-weighted mean);
            ``hops_per_spike``: summed mesh hops of those messages.
        spikes_per_step, messages_per_step: measured means per sample step (with a run);
            ``messages_per_core_step``: per destination core, mean and ``_max``.
        pool_fold: the folded pool and its unfolded alternative, if any.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    neurons: int
    fan_in_max: int
    fan_in_mean: float
    fan_out_max: int
    fan_out_mean: float
    synapses: int
    weight_bits: int
    weight_bits_used: int
    sign_mode: str
    memory_dense_bits: int
    memory_shared_bits: int | None
    cores_by_limit: dict[str, int | None]
    binding: str
    cores: int
    neurons_per_core: int
    first_core: int
    input_axons_per_core: int
    output_axons_per_core: int
    memory_per_core_bits: int
    messages_per_spike: float
    hops_per_spike: float
    spikes_per_step: float | None = None
    messages_per_step: float | None = None
    messages_per_core_step: float | None = None
    messages_per_core_step_max: float | None = None
    pool_fold: PoolFold | None = None


@dataclass(frozen=True)
class ResourceReport:
    """Resources of a network on one chip type (:func:`map_resources`).

    Attributes:
        chip: ``"loihi1"`` or ``"loihi2"``.
        limits: the limits used, with sources.
        layers: one :class:`LayerResources` per layer.
        cores: cores of the placement (one layer per core).
        chips: chips needed (cores, and chip-level neuron/synapse totals where published).
        violations: every per-core limit broken (split or error).
        energy: Loihi 1 energy with hops = 0 and with the placement's hops (per sample), or
            ``None`` without a run.
        traffic_source: where the spike counts come from (``None``: no run).
        notes: statements the reader needs (limits not public, what is not modelled).
    """

    chip: str
    limits: tuple[hw.HardwareLimit, ...]
    layers: tuple[LayerResources, ...]
    cores: int
    chips: int
    violations: tuple[Violation, ...]
    energy: dict | None = None
    traffic_source: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def errors(self) -> tuple[Violation, ...]:
        """Violations no split can fix."""
        return tuple(v for v in self.violations if v.severity == "error")

    @property
    def fits(self) -> bool:
        """True when every layer can be placed within every public per-core limit."""
        return not self.errors

    def to_dict(self) -> dict:
        return {
            "chip": self.chip,
            "fits": self.fits,
            "cores": self.cores,
            "chips": self.chips,
            "neurons": sum(la.neurons for la in self.layers),
            "synapses": sum(la.synapses for la in self.layers),
            "limits": [asdict(limit) for limit in self.limits],
            "layers": [asdict(la) for la in self.layers],
            "violations": [asdict(v) for v in self.violations],
            "energy": self.energy,
            "traffic_source": self.traffic_source,
            "notes": list(self.notes),
        }


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
        for syn in layer.synapses:
            if syn.kind == "dense":
                self.dense += int(syn.weight.shape[1])
                continue
            src = net.source_shape(syn.source)
            kh, kw = syn.kernel_size
            rows = _taps(src[1], self.h, kh, syn.stride[0], syn.padding[0], syn.dilation[0])
            cols = _taps(src[2], self.w, kw, syn.stride[1], syn.padding[1], syn.dilation[1])
            cog = self.c // syn.groups
            self.convs.append((syn.groups, int(syn.weight.shape[1]), cog, src, rows, cols))

    def max_axons(self, n: int) -> int:
        """Largest input-axon count over the chunks of ``n`` neurons."""
        total_n = self.c * self.h * self.w
        best = 0
        for a in range(0, total_n, n):
            b = min(a + n, total_n)
            best = max(best, self.axons(a, b))
        return best

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
    kh, kw = syn.kernel_size
    rows = _taps(hin, h, kh, syn.stride[0], syn.padding[0], syn.dilation[0])
    cols = _taps(win, w, kw, syn.stride[1], syn.padding[1], syn.dilation[1])
    out_rows: list[list[int]] = [[] for _ in range(hin)]
    out_cols: list[list[int]] = [[] for _ in range(win)]
    for o, r in enumerate(rows):
        for i in r:
            out_rows[i].append(o)
    for o, q in enumerate(cols):
        for i in q:
            out_cols[i].append(o)
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


def _tile_xy(core: np.ndarray, limits: dict, chips: int) -> tuple[np.ndarray, np.ndarray]:
    """Mesh coordinates of the router tile of each global core index."""
    per_chip = limits["cores_per_chip"].value
    per_tile = limits["cores_per_tile"].value
    width = limits["mesh_width"].value
    height = math.ceil(per_chip / per_tile / width)
    row = max(math.ceil(math.sqrt(chips)), 1)  # chips on a near-square grid
    chip, local = np.divmod(np.asarray(core), per_chip)
    tile = local // per_tile
    return (chip % row) * width + tile % width, (chip // row) * height + tile // width


def _largest_n(cap: int, ok) -> int | None:
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


# --------------------------------------------------------------------------------------
# The mapping
# --------------------------------------------------------------------------------------


def _advice(limit: str, severity: str, cores: int, pool: PoolFold | None) -> str:
    if severity == "split":
        return f"split the layer over {cores} cores (the placement does)"
    if limit == "input_axons":
        text = ("one neuron needs more input axons than a core has, so no split of the layer "
                "helps: reduce the fan-in (fewer input channels, a smaller kernel, or split the "
                "input channels into partial-sum layers)")
        if pool is not None:
            text += (f"; or keep the {pool.pool[0]}x{pool.pool[1]} pool from "
                     f"{pool.source} as its own sum-pool layer (fan-in {pool.unfolded_fan_in}"
                     f"{', fits' if pool.unfolded_fits else ', still too large'})")
        return text
    if limit == "output_axons":
        return ("one neuron reaches more destination cores than a core has output axons: "
                "use fewer, larger destination cores or reduce the fan-out")
    return ("one neuron's synapses exceed a core's synaptic memory: reduce the fan-in or the "
            "weight bits")


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


def map_resources(
    net: IntegerNetwork,
    chip: str = "loihi1",
    *,
    ops: OpCounts | None = None,
    neuron_counts: Sequence[np.ndarray] | None = None,
    constants: EnergyConstants | None = None,
) -> ResourceReport:
    """Per-layer resources, per-core limits, a greedy placement, hops and spike traffic.

    Args:
        net: the integer network.
        chip: ``"loihi1"`` or ``"loihi2"`` (:data:`qcfs_lava.hardware.CHIP_LIMITS`).
        ops: operation counts of a run of ``net`` (:func:`~qcfs_lava.analysis.counts.
            count_ops`): spikes per step per layer and the Loihi 1 energy with hops.
        neuron_counts: per hidden layer, the spike count of each neuron summed over the
            samples (shape of the layer) or per sample (``(N, *shape)``): weights the hops
            and messages per spike by which neurons fire. Without it every neuron of a layer
            counts the same.
        constants: energy constants (the published defaults when ``None``).

    Returns:
        The :class:`ResourceReport`.

    Raises:
        AnalysisError: an unknown chip, or counts that do not belong to ``net``.
    """
    try:
        limits = hw.chip_limits(chip)
    except ValueError as exc:
        raise AnalysisError(f"resources: {exc}") from None
    if ops is not None and [la.name for la in ops.layers] != [la.name for la in net.layers]:
        raise AnalysisError("resources: the operation counts are not of this network's layers; "
                            "count a run of this network")
    hidden = net.layers[:-1]
    weights = _neuron_weights(net, neuron_counts)
    lim = {k: limits[k].value for k in _PER_CORE if k in limits}
    cap = lim["compartments"]
    n_layers = len(net.layers)
    consumers: list[list[tuple[int, Synapse]]] = [[] for _ in range(n_layers)]
    for i, layer in enumerate(net.layers):
        for syn in layer.synapses:
            if syn.source != INPUT:
                consumers[syn.source].append((i, syn))

    n_core: list[int] = [0] * n_layers
    by_limit: list[dict] = [{} for _ in range(n_layers)]
    reached: list[list] = [[] for _ in range(n_layers)]
    infeasible: list[dict] = [{} for _ in range(n_layers)]
    fan_in_pm: list[np.ndarray] = [None] * n_layers  # type: ignore[list-item]
    msgs_pm: list[np.ndarray] = [None] * n_layers  # type: ignore[list-item]

    # size layers from the last to the first (output axons depend on the consumers)
    for i in range(n_layers - 1, -1, -1):
        layer = net.layers[i]
        n = layer.num_neurons
        fan_in_pm[i] = _position_major(layer_fan_in(net, i), layer.shape)
        msgs = np.zeros(n, dtype=np.int64)
        for d, syn in consumers[i]:
            key, sets = _reached(net, syn, d, n_core[d])
            reached[i].append((d, key, sets))
            msgs += np.array([len(s) for s in sets], dtype=np.int64)[key]
        msgs_pm[i] = msgs
        cands: dict[str, int | None] = {"compartments": min(cap, n)}
        top = min(cap, n)
        if lim.get("input_axons"):
            union = _AxonUnion(net, i)
            cands["input_axons"] = _largest_n(top, lambda m, u=union: u.max_axons(m)
                                              <= lim["input_axons"])
            if cands["input_axons"] is None:
                infeasible[i]["input_axons"] = int(fan_in_pm[i].max())
        if lim.get("output_axons") and consumers[i]:
            cands["output_axons"] = _largest_n(
                top, lambda m, f=msgs: _chunk_sums(f, m).max() <= lim["output_axons"])
            if cands["output_axons"] is None:
                infeasible[i]["output_axons"] = int(msgs.max())
        if lim.get("synaptic_memory_bits"):
            def mem_ok(m, f=fan_in_pm[i]):
                bits = hw.WEIGHT_PRECISION_BITS + hw.synapse_index_bits(m)
                return _chunk_sums(f, m).max() * bits <= lim["synaptic_memory_bits"]
            cands["synaptic_memory_bits"] = _largest_n(top, mem_ok)
            if cands["synaptic_memory_bits"] is None:
                infeasible[i]["synaptic_memory_bits"] = int(fan_in_pm[i].max()) * (
                    hw.WEIGHT_PRECISION_BITS + hw.synapse_index_bits(1))
        if lim.get("synapses_per_core"):
            cands["synapses_per_core"] = _largest_n(
                top, lambda m, f=fan_in_pm[i]: _chunk_sums(f, m).max() <= lim["synapses_per_core"])
            if cands["synapses_per_core"] is None:
                infeasible[i]["synapses_per_core"] = int(fan_in_pm[i].max())
        feasible = [v for v in cands.values() if v is not None]
        n_core[i] = math.ceil(n / math.ceil(n / min(feasible)))  # equal chunks
        by_limit[i] = {k: (None if v is None else math.ceil(n / v)) for k, v in cands.items()}

    # global cores, in network order
    first = np.concatenate([[0], np.cumsum([math.ceil(la.num_neurons / n_core[i])
                                            for i, la in enumerate(net.layers)])])
    total_cores = int(first[-1])
    n_chips = math.ceil(total_cores / limits["cores_per_chip"].value)

    rows = []
    violations: list[Violation] = []
    steps = ops.steps if ops is not None else None
    for i, layer in enumerate(net.layers):
        n = layer.num_neurons
        k = math.ceil(n / n_core[i])
        src_core = first[i] + np.arange(n) // n_core[i]
        w = weights[i] if i < len(hidden) else np.ones(n)
        hops = np.zeros(n)
        inbound_total = 0.0
        inbound_max = 0.0
        dest_cores = 0
        for d, key, sets in reached[i]:
            inbound = np.zeros(math.ceil(net.layers[d].num_neurons / n_core[d]))
            sx, sy = _tile_xy(src_core, limits, n_chips)
            order = np.argsort(key, kind="stable")
            bounds = np.searchsorted(key[order], np.arange(len(sets) + 1))
            for kidx, s in enumerate(sets):
                members = order[bounds[kidx]:bounds[kidx + 1]]
                if not len(members) or not len(s):
                    continue
                dx, dy = _tile_xy(first[d] + s, limits, n_chips)
                hops[members] += (np.abs(sx[members, None] - dx[None, :])
                                  + np.abs(sy[members, None] - dy[None, :])).sum(axis=1)
                inbound[s] += w[members].sum()
            inbound_total += inbound.sum()
            inbound_max = max(inbound_max, inbound.max(initial=0.0))
            dest_cores += len(inbound)
        wsum = w.sum()
        msg_per_spike = float((w * msgs_pm[i]).sum() / wsum) if wsum else 0.0
        hop_per_spike = float((w * hops).sum() / wsum) if wsum else 0.0

        spikes_step = msgs_step = core_step = core_step_max = None
        if ops is not None and layer.spiking:
            spikes_step = ops.layers[i].spikes / max(ops.num_samples * steps, 1)
            msgs_step = spikes_step * msg_per_spike
            if dest_cores and inbound_total:
                core_step = msgs_step / dest_cores
                core_step_max = msgs_step * inbound_max / inbound_total

        fan_in = fan_in_pm[i]
        synapses = int(fan_in.sum())
        bits = hw.WEIGHT_PRECISION_BITS + hw.synapse_index_bits(n_core[i])
        convs = [s for s in layer.synapses if s.kind == "conv"]
        shared = (int(sum(s.weight.size for s in convs)) * bits
                  + sum(int(s.weight.shape[1]) * n for s in layer.synapses
                        if s.kind == "dense") * bits) if convs else None
        fo = (np.zeros(n, dtype=np.int64) if not consumers[i] else
              sum(synapse_fan_out(s, layer.shape).ravel() for _, s in consumers[i]))
        pool = _pool_fold(net, i, lim.get("input_axons"))
        union_core = _AxonUnion(net, i).max_axons(n_core[i]) if lim.get("input_axons") else 0
        binding = max(by_limit[i], key=lambda k_: (by_limit[i][k_] or 0,
                                                    k_ == "compartments"))
        rows.append(LayerResources(
            name=layer.name,
            kind="+".join(s.kind for s in layer.synapses),
            shape=layer.shape,
            neurons=n,
            fan_in_max=int(fan_in.max()),
            fan_in_mean=float(fan_in.mean()),
            fan_out_max=int(np.max(fo)),
            fan_out_mean=float(np.mean(fo)),
            synapses=synapses,
            weight_bits=hw.WEIGHT_PRECISION_BITS,
            weight_bits_used=_weight_bits_used(layer),
            sign_mode=_sign_mode(layer),
            memory_dense_bits=synapses * bits,
            memory_shared_bits=shared,
            cores_by_limit=by_limit[i],
            binding=binding,
            cores=k,
            neurons_per_core=n_core[i],
            first_core=int(first[i]),
            input_axons_per_core=int(union_core),
            output_axons_per_core=int(_chunk_sums(msgs_pm[i], n_core[i]).max()),
            memory_per_core_bits=int(_chunk_sums(fan_in, n_core[i]).max()) * bits,
            messages_per_spike=msg_per_spike,
            hops_per_spike=hop_per_spike,
            spikes_per_step=spikes_step,
            messages_per_step=msgs_step,
            messages_per_core_step=core_step,
            messages_per_core_step_max=core_step_max,
            pool_fold=pool,
        ))
        violations += _violations(layer.name, n, lim, infeasible[i], by_limit[i], pool,
                                  whole=(n, _AxonUnion(net, i).axons(0, n)
                                         if lim.get("input_axons") else 0,
                                         int(msgs_pm[i].sum()),
                                         synapses * (hw.WEIGHT_PRECISION_BITS
                                                     + hw.synapse_index_bits(n)), synapses))

    chips = n_chips
    notes = [f"{limit.key}: {limit.source}" for limit in limits.values()
             if limit.status == "not public"]
    if "neurons_per_chip" in limits:
        neurons = sum(la.num_neurons for la in net.layers)
        synapses = sum(r.synapses for r in rows)
        chips = max(chips, math.ceil(neurons / limits["neurons_per_chip"].value),
                    math.ceil(synapses / limits["synapses_per_chip"].value))
    notes.append("input pixels are injected from the host and are not placed; their "
                 "traffic and hops are not counted")
    if chip != "loihi1":
        notes.append("synaptic memory in bits uses Loihi 1's synapse encoding (nengo-loihi); "
                     "it is shown for comparison and not checked")
    energy = None
    if ops is not None:
        if chip == "loihi1":
            energy = _energy(ops, rows, constants)
        else:
            notes.append("energy with hops is modelled for Loihi 1 only (no public Loihi 2 "
                         "per-operation energies)")
    return ResourceReport(
        chip=chip,
        limits=tuple(limits.values()),
        layers=tuple(rows),
        cores=total_cores,
        chips=chips,
        violations=tuple(violations),
        energy=energy,
        traffic_source=None if ops is None else (
            f"measured: {ops.num_samples} samples x T = {ops.steps}"
            + ("" if neuron_counts is not None else "; hops and messages per spike weight "
               "every neuron of a layer equally")),
        notes=tuple(notes),
    )


def _neuron_weights(net: IntegerNetwork, neuron_counts) -> list[np.ndarray]:
    """Per hidden layer, a weight per neuron (position-major) for per-spike averages."""
    hidden = net.layers[:-1]
    if neuron_counts is None:
        return [np.ones(la.num_neurons) for la in hidden]
    if len(neuron_counts) != len(hidden):
        raise AnalysisError(f"resources: {len(neuron_counts)} neuron count arrays for "
                            f"{len(hidden)} hidden layers")
    out = []
    for la, c in zip(hidden, neuron_counts, strict=True):
        c = np.asarray(c, dtype=np.float64)
        if c.shape != la.shape:
            if c.shape[1:] != la.shape:
                raise AnalysisError(f"resources: neuron counts of {la.name!r} have shape "
                                    f"{c.shape}, expected {la.shape} or (N, *{la.shape})")
            c = c.sum(axis=0)
        out.append(_position_major(c, la.shape))
    return out


def _pool_fold(net: IntegerNetwork, index: int, axon_limit: int | None) -> PoolFold | None:
    layer = net.layers[index]
    for syn in layer.synapses:
        src = net.source_shape(syn.source)
        pool = pool_factor(syn, src)
        if pool is None:
            continue
        small, pooled = unfold_pool(syn, src, pool)
        area = pool[0] * pool[1]
        folded = layer_fan_in(net, index)
        others = folded - _synapse_fan_in(syn, src, layer.shape)
        unfolded = others + _synapse_fan_in(small, pooled, layer.shape)
        pool_neurons = int(np.prod(pooled))
        unfolded_fan_in = max(int(unfolded.max()), area)
        name = "the input" if syn.source == INPUT else net.layers[syn.source].name
        return PoolFold(
            source=name,
            pool=pool,
            folded_fan_in=int(folded.max()),
            unfolded_fan_in=unfolded_fan_in,
            folded_synapses=int(folded.sum()),
            unfolded_synapses=int(unfolded.sum()) + pool_neurons * area,
            pool_neurons=pool_neurons,
            folded_fits=None if axon_limit is None else int(folded.max()) <= axon_limit,
            unfolded_fits=None if axon_limit is None else unfolded_fan_in <= axon_limit,
        )
    return None


def _synapse_fan_in(syn: Synapse, src: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Fan-in of every neuron through one synapse (layer shape)."""
    if syn.kind == "dense":
        return np.full(shape, int(syn.weight.shape[1]), dtype=np.int64)
    c, h, w = _as_chw(shape)
    kh, kw = syn.kernel_size
    th = _taps(src[1], h, kh, syn.stride[0], syn.padding[0], syn.dilation[0])
    tw = _taps(src[2], w, kw, syn.stride[1], syn.padding[1], syn.dilation[1])
    per = np.outer([len(t) for t in th], [len(t) for t in tw]) * int(syn.weight.shape[1])
    return np.broadcast_to(per[None], (c, h, w)).reshape(shape).astype(np.int64)


def _violations(name, n, lim, infeasible, by_limit, pool, whole) -> list[Violation]:
    neurons, axons, out_axons, mem_bits, synapses = whole
    value = {"compartments": neurons, "input_axons": axons, "output_axons": out_axons,
             "synaptic_memory_bits": mem_bits, "synapses_per_core": synapses}
    out = []
    for key in _PER_CORE:
        allowed = lim.get(key)
        if not allowed:
            continue
        if key in infeasible:
            out.append(Violation(name, key, infeasible[key], allowed, "error",
                                 _advice(key, "error", 0, pool)))
        elif value[key] > allowed:
            out.append(Violation(name, key, value[key], allowed, "split",
                                 _advice(key, "split", by_limit.get(key) or 1, pool)))
    return out


def _energy(ops: OpCounts, rows: list[LayerResources], constants: EnergyConstants | None
            ) -> dict:
    c = constants or EnergyConstants()
    base = estimate_energy(ops, replace(c, loihi1_hops_per_spike=0.0))
    n = max(ops.num_samples, 1)
    layers = []
    for la, e, r in zip(ops.layers, base.layers, rows, strict=True):
        hop_pj = c.loihi1_hop_pj * la.spikes * r.hops_per_spike
        layers.append({"name": la.name, "hops_per_spike": r.hops_per_spike,
                       "hops0_nj": e.loihi1_pj / n / 1e3,
                       "placed_nj": (e.loihi1_pj + hop_pj) / n / 1e3})
    return {
        "per_sample_uj_hops0": sum(la["hops0_nj"] for la in layers) / 1e3,
        "per_sample_uj_placed": sum(la["placed_nj"] for la in layers) / 1e3,
        "hop_pj": c.loihi1_hop_pj,
        "layers": layers,
        "note": "estimates: counts x published per-operation energies (Davies et al. 2018); "
                "hops from the greedy placement",
    }


# --------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------


def _kbits(bits: int | None) -> str:
    return "-" if bits is None else f"{bits / 1024:.0f}"


def _cores_cell(r: LayerResources) -> str:
    parts = []
    for k, v in r.cores_by_limit.items():
        short = {"compartments": "cx", "input_axons": "in", "output_axons": "out",
                 "synaptic_memory_bits": "mem", "synapses_per_core": "syn"}[k]
        parts.append(f"{short} {'X' if v is None else v}")
    return " / ".join(parts)


def format_resources_markdown(rep: ResourceReport, *, heading: str = "##") -> str:
    """The report as Markdown: limits, per-layer table, pools, traffic, violations."""
    lim = {limit.key: limit for limit in rep.limits}
    lines = [
        f"{heading} Resources on {rep.chip} (greedy placement, one layer per core)",
        "",
        f"**{rep.cores} cores, {rep.chips} chip(s)**; "
        + ("every layer fits the public per-core limits."
           if rep.fits else f"**{len(rep.errors)} limit(s) no split can fix** (below)."),
        "",
        f"{sum(r.neurons for r in rep.layers):,} neurons, "
        f"{sum(r.synapses for r in rep.layers):,} synapses; synaptic memory "
        f"{sum(r.memory_dense_bits for r in rep.layers) / 2**20:,.1f} Mibit stored densely "
        "(what the core counts use), at least "
        f"{sum(r.memory_shared_bits or r.memory_dense_bits for r in rep.layers) / 2**20:,.1f}"
        " Mibit with shared conv kernels.",
        "",
        "| layer | kind | neurons | fan-in max | fan-out max | synapses | weights | "
        "memory dense / shared (Kibit) | cores by limit | binds | cores |",
        "|---|---|---:|---:|---:|---:|---|---:|---|---|---:|",
    ]
    for r in rep.layers:
        lines.append(
            f"| {r.name} | {r.kind} | {r.neurons} | {r.fan_in_max} | {r.fan_out_max} | "
            f"{r.synapses} | {r.weight_bits}-bit {r.sign_mode} | "
            f"{_kbits(r.memory_dense_bits)} / {_kbits(r.memory_shared_bits)} | "
            f"{_cores_cell(r)} | {r.binding} | {r.cores} |"
        )
    lines += [
        "",
        "cores by limit: cx compartments, in input axons, out output axons, mem synaptic "
        "memory (dense storage), syn synapses per core; X: no split fits (a single neuron "
        "breaks the limit). Shared: each conv kernel stored once (lower bound).",
    ]
    pools = [r for r in rep.layers if r.pool_fold is not None]
    if pools:
        lines += [
            "",
            "Average pools folded into the next layer (exact), and the alternative of a "
            "separate sum-pool layer:",
            "",
            "| layer | pool (from) | fan-in folded | fan-in unfolded | synapses folded | "
            "synapses unfolded (+pool) | pool neurons | fits folded / unfolded |",
            "|---|---|---:|---:|---:|---:|---:|---|",
        ]
        for r in pools:
            p = r.pool_fold

            def yn(v):
                return "n/a" if v is None else ("yes" if v else "**no**")

            lines.append(
                f"| {r.name} | {p.pool[0]}x{p.pool[1]} ({p.source}) | {p.folded_fan_in} | "
                f"{p.unfolded_fan_in} | {p.folded_synapses} | {p.unfolded_synapses} | "
                f"{p.pool_neurons} | {yn(p.folded_fits)} / {yn(p.unfolded_fits)} |"
            )
        lines += [
            "",
            "The separate pool layer sums up to pH x pW binary spikes per step, so it is exact "
            "only with graded spikes (Loihi 2); the layer after it keeps the same integer "
            "weights, so its input current, and the network's accuracy, are identical to the "
            "folded network's.",
        ]
    lines += [
        "",
        "Placement and traffic"
        + (f" ({rep.traffic_source})" if rep.traffic_source else " (no run: structure only)")
        + ":",
        "",
        "| layer | cores | first core | neurons/core | in-axons/core | out-axons/core | "
        "memory/core (Kibit) | messages/spike | hops/spike | spikes/step | "
        "messages/step | per dest. core/step (mean / max) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rep.layers:
        def f(v, fmt="{:.1f}"):
            return "-" if v is None else fmt.format(v)

        lines.append(
            f"| {r.name} | {r.cores} | {r.first_core} | {r.neurons_per_core} | "
            f"{r.input_axons_per_core} | {r.output_axons_per_core} | "
            f"{_kbits(r.memory_per_core_bits)} | {r.messages_per_spike:.1f} | "
            f"{r.hops_per_spike:.1f} | {f(r.spikes_per_step)} | {f(r.messages_per_step)} | "
            f"{f(r.messages_per_core_step)} / {f(r.messages_per_core_step_max)} |"
        )
    if rep.energy is not None:
        e = rep.energy
        lines += [
            "",
            f"Loihi 1 energy per sample (estimate): **{e['per_sample_uj_hops0']:.3f} uJ with "
            f"hops = 0**, **{e['per_sample_uj_placed']:.3f} uJ with the placement's hops** "
            f"({e['hop_pj']:g} pJ per hop).",
            "",
            "| layer | hops/spike | hops = 0 (nJ) | placed (nJ) |",
            "|---|---:|---:|---:|",
        ]
        for la in e["layers"]:
            lines.append(f"| {la['name']} | {la['hops_per_spike']:.1f} | {la['hops0_nj']:.3f} "
                         f"| {la['placed_nj']:.3f} |")
    lines += ["", "Violations (per-core limits; errors first):", ""]
    if rep.violations:
        lines += ["| layer | limit | value | allowed | what to do |", "|---|---|---:|---:|---|"]
        for v in sorted(rep.violations, key=lambda v: v.severity != "error"):
            mark = "**error**: " if v.severity == "error" else ""
            lines.append(f"| {v.layer} | {v.limit} | {v.value} | {v.allowed} | "
                         f"{mark}{v.advice} |")
    else:
        lines.append("none")
    lines += ["", "Limits:", "", "| limit | value | scope | status | source |",
              "|---|---:|---|---|---|"]
    for limit in lim.values():
        val = "not public" if limit.value is None else f"{limit.value:,}"
        lines.append(f"| {limit.key} | {val} | {limit.scope} | {limit.status} | "
                     f"{limit.source} |")
    if rep.notes:
        lines += [""] + [f"- {note}" for note in rep.notes]
    return "\n".join(lines)


def format_resources_text(rep: ResourceReport) -> str:
    """The report for a terminal (the same content as :func:`format_resources_markdown`)."""
    return format_resources_markdown(rep, heading="#")
