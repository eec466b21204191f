"""Loihi / Lava integer ranges, in one place.

Each constant is read from lava-nc 0.10.0 and lava-dl 0.6.0 (the file that
enforces it is named). The integer network (:mod:`qcfs_lava.network`) validates
every stored integer against these, the quantizer chooses scales to fit them,
and the emulator and the Lava neuron model implement the same arithmetic.
"""

from __future__ import annotations

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


def vth_from_mant(vth_mant: int) -> int:
    """Threshold in state units for a threshold mantissa (``vth_mant << 6``)."""
    return int(vth_mant) << VTH_SHIFT


def bias_from_mant(bias_mant, bias_exp: int = BIAS_EXP):
    """Bias in state units for a bias mantissa (``bias_mant << bias_exp``)."""
    return bias_mant * (1 << bias_exp)
