"""The mapping: size, place, measure traffic, and check every limit of a chip."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from qcfs_lava import hardware as hw
from qcfs_lava.analysis.counts import OpCounts, synapse_fan_out
from qcfs_lava.analysis.energy import EnergyConstants
from qcfs_lava.analysis.resources.hop_energy import hop_energy
from qcfs_lava.analysis.resources.placement import (
    LayerTraffic,
    layer_traffic,
    measured_traffic,
    place,
)
from qcfs_lava.analysis.resources.pools import PoolFold, _pool_fold
from qcfs_lava.analysis.resources.results import LayerResources, ResourceReport, Violation
from qcfs_lava.analysis.resources.sizing import (
    _PER_CORE,
    LayerSize,
    _chunk_sums,
    _memory_bits_per_synapse,
    _position_major,
    _sign_mode,
    _weight_bits_used,
    consumers_of,
    size_layers,
)
from qcfs_lava.errors import AnalysisError
from qcfs_lava.network import IntegerNetwork, Synapse


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
    weights = _neuron_weights(net, neuron_counts)
    weights.append(np.ones(net.layers[-1].num_neurons))  # the output layer: every neuron
    lim = {k: limits[k].value for k in _PER_CORE if k in limits}
    consumers = consumers_of(net)
    sizes = size_layers(net, lim, consumers)
    placement = place(sizes, limits)
    rows: list[LayerResources] = []
    violations: list[Violation] = []
    for i in range(len(net.layers)):
        traffic = layer_traffic(net, i, sizes, placement, limits, weights[i])
        row = _layer_row(net, i, sizes[i], consumers[i], traffic, int(placement.first[i]),
                         lim, ops)
        rows.append(row)
        violations += _violations(row, lim, sizes[i])
    notes = _notes(limits, chip, ops)
    energy = None
    if ops is not None and chip == "loihi1":
        energy = hop_energy(ops, [r.hops_per_spike for r in rows], constants)
    return ResourceReport(
        chip=chip,
        limits=tuple(limits.values()),
        layers=tuple(rows),
        cores=placement.cores,
        chips=_chips(net, limits, rows, placement.chips),
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


def _layer_row(net: IntegerNetwork, i: int, size: LayerSize,
               consumers: list[tuple[int, Synapse]], traffic: LayerTraffic, first_core: int,
               lim: dict, ops: OpCounts | None) -> LayerResources:
    """One row of the report."""
    layer = net.layers[i]
    n = layer.num_neurons
    fan_in = size.fan_in
    synapses = int(fan_in.sum())
    bits = _memory_bits_per_synapse(size.neurons_per_core)
    convs = [s for s in layer.synapses if s.kind == "conv"]
    shared = (int(sum(s.weight.size for s in convs)) * bits
              + sum(int(s.weight.shape[1]) * n for s in layer.synapses
                    if s.kind == "dense") * bits) if convs else None
    fo = (np.zeros(n, dtype=np.int64) if not consumers else
          sum(synapse_fan_out(s, layer.shape).ravel() for _, s in consumers))
    by_limit = size.cores_by_limit
    spikes_step, msgs_step, core_step, core_step_max = measured_traffic(
        ops, i, layer.spiking, traffic)
    return LayerResources(
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
        cores_by_limit=by_limit,
        binding=max(by_limit, key=lambda k: (by_limit[k] or 0, k == "compartments")),
        cores=size.cores,
        neurons_per_core=size.neurons_per_core,
        first_core=first_core,
        input_axons_per_core=(0 if size.axons is None
                              else int(size.axons.max_axons(size.neurons_per_core))),
        output_axons_per_core=int(_chunk_sums(size.messages, size.neurons_per_core).max()),
        memory_per_core_bits=int(_chunk_sums(fan_in, size.neurons_per_core).max()) * bits,
        messages_per_spike=traffic.messages_per_spike,
        hops_per_spike=traffic.hops_per_spike,
        spikes_per_step=spikes_step,
        messages_per_step=msgs_step,
        messages_per_core_step=core_step,
        messages_per_core_step_max=core_step_max,
        pool_fold=_pool_fold(net, i, lim.get("input_axons")),
    )


def _violations(row: LayerResources, lim: dict, size: LayerSize) -> list[Violation]:
    """Every per-core limit the layer breaks: ``error`` where no split fits, else ``split``
    where the whole layer would break it."""
    n = row.neurons
    whole = {"compartments": n,
             "input_axons": 0 if size.axons is None else size.axons.axons(0, n),
             "output_axons": int(size.messages.sum()),
             "synaptic_memory_bits": row.synapses * _memory_bits_per_synapse(n),
             "synapses_per_core": row.synapses}
    out = []
    for key in _PER_CORE:
        allowed = lim.get(key)
        if not allowed:
            continue
        if key in size.infeasible:
            out.append(Violation(row.name, key, size.infeasible[key], allowed, "error",
                                 _advice(key, "error", 0, row.pool_fold)))
        elif whole[key] > allowed:
            out.append(Violation(row.name, key, whole[key], allowed, "split",
                                 _advice(key, "split", size.cores_by_limit.get(key) or 1,
                                         row.pool_fold)))
    return out


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


def _chips(net: IntegerNetwork, limits: dict, rows: list[LayerResources], placed: int) -> int:
    """Chips needed: those the cores fill, and the chip-level totals where published."""
    if "neurons_per_chip" not in limits:
        return placed
    neurons = sum(la.num_neurons for la in net.layers)
    synapses = sum(r.synapses for r in rows)
    return max(placed, math.ceil(neurons / limits["neurons_per_chip"].value),
               math.ceil(synapses / limits["synapses_per_chip"].value))


def _notes(limits: dict, chip: str, ops: OpCounts | None) -> list[str]:
    """What the reader needs to know: limits not public, what is not modelled."""
    notes = [f"{limit.key}: {limit.source}" for limit in limits.values()
             if limit.status == "not public"]
    notes.append("input pixels are injected from the host and are not placed; their "
                 "traffic and hops are not counted")
    if chip != "loihi1":
        notes.append("synaptic memory in bits uses Loihi 1's synapse encoding (nengo-loihi); "
                     "it is shown for comparison and not checked")
        if ops is not None:
            notes.append("energy with hops is modelled for Loihi 1 only (no public Loihi 2 "
                         "per-operation energies)")
    return notes
