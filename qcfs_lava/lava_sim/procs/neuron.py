"""The QCFS integrate-and-fire neuron as a Lava process, with a bit-accurate CPU model.

Per time step, all integers (``docs/contract.md`` section 3, :mod:`qcfs_lava.network`)::

    acc(t) = a_in(t)                                # Lava sums every connection into a_in
    a(t)   = acc(t) << e   (e >= 0)   or   acc(t) >> -e   (e < 0, arithmetic: floor)
    v(t)   = clamp(v(t-1) + a(t) + bias, -2**23, 2**23 - 1)
    s(t)   = [v(t) >= v_th];   v(t) -= s(t) * v_th          # spiking layers only
    v      = v_init at the start of every sample window

``bias = bias_mant << 6`` and ``v_th = vth_mant << 6`` are passed in state units. Sample ``k``,
logical step ``t`` runs at Lava time step ``offset + k * steps + t``; outside the ``N`` windows
the neuron is idle (sends zeros, keeps no state). Lava's LIF differs on purpose: it fires on
``>``, resets to 0 and has no per-sample reset.

Records, per sample: the number of membrane updates that saturated; for spiking layers the
spike total, per-neuron spike counts (``record="counts"``) or the full spike train
(``record="spikes"``), and, given a key, a 64-bit digest of the train
(:mod:`qcfs_lava.digest`); for the output layer the accumulated potential ``v(T) - v_init``.

Per-neuron records travel one of two ways. With ``record_to`` (the runner's default) the
model keeps them in its own memory and writes them to ``record_to`` (an ``.npz`` file, in
Lava's layout) once, at the end of the last sample window: nothing crosses Lava's channels
per step or per sample. Without it they are packed into the ``record_words`` Var
(:mod:`.packing`) and read back with ``Var.get``, which lava sends one float64 message per
element: for a full-width VGG-16 that read costs several times the run itself.
"""

from __future__ import annotations

import os

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from qcfs_lava import hardware as hw
from qcfs_lava.digest import digest_keys
from qcfs_lava.lava_sim.procs import packing
from qcfs_lava.results import RecordMode

RECORD_MODES = tuple(mode.value for mode in RecordMode)


def record_layout(record: str, steps: int, num_neurons: int) -> tuple[int, int]:
    """``(bits per value, words per sample)`` of a spiking layer's packed record."""
    if record == "spikes":
        return 1, packing.num_words(steps * num_neurons, 1)
    if record == "counts":
        bits = max(1, int(steps).bit_length())
        return bits, packing.num_words(num_neurons, bits)
    return 0, 1


class _QcfsBase(AbstractProcess):
    def __init__(self, *, shape, weight_exp, bias, v_init, steps, offset, num_samples,
                 first_sample=0, name=None, **params) -> None:
        shape = tuple(int(s) for s in shape)
        bias = np.broadcast_to(np.asarray(bias, dtype=np.int64), shape).astype(np.int32)
        super().__init__(shape=shape, weight_exp=int(weight_exp), steps=int(steps),
                         offset=int(offset), num_samples=int(num_samples),
                         first_sample=int(first_sample), name=name, **params)
        self.a_in = InPort(shape=shape)
        self.v = Var(shape=shape, init=int(v_init))
        self.v_init = Var(shape=(1,), init=int(v_init))
        self.bias = Var(shape=shape, init=bias)
        self.saturations = Var(shape=(int(num_samples),), init=0)


