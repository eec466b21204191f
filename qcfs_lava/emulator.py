"""Batched, bit-exact emulation of an :class:`~qcfs_lava.network.IntegerNetwork`.

The dynamics are those of ``docs/contract.md``, section 3.

Whole batches advance one logical step at a time, with torch on CPU or GPU. The arithmetic
provably loses nothing:

- synaptic sums ``acc = sum w * s`` run in float32 only when every partial sum is an
  integer below ``2**24`` in magnitude (bound: ``max_out sum |w| * max_input``, checked per
  synapse when the network is compiled), otherwise in float64 (exact below ``2**53``);
  TF32 is switched off, and on GPUs convolutions run as unfold + matmul (no Winograd/FFT);
- the shift ``acc * 2**e`` / ``floor(acc / 2**-e)`` runs in the sum's dtype (a product by
  a power of two, exact); the result is clipped to +-2**25 (the network's drive limit,
  ``IntegerRanges.drive_limit``; beyond it the membrane saturates whatever the exact value)
  and the membrane runs in int32.

A hidden layer fed by spikes only runs its whole update in float32 when that is exact (the
"float32 layer"): its weights are pre-multiplied by ``2**e`` and its bias is the convolution's
(or matrix product's) bias, so one BLAS call yields ``acc * 2**e + bias``; the membrane is
float32. Why nothing is lost:

- every partial sum is ``2**u`` times an integer, where ``2**u`` divides every product
  ``2**e * w * s`` and the bias (``u = e``, or less when a bias is not a multiple of
  ``2**e``), of magnitude below ``(2**e * sum |w| + max |bias|) / 2**u < 2**24`` (checked
  per layer when compiling), so it is exact: scaling by a power of two keeps the mantissa;
- ``floor`` (for ``e < 0``) is exact, and ``floor(x + bias) = floor(x) + bias``;
- ``v + a`` with ``|v| <= 2**23``: when the exact result lies within the 24-bit state range
  it is an integer below ``2**24``, computed exactly; when it lies outside, float rounding is
  monotone and the thresholds ``+-2**23`` are representable, so the computed value lies
  outside on the same side, is counted as a saturation and clamped to the same limit;
- ``v - s * v_th`` and the spike counts (``<= T``) are integers below ``2**24``.

Graded spikes (a layer with payload bound ``P > 1``): the payload
``s = min(P, max(0, floor(v / v_th)))`` is computed in int32 from the (integer-valued)
membrane, so it is the plain integer floor; every bound above uses ``P`` instead of 1 as the
largest input from that layer. Payload sums per neuron stay below ``2**24`` while
``T * P < 2**24``.

Layers fed only by the input keep a float32 membrane too (their drive ``a + bias`` is
computed once per batch, as below).

The input layer's synaptic sums do not change over the ``T`` steps (the image is sent
every step), so they are computed once per batch.

A layer is checked for saturation only where its membrane can leave the 24-bit range
within the run's ``T`` steps: ``|v(t)| <= |v_init| + t * A`` with ``A`` the largest
``|a + bias|`` the weights allow (:meth:`_CompiledLayer.may_saturate`).

A 1x1 depthwise synapse (the identity shortcut of a residual block) is a per-channel
product, and a dense synapse whose batch has few active inputs in a step sums the weight
rows of those inputs only; both give the same integers under the same bounds.

A network is compiled once per device and kept while it lives (it is frozen).

Folding an average pool into the next conv or linear layer makes its kernel constant over
``s x s`` blocks (a 2x2 pool + 3x3 conv is a 6x6 stride-2 conv). Such a synapse is run
exactly as an integer sum-pool followed by the small kernel, which costs what the float
model's pool + conv costs instead of ``s**2`` times more.
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from qcfs_lava import hardware as hw
from qcfs_lava.digest import NUM_LIMBS, digest_keys, join_limbs, key_limbs
from qcfs_lava.network import INPUT, IntegerNetwork, Synapse, SynapseGeometry
from qcfs_lava.progress import counter
from qcfs_lava.results import (
    RecordMode,
    SpikeRunResult,
    argmax_first,
    check_run_arguments,
    spike_dtype,
)

FLOAT32_EXACT = 1 << 24


@dataclass(frozen=True, eq=False)
class _CompiledSynapse(SynapseGeometry):
    weight: torch.Tensor
    unfold_conv: bool = False
    pool: tuple[int, int] | None = None
    bias: torch.Tensor | None = None  # per output channel, added by the same BLAS call
    channel_scale: bool = False  # a 1x1 conv, one input channel per output: a product

    def __call__(self, s: torch.Tensor) -> torch.Tensor:
        s = s.to(self.weight.dtype)
        if self.channel_scale:  # (an identity shortcut): exact integer products
            out = s * self.weight.view(1, -1, 1, 1)
            return out if self.bias is None else out.add_(self.bias.view(1, -1, 1, 1))
        if self.pool is not None:  # exact integer sums over s x s blocks
            s = F.avg_pool2d(s, self.pool, self.pool, divisor_override=1)
        if self.kind == "dense":
            return self._dense(s.reshape(s.shape[0], -1))
        if not self.unfold_conv:
            return F.conv2d(s, self.weight, self.bias, self.stride, self.padding,
                            self.dilation, self.groups)
        out = _conv_unfold(s, self.weight, self.stride, self.padding, self.dilation,
                           self.groups)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)

    def add_to(self, acc: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """``acc += self(s)``, in place (same dtype, no bias)."""
        if self.channel_scale and self.bias is None:
            return acc.addcmul_(s.to(acc.dtype), self.weight.view(1, -1, 1, 1))
        return acc.add_(self(s))

    def _dense(self, s: torch.Tensor) -> torch.Tensor:
        """``s @ W.T (+ bias)``; with few active inputs, over those inputs' rows only.

        ``weight`` is the transpose of a contiguous ``(in, out)`` tensor, so the rows of the
        active inputs are gathered cheaply. The result is the same: every partial sum of a
        subset of the terms is an integer within the same bound, hence exact.
        """
        wt = self.weight.T  # (in, out), contiguous
        if s.device.type == "cpu":  # where the gather pays
            active = s.any(0).nonzero().squeeze(1)
            if active.numel() <= s.shape[1] // _SPARSE_DENSE:
                s, wt = s.index_select(1, active), wt.index_select(0, active)
        if self.bias is not None:
            return torch.addmm(self.bias, s, wt)
        return s @ wt


# a dense synapse whose batch uses at most 1 / _SPARSE_DENSE of its inputs in a step runs
# over those inputs only
_SPARSE_DENSE = 4


def _conv_unfold(s, w, stride, padding, dilation, groups) -> torch.Tensor:
    """Convolution as unfold + matmul: plain sums of products, exact for integer data."""
    n, c, h, wd = s.shape
    co, cig, kh, kw = w.shape
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    cols = F.unfold(s, (kh, kw), dilation, padding, stride)  # (n, c*kh*kw, oh*ow)
    cols = cols.reshape(n, groups, cig * kh * kw, oh * ow)
    wg = w.reshape(groups, co // groups, cig * kh * kw)
    out = torch.einsum("gok,ngkp->ngop", wg, cols)
    return out.reshape(n, co, oh, ow)


@dataclass(frozen=True, eq=False)
class _CompiledLayer:
    """One neuron layer, ready to run: its synapses and constants on the device."""

    synapses: list[_CompiledSynapse]
    float32: bool  # a float32 layer (module docstring): synapses carry 2**e and the bias
    input_only: bool  # fed by the input only: its drive is computed once per batch
    bias: torch.Tensor  # int32, state units, broadcast to the layer's shape
    v_th: int | None
    payload: int  # the largest payload of a spike (1: binary)
    mult: float  # 2**e
    e: int
    drive_bound: int  # max |a + bias| over every step, neuron and input
    ranges: hw.IntegerRanges  # the network's: state range and drive limit

    def may_saturate(self, v_init: int, steps: int) -> bool:
        """Whether the membrane can leave the 24-bit state range within ``steps`` steps.

        With reset by subtraction and ``v_th > 0``, ``|v(t)| <= |v_init| + t * A`` where
        ``A`` bounds ``|a + bias|``: a step adds at most ``A`` in magnitude, and a spike
        (only when ``v >= v_th``) moves ``v`` towards 0 without crossing it. A layer whose
        bound stays inside the range needs no saturation check.
        """
        limit = min(self.ranges.state_max, -self.ranges.state_min)
        return abs(v_init) + steps * self.drive_bound > limit


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compiled_network(net: IntegerNetwork, device: torch.device) -> list[_CompiledLayer]:
    """The layers of ``net`` compiled for ``device``, cached while ``net`` lives.

    ``IntegerNetwork`` is frozen (read-only arrays), so its compiled form never goes stale.
    """
    per_device = _CACHE.setdefault(net, {})
    key = str(device)
    if key not in per_device:
        per_device[key] = [_compile_layer(net, lay, device) for lay in net.layers]
    return per_device[key]


@dataclass(frozen=True, eq=False)
class _SummedSynapse(Synapse):
    """Synapses of one layer with the same source and geometry (copies that carry a weight
    beyond 8 bits), summed into one: ``sum_k w_k * s = (sum_k w_k) * s`` in integers, so
    the layer's sums are unchanged, and its weights may exceed the 8-bit range."""

    def __post_init__(self) -> None:  # the parts were validated
        pass


