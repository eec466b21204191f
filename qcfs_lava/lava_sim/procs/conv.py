"""A fast, bit-exact fixed-point model for lava's own ``Conv`` process.

lava's stock ``PyConvModelFixed`` (lava/proc/conv/models.py) convolves with scipy, one
``convolve2d`` per (output, input) channel pair, in float64, then casts to int32 and wraps the
result to 24 bits (``utils.signed_clamp``). This model computes the same numbers with one
im2col matrix product per step (BLAS), in a float type chosen so that the product is exact:

- every product ``w * x`` and every partial sum is an integer bounded by
  ``bound = max_o sum_k |W[k, o]| * max |x|``, in whatever order BLAS adds;
- float32 represents every integer of magnitude ``<= 2**24`` exactly, float64 every integer
  ``<= 2**53``; adding or multiplying (also fused) exactly representable integers whose exact
  result is representable gives that result;
- so the product is exact in float32 when ``bound < 2**24`` (:data:`FLOAT32_EXACT`), in
  float64 when ``bound < 2**53`` (:data:`FLOAT64_EXACT`); above that the model falls back to
  int64 arithmetic.

With 8-bit weights, binary spikes need float32 as long as ``sum |w| < 2**24`` (more than
65,000 inputs per neuron at |w| = 255); graded 8-bit pixels take float32 up to about 250
inputs at full weight and float64 beyond.

The geometry (stride, padding, dilation, groups) is read from the process's parameters, not
from its ``Var``\\ s: lava stores those ``Var``\\ s as int8 (``AbstractPyConvModel``), so
``groups >= 128`` (a depthwise identity shortcut of a 128-channel block) wraps there.

Select it with ``Loihi2SimCfg(exception_proc_model_map={Conv: PyConvModelFast})``.

Lava's layout: input ``(X, Y, C_in)``, weight ``(C_out, kX, kY, C_in / groups)``; the stock
model computes a true convolution (the kernel flipped), with stride/padding/dilation in
``(X, Y)`` order.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv.models import AbstractPyConvModel
from lava.proc.conv.process import Conv

from qcfs_lava.geometry import pair

#: float32 sums of integers are exact while every partial sum stays below this magnitude.
FLOAT32_EXACT = 1 << 24
#: float64 sums of integers are exact while every partial sum stays below this magnitude.
FLOAT64_EXACT = 1 << 53


def limit_blas_threads(threads: int = 1) -> None:
    """Limit BLAS to ``threads`` threads in this (Lava model) process.

    Lava runs every process model in its own OS process and all layers compute at once (a
    pipeline over time steps), so one BLAS thread per process keeps the cores busy without
    the spinning and oversubscription of a thread pool per process (measured in
    ``benchmarks/bench_lava_deep.py``: about 30% less synapse CPU time per step on VGG-16).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # an optional speed-up; numbers are the same either way
        return
    threadpool_limits(limits=threads, user_api="blas")


def exact_float_dtype(bound: int) -> type | None:
    """The cheapest float type in which integer sums bounded by ``bound`` are exact.

    Returns ``np.float32`` for ``bound < 2**24``, ``np.float64`` for ``bound < 2**53``,
    else ``None`` (use integer arithmetic).
    """
    if bound < FLOAT32_EXACT:
        return np.float32
    if bound < FLOAT64_EXACT:
        return np.float64
    return None


class ConvGeometry(NamedTuple):
    """A Lava ``Conv``'s geometry as Python ints, ``(x, y)`` pairs.

    (A ``NamedTuple``, not a dataclass: lava executes this file outside ``sys.modules`` when
    it searches for process models, where dataclasses cannot resolve their annotations.)
    """

    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    @classmethod
    def from_params(cls, params) -> ConvGeometry:
        """From a ``Conv`` process's parameters (the constructor arguments, full ints)."""
        return cls(pair(params.get("stride", 1)), pair(params.get("padding", 0)),
                   pair(params.get("dilation", 1)), int(params.get("groups", 1)))


