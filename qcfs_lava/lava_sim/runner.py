"""Build an integer network out of Lava processes and stream samples through it.

What runs (``docs/contract.md``, section 4):

- a :class:`~.procs.io.SampleInput` sending each sample's uint8 pixels as graded spikes for
  ``T`` consecutive steps, samples back to back;
- per synapse, lava's own ``Dense`` (bit-accurate, ``weight_exp = 0``, mixed sign mode) or
  ``Conv`` (weights converted from torch order), run by the bit-exact BLAS models
  :class:`~.procs.dense.PyDenseModelFast` and :class:`~.procs.conv.PyConvModelFast` unless
  lava's stock models are asked for;
- per layer, a :class:`~.procs.neuron.QcfsNeuron` (hidden) or
  :class:`~.procs.neuron.QcfsOutput` (output), which apply the layer's exponent ``e``.

Every synapse adds one step of latency. Layer ``l`` handles logical step ``t`` of sample
``k`` at Lava time step ``1 + depth_l + k * T + t`` (``depth`` from
:meth:`IntegerNetwork.depths`) and resets to ``v_init`` at the start of each window. A
synapse from layer ``j`` into ``l`` is preceded by a :class:`~.procs.io.SpikeDelay` of
``depth_l - depth_j - 1`` steps, so all synapses of a layer deliver the same logical step at
the same time. ``N`` samples take ``N * T + depth_out`` steps in one run.

Records: per-sample totals (spikes, saturations, output potentials) are Vars read once per
run. Per-neuron records (counts, spike trains) and the keyed spike-train digests
(:mod:`qcfs_lava.digest`) are kept by each neuron model in its own memory and written to one
file per layer in a temporary folder when its last sample window ends; the runner reads the
files after the run (``record_transport="file"``). ``record_transport="var"`` is the previous
way, kept for comparison: records packed into a Var and read with ``Var.get``, which lava
sends one element per message.

Layouts: Lava keeps images as ``(X, Y, C) = (W, H, C)``; torch as ``(C, H, W)``. A dense
synapse from a ``(C, H, W)`` source flattens it in torch's C, H, W order: its weight columns
are permuted to Lava's flattening, which gives the same sums.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.conv.process import Conv
from lava.proc.dense.process import Dense
from lava.utils.weightutils import SignMode

from qcfs_lava import hardware as hw
from qcfs_lava.errors import LavaSimulationError, NetworkValidationError
from qcfs_lava.lava_sim.procs import packing
from qcfs_lava.lava_sim.procs.conv import PyConvModelFast
from qcfs_lava.lava_sim.procs.dense import PyDenseModelFast
from qcfs_lava.lava_sim.procs.io import SampleInput, SpikeDelay
from qcfs_lava.lava_sim.procs.neuron import QcfsNeuron, QcfsOutput, record_layout
from qcfs_lava.network import INPUT, IntegerNetwork, NeuronLayer, Synapse
from qcfs_lava.progress import bar
from qcfs_lava.results import RecordMode, SpikeRunResult, argmax_first, check_run_arguments

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class LavaRunConfig:
    """How :func:`simulate` runs Lava.

    Args:
        fast_conv: run lava's ``Conv`` with the bit-exact BLAS model (else lava's stock
            scipy model: same numbers, much slower, and wrong for ``groups >= 128``, which
            its int8 ``groups`` variable cannot hold).
        fast_dense: run lava's ``Dense`` with the bit-exact BLAS model (else lava's stock
            integer model, same numbers).
        max_record_bytes: upper bound on the recorded arrays of one Lava run; larger
            requests are split into several runs (chunks of samples).
        max_samples_per_run: upper bound on samples per Lava run (``None``: no bound).
        record_transport: how per-neuron records come back: ``"file"`` (kept in each
            neuron model, written once per run) or ``"var"`` (the previous way: packed into
            a Var read with ``Var.get``, one message per element; no digests).
        neuron_model: a process model class for :class:`~.procs.neuron.QcfsNeuron`
            (``None``: the bit-accurate :class:`~.procs.neuron.PyQcfsNeuronModelFixed`);
            a test injects faults with it.
    """

    fast_conv: bool = True
    fast_dense: bool = True
    max_record_bytes: int = 64 << 20
    max_samples_per_run: int | None = None
    record_transport: str = "file"
    neuron_model: type | None = None

    def __post_init__(self) -> None:
        if self.record_transport not in RECORD_TRANSPORTS:
            raise NetworkValidationError(
                f"record_transport must be one of {RECORD_TRANSPORTS}, got "
                f"{self.record_transport!r}")


RECORD_TRANSPORTS = ("file", "var")


def lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Lava's layout of a torch shape: ``(C, H, W) -> (W, H, C)``; ``(N,)`` unchanged."""
    return tuple(shape[::-1])


