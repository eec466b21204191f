"""Loihi / Lava integer ranges, in one place.

Each constant is read from lava-nc 0.10.0 and lava-dl 0.6.0 (the file that
enforces it is named). The integer network (:mod:`qcfs_lava.network`) validates
every stored integer against these, the quantizer chooses scales to fit them,
and the emulator and the Lava neuron model implement the same arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

from qcfs_lava.errors import NetworkValidationError

# Synaptic weights. lava/proc/dense/models.py (PyDenseModelBitAcc) clips weights to
# [-2**8, 2**8 - 1] and, for mixed-sign 8-bit weights, truncates the lowest bit
# (lava/utils/weightutils.py: truncate_weights). The values that survive unchanged
# are the even integers in [-256, 254]: slayer's convention, stored value = 2 * q
# with q a signed 8-bit integer. We store every weight that way, in every layer. (A matrix
# with no positive entry would be taken as inhibitory-only, where -256 becomes -255; our
# Lava runner therefore always passes the mixed sign mode.)
WEIGHT_PRECISION_BITS = 8
WEIGHT_MIN = -256
WEIGHT_MAX = 254
WEIGHT_STEP = 2  # stored weights are even

# Per-layer activation exponent e: a = acc * 2**e (e >= 0) or floor(acc / 2**-e).
# On Loihi the neuron shifts its input by 6 (lava/proc/lif/models.py: act_shift = 6)
# and the synapse adds a weight exponent in [-8, 7]; the product spans [-2, 13].
WEIGHT_EXP_MIN = -8 + 6
WEIGHT_EXP_MAX = 7 + 6

# Threshold: unsigned 17-bit mantissa, shifted left by 6 inside the neuron
# (lava/proc/lif/models.py: vth_shift = 6).
VTH_MANT_BITS = 17
VTH_MANT_MAX = (1 << VTH_MANT_BITS) - 1
VTH_SHIFT = 6

# Bias: signed 13-bit mantissa; NetX hard-codes bias_exp = 6
# (lava/lib/dl/netx/hdf5.py: get_neuron_params, 'bias_exp': 6).
BIAS_MANT_BITS = 13
BIAS_MANT_MIN = -(1 << (BIAS_MANT_BITS - 1))
BIAS_MANT_MAX = (1 << (BIAS_MANT_BITS - 1)) - 1
BIAS_EXP = 6

# Membrane state: 24-bit signed, saturating (lava/proc/conv/utils.py signed_clamp,
# lava/proc/lif/models.py max_uv_val = 2**23 - 1).
STATE_BITS = 24
STATE_MIN = -(1 << (STATE_BITS - 1))
STATE_MAX = (1 << (STATE_BITS - 1)) - 1

# Graded spikes carry up to 24 bits; our input is an unsigned 8-bit pixel.
GRADED_PAYLOAD_BITS = 24
INPUT_BITS = 8
INPUT_MAX = (1 << INPUT_BITS) - 1

# lava's fixed-point Conv model clamps its output to 24 bits signed
# (lava/proc/conv/models.py: PyConvModelFixed.clamp_precision). The quantizer keeps
# every synaptic sum provably inside this range, so the clamp never acts.
SYNAPSE_OUT_MIN = STATE_MIN
SYNAPSE_OUT_MAX = STATE_MAX


@dataclass(frozen=True)
class IntegerRanges:
    """The integer ranges a network is built for: Loihi's (:data:`LOIHI_RANGES`, 8-bit
    weights), or, for an experiment only, ``weight_bits`` up to 12.

    Wider weights scale every layer's state by ``2**(weight_bits - 8)``, so the membrane,
    synaptic-sum and bias ranges widen by the same factor and the headroom (in thresholds)
    stays what it is with 8 bits; narrower weights keep Loihi's ranges. Stored weights are
    ``2q`` with ``q`` a signed ``weight_bits``-bit integer, as with 8 bits.
    """

    weight_bits: int = WEIGHT_PRECISION_BITS

    def __post_init__(self) -> None:
        if isinstance(self.weight_bits, bool) or not isinstance(self.weight_bits, int) \
                or not 2 <= self.weight_bits <= WIDEST_WEIGHT_BITS:
            raise NetworkValidationError(
                f"weight_bits must be an int in [2, {WIDEST_WEIGHT_BITS}] (the emulator's int32 "
                f"membrane), got {self.weight_bits!r}")

    @property
    def widening(self) -> int:
        """The factor every state range is widened by (1 up to 8-bit weights)."""
        return 1 << max(self.weight_bits - WEIGHT_PRECISION_BITS, 0)

    @property
    def weight_qmax(self) -> int:
        """Largest ``|q|`` of a stored weight ``2q`` (127 for 8 bits)."""
        return (1 << (self.weight_bits - 1)) - 1

    @property
    def weight_min(self) -> int:
        return -WEIGHT_STEP * (self.weight_qmax + 1)

    @property
    def weight_max(self) -> int:
        return WEIGHT_STEP * self.weight_qmax

    @property
    def state_min(self) -> int:
        return STATE_MIN * self.widening

    @property
    def state_max(self) -> int:
        return STATE_MAX * self.widening

    @property
    def synapse_out_max(self) -> int:
        return SYNAPSE_OUT_MAX * self.widening

    @property
    def bias_mant_min(self) -> int:
        return BIAS_MANT_MIN * self.widening

    @property
    def bias_mant_max(self) -> int:
        return BIAS_MANT_MAX * self.widening

    @property
    def drive_limit(self) -> int:
        """A bound on ``|a|`` beyond which the membrane saturates whatever ``a``'s exact value:
        ``|v| <= 2**23`` and ``|bias| < 2**18`` (times :attr:`widening`), so ``2**25`` (times
        it) leaves ``v + a + bias`` inside int32 and every result unchanged."""
        return (1 << 25) * self.widening


# The widest weights an experiment may ask for (the emulator's int32 membrane).
WIDEST_WEIGHT_BITS = 12
LOIHI_RANGES = IntegerRanges()


def vth_from_mant(vth_mant: int) -> int:
    """Threshold in state units for a threshold mantissa (``vth_mant << 6``)."""
    return int(vth_mant) << VTH_SHIFT


def bias_from_mant(bias_mant, bias_exp: int = BIAS_EXP):
    """Bias in state units for a bias mantissa (``bias_mant << bias_exp``)."""
    return bias_mant * (1 << bias_exp)


# --------------------------------------------------------------------------------------
# Resource limits per chip (used by qcfs_lava.analysis.resources)
# --------------------------------------------------------------------------------------
# Each limit carries its source and how firm it is:
#   "primary"    - read from code that enforces it or from the vendor's own publication;
#   "secondary"  - public Intel material summarised elsewhere (a product brief, press);
#   "assumption" - not published as a number; our modelling choice, shown as such;
#   "derived"    - computed from other limits (e.g. a chip total spread over its cores);
#   "not public" - no public number: the limit is not checked and the output says so.

_NENGO_LOIHI = "nengo-loihi 1.1.0, nengo_loihi/block.py (Block.utilization)"
_DAVIES_2018 = "Davies et al., 'Loihi: a neuromorphic manycore processor', IEEE Micro 38(1), 2018"
_LOIHI2_BRIEF = "Intel, 'Taking Neuromorphic Computing to the Next Level with Loihi 2', " \
    "technology brief, 2021"


@dataclass(frozen=True)
class HardwareLimit:
    """One resource limit of a neuromorphic chip.

    Attributes:
        key: identifier (``compartments``, ``input_axons``, ...).
        value: the limit, or ``None`` where no public number exists.
        unit: what is counted.
        scope: ``"core"``, ``"chip"`` or ``"mesh"``.
        source: where the number comes from.
        status: ``primary``, ``secondary``, ``assumption``, ``derived`` or ``not public``.
    """

    key: str
    value: int | None
    unit: str
    scope: str
    source: str
    status: str


CHIP_LIMITS: dict[str, tuple[HardwareLimit, ...]] = {
    "loihi1": (
        HardwareLimit("compartments", 1024, "compartments (neurons)", "core",
                      f"{_NENGO_LOIHI}: MAX_COMPARTMENTS", "primary"),
        HardwareLimit("input_axons", 4096, "input axons", "core",
                      f"{_NENGO_LOIHI}: MAX_IN_AXONS", "primary"),
        HardwareLimit("output_axons", 4096, "output axons", "core",
                      f"{_NENGO_LOIHI}: MAX_OUT_AXONS", "primary"),
        HardwareLimit("synaptic_memory_bits", 16384 * 64, "bits of synaptic memory (128 KiB)",
                      "core", f"{_NENGO_LOIHI}: MAX_SYNAPSE_BITS = 16384 * 64", "primary"),
        HardwareLimit("cores_per_chip", 128, "neuromorphic cores", "chip",
                      f"{_DAVIES_2018}; nengo-loihi allocators.py cores_per_chip=128", "primary"),
        HardwareLimit("cores_per_tile", 4, "cores sharing one mesh router", "mesh",
                      "assumption: 4 cores per router tile (chip floor plan in Davies et al. "
                      "2018; not stated as a number); hop counts depend on it", "assumption"),
        HardwareLimit("mesh_width", 8, "tiles per mesh row", "mesh",
                      "assumption: 32 tiles in an 8 x 4 mesh per chip, chips on a near-square "
                      "grid with joined meshes; hop counts depend on it", "assumption"),
    ),
    "loihi2": (
        HardwareLimit("compartments", 8192, "neurons", "core",
                      f"{_LOIHI2_BRIEF}: up to 8,192 neurons per core", "secondary"),
        HardwareLimit("input_axons", None, "input axons", "core",
                      "not public: no per-core axon limit is published for Loihi 2",
                      "not public"),
        HardwareLimit("output_axons", None, "output axons", "core",
                      "not public: no per-core axon limit is published for Loihi 2",
                      "not public"),
        HardwareLimit("synaptic_memory_bits", None, "bits of synaptic memory", "core",
                      "not public: per-core synaptic memory is shared with neuron state and "
                      "no per-core figure is published", "not public"),
        HardwareLimit("synapses_per_core", 120_000_000 // 128, "synapses (average)", "core",
                      "derived: 120M synapses per chip / 128 cores (an average, not a per-core "
                      "hardware limit)", "derived"),
        HardwareLimit("cores_per_chip", 128, "neuromorphic cores", "chip",
                      f"{_LOIHI2_BRIEF}", "secondary"),
        HardwareLimit("neurons_per_chip", 1_000_000, "neurons (about)", "chip",
                      f"{_LOIHI2_BRIEF}: up to 1M neurons per chip", "secondary"),
        HardwareLimit("synapses_per_chip", 120_000_000, "synapses (about)", "chip",
                      f"{_LOIHI2_BRIEF}: up to 120M synapses per chip", "secondary"),
        HardwareLimit("cores_per_tile", 4, "cores sharing one mesh router", "mesh",
                      "assumption: same mesh geometry as Loihi 1 (not published as numbers)",
                      "assumption"),
        HardwareLimit("mesh_width", 8, "tiles per mesh row", "mesh",
                      "assumption: same mesh geometry as Loihi 1 (not published as numbers)",
                      "assumption"),
    ),
}
CHIPS = tuple(CHIP_LIMITS)

# nengo-loihi's synapse encoding (nengo_loihi/block.py, SynapseConfig): weights of 0..8 bits
# and per-synapse compartment indices of 0 or 6..12 bits.
SYNAPSE_INDEX_BITS = (0, 6, 7, 8, 9, 10, 11, 12)


def chip_limits(chip: str) -> dict[str, HardwareLimit]:
    """The limits of ``chip`` (``"loihi1"`` or ``"loihi2"``) by key.

    Raises:
        ValueError: an unknown chip name.
    """
    if chip not in CHIP_LIMITS:
        raise ValueError(f"unknown chip {chip!r}; choose one of {', '.join(CHIPS)}")
    return {limit.key: limit for limit in CHIP_LIMITS[chip]}


def synapse_index_bits(compartments: int) -> int:
    """Index bits each stored synapse needs to address ``compartments`` compartments
    (the smallest entry of :data:`SYNAPSE_INDEX_BITS` that holds ``compartments - 1``)."""
    need = max(int(compartments) - 1, 0).bit_length()
    for bits in SYNAPSE_INDEX_BITS:
        if bits >= need:
            return bits
    return need
