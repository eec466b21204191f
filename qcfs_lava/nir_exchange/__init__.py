"""NIR exchange: the float SNN as a NIR graph, and runners that execute it faithfully.

- :mod:`~qcfs_lava.nir_exchange.semantics`: what the namespaced metadata says (reset by
  subtraction, fire on ``>=``, initial potential, ``T``, input every step, readout), reading
  and writing files.
- :mod:`~qcfs_lava.nir_exchange.export`: QCFS model -> ``nir.NIRGraph`` (``to_nir``,
  ``export_checkpoint``; CLI: ``qcfs-lava export CKPT --format nir --out F.nir``).
- :mod:`~qcfs_lava.nir_exchange.executor`: the reference executor (numpy), ``run_nir``.
- :mod:`~qcfs_lava.nir_exchange.importer`: qcfs-lava's own import, ``from_nir`` -> a torch
  module that runs the float SNN step by step.
- :mod:`~qcfs_lava.nir_exchange.shims`: loading into snntorch and sinabs with the right
  neuron semantics (``run_snntorch``, ``run_sinabs``).

Everything here needs the optional extra ``pip install 'qcfs-lava[nir]'`` (nir; snntorch and
sinabs for the shims); importing this package does not.
"""
