"""Graded spikes (payload bound P): integer network, emulator, Lava (contract, section 3)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from netgen import random_network, reference_run

from qcfs_lava import hardware as hw
from qcfs_lava.emulator import emulate
from qcfs_lava.errors import NetworkValidationError
from qcfs_lava.network import INPUT, IntegerNetwork, NeuronLayer, Synapse


@pytest.mark.parametrize("payload", [2, 4, 7])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("conv,residual", [(False, False), (True, True), (False, True)])
def test_graded_emulator_equals_plain_int64_loop(payload, seed, conv, residual):
    rng = np.random.default_rng(seed)
    net = random_network(rng, conv=conv, residual=residual, extreme=seed % 2 == 1,
                         payload=payload)
    assert net.graded and net.payload == payload
    x = rng.integers(0, 256, size=(5, *net.input_shape), dtype=np.uint8)
    steps = 5
    pots, trains = reference_run(net, x, steps)
    res = emulate(net, x, steps, record="spikes", batch_size=2)
    np.testing.assert_array_equal(res.potentials, pots)
    for li, (got, want) in enumerate(zip(res.spikes, trains, strict=True)):
        np.testing.assert_array_equal(got, want)
        assert got.min() >= 0 and got.max() <= payload  # a payload above P never appears
        np.testing.assert_array_equal(res.spike_counts[:, li],
                                      (want != 0).reshape(5, -1).sum(1))
        np.testing.assert_array_equal(res.payload_counts[:, li], want.reshape(5, -1).sum(1))
        np.testing.assert_array_equal(res.neuron_counts[li], (want != 0).sum(1))
        np.testing.assert_array_equal(res.neuron_payloads[li], want.sum(1))
    # the totals-only path counts the same
    plain = emulate(net, x, steps)
    np.testing.assert_array_equal(plain.spike_counts, res.spike_counts)
    np.testing.assert_array_equal(plain.payload_counts, res.payload_counts)
    np.testing.assert_array_equal(plain.potentials, res.potentials)


def test_graded_payloads_reach_the_bound_and_saturation_is_counted():
    top, saturated = 0, 0
    for seed in range(1, 12, 2):
        rng = np.random.default_rng(seed)
        net = random_network(rng, conv=True, residual=True, extreme=True, payload=3)
        x = rng.integers(0, 256, size=(3, *net.input_shape), dtype=np.uint8)
        res = emulate(net, x, 4, record="spikes")
        pots, _ = reference_run(net, x, 4)
        np.testing.assert_array_equal(res.potentials, pots)
        top += sum(int((s == 3).sum()) for s in res.spikes)
        assert max(int(s.max()) for s in res.spikes) <= 3
        saturated += int(res.saturations.sum())
    assert top > 0 and saturated > 0


def test_payload_one_is_the_binary_network():
    rng = np.random.default_rng(5)
    binary = random_network(rng, conv=True, residual=True)
    assert not binary.graded and binary.payload == 1
    x = rng.integers(0, 256, size=(4, *binary.input_shape), dtype=np.uint8)
    res = emulate(binary, x, 5, record="spikes")
    assert res.payload_counts is None and res.neuron_payloads is None
    assert all(s.dtype == bool for s in res.spikes)


def _layer(name, shape, syns, payload=1, spiking=True):
    return NeuronLayer(name, shape, tuple(syns), 0, np.zeros(shape[0], np.int64),
                       16 if spiking else None, 0, payload=payload)


def test_network_validates_the_payload():
    syn = Synapse(INPUT, "dense", np.full((2, 3), 2))
    out = Synapse(0, "dense", np.full((1, 2), 2))
    for bad in (0, -1, hw.PAYLOAD_MAX + 1, 2.5, True):
        with pytest.raises(NetworkValidationError, match="payload"):
            _layer("h", (2,), [syn], payload=bad)
    with pytest.raises(NetworkValidationError, match="output layer never spikes"):
        _layer("o", (1,), [out], payload=4, spiking=False)
    net = IntegerNetwork((3,), (_layer("h", (2,), [syn], payload=5),
                                _layer("o", (1,), [out], spiking=False)), levels=4, phi=0.5)
    assert net.layers[0].message_bits == 3 and net.max_input(0) == 5
    assert net.summary_rows()[0]["payload"] == 5


def test_conv_bound_uses_the_payload():
    """A conv synapse whose sum fits 24 bits for binary spikes but not for payloads up to P."""
    w = np.full((1, 1, 16, 16), 254)  # sum |w| = 65,024
    stem = NeuronLayer("h", (1, 16, 16), (Synapse(INPUT, "conv", np.full((1, 1, 1, 1), 2)),),
                       0, np.zeros(1, np.int64), 16, 0, payload=255)
    out = NeuronLayer("o", (1, 1, 1), (Synapse(0, "conv", w),), 0, np.zeros(1, np.int64),
                      None, 0)
    with pytest.raises(NetworkValidationError, match="24-bit"):
        IntegerNetwork((1, 16, 16), (stem, out), levels=4, phi=0.5)
    small = NeuronLayer("h", stem.shape, stem.synapses, 0, stem.bias_mant, 16, 0, payload=64)
    IntegerNetwork((1, 16, 16), (small, out), levels=4, phi=0.5)


def _wide_residual_net(payload: int, channels: int = 128) -> IntegerNetwork:
    """stem -> a -> b (+ identity shortcut from stem) -> out, ``channels`` wide, graded."""
    rng = np.random.default_rng(7)
    c, hw_ = channels, (4, 4)

    def w(shape, wmax=254):
        return 2 * rng.integers(-(wmax // 2), wmax // 2 + 1, size=shape)

    def layer(name, syns, e, vth):
        return NeuronLayer(name, (c, *hw_), tuple(syns), e, rng.integers(-300, 300, size=c),
                           vth, vth << 5, payload=payload)

    stem = layer("stem", [Synapse(INPUT, "conv", w((c, 1, 3, 3), 40), padding=1)], 5, 2000)
    a = layer("a", [Synapse(0, "conv", w((c, c, 3, 3)), padding=1)], 5, 2000)
    b = layer("b", [Synapse(1, "conv", w((c, c, 3, 3)), padding=1),
                    Synapse(0, "conv", np.full((c, 1, 1, 1), 128), groups=c)], 5, 2000)
    out = NeuronLayer("out", (5,), (Synapse(2, "dense", w((5, c * 16))),), 0,
                      np.zeros(5, np.int64), None, 0)
    return IntegerNetwork((1, *hw_), (stem, a, b, out), levels=4, phi=0.5)


@pytest.mark.lava
def test_lava_equals_emulator_on_a_wide_graded_residual_network():
    pytest.importorskip("lava", reason="lava-nc is not installed")
    from qcfs_lava.lava_sim import simulate
    from qcfs_lava.results import compare_results

    net = _wide_residual_net(payload=4)
    rng = np.random.default_rng(8)
    x = rng.integers(0, 256, size=(2, *net.input_shape), dtype=np.uint8)
    emu = emulate(net, x, 3, record="spikes")
    for s in emu.spikes:  # the test means something: every layer sends graded payloads
        assert int(s.max()) == 4 and int((s == 2).sum()) > 0 and int((s == 0).sum()) > 0
    lava = simulate(net, x, 3, record="spikes")
    mismatches = compare_results(lava, emu)
    assert mismatches == [], "\n".join(map(str, mismatches))
    np.testing.assert_array_equal(lava.payload_counts, emu.payload_counts)
    np.testing.assert_array_equal(lava.saturations, emu.saturations)
    for got, want in zip(lava.spikes, emu.spikes, strict=True):
        np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------------------
# P = L, T = 1: the SNN is the QCFS ANN
# --------------------------------------------------------------------------------------


SIZES = {"cnn": 8, "vgg11": 32, "resnet20": 8}


def _random_model(name: str, levels: int = 4):
    import torch
    from torch import nn

    from qcfs_lava.model.zoo import build_model

    torch.manual_seed(3)
    model = build_model(name, in_channels=2, num_classes=5, input_size=SIZES[name], levels=levels,
                        thresh=1.0, width=4)
    g = torch.Generator().manual_seed(4)
    for mod in model.modules():  # trained-looking statistics and thresholds
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.normal_(0.0, 0.2, generator=g)
            mod.running_var.uniform_(0.3, 1.5, generator=g)
        if hasattr(mod, "thresh") and hasattr(mod, "levels"):
            mod.thresh.data.uniform_(0.5, 2.0, generator=g)
    return model.eval().double()


@pytest.mark.parametrize("name", ["cnn", "vgg11", "resnet20"])
def test_float_snn_with_payload_levels_is_the_qcfs_ann_at_one_step(name):
    import torch

    from qcfs_lava.snn import simulate_snn, snn_outputs

    model = _random_model(name)
    x = torch.randn(16, 2, SIZES[name], SIZES[name], dtype=torch.float64,
                    generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ann = model(x)
    out = snn_outputs(model, x, 1, payload=4)[0]
    assert torch.equal(out, ann)  # bit for bit: the QCFS expression in QCFS's order
    model32 = copy.deepcopy(model).float()
    assert torch.equal(snn_outputs(model32, x.float(), 1, payload=4)[0],
                       model32(x.float()).detach())  # in float32 too
    binary = snn_outputs(model, x, 1)[0]
    assert not torch.allclose(binary, ann, atol=1e-3)  # binary spikes at T = 1 are not
    y = ann.argmax(1)
    res = simulate_snn(model, x, y, [1, 2], payload=4)
    assert res.accuracy[1] == 1.0 and res.payload == 4
    assert all(0 <= r <= 1 for r in res.spike_rates.values())
    assert any(res.payload_rates[k] > res.spike_rates[k] for k in res.spike_rates)


def _integer_qcfs_ann(net: IntegerNetwork, x: np.ndarray) -> np.ndarray:
    """The integer network read as a quantized ANN: per layer ``z = shift(acc) + bias`` and
    the QCFS activation itself (its module, float64 on exact integers) with ``lambda`` the
    layer's threshold in state units times its payload, as an integer level in [0, L]."""
    import torch
    import torch.nn.functional as F

    from qcfs_lava.model.qcfs import QCFS

    preds = []
    for img in x.astype(np.int64):
        outs = []
        for lay in net.layers:
            acc = np.zeros(lay.shape, dtype=np.int64)
            for syn in lay.synapses:
                src = img if syn.source == INPUT else outs[syn.source]
                if syn.kind == "dense":
                    acc += (syn.weight @ src.reshape(-1)).reshape(lay.shape)
                else:  # float64 sums of these integers are exact (far below 2**53)
                    acc += F.conv2d(torch.from_numpy(src[None].astype(np.float64)),
                                    torch.from_numpy(syn.weight.astype(np.float64)), None,
                                    syn.stride, syn.padding, syn.dilation,
                                    syn.groups)[0].numpy().astype(np.int64)
            e = lay.weight_exp
            z = (acc << e if e >= 0 else acc >> -e) + lay.bias
            if not lay.spiking:
                preds.append(int(np.argmax(z.reshape(-1))))
                break
            lam = float(lay.v_th * lay.payload)
            act = QCFS(net.levels, net.phi, lam).double()
            level = act(torch.from_numpy(z.astype(np.float64))) * net.levels / lam
            outs.append(np.rint(level.detach().numpy()).astype(np.int64))
    return np.array(preds)


