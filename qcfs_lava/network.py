"""The integer spiking network: the one representation every later stage shares.

Conversion produces it, the NetX writer consumes it and the reader returns it, and the
emulator and the Lava builder both run it. Plain frozen dataclasses of numpy arrays (no
torch, no lava), validated when built, with a format version.

The dynamics (``docs/contract.md``, section 3), per neuron layer ``l`` and logical step ``t``,
all integers::

    acc_l(t) = sum_k sum_j w_kj * s_{src_k, j}(t)      # one term per incoming synapse k
    a_l(t)   = acc_l(t) * 2**e_l          if e_l >= 0
             = floor(acc_l(t) / 2**-e_l)  if e_l <  0
    v_l(t)   = sat24(v_l(t-1) + a_l(t) + bias_l)       # bias_l = bias_mant << 6
    s_l(t)   = [v_l(t) >= v_th_l];  v_l(t) -= s_l(t) * v_th_l   # v_th_l = vth_mant << 6
    v_l(0)   = v_init_l

``s_{-1}(t)`` is the input image as unsigned 8-bit integers (graded spikes, the same every
step); every other ``s`` is binary. The last layer never spikes: its accumulated potential
``v(T) - v(0)`` is the network output. A layer may have several incoming synapses (a residual
add): they are summed before the shift, at the same logical step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from qcfs_lava import hardware as hw
from qcfs_lava.errors import NetworkValidationError
from qcfs_lava.geometry import conv_output_shape, pair

# 2: NetX files carry a whole-file digest header (qcfs_lava.safe_hdf5); 1 files still read.
FORMAT_VERSION = 2
INPUT = -1  # the ``source`` of a synapse fed by the network input

SYNAPSE_KINDS = ("dense", "conv")


def _checked_pair(value, name: str, where: str) -> tuple[int, int]:
    try:
        return pair(value)
    except (ValueError, TypeError):
        raise NetworkValidationError(
            f"{where}: {name} must be an int or a pair, got {value!r}") from None


def _frozen_int_array(value, name: str, where: str) -> np.ndarray:
    arr = np.array(value, copy=True)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise NetworkValidationError(f"{where}: {name} must hold integers")
    elif arr.dtype.kind not in "iub":
        raise NetworkValidationError(f"{where}: {name} must be an integer array, got {arr.dtype}")
    arr = arr.astype(np.int64)
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False)
class SynapseGeometry:
    """The fields every synapse representation shares, declared once.

    :class:`Synapse` (integers, validated), the converter's float synapse and the emulator's
    compiled synapse all derive from it; equality and the NetX keys walk
    :data:`GEOMETRY_FIELDS`, so a new geometry field is added here and nowhere else.

    Args:
        source: index of the source layer, or ``INPUT`` (-1) for the network input.
        kind: ``"dense"`` or ``"conv"``.
        weight: the weights (numpy or torch, by representation).
        stride, padding, dilation, groups: conv geometry, torch conventions (H, W order);
            dense synapses keep the defaults.
    """

    source: int
    kind: str
    weight: Any
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def geometry(self) -> dict[str, Any]:
        """``{name: value}`` of the :data:`GEOMETRY_FIELDS`."""
        return {name: getattr(self, name) for name in GEOMETRY_FIELDS}


#: The conv geometry fields, in declaration order (the NetX keys of the same names).
GEOMETRY_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(SynapseGeometry) if f.name not in ("source", "kind", "weight")
)


def fields_equal(a: Any, b: Any) -> bool:
    """Exact equality walked over dataclass fields: arrays element for element, tuples and
    lists item for item, mappings key for key, everything else with ``==``."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
                and bool(np.array_equal(a, b)))
    if type(a) is not type(b) and not (np.isscalar(a) and np.isscalar(b)):
        return False
    if hasattr(a, "__dataclass_fields__"):
        return all(fields_equal(getattr(a, f.name), getattr(b, f.name)) for f in fields(a))
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(fields_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping):
        return a.keys() == b.keys() and all(fields_equal(a[k], b[k]) for k in a)
    return bool(a == b)


