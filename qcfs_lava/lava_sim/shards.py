"""Lava validation sharded over a Ray cluster: contiguous sample shards, one Lava run each.

``N`` samples are split into ``shards`` contiguous ranges (sizes differ by at most one);
each range runs as its own :func:`~.runner.simulate` call in a Ray task, so on its own set
of Lava processes, on whichever node Ray places it. Samples are independent (every neuron
resets to ``v_init`` at the start of each sample window, ``docs/contract.md``, section 4),
so the shards' results, concatenated in sample order, equal one run over all samples
exactly: spikes, potentials, counts and saturations.

Ray is an optional extra (``pip install "qcfs-lava[ray]"``). By default a local Ray
instance is started (and stopped afterwards) with one CPU per shard; ``address`` joins an
existing cluster (``"auto"`` or ``"ray://host:10001"``), whose nodes need qcfs-lava and lava
installed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np

from qcfs_lava.errors import MissingExtraError, NetworkValidationError, ShardFailedError
from qcfs_lava.network import IntegerNetwork
from qcfs_lava.results import SpikeRunResult, argmax_first

log = logging.getLogger(__name__)


def shard_ranges(num_samples: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous, half-open ``(start, stop)`` ranges covering ``num_samples``.

    Sizes differ by at most one; empty ranges are dropped (fewer samples than shards).
    """
    if int(shards) < 1:
        raise NetworkValidationError(f"workers must be >= 1, got {shards}")
    edges = np.linspace(0, num_samples, int(shards) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def merge_results(parts: list[SpikeRunResult], labels: np.ndarray | None = None
                  ) -> SpikeRunResult:
    """Concatenate per-shard results (in sample order) into one result."""
    if not parts:
        raise NetworkValidationError("no shard results to merge")
    first = parts[0]

    def cat(name):
        values = [getattr(p, name) for p in parts]
        if values[0] is None:
            return None
        if isinstance(values[0], tuple):
            return tuple(np.concatenate(layer, axis=0) for layer in zip(*values, strict=True))
        return np.concatenate(values, axis=0)

    potentials = cat("potentials")
    extra = {
        "wall_s": max(p.extra.get("wall_s", 0.0) for p in parts),
        "lava_steps": sum(p.extra.get("lava_steps", 0) for p in parts),
        "runs": sum(p.extra.get("runs", 0) for p in parts),
        "read_s": sum(p.extra.get("read_s", 0.0) for p in parts),
        "shards": len(parts),
    }
    return replace(
        first,
        potentials=potentials,
        predictions=argmax_first(potentials),
        spike_counts=cat("spike_counts"),
        neuron_counts=cat("neuron_counts"),
        spikes=cat("spikes"),
        digests=cat("digests"),
        saturations=cat("saturations"),
        labels=labels if labels is not None else cat("labels"),
        extra=extra,
    )


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise MissingExtraError(
            "simulate --workers > 1 runs the shards on Ray, which is not installed: "
            "install the extra with `pip install \"qcfs-lava[ray]\"`, or use --workers 1"
        ) from exc
    return ray


def _run_shard(net: IntegerNetwork, x: np.ndarray, steps: int, record, config,
               digest_key=None, first_sample=0):
    from qcfs_lava.lava_sim.runner import simulate

    return simulate(net, x, steps, record=record, config=config, digest_key=digest_key,
                    first_sample=first_sample)


def simulate_sharded(
    net: IntegerNetwork,
    x: np.ndarray,
    steps: int,
    *,
    workers: int,
    address: str | None = None,
    labels: np.ndarray | None = None,
    record: str | None = None,
    digest_key: int | None = None,
    progress: bool = False,
    config=None,
) -> SpikeRunResult:
    """Run ``net`` in Lava on ``x`` as ``workers`` contiguous shards on Ray; merge.

    Args:
        net, x, steps, labels, record, digest_key, config: as :func:`~.runner.simulate`.
        workers: number of shards (and of Ray tasks run at once on a local instance).
        address: Ray cluster to join (``ray.init(address=...)``); ``None`` starts a local
            instance with ``workers`` CPUs and stops it afterwards.
        progress: one tqdm bar over all samples, advanced as shards finish.

    Returns:
        One :class:`~qcfs_lava.results.SpikeRunResult` equal to a single run over ``x``;
        ``extra`` holds the wall time of the whole sharded run, the Lava steps and runs of
        all shards, and ``shards``.

    Raises:
        MissingExtraError: Ray is not installed.
        NetworkValidationError: bad ``workers`` or input (checked before Ray starts).
        ShardFailedError: a shard failed; the message names each failed sample range and
            the exception holds the finished shards' results.
    """
    x = net.check_input(x)
    if labels is not None:
        labels = np.asarray(labels).astype(np.int64).reshape(-1)
        if labels.shape[0] != x.shape[0]:
            raise NetworkValidationError(
                f"labels has {labels.shape[0]} entries for {x.shape[0]} samples")
    ranges = shard_ranges(len(x), workers)
    ray = _import_ray()
    if not ranges:  # no samples: nothing to shard
        from qcfs_lava.lava_sim.runner import simulate

        return simulate(net, x, steps, labels=labels, record=record, config=config,
                        digest_key=digest_key)
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=max(1, len(ranges)), include_dashboard=False,
                     log_to_driver=False)
        started = True
    t0 = time.perf_counter()
    bar = None
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_run_shard)
        net_ref = ray.put(net)
        pending = {task.remote(net_ref, x[a:b], steps, record, config, digest_key, a): (a, b)
                   for a, b in ranges}
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(x), desc=f"lava x{len(ranges)} shards", unit="sample")
        done: dict = {}
        failures: dict = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                span = pending.pop(ref)
                try:
                    done[span] = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - reported per shard below
                    cause = getattr(exc, "cause", None) or exc
                    failures[span] = f"{type(cause).__name__}: {cause}"
                    log.error("shard of samples %d..%d failed: %s", span[0], span[1] - 1,
                              failures[span])
                if bar is not None:
                    bar.update(span[1] - span[0])
    finally:
        if bar is not None:
            bar.close()
        if started:
            ray.shutdown()
    if failures:
        lines = "\n".join(f"  samples {a}..{b - 1}: {msg}" for (a, b), msg in
                          sorted(failures.items()))
        raise ShardFailedError(
            f"{len(failures)} of {len(ranges)} Lava shards failed (the other "
            f"{len(done)} finished and are kept):\n{lines}",
            failures=failures, completed=done)
    merged = merge_results([done[span] for span in ranges], labels)
    wall = time.perf_counter() - t0
    merged.extra.update(wall_s=wall, samples_per_s=len(x) / wall if wall > 0 else None,
                        shard_ranges=[list(r) for r in ranges])
    return merged
