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

import contextlib
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


RAY_CONNECT_TIMEOUT_S = 10.0  # to get an answer from a Ray cluster's address
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _answers_grpc(host: str, port: int, timeout: float) -> str | None:
    """Whether a gRPC server (a Ray head's GCS or Ray Client server) answers at
    ``host:port`` within ``timeout`` seconds; None if it does, else what went wrong.

    Ray's own connection retries for minutes when nothing, or something else, listens there;
    this probe is plain sockets (Ctrl-C stops it at once): the HTTP/2 connection preface is
    sent and a SETTINGS frame must come back.
    """
    import socket

    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(_HTTP2_PREFACE)
            head = b""
            while len(head) < 9:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    return "the connection was closed without an answer"
                head += chunk
    except TimeoutError:
        return f"no answer within {timeout:.0f} s"
    except OSError as exc:
        return exc.strerror or str(exc)
    if head[3] != 0x04:  # frame type SETTINGS
        return "the service there is not a Ray (gRPC) server"
    return None


_FIX = ("check --address (a Ray head's host:port, ray://host:10001 or auto) and that the "
        "cluster is running (`ray status`), or leave --address out to run the shards on a "
        "local Ray instance")


def _check_address(address: str, timeout_s: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """A typed error at once unless a Ray cluster answers at ``address`` within ``timeout_s``.

    ``auto`` is looked up the way Ray looks it up (``RAY_ADDRESS``, then the cluster started
    on this machine); ``ray://host:port`` (Ray Client) needs ``pip install "ray[client]"``. A
    plain ``host:port`` is probed before Ray is even imported, so Ctrl-C ends the command at
    once.
    """
    from qcfs_lava.errors import LavaSimulationError

    fix = _FIX
    client = address.startswith("ray://")
    if client:
        from ray._private.utils import get_ray_client_dependency_error

        missing = get_ray_client_dependency_error()
        if missing is not None:
            raise MissingExtraError(
                f"--address {address}: a ray:// address needs Ray Client, which is not "
                f"installed ({missing}); install it with `pip install \"ray[client]\"`, or "
                "give the head's host:port (its GCS port, default 6379) instead")
        target = address[len("ray://"):]
    elif address == "auto":
        from ray._private import services

        try:
            target = services.canonicalize_bootstrap_address(address)
        except Exception as exc:  # noqa: BLE001 - Ray raises several types here
            raise LavaSimulationError(f"--address auto: no running Ray cluster was found "
                                      f"({str(exc)[:160]}); {fix}") from None
        if target is None:
            raise LavaSimulationError(f"--address auto: no running Ray cluster was found "
                                      f"(RAY_ADDRESS unset, none started here); {fix}")
    else:
        target = address
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise LavaSimulationError(f"--address {address}: expected host:port; {fix}")
    problem = _answers_grpc(host.strip("[]"), int(port), timeout_s)
    if problem:
        raise LavaSimulationError(f"--address {address}: no Ray cluster answers at "
                                  f"{host}:{port} ({problem}); {fix}")


def _join(ray, address: str) -> None:
    """``ray.init(address=...)`` (after :func:`_check_address`) with typed errors."""
    from qcfs_lava.errors import LavaSimulationError

    try:
        ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        raise LavaSimulationError(f"--address {address}: cannot join the Ray cluster "
                                  f"({type(exc).__name__}: {str(exc)[:200]}); {_FIX}") from None


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
    if address and ranges:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            _import_ray()  # the missing-extra error
        _check_address(address)
    ray = _import_ray()
    if not ranges:  # no samples: nothing to shard
        from qcfs_lava.lava_sim.runner import simulate

        return simulate(net, x, steps, labels=labels, record=record, config=config,
                        digest_key=digest_key)
    started = False
    if not ray.is_initialized():
        if address:
            _join(ray, address)
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
        from qcfs_lava.progress import counter

        bar = counter(len(x), desc=f"lava x{len(ranges)} shards", enabled=progress,
                      unit="sample")
        done: dict = {}
        failures: dict = {}
        while pending:
            # a short wait, so that Ctrl-C is seen within a second
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
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
    except KeyboardInterrupt:
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise
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
