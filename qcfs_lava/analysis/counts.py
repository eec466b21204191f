"""Exact operation counts of an integer spiking network run (``docs/contract.md``, section 5).

Everything here is numpy only and works on an :class:`~qcfs_lava.network.IntegerNetwork` and
the :class:`~qcfs_lava.results.SpikeRunResult` of a run of it (emulator or Lava).

Definitions, per sample, for a network run for ``T`` steps:

- **fan-out** of a neuron ``j`` of a source (the input or a hidden layer): the number of
  synapses leaving it, structurally (a zero weight is still a synapse). Dense: ``out_features``.
  Conv: the number of ``(output channel, output position)`` pairs whose receptive field
  contains ``j``, with borders, stride, padding, dilation and groups counted exactly::

      fan_out(c, y, x) = (C_out / groups) * n_H(y) * n_W(x)
      n_H(y) = #{(o, k) : 0 <= o < H_out, 0 <= k < kH, o * stride - pad + k * dil = y}

  A source feeding several synapses (a residual fork) has the sum of their fan-outs.
- **SynOps** of layer ``l`` (the layer the synapses feed): ``sum_k sum_j c_j * f_kj`` over its
  incoming synapses ``k`` from hidden layers, with ``c_j`` the spike count of source neuron
  ``j`` over the ``T`` steps and ``f_kj`` its fan-out through synapse ``k``.
- **input MACs**: a synapse from the input receives dense graded values every step; it costs
  ``T * sum_j f_kj`` multiply-accumulates, whatever the pixel values.
- **neuron updates** of layer ``l``: ``neurons_l * T``; the *active* ones are the updates in
  which the neuron fires (``= spikes``), the rest are *inactive*.
- **ANN MACs**: one forward pass of the equivalent ANN: ``sum_k sum_j f_kj`` over every
  synapse, the input's included. **ANN activation density** of a hidden layer: fraction of
  its activations that are nonzero, estimated by the fraction of neurons that spiked at least
  once (``c_j > 0``, the SNN's rate is its activation) unless an ANN pass provides it.
- **latency**: ``T + net.latency`` steps from the first input to the last output integration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from qcfs_lava.errors import AnalysisError
from qcfs_lava.geometry import conv_output_shape
from qcfs_lava.network import INPUT, IntegerNetwork, Synapse
from qcfs_lava.results import SpikeRunResult

__all__ = [
    "LayerOpCounts",
    "OpCounts",
    "count_ops",
    "fan_out",
    "synapse_fan_out",
]


def _axis_hits(n_in: int, n_out: int, kernel: int, stride: int, pad: int, dil: int) -> np.ndarray:
    """How many (output index, kernel tap) pairs read each input index along one axis."""
    o = np.arange(n_out)[:, None]
    k = np.arange(kernel)[None, :]
    idx = (o * stride - pad + k * dil).ravel()
    idx = idx[(idx >= 0) & (idx < n_in)]
    return np.bincount(idx, minlength=n_in).astype(np.int64)


def synapse_fan_out(syn: Synapse, in_shape: tuple[int, ...]) -> np.ndarray:
    """Fan-out of every source neuron through one synapse.

    Args:
        syn: the synapse.
        in_shape: shape of its source, ``(C, H, W)`` or ``(N,)``.

    Returns:
        int64 array of shape ``in_shape``: synapses leaving each source neuron.
    """
    in_shape = tuple(int(s) for s in in_shape)
    if syn.kind == "dense":
        syn.output_shape(in_shape)  # validates the sizes
        return np.full(in_shape, int(syn.weight.shape[0]), dtype=np.int64)
    c_out, _, kh, kw = (int(s) for s in syn.weight.shape)
    syn.output_shape(in_shape)  # validates channels and geometry
    h_out, w_out = conv_output_shape(in_shape[1:], (kh, kw), syn.stride, syn.padding, syn.dilation)
    n_h = _axis_hits(in_shape[1], h_out, kh, syn.stride[0], syn.padding[0], syn.dilation[0])
    n_w = _axis_hits(in_shape[2], w_out, kw, syn.stride[1], syn.padding[1], syn.dilation[1])
    per_pos = (c_out // syn.groups) * np.outer(n_h, n_w)
    return np.broadcast_to(per_pos, in_shape).copy()


def fan_out(net: IntegerNetwork, source: int) -> np.ndarray:
    """Total fan-out of every neuron of ``source`` over all synapses that read it.

    Args:
        net: the integer network.
        source: ``-1`` (:data:`~qcfs_lava.network.INPUT`) for the input, else a layer index.

    Returns:
        int64 array of the source's shape.

    Raises:
        AnalysisError: ``source`` is not the input or a layer of ``net``.
    """
    if not INPUT <= source < len(net.layers):
        raise AnalysisError(
            f"fan_out: source {source} is neither the input (-1) nor a layer index "
            f"(0..{len(net.layers) - 1})"
        )
    shape = net.source_shape(source)
    total = np.zeros(shape, dtype=np.int64)
    for layer in net.layers:
        for syn in layer.synapses:
            if syn.source == source:
                total += synapse_fan_out(syn, shape)
    return total


@dataclass(frozen=True)
class LayerOpCounts:
    """Operation counts of one layer, summed over all samples of a run.

    Attributes:
        name: layer name.
        neurons: number of neurons.
        spiking: False for the output layer (it never spikes).
        spikes: spikes emitted by the layer.
        synops: synaptic operations its incoming spike synapses performed.
        input_macs: multiply-accumulates of its synapses from the graded input.
        neuron_updates: ``neurons * T * samples``.
        active_updates: neuron updates in which a neuron fired (``= spikes``).
        ann_macs: MACs of the equivalent ANN layer (all samples).
        ann_density: fraction of nonzero activations of the ANN layer (``None`` for the
            output layer).
        firing_rate: ``spikes / (neurons * T * samples)``.
    """

    name: str
    neurons: int
    spiking: bool
    spikes: int
    synops: int
    input_macs: int
    neuron_updates: int
    active_updates: int
    ann_macs: int
    ann_density: float | None
    firing_rate: float

    @property
    def inactive_updates(self) -> int:
        return self.neuron_updates - self.active_updates


_SUMMED = ("spikes", "synops", "input_macs", "neuron_updates", "active_updates", "ann_macs")


@dataclass(frozen=True)
class OpCounts:
    """Operation counts of a run: per layer and in total, totals over samples and means.

    Attributes:
        steps: time steps ``T`` per sample.
        num_samples: samples the counts were taken over.
        latency_steps: ``T + net.latency``.
        layers: one :class:`LayerOpCounts` per layer (the output last).
    """

    steps: int
    num_samples: int
    latency_steps: int
    layers: tuple[LayerOpCounts, ...]

    def total(self, name: str) -> int:
        """Sum of one counted quantity (e.g. ``"synops"``) over layers and samples."""
        if name not in _SUMMED:
            raise AnalysisError(f"OpCounts.total: unknown quantity {name!r}; one of {_SUMMED}")
        return int(sum(getattr(layer, name) for layer in self.layers))

    def per_sample(self, name: str) -> float:
        """Mean of one quantity per sample, summed over layers."""
        return self.total(name) / max(self.num_samples, 1)

    @property
    def firing_rate(self) -> float:
        """Spikes over hidden-neuron updates, all hidden layers together."""
        hidden = [layer for layer in self.layers if layer.spiking]
        updates = sum(layer.neuron_updates for layer in hidden)
        return sum(layer.spikes for layer in hidden) / updates if updates else 0.0

    def to_dict(self) -> dict:
        """JSON-serializable: per-layer totals and per-sample means, and the network totals."""
        n = max(self.num_samples, 1)
        layers = []
        for layer in self.layers:
            row = asdict(layer)
            row["inactive_updates"] = layer.inactive_updates
            row["per_sample"] = {k: getattr(layer, k) / n for k in _SUMMED}
            layers.append(row)
        return {
            "steps": self.steps,
            "samples": self.num_samples,
            "latency_steps": self.latency_steps,
            "firing_rate": self.firing_rate,
            "total": {k: self.total(k) for k in _SUMMED},
            "per_sample": {k: self.per_sample(k) for k in _SUMMED},
            "layers": layers,
        }


def _neuron_counts(net: IntegerNetwork, result: SpikeRunResult) -> tuple[np.ndarray, ...]:
    names = tuple(layer.name for layer in net.layers)
    if tuple(result.layer_names) != names:
        raise AnalysisError(
            f"count_ops: the run's layers {list(result.layer_names)} are not the network's "
            f"{list(names)}; count a run of this network"
        )
    if result.neuron_counts is not None:
        counts = tuple(result.neuron_counts)
    elif result.spikes is not None:
        counts = tuple(np.asarray(s).sum(axis=1, dtype=np.int64) for s in result.spikes)
    else:
        raise AnalysisError(
            "count_ops: exact SynOps need per-neuron spike counts, but the run recorded "
            "neither neuron_counts nor spikes; run with record='counts'"
        )
    hidden = net.layers[:-1]
    if len(counts) != len(hidden):
        raise AnalysisError(
            f"count_ops: {len(counts)} per-neuron count arrays for {len(hidden)} hidden layers"
        )
    for layer, c in zip(hidden, counts, strict=True):
        if tuple(c.shape[1:]) != layer.shape or c.shape[0] != result.num_samples:
            raise AnalysisError(
                f"count_ops: neuron counts of layer {layer.name!r} have shape {c.shape}, "
                f"expected ({result.num_samples}, {', '.join(map(str, layer.shape))})"
            )
    return counts


def count_ops(
    net: IntegerNetwork,
    result: SpikeRunResult,
    ann_density: Mapping[str, float] | Sequence[float] | None = None,
) -> OpCounts:
    """Count spikes, SynOps, MACs and neuron updates of a run (module docstring: definitions).

    Args:
        net: the integer network that was run.
        result: its run, with per-neuron spike counts (``record="counts"``) or spike trains.
        ann_density: activation density of each hidden layer from an ANN pass, by layer name
            or in hidden-layer order; by default estimated from the spike counts.

    Returns:
        The counts, per layer and in total.

    Raises:
        AnalysisError: the run does not belong to ``net`` or lacks per-neuron counts.
    """
    counts = _neuron_counts(net, result)
    n, steps = result.num_samples, int(result.steps)
    hidden_names = [layer.name for layer in net.layers[:-1]]
    if ann_density is not None and not isinstance(ann_density, Mapping):
        if len(ann_density) != len(hidden_names):
            raise AnalysisError(
                f"count_ops: {len(ann_density)} ANN densities for {len(hidden_names)} hidden "
                "layers"
            )
        ann_density = dict(zip(hidden_names, ann_density, strict=True))

    rows = []
    for i, layer in enumerate(net.layers):
        synops = 0
        input_macs = 0
        ann_macs = 0
        for syn in layer.synapses:
            f = synapse_fan_out(syn, net.source_shape(syn.source))
            macs = int(f.sum())
            ann_macs += macs * n
            if syn.source == INPUT:
                input_macs += macs * steps * n
            else:
                c = counts[syn.source].astype(np.int64)
                synops += int(np.tensordot(c, f, axes=f.ndim).sum())
        spiking = layer.spiking
        spikes = int(counts[i].sum(dtype=np.int64)) if spiking else 0
        updates = layer.num_neurons * steps * n
        density: float | None = None
        if spiking:
            if ann_density is not None and layer.name in ann_density:
                density = float(ann_density[layer.name])
            elif n:
                density = float(np.mean(counts[i] > 0))
        rows.append(
            LayerOpCounts(
                name=layer.name,
                neurons=layer.num_neurons,
                spiking=spiking,
                spikes=spikes,
                synops=synops,
                input_macs=input_macs,
                neuron_updates=updates,
                active_updates=spikes,
                ann_macs=ann_macs,
                ann_density=density,
                firing_rate=spikes / updates if updates else 0.0,
            )
        )
    return OpCounts(
        steps=steps, num_samples=n, latency_steps=steps + net.latency, layers=tuple(rows)
    )
