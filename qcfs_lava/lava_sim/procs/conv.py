"""A fast, bit-exact fixed-point model for lava's own ``Conv`` process.

lava's stock ``PyConvModelFixed`` (lava/proc/conv/models.py) convolves with scipy, one
``convolve2d`` per (output, input) channel pair, in float64, then casts to int32 and wraps the
result to 24 bits (``utils.signed_clamp``). This model computes the same numbers with int64
numpy: one strided view and one ``einsum`` per kernel tap. Select it with
``Loihi2SimCfg(exception_proc_model_map={Conv: PyConvModelFast})``.

Lava's layout: input ``(X, Y, C_in)``, weight ``(C_out, kX, kY, C_in / groups)``; the stock
model computes a true convolution (the kernel flipped), with stride/padding/dilation in
``(X, Y)`` order.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv.models import AbstractPyConvModel
from lava.proc.conv.process import Conv


def conv_lava_int(x: np.ndarray, weight: np.ndarray, stride, padding, dilation,
                  groups: int) -> np.ndarray:
    """Lava-convention convolution in exact integer arithmetic.

    Args:
        x: ``(X, Y, C_in)`` integers.
        weight: ``(C_out, kX, kY, C_in / groups)`` integers (lava order, not flipped).
        stride, padding, dilation: ``(x, y)`` pairs.
        groups: convolution groups.

    Returns:
        ``(X_out, Y_out, C_out)`` int64, equal to ``lava.proc.conv.utils.conv``.
    """
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(weight, dtype=np.int64)[:, ::-1, ::-1, :]  # true convolution: flip
    (sx, sy), (px, py), (dx, dy) = (tuple(int(v) for v in a) for a in (stride, padding,
                                                                         dilation))
    cout, kx, ky, cg = w.shape
    g = int(groups)
    xp = np.pad(x, ((px, px), (py, py), (0, 0)))
    xo = (xp.shape[0] - dx * (kx - 1) - 1) // sx + 1
    yo = (xp.shape[1] - dy * (ky - 1) - 1) // sy + 1
    xg = xp.reshape(xp.shape[0], xp.shape[1], g, cg)
    wg = w.reshape(g, cout // g, kx, ky, cg)
    out = np.zeros((xo, yo, g, cout // g), dtype=np.int64)
    for i in range(kx):
        for j in range(ky):
            patch = xg[i * dx: i * dx + sx * (xo - 1) + 1: sx,
                       j * dy: j * dy + sy * (yo - 1) + 1: sy]
            out += np.einsum("xygc,gkc->xygk", patch, wg[:, :, i, j, :], optimize=False)
    return out.reshape(xo, yo, cout)


def wrap_signed(x: np.ndarray, bits: int) -> np.ndarray:
    """lava's ``signed_clamp``: wrap to a ``bits``-bit two's complement value."""
    base = 1 << bits
    return (x + base // 2) % base - base // 2


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "fast")
class PyConvModelFast(AbstractPyConvModel):
    """Conv with fixed point synapses, bit-exact with ``PyConvModelFixed``, numpy int64."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_buf: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    weight: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)

    def run_spk(self) -> None:
        self.a_out.send(self.a_buf)
        s_in = self.s_in.recv()
        if self.num_message_bits.item() <= 0:
            s_in = s_in.astype(bool)
        out = conv_lava_int(s_in, self.weight, self.stride, self.padding, self.dilation,
                            int(self.groups[0]))
        # the stock model casts float64 -> int32 (astype) before wrapping to 24 bits
        self.a_buf = wrap_signed(out.astype(np.int32).astype(np.int64), 24).astype(np.int32)
