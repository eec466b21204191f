"""Analysis of integer-SNN runs: operation counts, energy estimates, error budgets, reports.

- :mod:`.counts`: exact spikes, SynOps, MACs and neuron updates (numpy only).
- :mod:`.energy`: energy estimates from the counts, with the constants and their sources.
- :mod:`.breakdown`: per-layer conversion error (clipping, quantization, unevenness), torch.
- :mod:`.plots`: the figures of ``qcfs-lava report`` and ``qcfs-lava sweep``, whose drivers sit
  in the application layer (:mod:`qcfs_lava.report`, :mod:`qcfs_lava.sweep`; the old paths
  ``qcfs_lava.analysis.report``/``.sweep`` still work).

Importing this package imports neither torch nor lava.
"""

from qcfs_lava.analysis.counts import LayerOpCounts, OpCounts, count_ops, fan_out
from qcfs_lava.analysis.energy import EnergyConstants, EnergyEstimate, estimate_energy

__all__ = [
    "EnergyConstants",
    "EnergyEstimate",
    "LayerOpCounts",
    "OpCounts",
    "count_ops",
    "estimate_energy",
    "fan_out",
]