class QcfsNeuron(_QcfsBase):
    """A layer of spiking QCFS integrate-and-fire neurons (binary spikes, soft reset).

    Args:
        shape: neuron shape in Lava's layout (``(X, Y, C)`` or ``(N,)``).
        vth: threshold in state units (``vth_mant << 6``).
        v_init: potential at the start of every sample, state units.
        weight_exp: exponent ``e`` applied to the summed input.
        bias: bias in state units (``bias_mant << 6``), broadcastable to ``shape``.
        steps: time steps ``T`` per sample (the reset interval).
        offset: Lava time step of sample 0's first logical step.
        num_samples: samples ``N`` streamed in this run.
        record: ``"total"`` (spikes per sample), ``"counts"`` (per neuron) or ``"spikes"``.
        record_to: ``.npz`` path the per-neuron records and digests are written to at the
            end of the run (``None``: counts and trains go to ``record_words``).
        digest_key: key of the spike-train digests (``None``: no digests); needs
            ``record_to``.
        layer_index: the layer's index in the network (selects its digest words).
        first_sample: index of this run's sample 0 in the whole request (not used by the
            dynamics; for models that name samples, such as fault injection in tests).
    """

    def __init__(self, *, shape, vth, v_init, weight_exp, bias, steps, offset, num_samples,
                 record="total", record_to=None, digest_key=None, layer_index=0,
                 first_sample=0, name=None) -> None:
        if record not in RECORD_MODES:
            raise ValueError(f"record must be one of {RECORD_MODES}, got {record!r}")
        if digest_key is not None and record_to is None:
            raise ValueError("spike-train digests are written to a file: pass record_to")
        num = int(np.prod(shape))
        bits, words = record_layout(record, steps, num) if record_to is None else (0, 1)
        super().__init__(shape=shape, weight_exp=weight_exp, bias=bias, v_init=v_init,
                         steps=steps, offset=offset, num_samples=num_samples,
                         first_sample=first_sample, name=name,
                         vth=int(vth), record=record, record_bits=bits,
                         record_to=None if record_to is None else str(record_to),
                         digest_key=None if digest_key is None else int(digest_key),
                         layer_index=int(layer_index))
        self.s_out = OutPort(shape=self.proc_params["shape"])
        self.vth = Var(shape=(1,), init=int(vth))
        self.spike_total = Var(shape=(int(num_samples),), init=0)
        self.record_words = Var(shape=(int(num_samples), words), init=0)


class QcfsOutput(_QcfsBase):
    """The non-spiking output layer: integrates, and records ``v(T) - v_init`` per sample.

    Its ``s_out`` port only ever carries zeros (the output layer never spikes); it exists so
    that lava-dl's NetX blocks, which wire every neuron's ``s_out``, can hold it.

    Args: as :class:`QcfsNeuron`, without ``vth`` and ``record``.
    """

    def __init__(self, *, shape, v_init, weight_exp, bias, steps, offset, num_samples,
                 first_sample=0, name=None) -> None:
        super().__init__(shape=shape, weight_exp=weight_exp, bias=bias, v_init=v_init,
                         steps=steps, offset=offset, num_samples=num_samples,
                         first_sample=first_sample, name=name)
        self.potentials = Var(shape=(int(num_samples),) + self.proc_params["shape"], init=0)
        self.s_out = OutPort(shape=self.proc_params["shape"])


