"""The settings of one conversion, as a value passed in (never a module constant to patch)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from qcfs_lava import hardware as hw
from qcfs_lava.errors import QuantizationError

__all__ = ["LAYER_COPIES_LIMIT", "ConversionConfig"]

#: The largest ``layer_copies`` / ``synapse_copies`` a conversion accepts.
LAYER_COPIES_LIMIT = 64


@dataclass(frozen=True)
class ConversionConfig:
    """How a QCFS model is quantized to the integer network.

    The defaults are Loihi's (what ``qcfs-lava export`` writes). Every field is recorded in
    the network's metadata when it differs from its default.

    Attributes:
        weight_bits: bits of a synaptic weight ``q`` (stored as ``2q``). 8 is Loihi's;
            ``2..12`` are accepted for experiments: above 8, the membrane, synaptic-sum and
            bias ranges widen by ``2**(weight_bits - 8)`` (so the headroom in thresholds is
            unchanged and only the weight grid differs) and the network emulates but cannot
            be written as NetX (:class:`~qcfs_lava.hardware.IntegerRanges`).
        synapse_copies: a layer with several synapses (a residual add) has one weight grid.
            With ``k > 1`` the grid is set by its smallest synapse and a larger one (the
            identity shortcut, whose weight is the source's threshold) is carried by up to
            ``k`` identical synapses whose 8-bit weights add up to it: exact in every stage
            (each stage sums all synapses of a layer), ``k`` times the shortcut's synaptic
            operations. 1 keeps one synapse per source (the grid set by the largest weight).
        layer_copies: a layer with one synapse: with ``k > 1`` its grid is ``k`` times finer
            than its largest weight needs (``log2(k)`` more bits of resolution for every
            channel), and the weights are carried by up to ``k`` synapse copies whose 8-bit
            weights add up to them. Exact in every stage, like the shortcut copies; up to
            ``k`` times the layer's synaptic operations and synapse memory. 1: one synapse.
        spike_payload: the largest payload one spike carries (1: binary spikes). Validated and
            carried here; the graded-spike neuron reads it.
    """

    weight_bits: int = hw.WEIGHT_PRECISION_BITS
    synapse_copies: int = 1
    layer_copies: int = 1
    spike_payload: int = 1

    def __post_init__(self) -> None:
        for name, low, high in (
            ("weight_bits", 2, hw.WIDEST_WEIGHT_BITS),
            ("synapse_copies", 1, LAYER_COPIES_LIMIT),
            ("layer_copies", 1, LAYER_COPIES_LIMIT),
            ("spike_payload", 1, None),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low or (
                    high is not None and value > high):
                span = f"{low}..{high}" if high is not None else f">= {low}"
                raise QuantizationError(f"{name} must be an integer {span}, got {value!r}")

    @property
    def ranges(self) -> hw.IntegerRanges:
        """The integer ranges the network is built for (Loihi's for 8-bit weights)."""
        return hw.IntegerRanges(self.weight_bits)

    def non_defaults(self) -> dict[str, Any]:
        """The fields that differ from their defaults (what the network metadata records)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != f.default}

    def with_layer_copies(self, layer_copies: int | None) -> ConversionConfig:
        """This config with ``layer_copies`` replaced (``None``: unchanged)."""
        if layer_copies is None:
            return self
        try:
            value = int(layer_copies)
        except (TypeError, ValueError):
            raise QuantizationError(f"layer_copies must be an integer 1..{LAYER_COPIES_LIMIT}, "
                                    f"got {layer_copies!r}") from None
        return dataclasses.replace(self, layer_copies=value)
