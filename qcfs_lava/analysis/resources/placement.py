"""Placement on the mesh: global cores, router tiles, hops and spike traffic per layer.

Layers in network order, each on its own consecutive cores (no core holds two layers); cores
``0..cores_per_chip-1`` are chip 0, and so on. ``cores_per_tile`` cores share a router tile,
tiles fill rows of ``mesh_width`` tiles, chips sit on a near-square grid and their meshes
join; the hops of a message are the Manhattan distance between its source and destination
tiles. Every spike of a neuron is sent once to each destination core holding one of its
targets (its messages).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from qcfs_lava.analysis.counts import OpCounts
from qcfs_lava.analysis.resources.sizing import LayerSize
from qcfs_lava.hardware import HardwareLimit
from qcfs_lava.network import IntegerNetwork


@dataclass(frozen=True)
class Placement:
    """Where the layers sit.

    Attributes:
        first: global index of each layer's first core, and the total cores last.
        chips: chips the cores fill.
    """

    first: np.ndarray
    chips: int

    @property
    def cores(self) -> int:
        return int(self.first[-1])


@dataclass(frozen=True)
class LayerTraffic:
    """Messages and hops of one layer's spikes.

    Attributes:
        messages_per_spike, hops_per_spike: spike-weighted means over the layer's neurons.
        inbound_total, inbound_max: spike weight arriving at all destination cores and at the
            busiest one.
        dest_cores: destination cores over all consumers.
    """

    messages_per_spike: float
    hops_per_spike: float
    inbound_total: float
    inbound_max: float
    dest_cores: int


def place(sizes: list[LayerSize], limits: dict[str, HardwareLimit]) -> Placement:
    """Consecutive cores for the layers in network order."""
    first = np.concatenate([[0], np.cumsum([s.cores for s in sizes])])
    return Placement(first, math.ceil(int(first[-1]) / limits["cores_per_chip"].value))


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


def layer_traffic(net: IntegerNetwork, i: int, sizes: list[LayerSize], placement: Placement,
                  limits: dict[str, HardwareLimit], weight: np.ndarray) -> LayerTraffic:
    """Messages and hops of layer ``i``'s spikes, each neuron weighted by ``weight``
    (position-major, e.g. its spike count)."""
    size, first = sizes[i], placement.first
    n = len(size.fan_in)
    src_core = first[i] + np.arange(n) // size.neurons_per_core
    sx, sy = _tile_xy(src_core, limits, placement.chips)
    hops = np.zeros(n)
    inbound_total = inbound_max = 0.0
    dest_cores = 0
    for d, key, sets in size.reached:
        inbound = np.zeros(sizes[d].cores)
        order = np.argsort(key, kind="stable")
        bounds = np.searchsorted(key[order], np.arange(len(sets) + 1))
        for kidx, s in enumerate(sets):
            members = order[bounds[kidx]:bounds[kidx + 1]]
            if not len(members) or not len(s):
                continue
            dx, dy = _tile_xy(first[d] + s, limits, placement.chips)
            hops[members] += (np.abs(sx[members, None] - dx[None, :])
                              + np.abs(sy[members, None] - dy[None, :])).sum(axis=1)
            inbound[s] += weight[members].sum()
        inbound_total += inbound.sum()
        inbound_max = max(inbound_max, inbound.max(initial=0.0))
        dest_cores += len(inbound)
    wsum = weight.sum()
    return LayerTraffic(
        messages_per_spike=float((weight * size.messages).sum() / wsum) if wsum else 0.0,
        hops_per_spike=float((weight * hops).sum() / wsum) if wsum else 0.0,
        inbound_total=inbound_total,
        inbound_max=inbound_max,
        dest_cores=dest_cores,
    )


def measured_traffic(ops: OpCounts | None, i: int, spiking: bool, traffic: LayerTraffic
                     ) -> tuple[float | None, float | None, float | None, float | None]:
    """Measured means per sample step: ``(spikes, messages, messages per destination core,
    its max)``, each ``None`` without a run (or where it does not apply)."""
    spikes_step = msgs_step = core_step = core_step_max = None
    if ops is not None and spiking:
        spikes_step = ops.layers[i].spikes / max(ops.num_samples * ops.steps, 1)
        msgs_step = spikes_step * traffic.messages_per_spike
        if traffic.dest_cores and traffic.inbound_total:
            core_step = msgs_step / traffic.dest_cores
            core_step_max = msgs_step * traffic.inbound_max / traffic.inbound_total
    return spikes_step, msgs_step, core_step, core_step_max
