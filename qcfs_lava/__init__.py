"""qcfs-lava: QCFS networks from PyTorch to Intel's Lava / Loihi stack.

The pipeline, one module (or sub-package) per stage::

    model (torch, QCFS) -> convert (fold, quantize) -> network (IntegerNetwork, numpy)
        -> netx (HDF5 write/read) -> emulator (batched torch) | lava_sim (Lava simulator)
        -> analysis (counts, energy, reports); cli on top

``pipeline.run_chain`` is the one place the stages run in sequence; the commands, the
reports and the notebooks format its result. Imports point down through the layers drawn in
``docs/layers.md`` (enforced by ``tests/test_layers.py``). The numerical contract every stage
implements is ``docs/contract.md``.

Importing this package is cheap: it imports neither torch nor lava. Import the
stage you need, e.g. ``from qcfs_lava.convert import convert``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
