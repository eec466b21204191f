"""Loihi resources, limits, placement and hops against hand computations and direct loops."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from netgen import conv_taps

from qcfs_lava import hardware as hw
from qcfs_lava.analysis.counts import count_ops, synapse_fan_out
from qcfs_lava.analysis.resources import (
    _conv_np,
    compare_unfolded_pools,
    format_resources_markdown,
    layer_fan_in,
    map_resources,
    pool_factor,
    unfold_pool,
)
from qcfs_lava.cli import main
from qcfs_lava.emulator import emulate
from qcfs_lava.network import INPUT, IntegerNetwork, NeuronLayer, Synapse

RNG = np.random.default_rng(0)


def _layer(name, shape, synapses, spiking=True) -> NeuronLayer:
    return NeuronLayer(name=name, shape=shape, synapses=tuple(synapses), weight_exp=0,
                       bias_mant=np.zeros(shape[0], dtype=np.int64),
                       vth_mant=100 if spiking else None)


def _w(shape, lo=-3, hi=4) -> np.ndarray:
    return 2 * RNG.integers(lo, hi, size=shape)


def _brute_fan_in(syn: Synapse, in_shape, out_shape) -> np.ndarray:
    """Fan-in by looping over every output neuron and kernel tap."""
    _, h_in, w_in = in_shape
    cig = syn.weight.shape[1]
    out = np.zeros(out_shape, dtype=np.int64)
    for c, oy, ox, iy, ix in conv_taps(syn, out_shape):
        if 0 <= iy < h_in and 0 <= ix < w_in:
            out[c, oy, ox] += cig
    return out


def _small_conv_net() -> IntegerNetwork:
    conv = Synapse(INPUT, "conv", _w((3, 2, 3, 3)), padding=(1, 1))
    fc = Synapse(0, "dense", _w((5, 48)))
    return IntegerNetwork((2, 4, 4), (_layer("conv1", (3, 4, 4), [conv]),
                                      _layer("fc2", (5,), [fc], spiking=False)),
                          levels=4, phi=0.5)


def test_small_conv_network_by_hand():
    net = _small_conv_net()
    rep = map_resources(net, "loihi1")
    conv, fc = rep.layers
    # by hand: taps per axis [2, 3, 3, 2] (padding 1), 2 input channels
    assert conv.fan_in_max == 2 * 3 * 3 and fc.fan_in_max == 48
    assert conv.synapses == 3 * 2 * (2 + 3 + 3 + 2) ** 2 == 600
    assert fc.synapses == 5 * 48
    # second, direct computations: brute-force fan-in and the fan-out counting of counts.py
    brute = _brute_fan_in(net.layers[0].synapses[0], (2, 4, 4), (3, 4, 4))
    assert np.array_equal(layer_fan_in(net, 0), brute)
    assert conv.synapses == int(synapse_fan_out(net.layers[0].synapses[0], (2, 4, 4)).sum())
    assert fc.synapses == int(synapse_fan_out(net.layers[1].synapses[0], (3, 4, 4)).sum())
    # memory: 48 compartments need 6 index bits (nengo-loihi's encoding), weights 8 bits
    assert hw.synapse_index_bits(48) == 6 and hw.synapse_index_bits(5) == 6
    assert conv.memory_dense_bits == 600 * (8 + 6)
    assert conv.memory_shared_bits == 3 * 2 * 9 * (8 + 6)
    assert fc.memory_dense_bits == 240 * (8 + 6)
    # every conv1 neuron drives all 5 outputs; all 32 input pixels feed the core
    assert conv.fan_out_max == 5 and conv.input_axons_per_core == 32
    assert conv.output_axons_per_core == 48 and conv.messages_per_spike == 1.0
    assert (conv.cores, fc.cores, rep.cores, rep.chips) == (1, 1, 2, 1)
    assert conv.hops_per_spike == 0.0  # cores 0 and 1 share a tile
    assert conv.binding == "compartments" and rep.fits and not rep.violations
    assert (conv.weight_bits, conv.sign_mode) == (8, "mixed")


def test_dense_network_split_by_memory_and_hops():
    w1 = _w((2048, 100))
    w2 = _w((10, 2048))
    net = IntegerNetwork((100,), (_layer("fc1", (2048,), [Synapse(INPUT, "dense", w1)]),
                                  _layer("fc2", (10,), [Synapse(0, "dense", w2)],
                                         spiking=False)), levels=4, phi=0.5)
    x = RNG.integers(0, 256, size=(3, 100)).astype(np.uint8)
    res = emulate(net, x, 4, record="counts")
    ops = count_ops(net, res)
    rep = map_resources(net, "loihi1", ops=ops, neuron_counts=res.neuron_counts)
    fc1, fc2 = rep.layers
    # direct: the largest n with n * 100 * (8 + index_bits(n)) <= 2**20
    best = max(n for n in range(1, 1025) if n * 100 * (8 + hw.synapse_index_bits(n)) <= 2**20)
    assert fc1.cores_by_limit["synaptic_memory_bits"] == math.ceil(2048 / best) == 4
    assert fc1.cores_by_limit["compartments"] == 2
    assert fc1.binding == "synaptic_memory_bits" and fc1.cores == 4
    assert fc1.neurons_per_core == 512 and fc1.memory_per_core_bits == 512 * 100 * (8 + 9)
    # fc1 on cores 0-3 (tile 0), fc2 on core 4 (tile 1): one hop per spike
    assert (fc1.first_core, fc2.first_core, rep.cores) == (0, 4, 5)
    assert fc1.hops_per_spike == 1.0 and fc1.messages_per_spike == 1.0
    spikes = ops.layers[0].spikes
    assert fc1.spikes_per_step == pytest.approx(spikes / (3 * 4))
    e = rep.energy
    extra_uj = 3.5 * spikes * 1.0 / 3 * 1e-6
    assert e["per_sample_uj_placed"] - e["per_sample_uj_hops0"] == pytest.approx(extra_uj)
    split = [v for v in rep.violations if v.layer == "fc1"]
    assert {v.limit for v in split} == {"compartments", "synaptic_memory_bits"}
    assert all(v.severity == "split" for v in split) and rep.fits


def _wide_conv_net(channels: int, pooled: bool) -> IntegerNetwork:
    side = 8 if pooled else 3
    expand = Synapse(INPUT, "conv", _w((channels, 1, 1, 1), 1, 2))
    if pooled:  # a 2x2 average pool folded into a 3x3 conv: 6x6, stride 2, padding 2
        small = _w((4, channels, 3, 3), -1, 2)
        folded = np.repeat(np.repeat(small, 2, axis=2), 2, axis=3)
        conv = Synapse(0, "conv", folded, stride=(2, 2), padding=(2, 2))
        out = (4, 4, 4)
    else:
        conv = Synapse(0, "conv", _w((4, channels, 3, 3), -1, 2), padding=(1, 1))
        out = (4, 3, 3)
    fc = Synapse(1, "dense", _w((2, int(np.prod(out)))))
    return IntegerNetwork((1, side, side), (
        _layer("expand", (channels, side, side), [expand]),
        _layer("wide", out, [conv]),
        _layer("out", (2,), [fc], spiking=False)), levels=4, phi=0.5)


def test_512_channel_3x3_conv_flagged_on_loihi1():
    rep = map_resources(_wide_conv_net(512, pooled=False), "loihi1")
    wide = rep.layers[1]
    assert wide.fan_in_max == 512 * 9 == 4608
    errors = [v for v in rep.errors if v.layer == "wide"]
    assert [(v.limit, v.value, v.allowed) for v in errors] == [("input_axons", 4608, 4096)]
    assert "reduce the fan-in" in errors[0].advice
    assert wide.cores_by_limit["input_axons"] is None and not rep.fits
    assert "**error**" in format_resources_markdown(rep)
    # 448 channels: 4032 input axons fit
    assert map_resources(_wide_conv_net(448, pooled=False), "loihi1").fits
    # Loihi 2 publishes no axon limit: not checked, and said so
    rep2 = map_resources(_wide_conv_net(512, pooled=False), "loihi2")
    assert rep2.fits and any("input_axons: not public" in n for n in rep2.notes)


def test_folded_pool_fan_in_and_unfolded_alternative():
    rep = map_resources(_wide_conv_net(256, pooled=True), "loihi1")
    wide = rep.layers[1]
    p = wide.pool_fold
    assert p is not None and p.pool == (2, 2) and p.source == "expand"
    assert p.folded_fan_in == 256 * 36 == 9216 and p.unfolded_fan_in == 256 * 9
    assert (p.folded_fits, p.unfolded_fits) == (False, True)
    assert p.pool_neurons == 256 * 4 * 4
    assert p.unfolded_synapses == p.folded_synapses // 4 + 256 * 8 * 8
    (err,) = [v for v in rep.errors if v.layer == "wide"]
    assert err.value == 9216 and "sum-pool layer (fan-in 2304, fits)" in err.advice
    assert rep.layers[0].pool_fold is None and rep.layers[2].pool_fold is None


def test_unfolded_pool_gives_the_same_input_current():
    net = _wide_conv_net(8, pooled=True)
    syn = net.layers[1].synapses[0]
    src = net.layers[0].shape
    assert pool_factor(syn, src) == (2, 2)
    small, pooled = unfold_pool(syn, src, (2, 2))
    assert pooled == (8, 4, 4) and small.kernel_size == (3, 3)
    s = torch.from_numpy(RNG.integers(0, 2, size=(5, *src)).astype(np.float64))
    def wt(syn_):
        return torch.tensor(syn_.weight, dtype=torch.float64)

    folded = F.conv2d(s, wt(syn), None, syn.stride, syn.padding)
    summed = F.avg_pool2d(s, 2) * 4
    unfolded = F.conv2d(summed, wt(small), None, small.stride, small.padding)
    assert torch.equal(folded, unfolded)
    # a plain conv does not factor
    assert pool_factor(_wide_conv_net(8, pooled=False).layers[1].synapses[0], (8, 3, 3)) is None


def test_digits_export_and_cli(tmp_path, capsys):
    path = "netx_exports/digits-cnn.net"
    out = tmp_path / "r.json"
    assert main(["resources", path, "--chip", "loihi1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Resources on loihi1" in text and "hops = 0" not in text  # no run, no energy
    data = json.loads(out.read_text())
    assert data["command"] == "resources" and data["config"]["chip"] == "loihi1"
    names = [la["name"] for la in data["layers"]]
    assert names == ["conv1", "conv2", "fc3"]
    pools = {la["name"]: la["pool_fold"] for la in data["layers"]}
    assert pools["conv2"]["folded_fan_in"] == 16 * 36 and pools["conv2"]["pool"] == [2, 2]
    assert data["cores"] == sum(la["cores"] for la in data["layers"])
    assert main(["resources", path, "--samples", "12", "--check-pools", "--json",
                 str(out)]) == 0
    text = capsys.readouterr().out
    assert "pool check conv2" in text and "(the same)" in text and "hops = 0" in text
    data = json.loads(out.read_text())
    assert data["pool_check"]["conv2"]["differing"] == 0
    assert data["layers"][0]["spikes_per_step"] > 0
    assert main(["resources", path, "--check-pools"]) == 2
    assert main(["resources", str(tmp_path / "missing.net")]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["resources", path, "--chip", "loihi3"])
    assert exc.value.code == 2


def test_report_has_a_resources_section(tmp_path):
    from test_report import _checkpoint

    from qcfs_lava.report import ReportConfig, make_report

    cfg = ReportConfig(checkpoint=str(_checkpoint(tmp_path)), steps=(2,), samples=20,
                       batch_size=20)
    res = make_report(cfg, tmp_path / "rep")
    data = json.loads(res.json.read_text())
    r = data["resources"]
    assert r["chip"] == "loihi1" and r["cores"] == sum(la["cores"] for la in r["layers"])
    # hops = 0 equals the report's own Loihi 1 estimate; the placement's hops only add
    hops0 = data["energy"]["2"]["per_sample_uj"]["loihi1"]
    assert r["energy"]["per_sample_uj_hops0"] == pytest.approx(hops0)
    assert r["energy"]["per_sample_uj_placed"] >= hops0
    spikes = res.counts[2].layers[0].spikes / 20 / 2
    assert r["layers"][0]["spikes_per_step"] == pytest.approx(spikes)
    md = res.markdown.read_text()
    assert "Resources on loihi1" in md and "with hops = 0" in md


def test_numpy_conv_matches_torch():
    syn = Synapse(0, "conv", _w((6, 2, 3, 2)), stride=(2, 1), padding=(1, 2),
                  dilation=(1, 2), groups=2)
    x = RNG.integers(0, 3, size=(3, 4, 7, 6))
    want = F.conv2d(torch.tensor(x, dtype=torch.float64),
                    torch.tensor(syn.weight, dtype=torch.float64), None, syn.stride,
                    syn.padding, syn.dilation, syn.groups)
    assert np.array_equal(_conv_np(x, syn), want.numpy().astype(np.int64))


def test_digits_unfolded_pools_give_identical_currents():
    from qcfs_lava.data import load_dataset
    from qcfs_lava.netx import read_netx

    net = read_netx("netx_exports/digits-cnn.net")
    x = load_dataset("digits").x_test[:24]
    res = emulate(net, x, 8, record="spikes")
    cmp = compare_unfolded_pools(net, res.spikes)
    assert set(cmp) == {"conv2", "fc3"}
    assert cmp["conv2"]["entries"] == 24 * 8 * 512 and cmp["fc3"]["entries"] == 24 * 8 * 10
    assert all(v["differing"] == 0 for v in cmp.values())
    # and a deliberately broken factorization is caught
    spikes = list(res.spikes)
    orig = net.layers[1].synapses[0]
    assert (orig.stride, orig.padding, orig.kernel_size) == ((2, 2), (2, 2), (6, 6))
    bad = np.array(orig.weight)
    bad[0, 0, 0, 0] += 2
    broken = IntegerNetwork(net.input_shape, (net.layers[0], NeuronLayer(
        "conv2", net.layers[1].shape, (Synapse(0, "conv", bad, stride=(2, 2),
                                                padding=(2, 2)),),
        net.layers[1].weight_exp, net.layers[1].bias_mant, net.layers[1].vth_mant),
        net.layers[2]), levels=net.levels, phi=net.phi)
    assert "conv2" not in compare_unfolded_pools(broken, spikes)


# names of the former single module qcfs_lava/analysis/resources.py
_FORMER_NAMES = (
    "LayerResources", "PoolFold", "ResourceReport", "Violation", "compare_unfolded_pools",
    "format_resources_markdown", "format_resources_text", "layer_fan_in", "map_resources",
    "pool_factor", "unfold_pool", "_PER_CORE", "_taps", "_as_chw", "_position_major",
    "_conv_np", "_chunk_sums", "_AxonUnion", "_window", "_reached", "_tile_xy",
    "_largest_n", "_advice", "_weight_bits_used", "_sign_mode", "_neuron_weights",
    "_pool_fold", "_synapse_fan_in", "_kbits", "_cores_cell",
)


def test_former_module_names_import_from_the_package():
    import importlib

    package = importlib.import_module("qcfs_lava.analysis.resources")
    missing = [name for name in _FORMER_NAMES if not hasattr(package, name)]
    assert not missing
    assert all(hasattr(package, name) for name in package.__all__)


def test_layer_fan_in_is_the_sum_over_synapses():
    from qcfs_lava.analysis.resources import _synapse_fan_in

    net = _wide_conv_net(4, pooled=True)
    for i, layer in enumerate(net.layers):
        want = sum(_synapse_fan_in(s, net.source_shape(s.source), layer.shape)
                   for s in layer.synapses)
        assert np.array_equal(layer_fan_in(net, i), want)
    brute = _brute_fan_in(net.layers[1].synapses[0], (4, 8, 8), (4, 4, 4))
    assert np.array_equal(layer_fan_in(net, 1), brute)


def test_measure_resources_returns_what_the_cli_prints_and_writes(tmp_path, capsys):
    from qcfs_lava.analysis.resources import (
        ResourceRunResult,
        format_resources_text,
        format_run_text,
        measure_resources,
    )
    from qcfs_lava.errors import AnalysisError
    from qcfs_lava.netx import read_netx

    path = "netx_exports/digits-cnn.net"
    net = read_netx(path)
    still = measure_resources(net, "loihi2")
    assert isinstance(still, ResourceRunResult) and still.samples is None
    assert still.pool_check is None and still.pools_identical is None
    assert format_run_text(still) == "" and "pool_check" not in still.to_dict()
    assert still.to_dict() == map_resources(net, "loihi2").to_dict()

    run = measure_resources(net, samples=6, steps=2, check_pools=True, progress=False)
    assert (run.samples, run.steps) == (6, 2) and run.accuracy is not None
    assert set(run.pool_check) == {"conv2", "fc3"} and run.pools_identical
    assert run.report.traffic_source.startswith("measured: 6 samples x T = 2")
    out = tmp_path / "r.json"
    assert main(["resources", path, "--samples", "6", "--steps", "2", "--check-pools",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(format_run_text(run) + "\n" + format_resources_text(run.report))
    data = json.loads(out.read_text())
    assert data["config"]["steps"] == 2
    assert {k: v for k, v in data.items() if k not in ("command", "config")} == json.loads(
        json.dumps(run.to_dict()))

    with pytest.raises(AnalysisError, match="--check-pools needs a run"):
        measure_resources(net, check_pools=True)
    with pytest.raises(AnalysisError, match="--samples must be >= 1"):
        measure_resources(net, samples=0)
    with pytest.raises(AnalysisError, match="--steps must be >= 1"):
        measure_resources(net, samples=2, steps=0)


def test_chip_choices_come_from_the_hardware_registry():
    from qcfs_lava.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["resources"]
    chip = next(a for a in sub._actions if a.dest == "chip")
    assert tuple(chip.choices) == hw.CHIPS == tuple(hw.CHIP_LIMITS)
    assert all(name in chip.help for name in hw.CHIPS)