def _merge_copies(synapses) -> list[Synapse]:
    """``synapses`` with those of equal source, kind, weight shape and geometry summed."""
    groups: dict[tuple, list[Synapse]] = {}
    for syn in synapses:
        key = (syn.source, syn.kind, syn.weight.shape, tuple(syn.geometry().items()))
        groups.setdefault(key, []).append(syn)
    out = []
    for parts in groups.values():
        if len(parts) == 1:
            out.append(parts[0])
        else:
            total = np.sum([p.weight for p in parts], axis=0)
            out.append(_SummedSynapse(parts[0].source, parts[0].kind, total,
                                      **parts[0].geometry()))
    return out


def _compile_layer(net: IntegerNetwork, layer, device: torch.device) -> _CompiledLayer:
    synapses = _merge_copies(layer.synapses)
    lean = _compile_float32_layer(net, layer, device, synapses)
    syns = lean if lean is not None else [
        _compile_synapse(syn, net.source_shape(syn.source), device,
                         max_in=net.max_input(syn.source)) for syn in synapses]
    e = layer.weight_exp
    acc_bound = sum(syn.max_abs_sum(net.max_input(syn.source)) for syn in synapses)
    bias = np.asarray(layer.bias, dtype=np.int64)
    # |floor(acc * 2**e)| <= |acc| * 2**e + 1
    a_bound = int(np.ceil(acc_bound * 2.0 ** e)) + 1
    return _CompiledLayer(
        synapses=syns,
        float32=lean is not None,
        input_only=all(syn.source == INPUT for syn in layer.synapses),
        bias=torch.tensor(bias, dtype=torch.int32, device=device),
        v_th=layer.v_th,
        payload=layer.payload,
        mult=2.0 ** e,
        e=e,
        drive_bound=a_bound + int(np.abs(bias).max(initial=0)),
        ranges=net.ranges,
    )


