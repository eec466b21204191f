"""The Lava runner equals the batched emulator, spike for spike (docs/contract.md, section 4)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("lava", reason="lava-nc is not installed")

from qcfs_lava import hardware as hw  # noqa: E402
from qcfs_lava.emulator import emulate  # noqa: E402
from qcfs_lava.errors import LavaSimulationError, NetworkValidationError  # noqa: E402
from qcfs_lava.lava_sim import LavaRunConfig, simulate  # noqa: E402
from qcfs_lava.network import INPUT, IntegerNetwork, NeuronLayer, Synapse  # noqa: E402
from qcfs_lava.results import compare_results  # noqa: E402

pytestmark = pytest.mark.lava


def _w(rng, shape, wmax=254):
    return 2 * rng.integers(-(wmax // 2) - (wmax == 254), wmax // 2 + 1, size=shape)


def _layer(rng, name, shape, syns, *, e=None, vth=None, spiking=True, extreme=False):
    if e is None:  # the full exponent range saturates; a moderate one keeps neurons alive
        e = int(rng.integers(hw.WEIGHT_EXP_MIN, hw.WEIGHT_EXP_MAX + 1 if extreme else 5))
    if vth is None:
        vth = int(rng.integers(1, 4000 if not extreme else hw.VTH_MANT_MAX + 1))
    lim = 4096 if extreme else 400
    bias = rng.integers(-lim, lim, size=shape[0])
    return NeuronLayer(name, shape, tuple(syns), e, bias, vth if spiking else None,
                       (vth << 5) if spiking else int(rng.integers(-500, 500)))


def _net(layers, input_shape):
    return IntegerNetwork(input_shape, tuple(layers), levels=4, phi=0.5)


def _check(net, x, steps, **kw):
    lava = simulate(net, x, steps, record="spikes", **kw)
    emu = emulate(net, x, steps, record="spikes")
    mismatches = compare_results(lava, emu)
    assert mismatches == [], "\n".join(map(str, mismatches))
    np.testing.assert_array_equal(lava.saturations, emu.saturations)
    assert lava.backend == "lava" and lava.spikes[0].shape == (len(x), steps, *net.layers[0].shape)
    return lava


def test_mlp_equals_emulator():
    rng = np.random.default_rng(0)
    net = _net([
        _layer(rng, "fc1", (12,), [Synapse(INPUT, "dense", _w(rng, (12, 10), 40))], e=0),
        _layer(rng, "fc2", (8,), [Synapse(0, "dense", _w(rng, (8, 12)))], e=6),
        _layer(rng, "out", (3,), [Synapse(1, "dense", _w(rng, (3, 8)))], e=2, spiking=False),
    ], (10,))
    x = rng.integers(0, 256, size=(3, 10), dtype=np.uint8)
    res = _check(net, x, 6, labels=np.array([0, 1, 2]))
    assert res.spike_counts.sum() > 0 and res.accuracy is not None


def test_cnn_equals_emulator_with_stride_padding_and_dense_head():
    rng = np.random.default_rng(1)
    net = _net([
        _layer(rng, "conv1", (3, 4, 3), [Synapse(INPUT, "conv", _w(rng, (3, 2, 3, 3), 30),
                                                 stride=(2, 2), padding=(1, 1))], e=-1,
               vth=100),
        _layer(rng, "conv2", (4, 4, 3), [Synapse(0, "conv", _w(rng, (4, 3, 3, 3)),
                                                 padding=(1, 1))], e=5, vth=500),
        _layer(rng, "out", (5,), [Synapse(1, "dense", _w(rng, (5, 48)))], e=3, spiking=False),
    ], (2, 7, 5))
    x = rng.integers(0, 256, size=(2, 2, 7, 5), dtype=np.uint8)
    res = _check(net, x, 5)
    assert res.spike_counts.min() > 0


@pytest.mark.parametrize("shortcut", ["identity", "conv1x1"])
def test_residual_block_equals_emulator(shortcut):
    rng = np.random.default_rng(2)
    c = 3
    stem = _layer(rng, "stem", (c, 5, 5), [Synapse(INPUT, "conv", _w(rng, (c, 1, 3, 3), 40),
                                                   padding=1)], e=0)
    a = _layer(rng, "a", (c, 5, 5), [Synapse(0, "conv", _w(rng, (c, c, 3, 3)), padding=1)], e=5)
    if shortcut == "identity":  # depthwise 1x1 conv with weight 2**k: the identity
        short = Synapse(0, "conv", np.full((c, 1, 1, 1), 128), groups=c)
    else:
        short = Synapse(0, "conv", _w(rng, (c, c, 1, 1)))
    b = _layer(rng, "b", (c, 5, 5), [Synapse(1, "conv", _w(rng, (c, c, 3, 3)), padding=1),
                                     short], e=5)
    out = _layer(rng, "out", (4,), [Synapse(2, "dense", _w(rng, (4, c * 25)))], e=2,
                 spiking=False)
    net = _net([stem, a, b, out], (1, 5, 5))
    assert net.depths() == (1, 2, 3, 4)  # the shortcut needs a delay of one step
    x = rng.integers(0, 256, size=(3, 1, 5, 5), dtype=np.uint8)
    res = _check(net, x, 6)
    assert res.spike_counts[:, 2].sum() > 0


def _random_net(rng):
    """A tiny random network: dense or conv stem, optional skip, sometimes saturating."""
    extreme = bool(rng.integers(0, 2))
    conv = bool(rng.integers(0, 2))
    layers = []
    if conv:
        in_shape = (int(rng.integers(1, 3)), int(rng.integers(3, 6)), int(rng.integers(3, 6)))
        k = int(rng.integers(1, 4))
        pad, stride = int(rng.integers(0, k)), int(rng.integers(1, 3))
        syn = Synapse(INPUT, "conv", _w(rng, (2, in_shape[0], k, k)), stride=stride,
                      padding=pad)
        shape = syn.output_shape(in_shape)
    else:
        in_shape = (int(rng.integers(3, 9)),)
        shape = (int(rng.integers(2, 9)),)
        syn = Synapse(INPUT, "dense", _w(rng, (shape[0], in_shape[0])))
    layers.append(_layer(rng, "h0", shape, [syn], extreme=extreme))
    n0 = int(np.prod(shape))
    h1 = int(rng.integers(2, 8))
    syns = [Synapse(0, "dense", _w(rng, (h1, n0)))]
    if rng.integers(0, 2):  # a skip from the input (delayed by one step)
        syns.append(Synapse(INPUT, "dense", _w(rng, (h1, int(np.prod(in_shape))), 16)))
    layers.append(_layer(rng, "h1", (h1,), syns, extreme=extreme))
    layers.append(_layer(rng, "out", (3,), [Synapse(1, "dense", _w(rng, (3, h1))),
                                            Synapse(0, "dense", _w(rng, (3, n0)))],
                         spiking=False, extreme=extreme))
    return _net(layers, in_shape)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
def test_random_networks_equal_emulator(seed):
    rng = np.random.default_rng(100 + seed)
    net = _random_net(rng)
    x = rng.integers(0, 256, size=(2, *net.input_shape), dtype=np.uint8)
    _check(net, x, int(rng.integers(2, 6)))


def test_random_sweep_covers_saturation_and_negative_exponents():
    nets = [_random_net(np.random.default_rng(100 + s)) for s in range(6)]
    assert any(lay.weight_exp < 0 for n in nets for lay in n.layers)
    sat = 0
    for s, net in enumerate(nets):
        rng = np.random.default_rng(100 + s)
        _random_net(rng)
        x = rng.integers(0, 256, size=(2, *net.input_shape), dtype=np.uint8)
        sat += emulate(net, x, int(rng.integers(2, 6))).saturations.sum()
    assert sat > 0


def test_chunked_runs_equal_one_run_and_counts_match():
    rng = np.random.default_rng(4)
    net = _net([
        _layer(rng, "fc1", (6,), [Synapse(INPUT, "dense", _w(rng, (6, 5), 60))], e=0),
        _layer(rng, "out", (2,), [Synapse(0, "dense", _w(rng, (2, 6)))], e=1, spiking=False),
    ], (5,))
    x = rng.integers(0, 256, size=(5, 5), dtype=np.uint8)
    whole = simulate(net, x, 4, record="spikes")
    parts = simulate(net, x, 4, record="counts",
                     config=LavaRunConfig(max_samples_per_run=2), progress=False)
    assert parts.extra["runs"] == 3 and whole.extra["runs"] == 1
    assert whole.extra["lava_steps"] == 5 * 4 + net.depths()[-1]
    np.testing.assert_array_equal(parts.potentials, whole.potentials)
    np.testing.assert_array_equal(parts.neuron_counts[0], whole.spikes[0].sum(axis=1))
    np.testing.assert_array_equal(parts.spike_counts, whole.spike_counts)


def test_bad_input_is_rejected():
    rng = np.random.default_rng(5)
    net = _net([
        _layer(rng, "fc1", (4,), [Synapse(INPUT, "dense", _w(rng, (4, 3)))]),
        _layer(rng, "out", (2,), [Synapse(0, "dense", _w(rng, (2, 4)))], spiking=False),
    ], (3,))
    with pytest.raises(NetworkValidationError, match="shape"):
        simulate(net, np.zeros((2, 4), np.uint8), 3)
    with pytest.raises(NetworkValidationError, match="record"):
        simulate(net, np.zeros((2, 3), np.uint8), 3, record="voltages")
    with pytest.raises(NetworkValidationError, match="uint8"):
        simulate(net, np.zeros((2, 3), np.float32), 3)


def test_model_exception_surfaces_traceback(monkeypatch):
    from qcfs_lava.lava_sim.procs import neuron

    def boom(self):
        raise ZeroDivisionError("injected failure in the neuron model")

    monkeypatch.setattr(neuron.PyQcfsOutputModelFixed, "run_spk", boom)
    rng = np.random.default_rng(6)
    net = _net([
        _layer(rng, "fc1", (4,), [Synapse(INPUT, "dense", _w(rng, (4, 3)))]),
        _layer(rng, "out", (2,), [Synapse(0, "dense", _w(rng, (2, 4)))], spiking=False),
    ], (3,))
    with pytest.raises(LavaSimulationError, match="injected failure"):
        simulate(net, np.zeros((1, 3), np.uint8), 2)


@pytest.mark.slow
def test_cli_simulate_check_on_a_netx_file(tmp_path, capsys):
    from qcfs_lava.cli import main
    from qcfs_lava.netx import write_netx

    rng = np.random.default_rng(7)
    net = _net([
        _layer(rng, "conv1", (4, 4, 4), [Synapse(INPUT, "conv", _w(rng, (4, 1, 3, 3), 30),
                                                 stride=2, padding=1)], e=0, vth=300),
        _layer(rng, "out", (10,), [Synapse(0, "dense", _w(rng, (10, 64)))], e=2,
               spiking=False),
    ], (1, 8, 8))
    path = write_netx(net, tmp_path / "tiny.net")
    out_json = tmp_path / "sim.json"
    code = main(["simulate", str(path), "--dataset", "digits", "--steps", "3",
                 "--samples", "3", "--check", "--json", str(out_json)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "Lava equals the emulator" in text and out_json.exists()
