"""The QCFS neuron process model and the fast Conv model, against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("lava", reason="lava-nc is not installed")

from qcfs_lava import hardware as hw  # noqa: E402
from qcfs_lava.lava_sim import LavaRunConfig, simulate  # noqa: E402
from qcfs_lava.lava_sim.procs import packing  # noqa: E402
from qcfs_lava.lava_sim.procs.conv import conv_lava_int, wrap_signed  # noqa: E402
from qcfs_lava.network import INPUT, IntegerNetwork, NeuronLayer, Synapse  # noqa: E402


@pytest.mark.parametrize("bits", [1, 3, 7, 26])
def test_packing_round_trip(bits):
    rng = np.random.default_rng(bits)
    values = rng.integers(0, 1 << bits, size=(4, 101))
    words = np.stack([packing.pack(v, bits) for v in values])
    assert words.max() < 2**52  # exact as the float64 lava reads Vars back as
    np.testing.assert_array_equal(packing.unpack(words.astype(np.float64), bits, 101), values)


@pytest.mark.parametrize(
    "shape,cout,k,stride,padding,dilation,groups",
    [
        ((7, 6, 2), 4, (3, 3), (1, 1), (0, 0), (1, 1), 1),
        ((7, 6, 4), 6, (3, 2), (2, 1), (1, 2), (1, 1), 2),
        ((9, 8, 3), 3, (3, 3), (2, 3), (2, 1), (2, 1), 3),
        ((5, 5, 4), 4, (1, 1), (1, 1), (0, 0), (1, 1), 4),
    ],
)
def test_fast_conv_equals_stock_conv(shape, cout, k, stride, padding, dilation, groups):
    from lava.proc.conv import utils

    rng = np.random.default_rng(sum(shape) + cout)
    x = rng.integers(0, 256, size=shape).astype(np.int32)
    w = (2 * rng.integers(-128, 128, size=(cout, *k, shape[2] // groups))).astype(np.int32)
    want = utils.signed_clamp(utils.conv(x, w, k, stride, padding, dilation, groups), bits=24)
    got = wrap_signed(conv_lava_int(x, w, stride, padding, dilation, groups), 24)
    np.testing.assert_array_equal(got, want)
    # and where the 24-bit wrap acts
    big = (x.astype(np.int64) * 300).astype(np.int32)
    want = utils.signed_clamp(utils.conv(big, w, k, stride, padding, dilation, groups), 24)
    got = wrap_signed(conv_lava_int(big, w, stride, padding, dilation, groups), 24)
    np.testing.assert_array_equal(got, want)


def _reference(x, w, e, bias_mant, vth_mant, v_init, steps):
    """The integer dynamics (docs/contract.md, section 3) for one hidden dense layer, one
    neuron at a time, plain integers."""
    n_out = w.shape[0]
    spikes = np.zeros((len(x), steps, n_out), dtype=bool)
    sats = np.zeros(len(x), dtype=np.int64)
    for k, img in enumerate(x):
        for j in range(n_out):
            v = v_init
            acc = int(sum(int(a) * int(b) for a, b in zip(w[j], img, strict=True)))
            a = acc * 2**e if e >= 0 else acc // 2 ** (-e)  # floor division
            for t in range(steps):
                v = v + a + bias_mant[j] * 64
                if v > hw.STATE_MAX or v < hw.STATE_MIN:
                    sats[k] += 1
                    v = min(max(v, hw.STATE_MIN), hw.STATE_MAX)
                if v >= vth_mant * 64:
                    spikes[k, t, j] = True
                    v -= vth_mant * 64
    return spikes, sats


@pytest.mark.lava
@pytest.mark.parametrize("e", [-2, 0, 13])
def test_qcfs_neuron_matches_hand_computation(e):
    rng = np.random.default_rng(e + 5)
    steps, n_in = 5, 6
    w = 2 * rng.integers(-20, 21, size=(5, n_in))
    w[0] = 0  # neuron 0: bias only, lands exactly on the threshold (fires on >=)
    w[1] = 0
    bias = np.array([40, -3, 7, 0, 100])
    vth_mant = 80
    v_init = vth_mant << 5
    net = IntegerNetwork(
        (n_in,),
        (
            NeuronLayer("h", (5,), (Synapse(INPUT, "dense", w),), e, bias, vth_mant, v_init),
            NeuronLayer("out", (2,), (Synapse(0, "dense", 2 * np.eye(2, 5, dtype=int)),), 0,
                        np.zeros(2, int), None, 0),
        ),
        levels=4,
        phi=0.5,
    )
    x = rng.integers(0, 256, size=(3, n_in), dtype=np.uint8)
    res = simulate(net, x, steps, record="spikes")
    want, sats = _reference(x, w, e, bias, vth_mant, v_init, steps)
    np.testing.assert_array_equal(res.spikes[0], want)
    np.testing.assert_array_equal(res.saturations[:, 0], sats)
    np.testing.assert_array_equal(res.spike_counts[:, 0], want.sum(axis=(1, 2)))
    # output: v(T) - v(0) = 2 * (spikes of hidden neurons 0 and 1), the weight is 2, e = 0
    np.testing.assert_array_equal(res.potentials, 2 * want[:, :, :2].sum(axis=1))
    # neuron 0: v = 2560 + 2560 = 5120 = v_th at steps 0, 2, 4: equality fires
    assert (want[:, :, 0] == [True, False, True, False, True]).all()
    if e == 13:
        assert sats.sum() > 0


@pytest.mark.lava
def test_stock_and_fast_conv_models_give_identical_runs():
    rng = np.random.default_rng(11)
    w1 = 2 * rng.integers(-40, 41, size=(4, 2, 3, 3))
    w2 = 2 * rng.integers(-60, 61, size=(3, 4 * 4 * 3))
    net = IntegerNetwork(
        (2, 7, 5),
        (
            NeuronLayer("c", (4, 4, 3), (Synapse(INPUT, "conv", w1, stride=2, padding=1),),
                        -1, rng.integers(-100, 100, 4), 300, 300 << 5),
            NeuronLayer("out", (3,), (Synapse(0, "dense", w2),), 3, np.zeros(3, int), None, 0),
        ),
        levels=4,
        phi=0.5,
    )
    x = rng.integers(0, 256, size=(2, 2, 7, 5), dtype=np.uint8)
    fast = simulate(net, x, 4, record="spikes")
    stock = simulate(net, x, 4, record="spikes", config=LavaRunConfig(fast_conv=False))
    np.testing.assert_array_equal(fast.spikes[0], stock.spikes[0])
    np.testing.assert_array_equal(fast.potentials, stock.potentials)
    assert fast.spike_counts.sum() > 0