@dataclass(frozen=True, eq=False)
class Synapse(SynapseGeometry):
    """One weighted connection into a neuron layer.

    Args:
        source: index of the source layer, or ``INPUT`` (-1) for the network input.
        kind: ``"dense"`` or ``"conv"``.
        weight: integer weights as stored for Lava / NetX: even integers in [-256, 254].
            Dense: ``(out_features, in_features)``; a dense synapse from a ``(C, H, W)``
            source flattens it in torch's C, H, W order. Conv: ``(C_out, C_in / groups, kH,
            kW)`` (torch order).
        stride, padding, dilation, groups: conv geometry, torch conventions (H, W order).
    """

    weight: np.ndarray

    def __post_init__(self) -> None:
        where = f"synapse from {self.source}"
        if self.kind not in SYNAPSE_KINDS:
            raise NetworkValidationError(f"{where}: kind must be one of {SYNAPSE_KINDS}")
        w = _frozen_int_array(self.weight, "weight", where)
        want_dims = 2 if self.kind == "dense" else 4
        if w.ndim != want_dims:
            raise NetworkValidationError(
                f"{where}: a {self.kind} weight must have {want_dims} dims, got {w.shape}"
            )
        if np.any(w % hw.WEIGHT_STEP):
            raise NetworkValidationError(
                f"{where}: weights must be even (stored value 2*q, q a signed 8-bit int)"
            )
        object.__setattr__(self, "weight", w)
        for name in GEOMETRY_FIELDS:
            value = getattr(self, name)
            object.__setattr__(self, name, int(value) if name == "groups"
                               else _checked_pair(value, name, where))
        if min(self.stride) < 1 or min(self.dilation) < 1 or min(self.padding) < 0:
            raise NetworkValidationError(f"{where}: invalid stride/padding/dilation")
        if self.groups < 1 or (self.kind == "conv" and w.shape[0] % self.groups):
            raise NetworkValidationError(f"{where}: groups={self.groups} does not divide C_out")

    @property
    def kernel_size(self) -> tuple[int, int]:
        return (int(self.weight.shape[2]), int(self.weight.shape[3]))

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape this synapse produces from a source of shape ``in_shape``."""
        if self.kind == "dense":
            if int(np.prod(in_shape)) != self.weight.shape[1]:
                raise NetworkValidationError(
                    f"dense synapse from {self.source}: expects {self.weight.shape[1]} inputs, "
                    f"its source has shape {in_shape} ({int(np.prod(in_shape))} values)"
                )
            return (int(self.weight.shape[0]),)
        if len(in_shape) != 3:
            raise NetworkValidationError(
                f"conv synapse from {self.source}: source must be (C, H, W), got {in_shape}"
            )
        if in_shape[0] != self.weight.shape[1] * self.groups:
            raise NetworkValidationError(
                f"conv synapse from {self.source}: expects {self.weight.shape[1] * self.groups} "
                f"input channels, source has {in_shape[0]}"
            )
        h, w = conv_output_shape(
            in_shape[1:], self.kernel_size, self.stride, self.padding, self.dilation
        )
        if h < 1 or w < 1:
            raise NetworkValidationError(
                f"conv synapse from {self.source}: empty output for input {in_shape}"
            )
        return (int(self.weight.shape[0]), h, w)

    def max_abs_sum(self, max_input: int) -> int:
        """Largest possible ``|acc|`` this synapse can produce (per output neuron)."""
        per_out = np.abs(self.weight).reshape(self.weight.shape[0], -1).sum(axis=1)
        return int(per_out.max(initial=0)) * int(max_input)

    def check_ranges(self, ranges: hw.IntegerRanges = hw.LOIHI_RANGES) -> None:
        """Raise :class:`NetworkValidationError` unless every weight lies in ``ranges``.

        (The network checks its synapses against its own :attr:`IntegerNetwork.ranges`.)
        """
        w = self.weight
        if w.size and (w.min() < ranges.weight_min or w.max() > ranges.weight_max):
            raise NetworkValidationError(
                f"synapse from {self.source}: weights must lie in [{ranges.weight_min}, "
                f"{ranges.weight_max}], got [{w.min()}, {w.max()}]; re-quantize the model"
            )


@dataclass(frozen=True, eq=False)
class NeuronLayer:
    """A population of integrate-and-fire neurons and the synapses feeding it.

    Args:
        name: a readable name (``"conv1"``, ``"fc2"``...), unique in the network.
        shape: ``(C, H, W)`` or ``(N,)``, torch order.
        synapses: incoming synapses; several means their outputs are added (residual add).
        weight_exp: the exponent ``e`` of ``a = acc * 2**e`` (floor for ``e < 0``).
        bias_mant: signed 13-bit bias mantissa, shape ``(C,)`` (per channel) or ``shape``.
            In state units the bias is ``bias_mant << 6``.
        vth_mant: unsigned 17-bit threshold mantissa, ``None`` for the output layer (never
            spikes). In state units the threshold is ``vth_mant << 6``.
        v_init: membrane potential at the start of every sample, state units.
    """

    name: str
    shape: tuple[int, ...]
    synapses: tuple[Synapse, ...]
    weight_exp: int
    bias_mant: np.ndarray
    vth_mant: int | None
    v_init: int = 0

    def __post_init__(self) -> None:
        where = f"layer {self.name!r}"
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "synapses", tuple(self.synapses))
        if len(self.shape) not in (1, 3) or min(self.shape) < 1:
            raise NetworkValidationError(f"{where}: shape must be (N,) or (C, H, W)")
        if not self.synapses:
            raise NetworkValidationError(f"{where}: needs at least one incoming synapse")
        if not hw.WEIGHT_EXP_MIN <= int(self.weight_exp) <= hw.WEIGHT_EXP_MAX:
            raise NetworkValidationError(
                f"{where}: weight_exp {self.weight_exp} outside "
                f"[{hw.WEIGHT_EXP_MIN}, {hw.WEIGHT_EXP_MAX}]"
            )
        object.__setattr__(self, "weight_exp", int(self.weight_exp))
        b = _frozen_int_array(self.bias_mant, "bias_mant", where)
        if b.shape not in ((self.shape[0],), self.shape):
            raise NetworkValidationError(
                f"{where}: bias_mant must have shape ({self.shape[0]},) or {self.shape}, "
                f"got {b.shape}"
            )
        object.__setattr__(self, "bias_mant", b)
        if self.vth_mant is not None:
            vth = int(self.vth_mant)
            if not 1 <= vth <= hw.VTH_MANT_MAX:
                raise NetworkValidationError(
                    f"{where}: vth_mant {vth} outside [1, {hw.VTH_MANT_MAX}]"
                )
            object.__setattr__(self, "vth_mant", vth)
        object.__setattr__(self, "v_init", int(self.v_init))

    def check_ranges(self, ranges: hw.IntegerRanges = hw.LOIHI_RANGES) -> None:
        """Raise :class:`NetworkValidationError` unless the bias mantissas, ``v_init`` and
        every synapse's weights lie in ``ranges`` (the network checks its layers against its
        own :attr:`IntegerNetwork.ranges`)."""
        where = f"layer {self.name!r}"
        b = self.bias_mant
        if b.size and (b.min() < ranges.bias_mant_min or b.max() > ranges.bias_mant_max):
            raise NetworkValidationError(
                f"{where}: bias mantissa must lie in [{ranges.bias_mant_min}, "
                f"{ranges.bias_mant_max}], got [{b.min()}, {b.max()}]"
            )
        if not ranges.state_min <= self.v_init <= ranges.state_max:
            raise NetworkValidationError(f"{where}: v_init {self.v_init} outside the state range "
                                         f"[{ranges.state_min}, {ranges.state_max}]")
        for syn in self.synapses:
            syn.check_ranges(ranges)

    @property
    def spiking(self) -> bool:
        return self.vth_mant is not None

    @property
    def v_th(self) -> int | None:
        """Threshold in state units."""
        return None if self.vth_mant is None else hw.vth_from_mant(self.vth_mant)

    @property
    def bias(self) -> np.ndarray:
        """Bias in state units, broadcast to ``shape``."""
        b = hw.bias_from_mant(self.bias_mant)
        if b.shape != self.shape:
            b = b.reshape((-1,) + (1,) * (len(self.shape) - 1))
            b = np.broadcast_to(b, self.shape)
        return b

    @property
    def num_neurons(self) -> int:
        return int(np.prod(self.shape))


@dataclass(frozen=True, eq=False)
class IntegerNetwork:
    """A validated integer spiking network (``docs/contract.md``, section 3).

    Args:
        input_shape: shape of one input sample, ``(C, H, W)`` or ``(N,)``; values uint8.
        layers: neuron layers in topological order; the last is the (non-spiking) output.
        levels: QCFS quantization levels ``L`` of the source model.
        phi: QCFS shift (0.5 clip-floor-shift, 0 clip-floor).
        metadata: JSON-serializable facts (class names, input scaling, source checkpoint,
            the steps ``T`` it was validated at...).
        format_version: version of this structure (and of the NetX extension).
        ranges: the integer ranges every stored value lies in: Loihi's
            (:data:`~qcfs_lava.hardware.LOIHI_RANGES`), or wider weights for an experiment
            (such a network emulates but is not written as NetX).
    """

    input_shape: tuple[int, ...]
    layers: tuple[NeuronLayer, ...]
    levels: int
    phi: float
    metadata: Mapping[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    ranges: hw.IntegerRanges = hw.LOIHI_RANGES

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "metadata", dict(self.metadata))
        if self.format_version > FORMAT_VERSION:
            raise NetworkValidationError(
                f"integer network format {self.format_version} is newer than this qcfs-lava "
                f"understands ({FORMAT_VERSION}); upgrade qcfs-lava"
            )
        if len(self.input_shape) not in (1, 3):
            raise NetworkValidationError("input_shape must be (N,) or (C, H, W)")
        if not self.layers:
            raise NetworkValidationError("an integer network needs at least one layer")
        if int(self.levels) < 1:
            raise NetworkValidationError(f"levels must be >= 1, got {self.levels}")
        if not isinstance(self.ranges, hw.IntegerRanges):
            raise NetworkValidationError(f"ranges must be a hardware.IntegerRanges, got "
                                         f"{type(self.ranges).__name__}")
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise NetworkValidationError(f"layer names must be unique, got {names}")
        for i, layer in enumerate(self.layers):
            last = i == len(self.layers) - 1
            if layer.spiking == last:
                raise NetworkValidationError(
                    f"layer {layer.name!r}: every hidden layer must spike (vth_mant set) and "
                    "the last layer must not (vth_mant None)"
                )
            layer.check_ranges(self.ranges)
            for syn in layer.synapses:
                if not INPUT <= syn.source < i:
                    raise NetworkValidationError(
                        f"layer {layer.name!r}: synapse source {syn.source} must be the input "
                        f"(-1) or an earlier layer (< {i})"
                    )
                out = syn.output_shape(self.source_shape(syn.source))
                if int(np.prod(out)) != layer.num_neurons or (
                    len(out) == 3 and out != layer.shape
                ):
                    raise NetworkValidationError(
                        f"layer {layer.name!r}: synapse from {syn.source} produces {out}, "
                        f"layer shape is {layer.shape}"
                    )
                max_in = hw.INPUT_MAX if syn.source == INPUT else 1
                if syn.kind == "conv" and syn.max_abs_sum(max_in) > self.ranges.synapse_out_max:
                    raise NetworkValidationError(
                        f"layer {layer.name!r}: a conv synapse sum can reach "
                        f"{syn.max_abs_sum(max_in)}, beyond the 24-bit range lava's Conv "
                        "model clamps to; quantize with fewer weight bits"
                    )

    def check_input(self, x) -> np.ndarray:
        """Validate a batch of inputs and return it as uint8.

        Shape: ``x`` is ``(N, *input_shape)``, unsigned 8-bit pixel values (any integer
        dtype holding values in [0, 255]).

        Raises:
            NetworkValidationError: wrong shape, non-integer dtype or values out of range.
        """
        x = np.asarray(x)
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise NetworkValidationError(
                f"input must have shape (N, {', '.join(map(str, self.input_shape))}), got "
                f"{x.shape} (sample shape {tuple(x.shape[1:])})"
            )
        if x.dtype.kind not in "ui":
            raise NetworkValidationError(
                f"input must be unsigned 8-bit integers (uint8 pixels), got dtype {x.dtype}"
            )
        if x.size and (x.min() < 0 or x.max() > hw.INPUT_MAX):
            raise NetworkValidationError(
                f"input must be unsigned 8-bit integers in [0, {hw.INPUT_MAX}], got "
                f"[{x.min()}, {x.max()}]"
            )
        return x.astype(np.uint8, copy=False)

    def source_shape(self, source: int) -> tuple[int, ...]:
        """Shape of the spikes a synapse with this ``source`` receives."""
        return self.input_shape if source == INPUT else self.layers[source].shape

    @property
    def output(self) -> NeuronLayer:
        return self.layers[-1]

    @property
    def num_classes(self) -> int:
        return self.output.num_neurons

    def depths(self) -> tuple[int, ...]:
        """Synaptic hops from the input to each layer along its longest path.

        In Lava every synapse adds one step of latency, so layer ``l`` runs logical step
        ``t`` of sample ``k`` at simulator step ``k * T + t + depths()[l]`` (up to a
        constant), and a synapse from ``j`` into ``l`` must be delayed by
        ``depths()[l] - depths()[j] - 1`` steps.
        """
        depth: list[int] = []
        for layer in self.layers:
            sources = (0 if s.source == INPUT else depth[s.source] for s in layer.synapses)
            depth.append(1 + max(sources))
        return tuple(depth)

    @property
    def latency(self) -> int:
        """Steps between the first input and the output's first integration."""
        return self.depths()[-1]

    def equals(self, other: IntegerNetwork) -> bool:
        """Field-by-field equality (arrays compared exactly), walked over the dataclass
        fields of the network, its layers and their synapses (:func:`fields_equal`)."""
        return isinstance(other, IntegerNetwork) and fields_equal(self, other)

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per layer, for layer tables (CLI ``export`` / ``inspect``)."""
        rows = []
        for layer, depth in zip(self.layers, self.depths(), strict=True):
            main = layer.synapses[0]
            rows.append(
                {
                    "name": layer.name,
                    "type": main.kind,
                    "shape": layer.shape,
                    "kernel": main.kernel_size if main.kind == "conv" else None,
                    "stride": main.stride if main.kind == "conv" else None,
                    "padding": main.padding if main.kind == "conv" else None,
                    "inputs": [s.source for s in layer.synapses],
                    "weight_exp": layer.weight_exp,
                    "vth_mant": layer.vth_mant,
                    "v_init": layer.v_init,
                    "depth": depth,
                }
            )
        return rows


def format_table(net: IntegerNetwork) -> str:
    """A fixed-width layer table of ``net``."""
    head = f"{'#':>2} {'name':<12} {'type':<6} {'shape':<14} {'kernel':<7} {'stride':<7} " \
        f"{'pad':<6} {'from':<8} {'e':>3} {'vth_mant':>8} {'v_init':>9} {'depth':>5}"
    lines = [head, "-" * len(head)]

    def fmt(v):
        return "" if v is None else "x".join(str(x) for x in v)

    for i, r in enumerate(net.summary_rows()):
        lines.append(
            f"{i:>2} {r['name']:<12} {r['type']:<6} {fmt(r['shape']):<14} {fmt(r['kernel']):<7} "
            f"{fmt(r['stride']):<7} {fmt(r['padding']):<6} "
            f"{','.join(str(s) for s in r['inputs']):<8} {r['weight_exp']:>3} "
            f"{'-' if r['vth_mant'] is None else r['vth_mant']:>8} {r['v_init']:>9} "
            f"{r['depth']:>5}"
        )
    return "\n".join(lines)