def _channel_bias(layer) -> np.ndarray | None:
    """The layer's bias (state units) as one value per output channel, if it is one."""
    b = np.asarray(layer.bias, dtype=np.int64)
    per_channel = b.reshape(b.shape[0], -1)[:, 0]
    if len(layer.shape) == 3 and not np.array_equal(
            b, np.broadcast_to(per_channel.reshape(-1, 1, 1), b.shape)):
        return None
    return per_channel


def _compile_float32_layer(net: IntegerNetwork, layer, device: torch.device,
                           synapses=None) -> list[_CompiledSynapse] | None:
    """The synapses of ``layer`` (or ``synapses``, the same summed by
    :func:`_merge_copies`) as a float32 layer (module docstring), or None.

    Possible for a layer fed by spikes only, whose bias is per channel, and whose partial
    sums stay below ``2**24`` in units of ``2**u``, the largest power of two dividing all of
    them: ``u = e`` for ``e <= 0`` (the integer bias is a multiple of ``2**e`` then), else
    the smaller of ``e`` and the power of two of the biases' greatest common divisor.
    """
    synapses = layer.synapses if synapses is None else synapses
    if not synapses or any(syn.source == INPUT for syn in synapses):
        return None
    e = layer.weight_exp
    bias = _channel_bias(layer)
    if bias is None:
        return None
    u = e
    nonzero = np.abs(bias[bias != 0])
    if e > 0 and nonzero.size:
        g = int(np.gcd.reduce(nonzero))
        u = min(e, (g & -g).bit_length() - 1)
    units = (sum(syn.max_abs_sum(net.max_input(syn.source)) for syn in synapses)
             * 2.0 ** (e - u)
             + np.abs(bias).max(initial=0) * 2.0 ** -u)
    if units >= FLOAT32_EXACT:
        return None
    out = []
    for i, syn in enumerate(synapses):
        c = _compile_synapse(syn, net.source_shape(syn.source), device, scale_exp=e,
                             max_in=net.max_input(syn.source))
        if i == 0:
            c = replace(c, bias=torch.tensor(bias, dtype=torch.float32, device=device))
        out.append(c)
    return out


