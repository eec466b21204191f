"""Loihi 1 energy with the placement's hops.

The ``hops = 0`` estimate of :mod:`qcfs_lava.analysis.energy` plus
``e_hop * spikes_l * hops_per_spike_l`` per layer, with the measured spike counts of a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from qcfs_lava.analysis.counts import OpCounts
from qcfs_lava.analysis.energy import EnergyConstants, estimate_energy


def hop_energy(ops: OpCounts, hops_per_spike: Sequence[float],
               constants: EnergyConstants | None = None) -> dict:
    """Loihi 1 energy per sample with hops = 0 and with the given hops per spike.

    Args:
        ops: operation counts of a run.
        hops_per_spike: per layer of ``ops``, the mean mesh hops of one spike.
        constants: energy constants (the published defaults when ``None``).

    Returns:
        ``{"per_sample_uj_hops0", "per_sample_uj_placed", "hop_pj", "layers", "note"}``.
    """
    c = constants or EnergyConstants()
    base = estimate_energy(ops, replace(c, loihi1_hops_per_spike=0.0))
    n = max(ops.num_samples, 1)
    layers = []
    for la, e, hops in zip(ops.layers, base.layers, hops_per_spike, strict=True):
        hop_pj = c.loihi1_hop_pj * la.spikes * hops
        layers.append({"name": la.name, "hops_per_spike": hops,
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
