"""``simulate --check``: every spike of a Lava run against the emulator, at the cost of counts.

The Lava run records per-neuron spike counts (for SynOps) and, per sample and hidden layer,
a keyed 64-bit digest of the spike train, computed inside the neuron models
(:mod:`qcfs_lava.digest`); the emulator computes the same digests under the same key. The
two runs are compared per sample: digests, per-neuron counts, spike totals, output
potentials and predictions. Any sample that differs is re-run, with its neighbours up to
``max_rerun`` samples, on both backends with full spike trains recorded, to name the first
differing layer, sample, step and neuron.

A changed spike always changes its layer's digest; two different trains share a digest with
probability ``2**-64`` (the argument is in :mod:`qcfs_lava.digest`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np

from qcfs_lava.digest import new_key
from qcfs_lava.network import IntegerNetwork
from qcfs_lava.results import Mismatch, SpikeRunResult, compare_results

log = logging.getLogger(__name__)

DEFAULT_MAX_RERUN = 8


@dataclass
class CheckResult:
    """What :func:`check_against_emulator` found.

    Attributes:
        lava: the Lava run (per-neuron counts and digests recorded).
        emulator: the emulator's run of the same samples, under the same key.
        mismatches: field-level differences of the two runs (empty: identical).
        located: differences found by the re-run with full spike trains; sample indices
            are those of the whole request. Empty when nothing differed.
        rerun: ``(start, stop)`` of the re-run sample range, or ``None``.
    """

    lava: SpikeRunResult
    emulator: SpikeRunResult
    mismatches: list[Mismatch] = field(default_factory=list)
    located: list[Mismatch] = field(default_factory=list)
    rerun: tuple[int, int] | None = None

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.located

    @property
    def first(self) -> Mismatch | None:
        """The most precise first difference: from the re-run when it found one."""
        if self.located:
            return self.located[0]
        return self.mismatches[0] if self.mismatches else None


def differing_samples(a: SpikeRunResult, b: SpikeRunResult) -> np.ndarray:
    """Indices of the samples whose digests, counts, totals or potentials differ."""
    bad = (a.potentials != b.potentials).any(axis=1)
    bad |= (a.spike_counts != b.spike_counts).any(axis=1)
    if a.digests is not None and b.digests is not None:
        bad |= (a.digests != b.digests).any(axis=1)
    if a.neuron_counts is not None and b.neuron_counts is not None:
        for ca, cb in zip(a.neuron_counts, b.neuron_counts, strict=True):
            bad |= (ca != cb).reshape(len(ca), -1).any(axis=1)
    return np.flatnonzero(bad)


def rerun_range(bad: np.ndarray, max_rerun: int) -> tuple[int, int]:
    """The sample range re-run in full: from the first differing sample to the last one
    within ``max_rerun`` samples of it."""
    start = int(bad[0])
    within = bad[bad < start + max(1, int(max_rerun))]
    return start, int(within[-1]) + 1


def check_against_emulator(
    net: IntegerNetwork,
    x: np.ndarray,
    steps: int,
    *,
    labels: np.ndarray | None = None,
    workers: int = 1,
    address: str | None = None,
    key: int | None = None,
    max_rerun: int = DEFAULT_MAX_RERUN,
    progress: bool = False,
    config=None,
    emulator_batch_size: int = 256,
) -> CheckResult:
    """Run ``net`` in Lava and in the emulator and compare every spike through digests.

    Args:
        net, x, steps, labels, progress, config: as :func:`~.runner.simulate`.
        workers, address: run the Lava part as shards on Ray (as
            :func:`~.shards.simulate_sharded`) when ``workers > 1`` or ``address`` is set.
        key: digest key (``None``: a fresh random one, kept in the results).
        max_rerun: at most this many samples are re-run with full recording on a mismatch.
        emulator_batch_size: samples per emulator batch.

    Returns:
        A :class:`CheckResult`; the Lava result holds per-neuron counts (``record="counts"``).

    Raises:
        as :func:`~.runner.simulate` and :func:`~.shards.simulate_sharded`.
    """
    from qcfs_lava.emulator import emulate
    from qcfs_lava.lava_sim.runner import simulate

    key = new_key() if key is None else int(key)
    if workers > 1 or address:
        from qcfs_lava.lava_sim.shards import simulate_sharded

        lava = simulate_sharded(net, x, steps, workers=workers, address=address, labels=labels,
                                record="counts", digest_key=key, progress=progress,
                                config=config)
    else:
        lava = simulate(net, x, steps, labels=labels, record="counts", digest_key=key,
                        progress=progress, config=config)
    emu = emulate(net, x, steps, labels=labels, record="counts", digest_key=key,
                  batch_size=emulator_batch_size, progress=progress)
    lava.extra["digest_key"] = key
    out = CheckResult(lava=lava, emulator=emu, mismatches=compare_results(lava, emu))
    bad = differing_samples(lava, emu)
    if not out.mismatches and not len(bad):
        return out
    if not len(bad):  # e.g. a shape mismatch: nothing to re-run per sample
        return out
    start, stop = rerun_range(bad, max_rerun)
    log.info("re-running samples %d..%d with full spike trains", start, stop - 1)
    full = simulate(net, x[start:stop], steps, record="spikes", first_sample=start,
                    config=config)
    ref = emulate(net, x[start:stop], steps, record="spikes",
                  batch_size=emulator_batch_size)
    out.located = [replace(m, sample=None if m.sample is None else m.sample + start)
                   for m in compare_results(full, ref)]
    out.rerun = (start, stop)
    return out