class ConvPlan:
    """One convolution, prepared: flipped weight matrices per dtype and reusable buffers.

    ``plan(x)`` returns the exact int64 convolution of ``x`` (Lava layout), computed by one
    (grouped) im2col matrix product in float32 or float64 when :func:`exact_float_dtype`
    allows it, else in int64.

    Args:
        weight: ``(C_out, kX, kY, C_in / groups)`` integers (lava order, not flipped).
        input_shape: ``(X, Y, C_in)``.
        geometry: stride, padding, dilation, groups.
    """

    def __init__(self, weight: np.ndarray, input_shape, geometry: ConvGeometry) -> None:
        w = np.asarray(weight, dtype=np.int64)[:, ::-1, ::-1, :]  # true convolution: flip
        self.geometry = geometry
        g = geometry.groups
        cout, kx, ky, cg = w.shape
        self.in_shape = tuple(int(s) for s in input_shape)
        (sx, sy), (px, py), (dx, dy) = geometry.stride, geometry.padding, geometry.dilation
        xp, yp = self.in_shape[0] + 2 * px, self.in_shape[1] + 2 * py
        self.xo = (xp - dx * (kx - 1) - 1) // sx + 1
        self.yo = (yp - dy * (ky - 1) - 1) // sy + 1
        self.cout, self.kx, self.ky, self.cg, self.g = cout, kx, ky, cg, g
        self.padded_shape = (xp, yp, g, cg)
        # (g, kX * kY * cg, cout / g): rows in the im2col column order (tap x, tap y, channel)
        self.w_int = np.ascontiguousarray(
            w.reshape(g, cout // g, kx, ky, cg).transpose(0, 2, 3, 4, 1)
            .reshape(g, kx * ky * cg, cout // g))
        self.l1_max = int(np.abs(self.w_int).sum(axis=1).max()) if w.size else 0
        self._w: dict = {}
        self._buffers: dict = {}
        # a 1x1, stride-1, unpadded, ungrouped conv is a plain matrix product of the input
        self.pointwise = (kx == ky == 1 and (sx, sy) == (1, 1) and (px, py) == (0, 0)
                          and g == 1)

    def bound(self, max_abs_input: int) -> int:
        """Largest magnitude any partial sum can take for inputs ``|x| <= max_abs_input``."""
        return self.l1_max * int(max_abs_input)

    def _weights(self, dtype) -> np.ndarray:
        if dtype not in self._w:
            self._w[dtype] = self.w_int.astype(dtype)
        return self._w[dtype]

    def _buffer(self, dtype) -> tuple[np.ndarray, np.ndarray]:
        if dtype not in self._buffers:
            padded = np.zeros(self.padded_shape, dtype=dtype)
            cols = np.empty((self.g, self.xo, self.yo, self.kx, self.ky, self.cg), dtype=dtype)
            self._buffers[dtype] = (padded, cols)
        return self._buffers[dtype]

    def __call__(self, x: np.ndarray, max_abs_input: int | None = None) -> np.ndarray:
        """``(X, Y, C_in)`` integers -> ``(X_out, Y_out, C_out)`` int64, exact."""
        if max_abs_input is None:
            max_abs_input = int(np.abs(x).max()) if x.size else 0
        dtype = exact_float_dtype(self.bound(max_abs_input)) or np.int64
        w = self._weights(dtype)
        p = self.xo * self.yo
        if self.pointwise:
            out = np.asarray(x, dtype=dtype).reshape(p, -1) @ w[0]
            return out.astype(np.int64).reshape(self.xo, self.yo, self.cout)
        padded, cols = self._buffer(dtype)
        (sx, sy), (px, py), (dx, dy) = (self.geometry.stride, self.geometry.padding,
                                        self.geometry.dilation)
        X, Y, _ = self.in_shape
        padded[px:px + X, py:py + Y] = np.asarray(x).reshape(X, Y, self.g, self.cg)
        for i in range(self.kx):
            for j in range(self.ky):
                patch = padded[i * dx: i * dx + sx * (self.xo - 1) + 1: sx,
                               j * dy: j * dy + sy * (self.yo - 1) + 1: sy]
                cols[:, :, :, i, j, :] = patch.transpose(2, 0, 1, 3)
        out = np.matmul(cols.reshape(self.g, p, -1), w)  # (g, P, cout / g)
        return out.transpose(1, 0, 2).astype(np.int64).reshape(self.xo, self.yo, self.cout)


def conv_lava_int(x: np.ndarray, weight: np.ndarray, stride, padding, dilation,
                  groups: int) -> np.ndarray:
    """Lava-convention convolution in exact integer arithmetic (int64, one einsum per tap).

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
    (sx, sy), (px, py), (dx, dy) = (pair(a) for a in (stride, padding, dilation))
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


def wrap_stock_conv(out: np.ndarray) -> np.ndarray:
    """What the stock model makes of an exact sum: cast to int32, wrap to 24 bits.

    The stock model casts its float64 sums to int32 (``astype``); for sums of magnitude
    ``< 2**31`` that is the identity, and this function wraps modulo ``2**32`` beyond.
    """
    wrapped = (out.astype(np.int64) & 0xFFFFFF) ^ 0x800000  # low 24 bits, sign flipped
    return (wrapped - 0x800000).astype(np.int32)


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "fast")
class PyConvModelFast(AbstractPyConvModel):
    """Conv with fixed point synapses, bit-exact with ``PyConvModelFixed``, BLAS im2col."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_buf: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    weight: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._plan: ConvPlan | None = None

    def run_spk(self) -> None:
        self.a_out.send(self.a_buf)
        s_in = self.s_in.recv()
        if self._plan is None:
            limit_blas_threads(1)
            self._plan = ConvPlan(self.weight, s_in.shape,
                                  ConvGeometry.from_params(self.proc_params))
            self._binary = self.num_message_bits.item() <= 0
        if self._binary:  # the stock model reads binary spikes as bool
            out = self._plan(s_in != 0, 1)
        else:
            out = self._plan(s_in)
        self.a_buf = wrap_stock_conv(out)


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "int64")
class PyConvModelInt(AbstractPyConvModel):
    """Conv in exact int64 arithmetic, one ``einsum`` per kernel tap (no float bound needed).

    Slower than :class:`PyConvModelFast`; kept as the plain integer reference model.
    """

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_buf: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    weight: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)

    def run_spk(self) -> None:
        self.a_out.send(self.a_buf)
        s_in = self.s_in.recv()
        if self.num_message_bits.item() <= 0:
            s_in = s_in != 0
        geo = ConvGeometry.from_params(self.proc_params)
        out = conv_lava_int(s_in, self.weight, geo.stride, geo.padding, geo.dilation,
                            geo.groups)
        self.a_buf = wrap_stock_conv(out)
