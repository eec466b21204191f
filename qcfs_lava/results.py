"""The result type shared by the emulator and the Lava runner.

Both return a :class:`SpikeRunResult`, so "the Lava run equals the emulator" is
``array_equal`` on its fields (:func:`compare_results`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from qcfs_lava.errors import NetworkValidationError

if TYPE_CHECKING:
    from qcfs_lava.network import IntegerNetwork


class RecordMode(str, Enum):
    """What a run records per hidden layer, one vocabulary for both backends.

    ``TOTAL``: spike totals per sample and layer only (``record=None``); ``COUNTS``: also each
    neuron's spike count over the ``T`` steps (needed for exact SynOps); ``SPIKES``: also the
    full spike trains.
    """

    TOTAL = "total"
    COUNTS = "counts"
    SPIKES = "spikes"

    @classmethod
    def parse(cls, record: RecordMode | str | None) -> RecordMode:
        """``None`` -> ``TOTAL``; a mode or its name -> the mode.

        Raises:
            NetworkValidationError: any other value.
        """
        if record is None:
            return cls.TOTAL
        try:
            return cls(record)
        except ValueError:
            raise NetworkValidationError(
                f"record must be None, 'counts' or 'spikes', got {record!r}"
            ) from None


@dataclass(frozen=True)
class RunArguments:
    """The checked arguments of a run (:func:`check_run_arguments`)."""

    x: np.ndarray
    steps: int
    record: RecordMode
    labels: np.ndarray | None


def check_run_arguments(net: IntegerNetwork, x, steps: int, *, labels=None,
                        record: RecordMode | str | None = None) -> RunArguments:
    """The argument check the emulator and the Lava runner share.

    Returns:
        ``x`` as uint8, ``steps`` as int, the :class:`RecordMode` and ``labels`` as int64.

    Raises:
        NetworkValidationError: ``x`` does not fit ``net``, ``steps < 1``, an unknown
            ``record``, or ``labels`` whose length is not the number of samples.
    """
    x = net.check_input(x)
    if int(steps) < 1:
        raise NetworkValidationError(f"steps must be >= 1, got {steps}")
    mode = RecordMode.parse(record)
    if labels is not None:
        labels = np.asarray(labels).astype(np.int64).reshape(-1)
        if labels.shape[0] != x.shape[0]:
            raise NetworkValidationError(
                f"labels has {labels.shape[0]} entries for {x.shape[0]} samples"
            )
    return RunArguments(x, int(steps), mode, labels)


@dataclass
class SpikeRunResult:
    """What an integer-SNN run produced for ``N`` samples at ``steps`` time steps.

    Attributes:
        steps: time steps ``T`` per sample.
        layer_names: names of all layers (hidden layers first, the output last).
        potentials: ``(N, num_classes)`` int64, the output layer's accumulated potential
            ``v(T) - v(0)`` in state units.
        predictions: ``(N,)`` int64, argmax of ``potentials`` (lowest index wins ties).
        spike_counts: ``(N, num_hidden)`` int64, spikes (messages, whatever their payload)
            per sample and hidden layer.
        neuron_counts: per hidden layer ``(N, *shape)`` int32 spike count of each neuron
            over the ``T`` steps, when requested (needed for exact SynOps); else ``None``.
        spikes: per hidden layer ``(N, T, *shape)`` spike trains, when requested: bool for a
            binary layer, the integer payloads (:func:`spike_dtype`) for a graded one.
        digests: ``(N, num_hidden)`` uint64 keyed digests of each sample's spike train per
            hidden layer (:mod:`qcfs_lava.digest`), when a key was given (of the payloads for
            a graded layer).
        digest_key: the key of ``digests``.
        saturations: ``(N, num_layers)`` int64, how many membrane updates hit the 24-bit
            limits (saturated instead of wrapping); ``None`` where the backend cannot tell.
        labels: ``(N,)`` ground truth, when known.
        backend: ``"emulator"`` or ``"lava"``.
        payload_counts: ``(N, num_hidden)`` int64 payloads summed per sample and hidden
            layer, for a network with graded spikes (``None`` for a binary one, where it
            equals ``spike_counts``).
        neuron_payloads: per hidden layer ``(N, *shape)`` int64 payload sum of each neuron,
            for a graded network run with per-neuron records (exact payload-weighted ops).
    """

    steps: int
    layer_names: tuple[str, ...]
    potentials: np.ndarray
    predictions: np.ndarray
    spike_counts: np.ndarray
    neuron_counts: tuple[np.ndarray, ...] | None = None
    spikes: tuple[np.ndarray, ...] | None = None
    digests: np.ndarray | None = None
    digest_key: int | None = None
    saturations: np.ndarray | None = None
    labels: np.ndarray | None = None
    backend: str = ""
    extra: dict = field(default_factory=dict)
    payload_counts: np.ndarray | None = None
    neuron_payloads: tuple[np.ndarray, ...] | None = None

    @property
    def num_samples(self) -> int:
        return int(self.predictions.shape[0])

    @property
    def accuracy(self) -> float | None:
        """Fraction of correct predictions, or ``None`` without labels."""
        if self.labels is None or self.num_samples == 0:
            return None
        return float(np.mean(self.predictions == self.labels))

    def to_dict(self, per_sample: bool = True) -> dict:
        """JSON-serializable summary (per-sample predictions included on request)."""
        out = {
            "backend": self.backend,
            "steps": self.steps,
            "samples": self.num_samples,
            "accuracy": self.accuracy,
            "layers": list(self.layer_names),
            "spikes_per_sample": {
                name: float(self.spike_counts[:, i].mean()) if self.num_samples else 0.0
                for i, name in enumerate(self.layer_names[:-1])
            },
        }
        if self.payload_counts is not None:
            out["payload_per_sample"] = {
                name: float(self.payload_counts[:, i].mean()) if self.num_samples else 0.0
                for i, name in enumerate(self.layer_names[:-1])
            }
        if self.saturations is not None:
            out["saturations"] = {
                name: int(self.saturations[:, i].sum()) for i, name in enumerate(self.layer_names)
            }
        if per_sample:
            out["predictions"] = self.predictions.tolist()
            if self.labels is not None:
                out["labels"] = self.labels.tolist()
        return out


def spike_dtype(payload: int) -> np.dtype:
    """The dtype of a recorded spike train: bool for binary spikes (``payload = 1``), else
    the smallest unsigned integer type holding ``payload``."""
    if int(payload) == 1:
        return np.dtype(bool)
    return np.min_scalar_type(int(payload))


def argmax_first(potentials: np.ndarray) -> np.ndarray:
    """Argmax over the last axis; ties go to the lowest index (numpy's rule)."""
    return np.argmax(potentials, axis=-1).astype(np.int64)


@dataclass
class Mismatch:
    """The first difference between two runs."""

    field: str
    layer: str | None = None
    sample: int | None = None
    step: int | None = None
    detail: str = ""
    neuron: tuple[int, ...] | None = None

    def __str__(self) -> str:
        where = ", ".join(
            f"{k} {v}" for k, v in (("layer", self.layer), ("sample", self.sample),
                                    ("step", self.step), ("neuron", self.neuron))
            if v is not None
        )
        return f"{self.field} differ ({where}){': ' + self.detail if self.detail else ''}"


def compare_results(a: SpikeRunResult, b: SpikeRunResult) -> list[Mismatch]:
    """All field-level differences between two runs (empty list: identical).

    Spike trains, when both runs recorded them, are compared step by step and the first
    differing (sample, step, neuron) of each layer is reported; spike-train digests, when
    both runs computed them under the same key, sample by sample. Layers are reported in
    network order, so the first mismatch names the earliest differing layer.
    """
    out: list[Mismatch] = []
    if a.steps != b.steps or a.num_samples != b.num_samples:
        return [Mismatch("shape", detail=f"steps {a.steps}/{b.steps}, "
                         f"samples {a.num_samples}/{b.num_samples}")]
    hidden = a.layer_names[:-1]
    if a.spikes is not None and b.spikes is not None:
        for name, sa, sb in zip(hidden, a.spikes, b.spikes, strict=True):
            diff = np.argwhere(sa != sb)
            if len(diff):
                n, t = int(diff[0][0]), int(diff[0][1])
                neuron = tuple(int(i) for i in diff[0][2:])
                first = tuple(diff[0])
                out.append(Mismatch("spikes", name, n, t,
                                    f"{len(diff)} differing spike entries; there "
                                    f"{a.backend or 'a'} {int(sa[first])}, "
                                    f"{b.backend or 'b'} {int(sb[first])}",
                                    neuron=neuron))
    if a.digests is not None and b.digests is not None:
        if a.digest_key != b.digest_key:
            return [Mismatch("digest keys", detail=f"{a.digest_key} vs {b.digest_key}: "
                             "digests under different keys cannot be compared")]
        for i, name in enumerate(hidden):
            bad = np.flatnonzero(a.digests[:, i] != b.digests[:, i])
            if len(bad):
                out.append(Mismatch("spike-train digests", name, int(bad[0]),
                                    detail=f"{len(bad)} samples differ"))
    for what, pa, pb in (("neuron spike counts", a.neuron_counts, b.neuron_counts),
                         ("neuron payload sums", a.neuron_payloads, b.neuron_payloads)):
        if pa is not None and pb is not None:
            for name, ca, cb in zip(hidden, pa, pb, strict=True):
                if not np.array_equal(ca, cb):
                    n = int(np.argwhere((ca != cb).reshape(len(ca), -1).any(1))[0][0])
                    out.append(Mismatch(what, name, n))
    for what, ta, tb in (("payload counts", a.payload_counts, b.payload_counts),
                         ("spike counts", a.spike_counts, b.spike_counts)):
        if ta is not None and tb is not None:
            for i, name in enumerate(hidden):
                bad = np.flatnonzero(ta[:, i] != tb[:, i])
                if len(bad):
                    out.append(Mismatch(what, name, int(bad[0]),
                                        detail=f"{ta[bad[0], i]} vs {tb[bad[0], i]}"))
    bad = np.flatnonzero((a.potentials != b.potentials).any(axis=1))
    if len(bad):
        out.append(Mismatch("output potentials", a.layer_names[-1], int(bad[0])))
    bad = np.flatnonzero(a.predictions != b.predictions)
    if len(bad):
        out.append(Mismatch("predictions", sample=int(bad[0]),
                            detail=f"{len(bad)} samples differ"))
    return out