def to_lava(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Per-sample arrays ``(N, *shape)`` in torch layout -> Lava layout."""
    if len(shape) == 3:
        return np.ascontiguousarray(np.asarray(x).transpose(0, 3, 2, 1))
    return np.asarray(x)


def from_lava_flat(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``(..., prod(shape))`` flattened in Lava layout -> ``(..., *shape)`` torch layout."""
    lead = x.shape[:-1]
    x = x.reshape(*lead, *lava_shape(shape))
    if len(shape) == 3:
        n = len(lead)
        x = x.transpose(*range(n), n + 2, n + 1, n)
    return x


def torch_conv_to_lava(weight: np.ndarray) -> np.ndarray:
    """Torch conv weight ``(C_out, C_in/g, kH, kW)`` -> lava ``(C_out, kW, kH, C_in/g)``.

    Lava convolves (torch correlates), so the kernel is flipped spatially, as in lava-dl's
    ``netx.hdf5.Network.create_conv``.
    """
    return np.ascontiguousarray(np.asarray(weight)[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))


def dense_weight_for_lava(syn: Synapse, src_shape: tuple[int, ...],
                          dst_shape: tuple[int, ...]) -> np.ndarray:
    """Dense weights with columns (and rows) permuted from torch to Lava flattening."""
    w = np.asarray(syn.weight)
    if len(src_shape) == 3:
        w = w.reshape(w.shape[0], *src_shape).transpose(0, 3, 2, 1).reshape(w.shape[0], -1)
    if len(dst_shape) == 3:
        w = w.reshape(*dst_shape, -1).transpose(2, 1, 0, 3).reshape(-1, w.shape[-1])
    return np.ascontiguousarray(w)


@dataclass
class LavaNetwork:
    """The Lava processes of one built network (what :func:`build_network` returns)."""

    net: IntegerNetwork
    steps: int
    num_samples: int
    record: RecordMode
    source: SampleInput
    record_dir: str | None = None
    digest_key: int | None = None
    layers: list = field(default_factory=list)
    synapses: list = field(default_factory=list)
    delays: list = field(default_factory=list)

    @property
    def num_steps(self) -> int:
        """Lava time steps that stream every sample through the output layer."""
        return self.num_samples * self.steps + self.net.depths()[-1]


def build_network(net: IntegerNetwork, x: np.ndarray, steps: int, *,
                  record: RecordMode | str | None = None, record_dir: str | None = None,
                  digest_key: int | None = None, first_sample: int = 0) -> LavaNetwork:
    """Create and connect the Lava processes that run ``net`` on the samples ``x``.

    Args:
        net: the integer network.
        x: ``(N, *net.input_shape)`` uint8 samples (torch layout).
        steps: time steps ``T`` per sample.
        record: a :class:`~qcfs_lava.results.RecordMode` or its name (``None``: spike totals).
        record_dir: folder the neuron models write their per-neuron records and digests
            to, one file per layer (``None``: per-neuron records go through Vars).
        digest_key: key of the spike-train digests (``None``: none); needs ``record_dir``.
        first_sample: index of ``x[0]`` in the whole request, a parameter of every neuron
            process (``proc_params["first_sample"]``) for models that name samples.

    Returns:
        The processes, ready to ``run`` for :attr:`LavaNetwork.num_steps` steps.
    """
    num = int(x.shape[0])
    depths = net.depths()
    source = SampleInput(data=to_lava(x, net.input_shape), steps=steps, name="input")
    mode = RecordMode.parse(record)
    if digest_key is not None and record_dir is None:
        raise NetworkValidationError("spike-train digests need a record_dir to be written to")
    built = LavaNetwork(net=net, steps=steps, num_samples=num, record=mode, source=source,
                        record_dir=record_dir, digest_key=digest_key)
    for index, (layer, depth) in enumerate(zip(net.layers, depths, strict=True)):
        common = dict(
            shape=lava_shape(layer.shape),
            v_init=layer.v_init,
            weight_exp=layer.weight_exp,
            bias=to_lava(layer.bias[None], layer.shape)[0],
            steps=steps,
            offset=1 + depth,
            num_samples=num,
            first_sample=int(first_sample),
            name=layer.name,
        )
        if layer.spiking:
            to_file = record_dir is not None and (mode is not RecordMode.TOTAL
                                                  or digest_key is not None)
            proc = QcfsNeuron(vth=layer.v_th, record=mode.value,
                              record_to=_record_file(record_dir, index) if to_file else None,
                              digest_key=digest_key, layer_index=index, **common)
        else:
            proc = QcfsOutput(**common)
        for syn in layer.synapses:
            _connect(built, syn, layer, proc, depth, depths)
        built.layers.append(proc)
    return built


def _record_file(record_dir: str, index: int) -> str:
    return os.path.join(record_dir, f"layer{index}.npz")


def _connect(built: LavaNetwork, syn: Synapse, layer: NeuronLayer, proc, depth: int,
             depths: tuple[int, ...]) -> None:
    net = built.net
    src_shape = net.source_shape(syn.source)
    port = built.source.s_out if syn.source == INPUT else built.layers[syn.source].s_out
    src_depth = 0 if syn.source == INPUT else depths[syn.source]
    delay = depth - src_depth - 1
    if delay > 0:
        d = SpikeDelay(shape=lava_shape(src_shape), delay=delay,
                       name=f"delay_{syn.source}_to_{layer.name}")
        port.connect(d.s_in)
        port = d.s_out
        built.delays.append(d)
    bits = hw.INPUT_BITS if syn.source == INPUT else 0
    if syn.kind == "dense":
        w = dense_weight_for_lava(syn, src_shape, layer.shape)
        conn = Dense(weights=w, weight_exp=0, num_weight_bits=8, sign_mode=SignMode.MIXED,
                     num_message_bits=bits, name=f"dense_{syn.source}_to_{layer.name}")
        (port.flatten() if len(src_shape) == 3 else port).connect(conn.s_in)
        out = conn.a_out
        if len(layer.shape) == 3:
            out = out.reshape(lava_shape(layer.shape))
        out.connect(proc.a_in)
    else:
        conn = Conv(
            weight=torch_conv_to_lava(syn.weight),
            input_shape=lava_shape(src_shape),
            stride=syn.stride[::-1],
            padding=syn.padding[::-1],
            dilation=syn.dilation[::-1],
            groups=syn.groups,
            num_message_bits=bits,
            name=f"conv_{syn.source}_to_{layer.name}",
        )
        if tuple(conn.output_shape) != lava_shape(layer.shape):
            raise NetworkValidationError(
                f"layer {layer.name!r}: lava's Conv produces {tuple(conn.output_shape)} "
                f"(X, Y, C), the layer is {lava_shape(layer.shape)}"
            )
        port.connect(conn.s_in)
        conn.a_out.connect(proc.a_in)
    built.synapses.append(conn)


def _model_tracebacks(head) -> list[str]:
    """Tracebacks of the Lava processes that raised (lava only says "N Exception(s)")."""
    runtime = getattr(head, "_runtime", None)
    infra = getattr(runtime, "_messaging_infrastructure", None)
    out = []
    for actor in getattr(infra, "actors", ()):
        exc = getattr(actor, "exception", None)
        if exc:
            out.append(str(exc[1]))
    return out


def synapse_models(config: LavaRunConfig | None = None) -> dict:
    """The ``exception_proc_model_map`` that selects the synapse models of ``config``."""
    config = config or LavaRunConfig()
    models = {}
    if config.neuron_model is not None:
        models[QcfsNeuron] = config.neuron_model
    if config.fast_conv:
        models[Conv] = PyConvModelFast
    if config.fast_dense:
        models[Dense] = PyDenseModelFast
    return models


def run_config(config: LavaRunConfig | None = None) -> Loihi2SimCfg:
    """Lava's run configuration: fixed-point models, the synapse models of ``config``."""
    return Loihi2SimCfg(select_tag="fixed_pt",
                        exception_proc_model_map=synapse_models(config) or None)


def _run(built: LavaNetwork, config: LavaRunConfig) -> dict:
    """Run the built network and read back what the neuron models recorded."""
    cfg = run_config(config)
    head = built.layers[-1]
    failed = False
    try:
        with _interrupt_in_parent_only():
            head.run(condition=RunSteps(num_steps=built.num_steps), run_cfg=cfg)
    except KeyboardInterrupt:
        _terminate_lava_processes(lambda child: type(child).__name__ == "SystemProcess")
        _shutdown_after_failure(head)  # then lava's shared memory and watchdog managers
        _terminate_lava_processes()
        raise
    except Exception as exc:  # lava raises a bare RuntimeError for failures in models
        failed = True
        details = "\n".join(_model_tracebacks(head))
        raise LavaSimulationError(
            f"the Lava simulation failed: {exc}"
            + (f"\nLava process model traceback:\n{details}" if details else "")
        ) from exc
    finally:
        if failed:
            _shutdown_after_failure(head)
    try:
        t0 = time.perf_counter()
        out = _read(built)
        out["read_s"] = time.perf_counter() - t0
        return out
    finally:
        head.stop()


@contextmanager
def _interrupt_in_parent_only() -> Iterator[None]:
    """Ctrl-C during a Lava run interrupts this process only.

    Lava forks one process per Lava process; a terminal's Ctrl-C reaches all of them, and each
    would die with its own ``KeyboardInterrupt`` traceback. The handler installed here is
    inherited by the forked processes, where it does nothing; in this process it raises
    ``KeyboardInterrupt``, and :func:`_run` then terminates the forked processes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    parent = os.getpid()

    def handler(signum, frame) -> None:
        if os.getpid() == parent:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _terminate_lava_processes(which=None) -> None:
    """Stop the processes a Lava run forked (after Ctrl-C they would wait for ever).

    Args:
        which: a predicate selecting the child processes to stop (default: all).
    """
    children = [c for c in multiprocessing.active_children() if which is None or which(c)]
    for child in children:
        child.terminate()
    deadline = time.monotonic() + 5.0
    while any(child.is_alive() for child in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    for child in children:
        if child.is_alive():
            child.kill()


def _shutdown_after_failure(head) -> None:
    """Release what a failed Lava run holds.

    After a model raised, lava's runtime has already joined every process; its ``stop()``
    would wait forever for replies, so only the shared memory manager and the watchdog
    are stopped here.
    """
    runtime = getattr(head, "_runtime", None)
    if runtime is None:
        return
    runtime._is_started = False
    runtime._is_running = False
    for part in ("_messaging_infrastructure", "_watchdog_manager"):
        try:
            getattr(runtime, part).stop()
        except Exception:  # noqa: BLE001 - best effort clean-up of a failed run
            log.debug("lava clean-up of %s failed", part, exc_info=True)


def _read(built: LavaNetwork) -> dict:
    net, num, steps = built.net, built.num_samples, built.steps
    hidden = built.layers[:-1]
    out: dict = {
        "potentials": np.rint(built.layers[-1].potentials.get()).astype(np.int64)
        .reshape(num, -1),
        "saturations": np.stack(
            [np.rint(p.saturations.get()).astype(np.int64) for p in built.layers], axis=1
        ).reshape(num, len(built.layers)),
        "spike_counts": np.stack(
            [np.rint(p.spike_total.get()).astype(np.int64) for p in hidden], axis=1
        ).reshape(num, len(hidden)) if hidden else np.zeros((num, 0), np.int64),
    }
    if net.layers[-1].num_neurons and len(net.output.shape) == 3:
        out["potentials"] = from_lava_flat(out["potentials"], net.output.shape).reshape(num, -1)
    if built.record_dir is not None and (built.record is not RecordMode.TOTAL
                                         or built.digest_key is not None):
        out.update(_read_files(built))
    elif built.record is not RecordMode.TOTAL:
        per_layer = []
        for proc, layer in zip(hidden, net.layers[:-1], strict=True):
            n = layer.num_neurons
            bits, _ = record_layout(built.record.value, steps, n)
            words = proc.record_words.get().reshape(num, -1)
            if built.record is RecordMode.SPIKES:
                flat = packing.unpack(words, 1, steps * n).reshape(num, steps, n)
                per_layer.append(from_lava_flat(flat, layer.shape).astype(bool))
            else:
                flat = packing.unpack(words, bits, n)
                per_layer.append(from_lava_flat(flat, layer.shape).astype(np.int32))
        out["record"] = tuple(per_layer)
    return out


def _read_files(built: LavaNetwork) -> dict:
    """The records the neuron models wrote, in torch layout."""
    net, num = built.net, built.num_samples
    per_layer, digests = [], []
    for index, layer in enumerate(net.layers[:-1]):
        path = _record_file(built.record_dir, index)
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except (OSError, ValueError) as exc:
            raise LavaSimulationError(
                f"the Lava neuron model of layer {layer.name!r} did not leave readable "
                f"records in {path} ({exc}); check that the temporary folder "
                f"({tempfile.gettempdir()}) has free space, or set TMPDIR to one that has"
            ) from exc
        if built.record is RecordMode.SPIKES:
            per_layer.append(from_lava_flat(arrays["spikes"], layer.shape))
        elif built.record is RecordMode.COUNTS:
            per_layer.append(from_lava_flat(arrays["counts"], layer.shape).astype(np.int32))
        if built.digest_key is not None:
            digests.append(arrays["digests"])
    out: dict = {}
    if built.record is not RecordMode.TOTAL:
        out["record"] = tuple(per_layer)
    if built.digest_key is not None:
        out["digests"] = (np.stack(digests, axis=1) if digests
                          else np.zeros((num, 0), np.uint64))
    return out


def _record_bytes(net: IntegerNetwork, steps: int, record: RecordMode) -> int:
    """Bytes one sample's records take once unpacked."""
    hidden = sum(layer.num_neurons for layer in net.layers[:-1])
    if record is RecordMode.SPIKES:
        return hidden * steps + 4 * hidden
    return 4 * hidden + 8 * net.num_classes


@contextmanager
def _record_folder(config: LavaRunConfig) -> Iterator[str | None]:
    """A temporary folder for one run's record files (``None`` for the Var transport)."""
    if config.record_transport != "file":
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="qcfs-lava-records-") as folder:
        yield folder


