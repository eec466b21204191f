"""Exact SynOps / fan-out counts against brute-force loops."""

from __future__ import annotations

import numpy as np
import pytest
from netgen import conv_taps

from qcfs_lava.analysis.counts import count_ops, fan_out, synapse_fan_out
from qcfs_lava.errors import AnalysisError
from qcfs_lava.network import INPUT, IntegerNetwork, NeuronLayer, Synapse
from qcfs_lava.results import SpikeRunResult, argmax_first

RNG = np.random.default_rng(0)


def _weights(shape) -> np.ndarray:
    return 2 * RNG.integers(-3, 4, size=shape)


def _layer(name, shape, synapses, spiking=True) -> NeuronLayer:
    return NeuronLayer(
        name=name,
        shape=shape,
        synapses=tuple(synapses),
        weight_exp=0,
        bias_mant=np.zeros(shape[0], dtype=np.int64),
        vth_mant=100 if spiking else None,
        v_init=0,
    )


def _conv(source, c_out, c_in, k, stride=1, padding=0, dilation=1, groups=1) -> Synapse:
    kh, kw = (k, k) if np.isscalar(k) else k
    return Synapse(source, "conv", _weights((c_out, c_in // groups, kh, kw)),
                   stride=stride, padding=padding, dilation=dilation, groups=groups)


def _result(net: IntegerNetwork, steps: int, n: int, counts=None, spikes=None) -> SpikeRunResult:
    hidden = net.layers[:-1]
    if counts is None and spikes is None:
        counts = tuple(RNG.integers(0, steps + 1, size=(n, *layer.shape)).astype(np.int32)
                       for layer in hidden)
    base = counts if counts is not None else tuple(s.sum(axis=1) for s in spikes)
    pots = RNG.integers(-50, 50, size=(n, net.num_classes))
    return SpikeRunResult(
        steps=steps,
        layer_names=tuple(layer.name for layer in net.layers),
        potentials=pots,
        predictions=argmax_first(pots),
        spike_counts=np.stack([c.reshape(n, -1).sum(1) for c in base], axis=1),
        neuron_counts=counts,
        spikes=spikes,
        backend="test",
    )


def _brute_conv_synops(syn: Synapse, counts: np.ndarray, out_shape) -> int:
    """Loop over every input spike and every output neuron it reaches."""
    c_out, cin_g = syn.weight.shape[:2]
    cout_g = c_out // syn.groups
    taps = list(conv_taps(syn, out_shape))
    total = 0
    for n, c, y, x in zip(*np.nonzero(counts), strict=True):
        g = c // cin_g
        reached = sum(1 for co, _, _, iy, ix in taps
                      if co // cout_g == g and iy == y and ix == x)  # same group only
        total += int(counts[n, c, y, x]) * reached
    return total


# (C_in, H, W, C_out, kernel, stride, padding, dilation, groups)
GEOMETRIES = [
    (2, 7, 6, 3, 3, 1, 1, 1, 1),
    (2, 8, 8, 4, 3, 2, 1, 1, 1),
    (3, 9, 7, 2, 3, 2, 0, 1, 1),
    (4, 9, 8, 4, 3, 2, 2, 2, 2),
    (4, 10, 9, 8, (3, 2), (2, 3), (0, 1), (1, 2), 4),
    (3, 6, 7, 3, 5, 1, 3, 1, 3),
]


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_conv_synops_equal_brute_force(geometry):
    c_in, h, w, c_out, k, stride, pad, dil, groups = geometry
    first = _conv(INPUT, c_in, 1, 1)
    syn = _conv(0, c_out, c_in, k, stride, pad, dil, groups)
    out_shape = syn.output_shape((c_in, h, w))
    net = IntegerNetwork(
        input_shape=(1, h, w),
        layers=(
            _layer("a", (c_in, h, w), [first]),
            _layer("b", out_shape, [syn]),
            _layer("out", (3,), [Synapse(1, "dense", _weights((3, int(np.prod(out_shape)))))],
                   spiking=False),
        ),
        levels=4,
        phi=0.5,
    )
    steps, n = 4, 3
    res = _result(net, steps, n)
    # sparse random spike maps: many silent neurons
    res.neuron_counts[0][RNG.random(res.neuron_counts[0].shape) < 0.5] = 0
    ops = count_ops(net, res)
    assert ops.layers[1].synops == _brute_conv_synops(syn, res.neuron_counts[0], out_shape)
    # fan-out summed over the map equals the number of synapses (weights x positions)
    f = synapse_fan_out(syn, (c_in, h, w))
    valid = sum(
        1
        for oy in range(out_shape[1]) for ox in range(out_shape[2])
        for ky in range(syn.kernel_size[0]) for kx in range(syn.kernel_size[1])
        if 0 <= oy * syn.stride[0] - syn.padding[0] + ky * syn.dilation[0] < h
        and 0 <= ox * syn.stride[1] - syn.padding[1] + kx * syn.dilation[1] < w
    )
    assert int(f.sum()) == valid * c_out * (c_in // groups)
    # the first layer is dense graded input: MACs, every step, whatever the pixels
    assert ops.layers[0].synops == 0
    assert ops.layers[0].input_macs == steps * n * int(fan_out(net, INPUT).sum())


def test_dense_synops_and_rates():
    hidden = 5
    net = IntegerNetwork(
        input_shape=(6,),
        layers=(
            _layer("fc1", (hidden,), [Synapse(INPUT, "dense", _weights((hidden, 6)))]),
            _layer("fc2", (4,), [Synapse(0, "dense", _weights((4, hidden)))], spiking=False),
        ),
        levels=2,
        phi=0.5,
    )
    steps, n = 8, 4
    res = _result(net, steps, n)
    ops = count_ops(net, res)
    c = res.neuron_counts[0]
    assert np.array_equal(fan_out(net, 0), np.full(hidden, 4))
    assert ops.layers[1].synops == int(c.sum()) * 4
    assert ops.layers[0].spikes == int(c.sum())
    assert ops.layers[0].firing_rate == pytest.approx(c.sum() / (hidden * steps * n))
    assert ops.layers[0].neuron_updates == hidden * steps * n
    assert ops.layers[0].ann_density == pytest.approx(np.mean(c > 0))
    assert ops.total("ann_macs") == n * (6 * hidden + hidden * 4)
    assert ops.per_sample("synops") == pytest.approx(c.sum() * 4 / n)
    assert ops.latency_steps == steps + 2
    assert ops.to_dict()["total"]["synops"] == ops.total("synops")


def test_residual_fork_counts_both_synapses():
    c, h, w = 2, 6, 6
    s0 = _conv(INPUT, c, 1, 3, padding=1)
    s1 = _conv(0, c, c, 3, padding=1)
    main = _conv(1, 4, c, 3, stride=2, padding=1)
    short = _conv(0, 4, c, 1, stride=2)
    out_shape = main.output_shape((c, h, w))
    net = IntegerNetwork(
        input_shape=(1, h, w),
        layers=(
            _layer("c0", (c, h, w), [s0]),
            _layer("c1", (c, h, w), [s1]),
            _layer("add", out_shape, [main, short]),
            _layer("out", (2,), [Synapse(2, "dense", _weights((2, int(np.prod(out_shape)))))],
                   spiking=False),
        ),
        levels=4,
        phi=0.5,
    )
    res = _result(net, 3, 2)
    ops = count_ops(net, res)
    c0, c1 = res.neuron_counts[0], res.neuron_counts[1]
    expect = _brute_conv_synops(main, c1, out_shape) + _brute_conv_synops(short, c0, out_shape)
    assert ops.layers[2].synops == expect
    both = synapse_fan_out(s1, (c, h, w)) + synapse_fan_out(short, (c, h, w))
    assert np.array_equal(fan_out(net, 0), both)
    assert ops.layers[1].synops == _brute_conv_synops(s1, c0, (c, h, w))


def test_counts_from_spike_trains_and_errors():
    net = IntegerNetwork(
        input_shape=(3,),
        layers=(
            _layer("fc1", (4,), [Synapse(INPUT, "dense", _weights((4, 3)))]),
            _layer("fc2", (2,), [Synapse(0, "dense", _weights((2, 4)))], spiking=False),
        ),
        levels=2,
        phi=0.5,
    )
    spikes = (RNG.random((3, 5, 4)) < 0.3,)
    res = _result(net, 5, 3, spikes=spikes)
    assert count_ops(net, res).layers[1].synops == int(spikes[0].sum()) * 2
    res.spikes = None
    with pytest.raises(AnalysisError, match="record='counts'"):
        count_ops(net, res)
    with pytest.raises(AnalysisError, match="source 5"):
        fan_out(net, 5)


def test_counts_of_an_emulated_converted_model():
    torch = pytest.importorskip("torch")
    from qcfs_lava.convert import convert
    from qcfs_lava.emulator import emulate
    from qcfs_lava.model.zoo import build_model

    torch.manual_seed(0)
    model = build_model("cnn", in_channels=1, num_classes=4, input_size=8, levels=4,
                        thresh=1.0, width=3).eval()
    net, _ = convert(model, (1, 8, 8), 0.5, 0.25)
    x = RNG.integers(0, 256, size=(6, 1, 8, 8)).astype(np.uint8)
    res = emulate(net, x, 4, record="counts")
    ops = count_ops(net, res)
    for i, layer in enumerate(ops.layers[:-1]):
        assert layer.spikes == int(res.spike_counts[:, i].sum())
    # independent route: every output neuron reads the spikes in its receptive field
    for li, layer in enumerate(net.layers):
        expect = 0
        for syn in layer.synapses:
            if syn.source == INPUT:
                continue
            c = torch.as_tensor(res.neuron_counts[syn.source], dtype=torch.float64)
            if syn.kind == "conv":
                ones = torch.ones(syn.weight.shape, dtype=torch.float64)
                y = torch.nn.functional.conv2d(c, ones, stride=syn.stride, padding=syn.padding,
                                               dilation=syn.dilation, groups=syn.groups)
            else:
                y = c.reshape(len(c), -1) @ torch.ones(c[0].numel(), syn.weight.shape[0],
                                                       dtype=torch.float64)
            expect += int(y.sum())
        assert ops.layers[li].synops == expect