@pytest.mark.parametrize("name", ["cnn", "vgg11", "resnet20"])
def test_integer_snn_with_payload_levels_is_the_integer_qcfs_ann(name):
    from qcfs_lava.convert import ConversionConfig, convert

    model = _random_model(name).float()
    size = SIZES[name]
    net, _ = convert(model, (2, size, size), 0.5, 0.25,
                     config=ConversionConfig(spike_payload=4))
    assert net.payload == 4 and all(lay.payload == 4 for lay in net.layers[:-1])
    rng = np.random.default_rng(6)
    x = rng.integers(0, 256, size=(12, 2, size, size), dtype=np.uint8)
    res = emulate(net, x, 1, record="spikes")
    np.testing.assert_array_equal(res.predictions, _integer_qcfs_ann(net, x))
    assert max(int(s.max()) for s in res.spikes) <= 4
    assert any(int(s.max()) > 1 for s in res.spikes)


# --------------------------------------------------------------------------------------
# NetX
# --------------------------------------------------------------------------------------


def test_netx_round_trip_declares_the_payload(tmp_path):
    import h5py

    from qcfs_lava.netx import read_netx, write_netx

    net = random_network(np.random.default_rng(3), conv=True, residual=True, payload=6)
    path = tmp_path / "graded.net"
    write_netx(net, path)
    back = read_netx(path)
    assert back.equals(net) and back.payload == 6
    with h5py.File(path, "r") as f:
        neuron = f["layer/1/neuron"]
        assert int(neuron["messageBits"][()]) == 3 and int(neuron["payloadMax"][()]) == 6
        last = max(int(k) for k in f["layer"])
        assert "messageBits" not in f[f"layer/{last}/neuron"]  # the output layer
    binary = random_network(np.random.default_rng(3), conv=True, residual=True)
    write_netx(binary, tmp_path / "binary.net")
    with h5py.File(tmp_path / "binary.net", "r") as f:
        assert "messageBits" not in f["layer/1/neuron"]


