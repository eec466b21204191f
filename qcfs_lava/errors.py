"""Typed exceptions. Every message says what was wrong, where, and what to do."""

from __future__ import annotations


class QcfsLavaError(Exception):
    """Base class of every error this package raises on purpose."""


class UnsupportedLayerError(QcfsLavaError):
    """A model contains modules the converter cannot turn into spiking layers."""


class ModelConfigError(QcfsLavaError, ValueError):
    """A model the registry cannot build: unknown name or activation, or an unfit input size."""


class QuantizationError(QcfsLavaError):
    """A value cannot be represented within the Loihi integer ranges."""


class NetworkValidationError(QcfsLavaError):
    """An integer network is inconsistent (shapes do not chain, values out of range)."""


class NetxFormatError(QcfsLavaError):
    """A NetX file is missing, corrupt, foreign or of an unsupported version."""


class CheckpointError(QcfsLavaError):
    """A checkpoint is missing, corrupt, or lacks what a later stage needs."""


class NotQcfsCheckpointError(CheckpointError):
    """A checkpoint's model has no QCFS activations (e.g. a ReLU baseline): it cannot convert."""


class DatasetError(QcfsLavaError):
    """A dataset cannot be found or read."""


class LavaUnavailableError(QcfsLavaError):
    """lava-nc / lava-dl are not installed or cannot be made importable."""


class LavaSimulationError(QcfsLavaError):
    """A Lava process model raised during a simulation (the traceback is in the message)."""


class SimulationMismatchError(QcfsLavaError):
    """The Lava simulation and the emulator disagree (they must be identical)."""


class UsageError(QcfsLavaError):
    """A command-line option or configuration value is invalid."""


class AnalysisError(QcfsLavaError):
    """A run result or model lacks what an analysis (counts, energy, report) needs."""


class OutputPathError(QcfsLavaError):
    """An output path cannot be written, or writing it would destroy an input or another file."""


class NirError(QcfsLavaError):
    """A NIR file or graph is missing, foreign or unsupported, or the optional NIR packages
    (``pip install 'qcfs-lava[nir]'``) are not installed."""


class MissingExtraError(QcfsLavaError):
    """An optional feature needs a package extra that is not installed."""


class ShardFailedError(LavaSimulationError):
    """One or more shards of a sharded Lava run failed; the others' results are kept.

    Attributes:
        failures: ``{(start, stop): message}`` per failed shard (sample range, half open).
        completed: ``{(start, stop): SpikeRunResult}`` per shard that finished.
    """

    def __init__(self, message: str, failures: dict, completed: dict) -> None:
        super().__init__(message)
        self.failures = failures
        self.completed = completed
