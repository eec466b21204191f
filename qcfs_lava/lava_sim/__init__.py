"""Run an :class:`~qcfs_lava.network.IntegerNetwork` in Lava's CPU simulator.

The only part of qcfs-lava that imports lava. Importing this sub-package makes the stock
lava-nc 0.10.0 / lava-dl 0.6.0 wheels importable on Python 3.11+ (:mod:`.compat`) and raises
:class:`~qcfs_lava.errors.LavaUnavailableError` when they are missing. ``import qcfs_lava``
never imports it.

Example::

    from qcfs_lava.lava_sim import simulate
    result = simulate(net, x_uint8, steps=16, labels=y, record="counts")
"""

from qcfs_lava.lava_sim.compat import ensure_lava, ensure_lava_dl

ensure_lava()

from qcfs_lava.lava_sim.runner import (  # noqa: E402
    LavaRunConfig,
    build_network,
    simulate,
)

__all__ = ["LavaRunConfig", "build_network", "ensure_lava", "ensure_lava_dl", "simulate"]