# --------------------------------------------------------------------------------------
# Counting and energy
# --------------------------------------------------------------------------------------


def test_counts_separate_messages_events_and_payload_weighted_ops():
    from qcfs_lava.analysis.counts import count_ops, fan_out
    from qcfs_lava.analysis.energy import EnergyConstants, estimate_energy

    net = random_network(np.random.default_rng(2), conv=True, residual=True, payload=5)
    x = np.random.default_rng(9).integers(0, 256, size=(4, *net.input_shape), dtype=np.uint8)
    counted = emulate(net, x, 4, record="counts")
    trains = emulate(net, x, 4, record="spikes")
    ops = count_ops(net, counted)
    assert ops.to_dict() == count_ops(net, trains).to_dict()
    # by hand from the spike trains: messages, payloads, events and payload-weighted ops
    for li in range(len(net.layers) - 1):
        s = trains.spikes[li].astype(np.int64)
        assert ops.layers[li].spikes == int((s != 0).sum())
        assert ops.layers[li].payload == int(s.sum())
    events = weighted = 0
    for li in range(len(net.layers) - 1):
        s = trains.spikes[li].astype(np.int64)
        events += int(((s != 0).sum(axis=1) * fan_out(net, li)).sum())
        weighted += int((s.sum(axis=1) * fan_out(net, li)).sum())
    assert ops.total("synops") == ops.total("graded_events") == events
    assert ops.total("payload_ops") == weighted > events
    c = EnergyConstants()
    energy = estimate_energy(ops, c)
    want = c.cmos_graded_mac_pj * events + c.cmos_mac_pj * ops.total("input_macs")
    assert energy.total_pj("cmos_snn") == pytest.approx(want)
    assert "not public" in energy.to_dict()["note"]
    # a binary network: payload-weighted ops are the SynOps, no graded events, no note
    binary = random_network(np.random.default_rng(2), conv=True, residual=True)
    bops = count_ops(binary, emulate(binary, x, 4, record="counts"))
    assert bops.total("payload_ops") == bops.total("synops")
    assert bops.total("graded_events") == 0 and bops.total("payload") == bops.total("spikes")
    assert "note" not in estimate_energy(bops).to_dict()


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------