def simulate(
    net: IntegerNetwork,
    x: np.ndarray,
    steps: int,
    *,
    labels: np.ndarray | None = None,
    record: RecordMode | str | None = None,
    digest_key: int | None = None,
    first_sample: int = 0,
    progress: bool = False,
    config: LavaRunConfig | None = None,
) -> SpikeRunResult:
    """Run ``net`` in Lava's CPU simulator on the samples ``x``, ``steps`` steps each.

    Samples stream back to back through one Lava run (``N * T + depth`` steps); a request
    whose records would exceed ``config.max_record_bytes`` is split into several runs.

    Args:
        net: the integer network.
        x: input samples, uint8 (or integers in [0, 255]).
        steps: time steps ``T`` per sample (>= 1).
        labels: ``(N,)`` ground truth, optional.
        record: ``None``, ``"counts"`` (per-neuron spike counts) or ``"spikes"`` (trains).
        digest_key: also compute each sample's and layer's keyed spike-train digest
            (:mod:`qcfs_lava.digest`) inside the neuron models; ``None``: no digests.
        first_sample: index of ``x[0]`` in a larger request (a shard, a re-run range),
            passed to the neuron processes (see :func:`build_network`).
        progress: show a tqdm bar over chunks of samples.
        config: run options (:class:`LavaRunConfig`).

    Shape:
        x: ``(N, *net.input_shape)``.

    Returns:
        A :class:`~qcfs_lava.results.SpikeRunResult` with ``backend="lava"``; ``spikes``
        arrays are ``(N, T, *shape)`` bool and ``neuron_counts`` ``(N, *shape)`` int32, both
        in torch layout; ``digests`` ``(N, num_hidden)`` uint64 when a key is given;
        ``extra`` holds the wall time and the Lava steps run.

    Raises:
        NetworkValidationError: ``x``, ``steps`` or ``record`` do not fit ``net``, or ``net``
            was converted with integer ranges other than Loihi's (wider weights).
        LavaSimulationError: a Lava process model raised (its traceback is included).
    """
    config = config or LavaRunConfig()
    args = check_run_arguments(net, x, steps, labels=labels, record=record)
    if net.ranges != hw.LOIHI_RANGES:
        raise NetworkValidationError(f"Lava runs Loihi's 8-bit weights, not this network's "
                                     f"{net.ranges.weight_bits}-bit ones; emulate it instead")
    if digest_key is not None and config.record_transport != "file":
        raise NetworkValidationError(
            "spike-train digests are computed by the neuron models and written to files: "
            "use record_transport='file' (the default) to compute them")
    x, steps, record, labels = args.x.astype(np.int64), args.steps, args.record, args.labels
    num = x.shape[0]
    per_run = max(1, config.max_record_bytes // max(1, _record_bytes(net, steps, record)))
    if config.max_samples_per_run:
        per_run = min(per_run, int(config.max_samples_per_run))
    starts = list(range(0, num, per_run)) if num else []
    parts = []
    t0 = time.perf_counter()
    lava_steps = 0
    for start in bar(starts, desc="lava", unit="run", total=len(starts), enabled=progress,
                     leave=True):
        with _record_folder(config) as folder:
            built = build_network(net, x[start:start + per_run], steps, record=record,
                                  record_dir=folder, digest_key=digest_key,
                                  first_sample=first_sample + start)
            lava_steps += built.num_steps
            parts.append(_run(built, config))
    wall = time.perf_counter() - t0

    n_hidden = len(net.layers) - 1

    def cat(key, width):
        if not parts:
            return np.zeros((0, width), np.int64)
        return np.concatenate([p[key] for p in parts], axis=0)

    potentials = cat("potentials", net.num_classes)
    records = None
    if record is not RecordMode.TOTAL:
        records = tuple(
            np.concatenate([p["record"][i] for p in parts], axis=0) if parts
            else np.zeros((0,) + ((steps,) if record is RecordMode.SPIKES else ()) + layer.shape,
                          bool if record is RecordMode.SPIKES else np.int32)
            for i, layer in enumerate(net.layers[:-1])
        )
    neuron_counts = None
    if record is RecordMode.COUNTS:
        neuron_counts = records
    elif record is RecordMode.SPIKES:
        neuron_counts = tuple(s.sum(axis=1, dtype=np.int32) for s in records)
    digests = None
    if digest_key is not None:
        digests = (np.concatenate([p["digests"] for p in parts], axis=0) if parts
                   else np.zeros((0, n_hidden), np.uint64))
    return SpikeRunResult(
        steps=steps,
        layer_names=tuple(layer.name for layer in net.layers),
        potentials=potentials,
        predictions=argmax_first(potentials) if num else np.zeros(0, np.int64),
        spike_counts=cat("spike_counts", n_hidden),
        neuron_counts=neuron_counts,
        spikes=records if record is RecordMode.SPIKES else None,
        digests=digests,
        digest_key=digest_key,
        saturations=cat("saturations", len(net.layers)),
        labels=labels,
        backend="lava",
        extra={"wall_s": wall, "lava_steps": lava_steps, "runs": len(starts),
               "read_s": sum(p["read_s"] for p in parts),
               "samples_per_s": num / wall if wall > 0 else None},
    )
