"""The BLAS synapse models equal lava's stock Conv and Dense models, at every width."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("lava", reason="lava-nc is not installed")

from qcfs_lava.emulator import emulate  # noqa: E402
from qcfs_lava.lava_sim import LavaRunConfig, simulate  # noqa: E402
from qcfs_lava.lava_sim.procs.conv import (  # noqa: E402
    FLOAT32_EXACT,
    ConvGeometry,
    ConvPlan,
    conv_lava_int,
    exact_float_dtype,
    wrap_stock_conv,
)
from qcfs_lava.lava_sim.procs.dense import DensePlan, wrap_int32  # noqa: E402
from qcfs_lava.network import INPUT, IntegerNetwork, NeuronLayer, Synapse  # noqa: E402
from qcfs_lava.results import compare_results  # noqa: E402


def _random_conv(rng):
    g = int(rng.choice([1, 1, 2, 3, 4]))
    cg, cout = int(rng.integers(1, 4)), g * int(rng.integers(1, 4))
    k = rng.integers(1, 4, 2)
    geo = ConvGeometry(tuple(int(v) for v in rng.integers(1, 3, 2)),
                       tuple(int(v) for v in rng.integers(0, 3, 2)),
                       tuple(int(v) for v in rng.integers(1, 3, 2)), g)
    shape = (int(rng.integers(k[0] * geo.dilation[0] + 1, 9)),
             int(rng.integers(k[1] * geo.dilation[1] + 1, 9)), g * cg)
    w = rng.integers(-128, 128, (cout, *k, cg)).astype(np.int32)
    return w, shape, geo


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", ["binary", "graded", "large"])
def test_conv_plan_equals_stock_conv_on_random_layers(seed, kind):
    """Every geometry (kernel, stride, padding, dilation, groups); the stock arithmetic."""
    from lava.proc.conv import utils

    rng = np.random.default_rng(seed)
    for _ in range(25):
        w, shape, geo = _random_conv(rng)
        if kind == "binary":
            x = rng.integers(0, 2, shape)
        elif kind == "graded":
            x = rng.integers(0, 256, shape)
        else:  # graded values past the float32 bound (float64 path) and the 24-bit wrap
            x = rng.integers(0, 1 << 20, shape)
        x = x.astype(np.int32)
        plan = ConvPlan(w, shape, geo)
        want = utils.signed_clamp(utils.conv(x, w, w.shape[1:3], geo.stride, geo.padding,
                                             geo.dilation, geo.groups), bits=24)
        got = wrap_stock_conv(plan(x))
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(
            plan(x), conv_lava_int(x, w, geo.stride, geo.padding, geo.dilation, geo.groups))
        if kind == "large":
            assert exact_float_dtype(plan.bound(int(x.max()))) is not np.float32 or w.size < 4


@pytest.mark.parametrize("channels,groups", [(128, 128), (256, 256), (256, 128), (160, 1)])
def test_conv_plan_at_full_width(channels, groups):
    """Channels >= 128 and >= 128 groups (what an int8 ``groups`` variable cannot hold)."""
    from lava.proc.conv import utils

    rng = np.random.default_rng(channels + groups)
    k = 1 if groups == channels else 3
    w = rng.integers(-128, 128, (channels, k, k, channels // groups)).astype(np.int32)
    geo = ConvGeometry((1, 1), (k // 2, k // 2), (1, 1), groups)
    for x in (rng.integers(0, 2, (3, 2, channels)), rng.integers(0, 256, (3, 2, channels))):
        x = x.astype(np.int32)
        want = utils.signed_clamp(
            utils.conv(x, w, (k, k), geo.stride, geo.padding, geo.dilation, groups), 24)
        np.testing.assert_array_equal(wrap_stock_conv(ConvPlan(w, x.shape, geo)(x)), want)


def test_float_paths_are_chosen_by_the_exactness_bound():
    assert exact_float_dtype(FLOAT32_EXACT - 1) is np.float32
    assert exact_float_dtype(FLOAT32_EXACT) is np.float64
    assert exact_float_dtype(1 << 53) is None
    # a sum that float32 cannot hold: 2**24 + 1 from two products
    w = np.array([[1 << 7, 1]])
    x = np.array([1 << 17, 1])
    assert np.float32(np.float32(1 << 24) + np.float32(1)) == 1 << 24  # float32 would round
    assert DensePlan(w)(x)[0] == (1 << 24) + 1
    # past 2**53: the int64 fallback
    w = np.array([[255, 255, 1]])
    x = np.array([1 << 52, 1 << 52, 1])
    assert exact_float_dtype(DensePlan(w).l1_max << 52) is None
    assert DensePlan(w)(x)[0] == 510 * (1 << 52) + 1


@pytest.mark.parametrize("seed", range(3))
def test_dense_plan_equals_stock_dense_arithmetic(seed):
    rng = np.random.default_rng(seed)
    w = rng.integers(-128, 128, (int(rng.integers(1, 300)), int(rng.integers(1, 5000))))
    w = w.astype(np.int32)
    plan = DensePlan(w)
    graded = rng.integers(0, 256, w.shape[1]).astype(np.int32)
    np.testing.assert_array_equal(wrap_int32(plan(graded)), w.dot(graded))  # stock: int32
    for density in (0.02, 0.5):  # the row-sum path for sparse spikes and the product
        spikes = rng.random(w.shape[1]) < density
        np.testing.assert_array_equal(plan(spikes, 1), w[:, spikes].sum(axis=1))


def _layer(rng, name, shape, syns, *, e=4, vth=300, spiking=True):
    bias = rng.integers(-200, 200, size=shape[0])
    return NeuronLayer(name, shape, tuple(syns), e, bias, vth if spiking else None,
                       (vth << 5) if spiking else 0)


def _w(rng, shape, wmax=254):
    return 2 * rng.integers(-(wmax // 2), wmax // 2 + 1, size=shape)


@pytest.mark.lava
def test_fast_synapse_models_equal_stock_models_in_lava():
    """Graded input (first layer) and binary spikes, conv with groups and dense."""
    rng = np.random.default_rng(12)
    net = IntegerNetwork((2, 6, 5), (
        _layer(rng, "c1", (4, 3, 3), [Synapse(INPUT, "conv", _w(rng, (4, 2, 3, 2), 30),
                                               stride=(2, 2), padding=(1, 1))], e=0),
        _layer(rng, "c2", (6, 2, 5), [Synapse(0, "conv", _w(rng, (6, 2, 2, 1)), groups=2,
                                               dilation=(1, 2), padding=(0, 1))]),
        _layer(rng, "fc", (7,), [Synapse(1, "dense", _w(rng, (7, 60)))]),
        _layer(rng, "out", (3,), [Synapse(2, "dense", _w(rng, (3, 7))),
                                  Synapse(INPUT, "dense", _w(rng, (3, 60), 8))],
               spiking=False),
    ), levels=4, phi=0.5)
    x = rng.integers(0, 256, size=(2, 2, 6, 5), dtype=np.uint8)
    fast = simulate(net, x, 4, record="spikes")
    stock = simulate(net, x, 4, record="spikes",
                     config=LavaRunConfig(fast_conv=False, fast_dense=False))
    assert compare_results(fast, stock) == []
    np.testing.assert_array_equal(fast.saturations, stock.saturations)
    assert fast.spike_counts.sum() > 0


@pytest.mark.lava
@pytest.mark.parametrize("shortcut", ["identity", "grouped"])
def test_wide_residual_block_equals_emulator(shortcut):
    """A 128-channel block whose shortcut is a convolution with >= 128 groups.

    lava's stock Conv model keeps ``groups`` in an int8 variable, where 128 wraps.
    """
    rng = np.random.default_rng(13)
    c = 128
    stem = _layer(rng, "stem", (c, 2, 3), [Synapse(INPUT, "conv", _w(rng, (c, 1, 3, 3), 40),
                                                   padding=1)], e=0, vth=200)
    a = _layer(rng, "a", (c, 2, 3), [Synapse(0, "conv", _w(rng, (c, c, 3, 3), 16),
                                             padding=1)], e=2)
    if shortcut == "identity":  # depthwise 1x1 with weight 2**k: the identity
        short = Synapse(0, "conv", np.full((c, 1, 1, 1), 128), groups=c)
    else:  # 256 groups of (1 in, 1 out) from 256 channels is not possible: 128 groups of 1->2
        short = Synapse(0, "conv", _w(rng, (2 * c, 1, 1, 1)), groups=c)
    width = c if shortcut == "identity" else 2 * c
    b = _layer(rng, "b", (width, 2, 3), [Synapse(1, "conv", _w(rng, (width, c, 3, 3), 16),
                                                 padding=1), short], e=2)
    out = _layer(rng, "out", (3,), [Synapse(2, "dense", _w(rng, (3, width * 6), 16))],
                 spiking=False)
    net = IntegerNetwork((1, 2, 3), (stem, a, b, out), levels=4, phi=0.5)
    x = rng.integers(0, 256, size=(2, 1, 2, 3), dtype=np.uint8)
    lava = simulate(net, x, 3, record="spikes")
    emu = emulate(net, x, 3, record="spikes")
    assert compare_results(lava, emu) == []
    np.testing.assert_array_equal(lava.saturations, emu.saturations)
    assert lava.spike_counts[:, 2].sum() > 0