DIGITS = "netx_exports/digits-cnn.pt"


def test_cli_emulate_graded_float_snn_is_the_qcfs_ann(tmp_path, capsys):
    import json

    from qcfs_lava.cli import main

    out = tmp_path / "e.json"
    code = main(["emulate", DIGITS, "--steps", "1", "--graded", "4", "--samples", "60",
                 "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    data = json.loads(out.read_text())
    budget = data["error_budget"]
    assert budget["payload"] == 4 and data["config"]["graded"] == 4
    assert budget["float_snn"]["1"] == budget["qcfs_ann"]
    assert "payload_per_sample" in data["runs"]["1"]
    binary = tmp_path / "b.json"
    assert main(["emulate", DIGITS, "--steps", "1", "--samples", "60",
                 "--json", str(binary)]) == 0
    b = json.loads(binary.read_text())["error_budget"]
    assert "payload" not in b and b["float_snn"]["1"] < budget["float_snn"]["1"]


def test_cli_export_graded_resources_and_mismatched_graded(tmp_path, capsys):
    from qcfs_lava.cli import main
    from qcfs_lava.netx import read_netx

    path = tmp_path / "g.net"
    assert main(["export", DIGITS, "--graded", "4", "--steps", "1", "--out", str(path)]) == 0
    assert read_netx(path).payload == 4
    capsys.readouterr()
    assert main(["resources", str(path), "--chip", "loihi1"]) == 2
    err = capsys.readouterr().err
    assert "binary spikes only" in err and "--chip loihi2" in err and "Traceback" not in err
    assert main(["resources", str(path), "--chip", "loihi2"]) == 0
    assert "graded spikes" in capsys.readouterr().out
    assert main(["emulate", str(path), "--steps", "1", "--graded", "2", "--samples", "4"]) == 2
    assert "exported with payload bound 4" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse's usage error
        main(["export", DIGITS, "--graded", "0", "--out", str(tmp_path / "x.net")])
    assert exc.value.code == 2 and "--graded" in capsys.readouterr().err


@pytest.mark.lava
def test_cli_simulate_check_on_a_graded_export(tmp_path, capsys):
    pytest.importorskip("lava", reason="lava-nc is not installed")
    from qcfs_lava.cli import main

    path = tmp_path / "g.net"
    assert main(["export", DIGITS, "--graded", "4", "--steps", "2", "--out", str(path)]) == 0
    capsys.readouterr()
    code = main(["simulate", str(path), "--steps", "2", "--samples", "20", "--check"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "Lava equals the emulator" in text


def test_cli_export_nir_refuses_graded_spikes(tmp_path, capsys):
    from qcfs_lava.cli import main

    out = tmp_path / "g.nir"
    assert main(["export", DIGITS, "--graded", "4", "--format", "nir", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "binary spikes" in err and "without --graded" in err and not out.exists()


@pytest.mark.lava
def test_lava_dl_reader_runs_a_graded_export_identically_to_the_emulator(tmp_path):
    """lava-dl's own NetX reader takes messageBits: its Dense/Conv receive the payloads."""
    pytest.importorskip("lava.lib.dl", reason="lava-dl is not installed")
    from qcfs_lava.cli import main
    from qcfs_lava.data import load_dataset
    from qcfs_lava.lava_sim.netx_bridge import run_lava_dl_network
    from qcfs_lava.netx import read_netx

    path = tmp_path / "g.net"
    assert main(["export", DIGITS, "--graded", "4", "--steps", "2", "--out", str(path)]) == 0
    x = load_dataset("digits").x_test[:4]
    emu = emulate(read_netx(path), x, 2, record="spikes")
    assert max(int(s.max()) for s in emu.spikes) > 1  # payloads above 1 do flow
    np.testing.assert_array_equal(run_lava_dl_network(path, x, 2), emu.potentials)
