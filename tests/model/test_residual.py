"""Residual networks end to end: reference-layout ResNet-20 -> integer network -> emulator/Lava."""

import numpy as np
import pytest
import torch
from netgen import reference_run
from test_reference import resnet20_reference

from qcfs_lava.convert import ConversionConfig, convert
from qcfs_lava.emulator import emulate
from qcfs_lava.model.reference import import_reference
from qcfs_lava.netx import read_netx, write_netx
from qcfs_lava.results import compare_results
from qcfs_lava.snn import snn_outputs

MEAN, STD = np.array([0.5, 0.4, 0.3]), np.array([0.25, 0.25, 0.25])


@pytest.fixture(scope="module")
def imported():
    model = import_reference(resnet20_reference(width=4, seed=1), "resnet20", num_classes=10,
                             levels=4, in_channels=3, input_size=8).eval()
    net, report = convert(model, (3, 8, 8), MEAN, STD)
    return model, net, report


def test_each_basic_block_becomes_one_layer_with_a_shortcut_synapse(imported):
    _, net, _ = imported
    merged = [layer for layer in net.layers if len(layer.synapses) == 2]
    assert len(merged) == 9  # one add per basic block
    kinds = []
    for layer in merged:
        short = layer.synapses[1]
        assert short.kind == "conv" and short.kernel_size == (1, 1)
        kinds.append("identity" if short.groups == short.weight.shape[0] else "conv1x1")
    assert kinds.count("conv1x1") == 2 and kinds.count("identity") == 7
    # one scale per add: both paths share the layer's exponent; the shortcut uses the 8-bit range
    # only when it is the larger path, but it is never all zeros
    assert all(np.abs(layer.synapses[1].weight).max() > 0 for layer in merged)


def test_imported_resnet20_integer_snn_tracks_float_snn(imported):
    model, net, _ = imported
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(48, 3, 8, 8)).astype(np.uint8)
    xf = (torch.as_tensor(x, dtype=torch.float32) / 255
          - torch.as_tensor(MEAN, dtype=torch.float32).view(-1, 1, 1)) \
        / torch.as_tensor(STD, dtype=torch.float32).view(-1, 1, 1)
    steps = 32
    with torch.no_grad():
        float_logits = snn_outputs(model, xf, steps).sum(0).numpy()
    res = emulate(net, x, steps)
    agree = float(np.mean(res.predictions == float_logits.argmax(1)))
    # float potential sum vs integer potential / scale: same ranking for most samples
    assert agree >= 0.85, f"integer SNN agrees with the float SNN on only {agree:.0%}"


def test_residual_netx_round_trip(imported, tmp_path):
    _, net, _ = imported
    path = write_netx(net, tmp_path / "resnet20.net")
    assert read_netx(path).equals(net)


@pytest.mark.lava
@pytest.mark.slow
def test_imported_resnet20_lava_equals_emulator(imported):
    from qcfs_lava.lava_sim import simulate

    _, net, _ = imported
    x = np.random.default_rng(1).integers(0, 256, size=(2, 3, 8, 8)).astype(np.uint8)
    lava = simulate(net, x, 3, record="spikes")
    emu = emulate(net, x, 3, record="spikes")
    assert compare_results(lava, emu) == []
    assert lava.spike_counts.sum() > 0


def test_import_reference_command_then_export_and_emulate(tmp_path):
    """reference state dict file -> qcfs-lava checkpoint -> NetX -> emulator."""
    from qcfs_lava.cli import main

    sd_path = tmp_path / "resnet20_ref.pth"
    torch.save({f"module.{k}": v.float() for k, v in resnet20_reference(width=4).items()},
               sd_path)
    ckpt = tmp_path / "resnet20.pt"
    assert main(["import-reference", str(sd_path), "--arch", "resnet20", "--levels", "4",
                 "--dataset", "cifar10", "--input-size", "8", "--out", str(ckpt)]) == 0
    out = tmp_path / "resnet20.net"
    assert main(["export", str(ckpt), "--out", str(out), "--steps", "8"]) == 0
    net = read_netx(out)
    assert net.metadata["dataset"] == "cifar10"
    assert sum(len(layer.synapses) == 2 for layer in net.layers) == 9
    x = np.random.default_rng(2).integers(0, 256, size=(4, 3, 8, 8)).astype(np.uint8)
    assert emulate(net, x, 8).potentials.shape == (4, 10)


@pytest.fixture(scope="module")
def split_net(imported):
    model, _, _ = imported
    return convert(model, (3, 8, 8), MEAN, STD, config=ConversionConfig(synapse_copies=8))


def test_shortcut_copies_refine_the_grid_and_add_up(imported, split_net):
    _, net1, rep1 = imported
    net8, rep8 = split_net
    finer = 0
    for a, b, ra, rb in zip(net1.layers, net8.layers, rep1.layers, rep8.layers, strict=True):
        assert all(np.abs(s.weight).max() <= 254 for s in b.synapses)
        if len(a.synapses) == 1:
            assert len(b.synapses) == 1 and rb.weight_step == ra.weight_step
            assert np.array_equal(b.synapses[0].weight, a.synapses[0].weight)
            continue
        assert rb.weight_step <= ra.weight_step and rb.max_weight_error <= ra.max_weight_error
        finer += rb.weight_step < ra.weight_step
        # each original synapse became consecutive copies of itself whose weights add up to it
        rest = list(b.synapses)
        for syn in a.synapses:
            copies = []
            while rest and rest[0].source == syn.source and rest[0].weight.shape == \
                    syn.weight.shape:
                copies.append(rest.pop(0))
            assert copies and len(copies) <= 8
            total = sum(c.weight.astype(np.int64) for c in copies)
            np.testing.assert_allclose(total * rb.weight_step, syn.weight * ra.weight_step,
                                       atol=2 * ra.weight_step)
        assert not rest
        # the smaller path uses the whole 8-bit range unless the copies are capped
        peaks = [int(np.abs(s.weight).max()) // 2 for s in b.synapses]
        assert max(peaks) == 127
    assert finer == 9  # every add layer gets a finer grid


@pytest.mark.slow
def test_shortcut_copies_round_trip_and_emulate(split_net, tmp_path):
    net, _ = split_net
    assert read_netx(write_netx(net, tmp_path / "split.net")).equals(net)
    x = np.random.default_rng(3).integers(0, 256, size=(6, 3, 8, 8)).astype(np.uint8)
    res = emulate(net, x, 8, record="spikes")
    assert res.spike_counts.sum() > 0
    # the emulator sums a synapse's copies into one; the plain loop runs each copy
    pots, trains = reference_run(net, x, 8)
    np.testing.assert_array_equal(res.potentials, pots)
    for got, want in zip(res.spikes, trains, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.lava
@pytest.mark.slow
def test_shortcut_copies_lava_equals_emulator(split_net):
    from qcfs_lava.lava_sim import simulate

    net, _ = split_net
    x = np.random.default_rng(4).integers(0, 256, size=(2, 3, 8, 8)).astype(np.uint8)
    lava = simulate(net, x, 4, record="spikes")
    emu = emulate(net, x, 4, record="spikes")
    assert compare_results(lava, emu) == []
