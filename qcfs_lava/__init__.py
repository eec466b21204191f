"""qcfs-lava: QCFS networks from PyTorch to Intel's Lava / Loihi stack.

The pipeline, one module (or sub-package) per stage::

    model (torch, QCFS) -> convert (fold, quantize) -> network (IntegerNetwork, numpy)
        -> netx (HDF5 write/read) -> emulator (batched torch) | lava_sim (Lava simulator)
        -> analysis (counts, energy, reports); cli on top

Importing this package is cheap: it imports neither torch nor lava. Import the
stage you need, e.g. ``from qcfs_lava.convert import convert``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
