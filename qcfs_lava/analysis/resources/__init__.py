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

**Energy with hops** (Loihi 1, :mod:`qcfs_lava.analysis.energy`): the ``hops = 0`` estimate plus
``e_hop * spikes_l * hops_per_spike_l`` per layer, with the measured spike counts of a run.

Modules:

- :mod:`.sizing`: fan-in, axons, synaptic memory and the cores each limit asks for.
- :mod:`.placement`: global cores, router tiles, hops and spike traffic.
- :mod:`.pools`: the pool-fold study (folded pools, their exact unfolded form, the check).
- :mod:`.hop_energy`: Loihi 1 energy with the placement's hops.
- :mod:`.mapping`: :func:`map_resources`, which ties them together and checks the limits.
- :mod:`.run`: :func:`measure_resources`, the same with traffic measured by an emulator run.
- :mod:`.results`, :mod:`.formatting`: the typed results and their Markdown/text forms.

Every name of the former single module ``resources.py`` still imports from here (its private
helpers included, ``import x as x`` below).
"""

from __future__ import annotations

from qcfs_lava.analysis.resources.formatting import _cores_cell as _cores_cell
from qcfs_lava.analysis.resources.formatting import _kbits as _kbits
from qcfs_lava.analysis.resources.formatting import (
    format_resources_markdown,
    format_resources_text,
    format_run_text,
)
from qcfs_lava.analysis.resources.hop_energy import hop_energy
from qcfs_lava.analysis.resources.mapping import _advice as _advice
from qcfs_lava.analysis.resources.mapping import _neuron_weights as _neuron_weights
from qcfs_lava.analysis.resources.mapping import map_resources
from qcfs_lava.analysis.resources.placement import _tile_xy as _tile_xy
from qcfs_lava.analysis.resources.pools import (
    PoolFold,
    compare_unfolded_pools,
    pool_factor,
    unfold_pool,
)
from qcfs_lava.analysis.resources.pools import _conv_np as _conv_np
from qcfs_lava.analysis.resources.pools import _pool_fold as _pool_fold
from qcfs_lava.analysis.resources.results import (
    LayerResources,
    ResourceReport,
    ResourceRunResult,
    Violation,
)
from qcfs_lava.analysis.resources.run import check_run_options, measure_resources
from qcfs_lava.analysis.resources.sizing import _PER_CORE as _PER_CORE
from qcfs_lava.analysis.resources.sizing import _as_chw as _as_chw
from qcfs_lava.analysis.resources.sizing import _AxonUnion as _AxonUnion
from qcfs_lava.analysis.resources.sizing import _chunk_sums as _chunk_sums
from qcfs_lava.analysis.resources.sizing import _largest_n as _largest_n
from qcfs_lava.analysis.resources.sizing import _position_major as _position_major
from qcfs_lava.analysis.resources.sizing import _reached as _reached
from qcfs_lava.analysis.resources.sizing import _sign_mode as _sign_mode
from qcfs_lava.analysis.resources.sizing import _synapse_fan_in as _synapse_fan_in
from qcfs_lava.analysis.resources.sizing import _taps as _taps
from qcfs_lava.analysis.resources.sizing import _weight_bits_used as _weight_bits_used
from qcfs_lava.analysis.resources.sizing import _window as _window
from qcfs_lava.analysis.resources.sizing import layer_fan_in

__all__ = [
    "LayerResources",
    "PoolFold",
    "ResourceReport",
    "ResourceRunResult",
    "Violation",
    "check_run_options",
    "compare_unfolded_pools",
    "format_resources_markdown",
    "format_resources_text",
    "format_run_text",
    "hop_energy",
    "layer_fan_in",
    "map_resources",
    "measure_resources",
    "pool_factor",
    "unfold_pool",
]
