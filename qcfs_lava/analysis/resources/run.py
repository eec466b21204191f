"""Resources with measured traffic: run the network on test data, then map it."""

from __future__ import annotations

from qcfs_lava.analysis.counts import count_ops
from qcfs_lava.analysis.energy import EnergyConstants
from qcfs_lava.analysis.resources.mapping import check_spike_kind, map_resources
from qcfs_lava.analysis.resources.pools import compare_unfolded_pools
from qcfs_lava.analysis.resources.results import ResourceRunResult
from qcfs_lava.errors import AnalysisError
from qcfs_lava.network import IntegerNetwork

DEFAULT_STEPS = 8


def check_run_options(samples: int | None = None, steps: int | None = None) -> None:
    """Raise :class:`~qcfs_lava.errors.AnalysisError` for a sample or step count below 1."""
    if samples is not None and samples < 1:
        raise AnalysisError(f"--samples must be >= 1, got {samples}")
    if steps is not None and steps < 1:
        raise AnalysisError(f"--steps must be >= 1, got {steps}")


def measure_resources(
    net: IntegerNetwork,
    chip: str = "loihi1",
    *,
    samples: int | None = None,
    steps: int | None = None,
    dataset: str | None = None,
    data_root: str | None = None,
    check_pools: bool = False,
    batch_size: int = 256,
    constants: EnergyConstants | None = None,
    progress: bool = True,
) -> ResourceRunResult:
    """:func:`map_resources`, with spike traffic, hops and energy measured by a run.

    With ``samples``, the emulator runs ``net`` on the first ``samples`` test samples, and
    the operation counts and per-neuron spike counts of that run weight the traffic, the hops
    and the Loihi 1 energy. Without, the report is structural.

    Args:
        net: the integer network.
        chip: ``"loihi1"`` or ``"loihi2"``.
        samples: test samples to run (``None``: no run).
        steps: ``T`` of the run (default: the one recorded in ``net``, else 8).
        dataset: dataset of the run (default: the one recorded in ``net``).
        data_root: folder holding the dataset files.
        check_pools: record spike trains and compare, at every step, the input currents of
            each pool-folded layer with those of a separate sum pool followed by the smaller
            kernel (:func:`~qcfs_lava.analysis.resources.compare_unfolded_pools`); needs
            ``samples``.
        batch_size: samples per emulator batch.
        constants: energy constants (the published defaults when ``None``).
        progress: show the run's progress bar.

    Raises:
        AnalysisError: a count below 1, or ``check_pools`` without ``samples``.
        DatasetError: no dataset given or recorded, its files missing, or a label beyond
            the network's classes.
    """
    check_run_options(samples, steps)
    check_spike_kind(net, chip)  # before any run
    if samples is None:
        if check_pools:
            raise AnalysisError("--check-pools needs a run: pass --samples N")
        return ResourceRunResult(map_resources(net, chip, constants=constants))
    from qcfs_lava.data import check_label_range, load_test_samples
    from qcfs_lava.emulator import emulate

    steps = steps or int(net.metadata.get("steps", DEFAULT_STEPS))
    x, y, split = load_test_samples(dataset or net.metadata.get("dataset"), data_root, samples)
    check_label_range(split, net.num_classes)
    res = emulate(net, x, steps, labels=y, record="spikes" if check_pools else "counts",
                  batch_size=batch_size, progress=progress)
    counts = res.neuron_counts if res.neuron_counts is not None else tuple(
        s.sum(axis=1, dtype="int64") for s in res.spikes)
    report = map_resources(net, chip, ops=count_ops(net, res), neuron_counts=counts,
                           constants=constants)
    return ResourceRunResult(
        report=report,
        samples=res.num_samples,
        steps=steps,
        accuracy=res.accuracy,
        pool_check=compare_unfolded_pools(net, res.spikes) if check_pools else None,
    )
