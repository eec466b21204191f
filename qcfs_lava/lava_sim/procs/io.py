"""Input and delay processes: stream samples as graded spikes, delay spikes by whole steps."""

from __future__ import annotations

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


class SampleInput(AbstractProcess):
    """Sends each sample as graded spikes for ``steps`` consecutive time steps.

    Sample ``k`` is sent at time steps ``k * steps + 1 .. (k + 1) * steps`` (Lava counts time
    steps from 1); after the last sample it sends zeros.

    Args:
        data: ``(N, *shape)`` non-negative integers (pixels), already in Lava's layout.
        steps: time steps per sample.
    """

    def __init__(self, *, data: np.ndarray, steps: int, name: str | None = None) -> None:
        data = np.asarray(data)
        super().__init__(data=data, steps=int(steps), name=name)
        self.data = Var(shape=data.shape, init=data.astype(np.int32))
        self.s_out = OutPort(shape=data.shape[1:])


@implements(proc=SampleInput, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySampleInputModel(PyLoihiProcessModel):
    """Fixed-point model of :class:`SampleInput`."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    data: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def run_spk(self) -> None:
        k = (self.time_step - 1) // self.proc_params["steps"]
        if k < self.data.shape[0]:
            self.s_out.send(self.data[k])
        else:
            self.s_out.send(np.zeros(self.data.shape[1:], dtype=np.int32))


class SpikeDelay(AbstractProcess):
    """Delays a spike (or graded spike) vector by ``delay >= 1`` time steps.

    ``s_out(t) = s_in(t - delay)``; zeros during the first ``delay`` steps.
    """

    def __init__(self, *, shape: tuple[int, ...], delay: int, name: str | None = None) -> None:
        if int(delay) < 1:
            raise ValueError(f"SpikeDelay needs delay >= 1, got {delay}")
        super().__init__(shape=tuple(shape), delay=int(delay), name=name)
        self.s_in = InPort(shape=tuple(shape))
        self.s_out = OutPort(shape=tuple(shape))
        self.buffer = Var(shape=(int(delay),) + tuple(shape), init=0)


@implements(proc=SpikeDelay, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySpikeDelayModel(PyLoihiProcessModel):
    """Ring buffer of ``delay`` steps: send the oldest entry, then store the newest."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    buffer: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def run_spk(self) -> None:
        slot = (self.time_step - 1) % self.buffer.shape[0]
        self.s_out.send(self.buffer[slot].copy())
        self.buffer[slot] = self.s_in.recv()