class _PyQcfsModelBase(PyLoihiProcessModel):
    """Shared integration step of the QCFS neuron models."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    v_init: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    saturations: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def _window(self) -> tuple[int, int] | None:
        """``(sample, logical step)`` of this time step, or None when idle."""
        p = self.proc_params
        rel = self.time_step - p["offset"]
        if rel < 0 or rel >= p["num_samples"] * p["steps"]:
            return None
        return divmod(rel, p["steps"])

    def _integrate(self, acc: np.ndarray, k: int, t: int) -> np.ndarray:
        """Reset at window start, add the shifted input and the bias, saturate."""
        if t == 0:
            self.v[...] = self.v_init[0]
        acc = acc.astype(np.int64)
        e = self.proc_params["weight_exp"]
        a = np.left_shift(acc, e) if e >= 0 else np.right_shift(acc, -e)
        v = self.v.astype(np.int64) + a + self.bias
        over = (v > hw.STATE_MAX) | (v < hw.STATE_MIN)
        if over.any():
            self.saturations[k] += int(over.sum())
            v = np.clip(v, hw.STATE_MIN, hw.STATE_MAX)
        return v


@implements(proc=QcfsNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyQcfsNeuronModelFixed(_PyQcfsModelBase):
    """Bit-accurate CPU model of :class:`QcfsNeuron`."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    spike_total: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    record_words: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=53)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._counts = None
        self._train = None
        self._store = None  # the records kept in memory until the run's last window

    def run_spk(self) -> None:
        acc = self.a_in.recv()
        where = self._window()
        if where is None:
            self.s_out.send(np.zeros(self.v.shape, dtype=np.int32))
            return
        k, t = where
        v = self._integrate(acc, k, t)
        vth = int(self.vth[0])
        s = v >= vth
        v[s] -= vth
        self.v[...] = v
        self.s_out.send(s.astype(np.int32))
        self._record(s, k, t)

    def _record(self, s: np.ndarray, k: int, t: int) -> None:
        p = self.proc_params
        n = int(s.sum())
        if n:
            self.spike_total[k] += n
        if p["record_to"] is not None:
            self._keep(s.reshape(-1), k, t)
        elif p["record"] == "counts":
            if t == 0:
                self._counts = np.zeros(s.size, dtype=np.int64)
            self._counts += s.reshape(-1)
            if t == p["steps"] - 1:
                self.record_words[k] = packing.pack(self._counts, p["record_bits"])
        elif p["record"] == "spikes":
            if t == 0:
                self._train = np.zeros((p["steps"], s.size), dtype=np.int64)
            self._train[t] = s.reshape(-1)
            if t == p["steps"] - 1:
                self.record_words[k] = packing.pack(self._train, 1)

    def _keep(self, s: np.ndarray, k: int, t: int) -> None:
        """Add step ``t`` of sample ``k`` to the in-memory records; write them after the last."""
        p = self.proc_params
        if self._store is None:
            self._store = _RecordStore(p, s.size)
        self._store.add(s, k, t)
        if k == p["num_samples"] - 1 and t == p["steps"] - 1:
            self._store.write(p["record_to"])


class _RecordStore:
    """Per-neuron records of one layer over a whole run, in Lava's flattening.

    ``counts`` ``(N, n)`` (the smallest unsigned type holding ``T``), ``spikes`` ``(N, T, n)``
    bool, ``digests`` ``(N,)`` uint64, as the record mode and key ask.
    """

    def __init__(self, p: dict, n: int) -> None:
        num, steps = p["num_samples"], p["steps"]
        self.arrays: dict[str, np.ndarray] = {}
        if p["record"] == "counts":
            self.arrays["counts"] = np.zeros((num, n), dtype=np.min_scalar_type(steps))
        elif p["record"] == "spikes":
            self.arrays["spikes"] = np.zeros((num, steps, n), dtype=bool)
        self.keys = None
        if p["digest_key"] is not None:
            self.arrays["digests"] = np.zeros(num, dtype=np.uint64)
            # the words are indexed in torch's flattening; permute them to Lava's once
            shape = p["shape"]
            keys = digest_keys(p["digest_key"], p["layer_index"], steps, n)
            keys = keys.reshape(steps, *shape[::-1]).transpose(0, *range(len(shape), 0, -1))
            self.keys = np.ascontiguousarray(keys.reshape(steps, n))

    def add(self, s: np.ndarray, k: int, t: int) -> None:
        if "counts" in self.arrays:
            self.arrays["counts"][k] += s
        elif "spikes" in self.arrays:
            self.arrays["spikes"][k, t] = s
        if self.keys is not None:
            # array arithmetic: wraps modulo 2**64 as the digest is defined
            self.arrays["digests"][k:k + 1] += self.keys[t][s].sum(dtype=np.uint64)

    def write(self, path: str) -> None:
        """Write the records to ``path`` (``.npz``) atomically."""
        tmp = f"{path}.part"
        with open(tmp, "wb") as f:
            np.savez(f, **self.arrays)
        os.replace(tmp, path)


@implements(proc=QcfsOutput, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyQcfsOutputModelFixed(_PyQcfsModelBase):
    """Bit-accurate CPU model of :class:`QcfsOutput`."""

    potentials: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=25)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)

    def run_spk(self) -> None:
        acc = self.a_in.recv()
        self.s_out.send(np.zeros(self.v.shape, dtype=np.int32))
        where = self._window()
        if where is None:
            return
        k, t = where
        v = self._integrate(acc, k, t)
        self.v[...] = v
        if t == self.proc_params["steps"] - 1:
            self.potentials[k] = v - int(self.v_init[0])