def _block_constant(w: np.ndarray, sh: int, sw: int) -> np.ndarray | None:
    """``w[..., H, W]`` reduced to one value per ``sh x sw`` block, if it is block-constant."""
    h, wd = w.shape[-2:]
    if h % sh or wd % sw:
        return None
    blocks = w.reshape(*w.shape[:-2], h // sh, sh, wd // sw, sw)
    small = blocks[..., :, 0, :, 0]
    if not np.array_equal(blocks, np.broadcast_to(small[..., :, None, :, None], blocks.shape)):
        return None
    return np.ascontiguousarray(small)


def _factor_pool(syn: Synapse, in_shape: tuple[int, ...]):
    """``(pool, weight, stride, padding)`` running ``syn`` as sum-pool + small kernel, or None.

    A conv (dilation 1) with stride, padding and kernel all multiples of ``(sh, sw)`` and a
    kernel constant over ``sh x sw`` blocks equals a sum-pool of stride ``(sh, sw)`` followed
    by the reduced kernel; a dense synapse from ``(C, H, W)`` likewise when its weights are
    constant over blocks of the source map. The source must tile exactly.
    """
    if len(in_shape) != 3:
        return None
    _, h, wd = in_shape
    if syn.kind == "conv":
        if syn.dilation != (1, 1):
            return None
        cands = [(a, b) for a in (4, 3, 2, 1) for b in (4, 3, 2, 1)
                 if (a, b) != (1, 1) and syn.stride[0] % a == 0 and syn.stride[1] % b == 0
                 and syn.padding[0] % a == 0 and syn.padding[1] % b == 0
                 and h % a == 0 and wd % b == 0]
        for sh, sw in cands:
            small = _block_constant(syn.weight, sh, sw)
            if small is not None:
                return ((sh, sw), small, (syn.stride[0] // sh, syn.stride[1] // sw),
                        (syn.padding[0] // sh, syn.padding[1] // sw))
        return None
    for sh, sw in [(a, b) for a in (4, 3, 2) for b in (4, 3, 2)]:
        if h % sh or wd % sw:
            continue
        small = _block_constant(syn.weight.reshape(-1, *in_shape), sh, sw)
        if small is not None:
            return (sh, sw), small.reshape(small.shape[0], -1), (1, 1), (0, 0)
    return None


def _compile_synapse(syn: Synapse, in_shape: tuple[int, ...], device: torch.device,
                     scale_exp: int | None = None, max_in: int = 1) -> _CompiledSynapse:
    """``syn`` on ``device``; with ``scale_exp`` its weights are float32 times ``2**scale_exp``
    (the caller has checked that exact). ``max_in``: the largest value of its source (255
    for the input, the payload bound for a hidden layer)."""
    # the bound on partial sums is the same with or without the pool factorization:
    # sum |w_small| * (s_h * s_w * max_in) = sum |w| * max_in
    if scale_exp is not None:
        dtype = np.float32
    else:
        dtype = np.float32 if syn.max_abs_sum(max_in) < FLOAT32_EXACT else np.float64
    pool, weight, stride, padding = None, syn.weight, syn.stride, syn.padding
    factored = _factor_pool(syn, in_shape)
    if factored is not None:
        pool, weight, stride, padding = factored
    weight = weight.astype(dtype)
    if scale_exp is not None:
        weight *= np.float32(2.0 ** scale_exp)  # a power of two: exact
    if syn.kind == "dense":  # stored (in, out), see _CompiledSynapse._dense
        w = torch.from_numpy(np.ascontiguousarray(weight.T)).to(device).T
    else:
        w = torch.from_numpy(np.ascontiguousarray(weight)).to(device)
    geometry = {**syn.geometry(), "stride": stride, "padding": padding}
    channel_scale = (syn.kind == "conv" and pool is None and w.shape[1:] == (1, 1, 1)
                     and syn.groups == w.shape[0] == in_shape[0]
                     and stride == (1, 1) and padding == (0, 0))
    return _CompiledSynapse(syn.source, syn.kind, w, **geometry,
                            unfold_conv=device.type != "cpu", pool=pool,
                            channel_scale=channel_scale)


def _shift(acc: torch.Tensor, mult: float, e: int, limit: float) -> torch.Tensor:
    """``a = acc * 2**e`` (floor for ``e < 0``), clipped to ``+-limit``, as int32.

    ``limit`` is the network's :attr:`~qcfs_lava.hardware.IntegerRanges.drive_limit`
    (``2**25`` for Loihi's ranges): beyond it the membrane saturates whatever ``a``'s exact
    value, so the clip keeps every result (and the saturation count) while ``v + a + bias``
    fits int32. ``acc`` holds exact integers (float32 below 2**24 or float64), so the
    product by a power of two and the floor are exact.
    """
    a = acc * mult
    if e < 0:
        a = torch.floor(a)
    return a.clamp_(-limit, limit).to(torch.int32)


@contextlib.contextmanager
def _exact_matmul():
    """Switch off TF32 (which rounds fp32 products to 10-bit mantissas) while emulating."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@dataclass
class _RunRecord:
    """What a run returns, as whole-run numpy arrays filled batch by batch."""

    potentials: np.ndarray
    spike_counts: np.ndarray
    saturations: np.ndarray
    neuron_counts: list[np.ndarray] | None  # per neuron, when recorded
    neuron_payloads: list[np.ndarray] | None  # graded networks with per-neuron records
    payload_counts: np.ndarray | None  # graded networks: payload sums per sample and layer
    spikes: list[np.ndarray] | None  # full trains, when recorded
    digests: np.ndarray | None

    @classmethod
    def allocate(cls, net: IntegerNetwork, n: int, steps: int, record: RecordMode,
                 digests: bool) -> _RunRecord:
        hidden = net.layers[:-1]
        neuron_counts = ([np.zeros((n, *lay.shape), dtype=np.int32) for lay in hidden]
                         if record is not RecordMode.TOTAL else None)
        graded = net.graded
        return cls(
            potentials=np.zeros((n, net.num_classes), dtype=np.int64),
            spike_counts=np.zeros((n, len(hidden)), dtype=np.int64),
            saturations=np.zeros((n, len(net.layers)), dtype=np.int64),
            neuron_counts=neuron_counts,
            neuron_payloads=([np.zeros((n, *lay.shape), dtype=np.int64) for lay in hidden]
                             if graded and neuron_counts is not None else None),
            payload_counts=np.zeros((n, len(hidden)), dtype=np.int64) if graded else None,
            spikes=([np.zeros((n, steps, *lay.shape), dtype=spike_dtype(lay.payload))
                     for lay in hidden] if record is RecordMode.SPIKES else None),
            digests=np.zeros((n, len(hidden)), dtype=np.uint64) if digests else None,
        )

    def result(self, net: IntegerNetwork, steps: int, labels, digest_key) -> SpikeRunResult:
        def frozen(arrays):
            return tuple(arrays) if arrays is not None else None

        return SpikeRunResult(
            steps=steps,
            layer_names=tuple(lay.name for lay in net.layers),
            potentials=self.potentials,
            predictions=argmax_first(self.potentials),
            spike_counts=self.spike_counts,
            neuron_counts=frozen(self.neuron_counts),
            spikes=frozen(self.spikes),
            digests=self.digests,
            digest_key=digest_key,
            saturations=self.saturations,
            labels=labels,
            backend="emulator",
            payload_counts=self.payload_counts,
            neuron_payloads=frozen(self.neuron_payloads),
        )


@dataclass
class _Batch:
    """The state of one batch of samples ``lo..hi`` on the device while it runs."""

    lo: int
    hi: int
    fixed: list[torch.Tensor]  # per layer: the input's synaptic sums (the same every step)
    drive: list[torch.Tensor | None]  # layers fed by the input only: their whole drive
    v: list[torch.Tensor]  # membranes
    spike_buf: list[torch.Tensor]  # a step's spikes as float32, written in place
    counts: list[torch.Tensor] | None  # per-neuron counts, when recorded
    payload_sums: list[torch.Tensor] | None  # graded: payloads summed per neuron
    payload_totals: torch.Tensor | None  # graded networks: payloads per sample and layer
    totals: torch.Tensor  # spikes per sample and layer
    sat: torch.Tensor  # saturations per sample and layer
    limb_sums: torch.Tensor | None  # digests as sums of 16-bit limbs

    @classmethod
    def start(cls, net: IntegerNetwork, layers: list[_CompiledLayer], x: np.ndarray,
              lo: int, hi: int, rec: _RunRecord, device: torch.device) -> _Batch:
        # a copy: x may be read-only
        xb = torch.tensor(x[lo:hi], dtype=torch.float32, device=device)
        b = hi - lo
        hidden = net.layers[:-1]
        # Synaptic sums from the input are the same every step: computed once, and for a
        # layer fed only by the input its whole drive a + bias is computed once.
        fixed = [sum((syn(xb).to(torch.float64) for syn in cl.synapses if syn.source == INPUT),
                     start=torch.zeros((), dtype=torch.float64, device=device))
                 for cl in layers]
        # float32 too: |drive| <= 2**25 + 2**18, and v + drive is exact whenever it lies
        # in the state range (beyond it, rounding keeps it beyond, on the same side)
        drive = [(_shift(fixed[li], cl.mult, cl.e, cl.ranges.drive_limit) + cl.bias)
                 .to(torch.float32) if cl.input_only else None
                 for li, cl in enumerate(layers)]

        def per_neuron(dtype, wanted):
            return ([torch.zeros((b, *lay.shape), dtype=dtype, device=device) for lay in hidden]
                    if wanted else None)

        return cls(
            lo=lo, hi=hi, fixed=fixed, drive=drive,
            v=[torch.full((b, *lay.shape), lay.v_init, device=device,
                          dtype=torch.float32 if cl.float32 or cl.input_only else torch.int32)
               for cl, lay in zip(layers, net.layers, strict=True)],
            spike_buf=[torch.empty((b, *lay.shape), dtype=torch.float32, device=device)
                       for lay in hidden],
            # float32 counts are exact (counts <= T < 2**24); else per-sample totals (float64)
            counts=per_neuron(torch.float32, rec.neuron_counts is not None),
            payload_sums=per_neuron(torch.int64, rec.neuron_payloads is not None),
            payload_totals=(torch.zeros((b, len(hidden)), dtype=torch.int64, device=device)
                            if rec.payload_counts is not None else None),
            totals=torch.zeros((b, len(hidden)), dtype=torch.float64, device=device),
            sat=torch.zeros((b, len(net.layers)), dtype=torch.int64, device=device),
            limb_sums=(torch.zeros((b, len(hidden), NUM_LIMBS), dtype=torch.float64,
                                   device=device) if rec.digests is not None else None),
        )

    def record(self, li: int, t: int, sf: torch.Tensor, si: torch.Tensor | None,
               sum_dtype: torch.dtype, rec: _RunRecord, limbs) -> None:
        """Add layer ``li``'s spikes of step ``t``: ``sf`` as float32 (payloads on a graded
        layer), ``si`` the int32 payloads of a graded layer (``None``: binary)."""
        b = sf.shape[0]
        sent = sf if si is None else si > 0
        if self.counts is not None:
            self.counts[li] += sent
            if si is not None:
                self.payload_sums[li] += si
        else:  # float32 sums of 0/1 are exact below 2**24 neurons
            self.totals[:, li] += sent.reshape(b, -1).sum(1, dtype=sum_dtype)
        if self.payload_totals is not None:
            self.payload_totals[:, li] += (
                sf.reshape(b, -1).sum(1, dtype=torch.float64).to(torch.int64) if si is None
                else si.reshape(b, -1).sum(1, dtype=torch.int64))
        if rec.spikes is not None:
            rec.spikes[li][self.lo:self.hi, t] = (sf.cpu().numpy() != 0 if si is None
                                                  else si.cpu().numpy())
        if self.limb_sums is not None:  # payload-weighted: sum K * s (mod 2**64)
            self.limb_sums[:, li] += sf.reshape(b, -1).to(torch.float64) @ limbs[li][t]

    def finish(self, net: IntegerNetwork, rec: _RunRecord) -> None:
        """Copy the batch's results into the run's arrays."""
        lo, hi, b = self.lo, self.hi, self.hi - self.lo
        pot = (self.v[-1].to(torch.int64) - net.layers[-1].v_init).reshape(b, -1)
        rec.potentials[lo:hi] = pot.cpu().numpy()
        if self.counts is not None:
            for li, c in enumerate(self.counts):
                c = c.to(torch.int32)
                self.totals[:, li] = c.reshape(b, -1).sum(1)
                rec.neuron_counts[li][lo:hi] = c.cpu().numpy()
        if self.payload_sums is not None:
            for li, c in enumerate(self.payload_sums):
                if net.layers[li].payload > 1:
                    rec.neuron_payloads[li][lo:hi] = c.cpu().numpy()
                else:  # binary: the payload sum is the spike count
                    rec.neuron_payloads[li][lo:hi] = rec.neuron_counts[li][lo:hi]
        rec.spike_counts[lo:hi] = self.totals.to(torch.int64).cpu().numpy()
        if self.payload_totals is not None:
            rec.payload_counts[lo:hi] = self.payload_totals.cpu().numpy()
        rec.saturations[lo:hi] = self.sat.cpu().numpy()
        if self.limb_sums is not None:
            rec.digests[lo:hi] = join_limbs(self.limb_sums.cpu().numpy())


def _membrane(cl: _CompiledLayer, v: torch.Tensor, fixed: torch.Tensor,
              drive: torch.Tensor | None, out: list[torch.Tensor]) -> torch.Tensor:
    """``v + a + bias``: the membrane after this step's input, before saturation."""
    if cl.float32:
        syn0, *rest = cl.synapses
        vl = syn0(out[syn0.source])  # acc * 2**e + bias, exact
        for syn in rest:
            syn.add_to(vl, out[syn.source])
        if cl.e < 0:
            vl = vl.floor_()
        vl += v
        return vl
    if cl.input_only:
        return v + drive
    acc = fixed
    for syn in cl.synapses:
        if syn.source != INPUT:
            acc = acc + syn(out[syn.source])
    return v + _shift(acc, cl.mult, cl.e, cl.ranges.drive_limit) + cl.bias


def _saturate(vl: torch.Tensor, sat: torch.Tensor, ranges: hw.IntegerRanges) -> torch.Tensor:
    """Clamp ``vl`` to the state range, adding the clamped neurons per sample to ``sat``."""
    low, high = torch.aminmax(vl)
    if low < ranges.state_min or high > ranges.state_max:
        over = (vl > ranges.state_max) | (vl < ranges.state_min)
        sat += over.reshape(vl.shape[0], -1).sum(1)
        vl = vl.clamp_(ranges.state_min, ranges.state_max)
    return vl


def _fire(cl: _CompiledLayer, vl: torch.Tensor, buf: torch.Tensor):
    """Threshold and reset by subtraction: ``(v, spikes as float32 in buf, int32 payloads of a
    graded layer or None)``."""
    v_th = cl.v_th
    if cl.payload > 1:
        # graded: s = min(P, max(0, floor(v / v_th))) in integers
        vi = vl.to(torch.int32)  # exact: v holds integers in 24 bits
        si = torch.div(vi, v_th, rounding_mode="floor").clamp_(0, cl.payload)
        vi = vi.sub_(si, alpha=v_th)
        vl = vi.to(vl.dtype) if vl.is_floating_point() else vi
        return vl, buf.copy_(si), si  # float32 payloads, exact (P < 2**23)
    sf = torch.ge(vl, v_th, out=buf)
    if vl.is_floating_point():
        vl = vl.sub_(sf, alpha=v_th)
    else:
        vl = vl.sub_(sf.to(torch.int32), alpha=v_th)
    return vl, sf, None


def emulate(
    net: IntegerNetwork,
    x: np.ndarray,
    steps: int,
    *,
    labels: np.ndarray | None = None,
    record: RecordMode | str | None = None,
    digest_key: int | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> SpikeRunResult:
    """Run the integer network exactly, a whole batch per step.

    Args:
        net: the integer network.
        x: uint8 inputs. Shape: ``(N, *net.input_shape)``.
        steps: time steps ``T`` per sample.
        labels: ground truth ``(N,)``, for accuracy.
        record: a :class:`~qcfs_lava.results.RecordMode` or its name: ``None`` (counts per
            layer only), ``"counts"`` (also per-neuron spike counts, needed for exact SynOps)
            or ``"spikes"`` (also full spike trains).
        digest_key: also compute each sample's and layer's keyed spike-train digest
            (:mod:`qcfs_lava.digest`), as the Lava neuron model does; ``None``: none.
        batch_size: samples per batch.
        device: torch device.
        progress: show a tqdm bar that advances every time step of every batch (so a long
            run of one batch shows progress too).

    Returns:
        A :class:`SpikeRunResult` with ``backend="emulator"``.
    """
    args = check_run_arguments(net, x, steps, labels=labels, record=record)
    x, steps, labels = args.x, args.steps, args.labels
    device = torch.device(device)
    layers = _compiled_network(net, device)
    # a saturation check only where the membrane can leave the state range within T steps
    check = [cl.may_saturate(lay.v_init, steps) for cl, lay in zip(layers, net.layers,
                                                                   strict=True)]
    sum_dtype = [torch.float64 if lay.payload > 1 or lay.num_neurons >= FLOAT32_EXACT
                 else torch.float32 for lay in net.layers[:-1]]
    n = x.shape[0]
    rec = _RunRecord.allocate(net, n, steps, args.record, digest_key is not None)
    # digest words split into 16-bit limbs: a step's spikes times the limbs is exact in float64
    limbs = ([torch.as_tensor(key_limbs(digest_keys(digest_key, li, steps, lay.num_neurons)),
                              device=device) for li, lay in enumerate(net.layers[:-1])]
             if digest_key is not None else None)
    batches = range(0, n, batch_size)
    steps_bar = counter(len(batches) * steps, desc="emulate", unit="step", enabled=progress)
    with torch.no_grad(), _exact_matmul(), steps_bar:
        for lo in batches:
            st = _Batch.start(net, layers, x, lo, min(lo + batch_size, n), rec, device)
            for t in range(steps):
                out: list[torch.Tensor] = []
                for li, cl in enumerate(layers):
                    vl = _membrane(cl, st.v[li], st.fixed[li], st.drive[li], out)
                    if check[li]:
                        vl = _saturate(vl, st.sat[:, li], cl.ranges)
                    if cl.v_th is not None:
                        vl, sf, si = _fire(cl, vl, st.spike_buf[li])
                        st.record(li, t, sf, si, sum_dtype[li], rec, limbs)
                        out.append(sf)
                    st.v[li] = vl
                steps_bar.update(1)
            st.finish(net, rec)
    return rec.result(net, steps, labels, digest_key)
