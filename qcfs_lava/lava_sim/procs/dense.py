"""A fast, bit-exact fixed-point model for lava's own ``Dense`` process.

lava's stock ``PyDenseModelBitAcc`` (lava/proc/dense/models.py) multiplies int32 weights by
the input in integer arithmetic: ``weights.dot(s_in)`` for graded spikes (int32, wrapping
modulo ``2**32``), ``weights[:, s_in].sum(axis=1)`` for binary ones (a gather of the active
columns, then int64), shifts by ``weight_exp`` and sends int32. This model computes the same
numbers with one BLAS matrix-vector product in a float type in which it is exact (the bound
and its proof are in :mod:`.conv`: every partial sum is at most
``max_o sum_k |W[o, k]| * max |x|``; exact in float32 below ``2**24``, in float64 below
``2**53``, else int64).

Select it with ``Loihi2SimCfg(exception_proc_model_map={Dense: PyDenseModelFast})``.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.dense.models import AbstractPyDenseModelBitAcc
from lava.proc.dense.process import Dense
from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

from qcfs_lava.lava_sim.procs.conv import exact_float_dtype, limit_blas_threads


def wrap_int32(x: np.ndarray) -> np.ndarray:
    """Wrap integers modulo ``2**32`` into int32 (what an int32 dot or an int32 cast does)."""
    return np.asarray(x, dtype=np.int64).astype(np.int32)


class DensePlan:
    """One dense synapse, prepared: the weight matrix per float dtype and its bound.

    ``plan(x, max_abs_input)`` returns the exact int64 product ``W @ x``. Binary input with
    few active inputs is summed from the active rows of ``W.T`` (cost in proportion to the
    spikes, as on the chip); otherwise one BLAS matrix-vector product.

    Args:
        weights: ``(N_out, N_in)`` integers (the effective, clipped and truncated, weights).
    """

    #: binary inputs sparser than this are summed row by row instead of one product
    SPARSE_FRACTION = 0.2

    def __init__(self, weights: np.ndarray) -> None:
        w_int = np.asarray(weights, dtype=np.int64)
        self.shape = w_int.shape
        self.l1_max = int(np.abs(w_int).sum(axis=1).max()) if w_int.size else 0
        self.w_int_t = np.ascontiguousarray(w_int.T)  # (N_in, N_out): rows per input
        self._w: dict = {}

    def _weights_t(self, dtype) -> np.ndarray:
        if dtype not in self._w:
            self._w[dtype] = np.ascontiguousarray(self.w_int_t.astype(dtype))
        return self._w[dtype]

    def __call__(self, x: np.ndarray, max_abs_input: int | None = None) -> np.ndarray:
        x = np.asarray(x).reshape(-1)
        if max_abs_input is None:
            max_abs_input = int(np.abs(x).max()) if x.size else 0
        dtype = exact_float_dtype(self.l1_max * int(max_abs_input)) or np.int64
        w_t = self._weights_t(dtype)
        if x.dtype == np.bool_:
            active = np.flatnonzero(x)
            if len(active) <= self.SPARSE_FRACTION * x.size:
                return w_t[active].sum(axis=0, dtype=dtype).astype(np.int64)
        return (np.asarray(x, dtype=dtype) @ w_t).astype(np.int64)


@implements(proc=Dense, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt", "fast")
class PyDenseModelFast(AbstractPyDenseModelBitAcc):
    """Dense with fixed point synapses, bit-exact with ``PyDenseModelBitAcc``, BLAS."""

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._plan: DensePlan | None = None

    def run_spk(self) -> None:
        if self._plan is None:  # the stock model's one-time weight scaling
            limit_blas_threads(1)
            p = self.proc_params
            sign_mode = p.get("sign_mode") or determine_sign_mode(self.weights)
            w = clip_weights(self.weights, sign_mode, num_bits=8)
            w = truncate_weights(w, sign_mode, p.get("num_weight_bits", 8))
            self.weights = w
            self._plan = DensePlan(w)
            self._graded = self.num_message_bits.item() > 0
            self._exp = int(p.get("weight_exp", 0))
        self.a_out.send(self.a_buff)
        s_in = self.s_in.recv()
        if self._graded:  # stock: int32 dot, wraps modulo 2**32 before the shift
            acc = wrap_int32(self._plan(s_in)).astype(np.int64)
        else:
            acc = self._plan(s_in != 0, 1)
        e = self._exp
        acc = np.left_shift(acc, e) if e > 0 else np.right_shift(acc, -e)
        self.a_buff = wrap_int32(acc)

