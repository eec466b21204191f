"""lava-dl's own NetX reader builds our sequential files with our neuron plugged in."""

from pathlib import Path

import numpy as np
import pytest

from qcfs_lava.netx import read_netx

EXAMPLE = Path(__file__).resolve().parents[2] / "netx_exports" / "digits-cnn.net"

pytestmark = pytest.mark.lava


def test_lava_dl_builds_example_with_qcfs_neurons():
    from qcfs_lava.lava_sim.netx_bridge import build_lava_dl_network, lava_dl_layer_table

    from lava.lib.dl.netx import hdf5  # isort: skip  (after qcfs_lava.lava_sim: compat)
    from qcfs_lava.lava_sim.procs.neuron import QcfsNeuron, QcfsOutput

    stock = hdf5.Network.__dict__["get_neuron_params"]
    net = read_netx(EXAMPLE)
    lava_net = build_lava_dl_network(EXAMPLE, steps=8)
    assert hdf5.Network.__dict__["get_neuron_params"] is stock  # patch undone
    assert str(lava_net) == lava_dl_layer_table(net)
    assert len(lava_net.layers) == len(net.layers)
    for block, layer in zip(lava_net.layers, net.layers, strict=True):
        neuron = block.neuron
        assert isinstance(neuron, QcfsNeuron if layer.spiking else QcfsOutput)
        assert neuron.proc_params["weight_exp"] == layer.weight_exp
        assert int(np.asarray(neuron.v_init.init).reshape(-1)[0]) == layer.v_init
        if layer.spiking:
            assert int(neuron.vth.init) == layer.v_th
        bias = np.asarray(neuron.bias.init)
        want = layer.bias.transpose(2, 1, 0) if len(layer.shape) == 3 else layer.bias
        np.testing.assert_array_equal(bias, want)


def test_stock_reader_still_refuses_our_neuron_outside_the_bridge():
    from qcfs_lava.lava_sim.compat import ensure_lava_dl

    ensure_lava_dl()
    from lava.lib.dl.netx import hdf5

    with pytest.raises((TypeError, AttributeError)):
        hdf5.Network(net_config=str(EXAMPLE), input_message_bits=8)


def test_network_built_by_lava_dl_runs_identically_to_the_emulator():
    """What lava-dl would deploy (its blocks, our neuron) computes our integer network."""
    from qcfs_lava.data import load_dataset
    from qcfs_lava.emulator import emulate
    from qcfs_lava.lava_sim.netx_bridge import run_lava_dl_network

    split = load_dataset("digits")
    x = split.x_test[:4]
    pots = run_lava_dl_network(EXAMPLE, x, 4)
    emu = emulate(read_netx(EXAMPLE), x, 4)
    np.testing.assert_array_equal(pots, emu.potentials)


RESIDUAL = EXAMPLE.parent / "resnet20-cifar10-subset.net"


def test_registered_neuron_lets_the_stock_reader_build_our_file():
    """After register_qcfs_neuron, lava-dl's own hdf5.Network call builds the file."""
    from qcfs_lava.lava_sim.netx_bridge import (
        lava_dl_layer_table,
        register_qcfs_neuron,
        unregister_qcfs_neuron,
    )

    from lava.lib.dl.netx import hdf5  # isort: skip  (after qcfs_lava.lava_sim: compat)
    from qcfs_lava.lava_sim.procs.neuron import QcfsNeuron, QcfsOutput

    stock = hdf5.Network.__dict__["get_neuron_params"]
    register_qcfs_neuron(num_samples=3)
    try:
        lava_net = hdf5.Network(net_config=str(EXAMPLE), input_message_bits=8,
                                reset_interval=8)
    finally:
        unregister_qcfs_neuron()
    assert hdf5.Network.__dict__["get_neuron_params"] is stock
    net = read_netx(EXAMPLE)
    assert str(lava_net) == lava_dl_layer_table(net)
    kinds = [type(block.neuron) for block in lava_net.layers]
    assert kinds == [QcfsNeuron] * (len(net.layers) - 1) + [QcfsOutput]
    assert {b.neuron.proc_params["steps"] for b in lava_net.layers} == {8}
    assert {b.neuron.proc_params["num_samples"] for b in lava_net.layers} == {3}


def test_registered_neuron_needs_a_reset_interval():
    from qcfs_lava.errors import NetworkValidationError
    from qcfs_lava.lava_sim.netx_bridge import register_qcfs_neuron, unregister_qcfs_neuron

    from lava.lib.dl.netx import hdf5  # isort: skip

    register_qcfs_neuron()
    try:
        with pytest.raises(NetworkValidationError, match="reset_interval=T"):
            hdf5.Network(net_config=str(EXAMPLE), input_message_bits=8)
    finally:
        unregister_qcfs_neuron()


def test_bridge_uses_the_files_recorded_steps_by_default():
    from qcfs_lava.lava_sim.netx_bridge import build_lava_dl_network

    assert read_netx(EXAMPLE).metadata["steps"] == 8
    lava_net = build_lava_dl_network(EXAMPLE)
    assert {b.neuron.proc_params["steps"] for b in lava_net.layers} == {8}


def test_bridge_refuses_a_residual_file_naming_the_reason():
    from qcfs_lava.errors import NetworkValidationError
    from qcfs_lava.lava_sim.netx_bridge import build_lava_dl_network

    with pytest.raises(NetworkValidationError, match="concat.*qcfs-lava simulate"):
        build_lava_dl_network(RESIDUAL)


@pytest.mark.parametrize("path, bridge", [(EXAMPLE, "builds it"), (RESIDUAL, "no (residual")])
def test_inspect_says_what_stock_lava_dl_can_and_cannot_load(path, bridge):
    from qcfs_lava.netx import describe_netx

    text = describe_netx(path)
    assert "stock lava-dl    cannot build it: its reader does not know the QCFS_IF" in text
    assert f"lava-dl bridge   {bridge}" in text
    assert ("not implemented in lava-dl 0.6.0" in text) == (path == RESIDUAL)
