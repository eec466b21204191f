"""Torch side: the QCFS activation, the model registry, reference-checkpoint import."""
