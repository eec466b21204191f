"""The pool-fold study: average pools folded into the next layer, and the alternative.

The converter folds a ``pH x pW`` stride-``p`` average pool into the layer after it. Such a
synapse equals a separate sum pool followed by a smaller synapse with the same integer
weights, exactly; this module finds such synapses, splits them, checks the split on recorded
spike trains, and sizes both forms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qcfs_lava.analysis.resources.sizing import _synapse_fan_in, layer_fan_in
from qcfs_lava.network import INPUT, IntegerNetwork, Synapse


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
        return _conv_pool_factor(syn, hin, win)
    c = src_shape[0]
    cands = [(hin, win)] + [(p, p) for p in range(min(hin, win) // 2, 1, -1)]
    for ph, pw in cands:
        if ph * pw < 2 or hin % ph or win % pw:
            continue
        if _blocks_constant(w.reshape(w.shape[0], c, hin // ph, ph, win // pw, pw)):
            return (ph, pw)
    return None


def _conv_pool_factor(syn: Synapse, hin: int, win: int) -> tuple[int, int] | None:
    if syn.dilation != (1, 1):
        return None
    w = syn.weight
    kh, kw = syn.kernel_size
    for ph, pw in [(p, p) for p in range(min(syn.stride), 1, -1)]:
        if (kh % ph or kw % pw or syn.stride[0] % ph or syn.stride[1] % pw
                or syn.padding[0] % ph or syn.padding[1] % pw or hin % ph or win % pw):
            continue
        if _blocks_constant(w.reshape(w.shape[0], w.shape[1], kh // ph, ph, kw // pw, pw)):
            return (ph, pw)
    return None


def _blocks_constant(blocks: np.ndarray) -> bool:
    """Whether a ``(O, I, h, pH, w, pW)`` weight view is constant over each pool block."""
    return bool(np.all(blocks == blocks[:, :, :, :1, :, :1]))


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


def _pool_fold(net: IntegerNetwork, index: int, axon_limit: int | None) -> PoolFold | None:
    """The first pool folded into layer ``index``, sized both ways, or ``None``."""
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
