import dataclasses
import weakref

import numpy as np
import pytest
from netgen import random_network, reference_run

from qcfs_lava.emulator import emulate
from qcfs_lava.errors import NetworkValidationError


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("conv,residual", [(False, False), (True, False), (False, True),
                                           (True, True)])
def test_emulator_matches_reference_loop(seed, conv, residual):
    rng = np.random.default_rng(seed)
    net = random_network(rng, conv=conv, residual=residual, extreme=seed % 2 == 1)
    x = rng.integers(0, 256, size=(5, *net.input_shape), dtype=np.uint8)
    steps = 6
    pots, trains = reference_run(net, x, steps)
    res = emulate(net, x, steps, record="spikes", batch_size=2)
    np.testing.assert_array_equal(res.potentials, pots)
    for got, want in zip(res.spikes, trains, strict=True):
        np.testing.assert_array_equal(got, want)
    for li, want in enumerate(trains):
        np.testing.assert_array_equal(res.spike_counts[:, li], want.reshape(5, -1).sum(1))
        np.testing.assert_array_equal(res.neuron_counts[li], want.sum(1))
    np.testing.assert_array_equal(res.predictions, np.argmax(pots, axis=1))


def test_extreme_networks_saturate_and_still_match():
    """Some seeds must really drive membranes into the 24-bit limits."""
    total = 0
    for seed in range(1, 12, 2):
        rng = np.random.default_rng(seed)
        net = random_network(rng, conv=True, residual=True, extreme=True)
        x = rng.integers(0, 256, size=(3, *net.input_shape), dtype=np.uint8)
        res = emulate(net, x, 4)
        pots, _ = reference_run(net, x, 4)
        np.testing.assert_array_equal(res.potentials, pots)
        total += int(res.saturations.sum())
    assert total > 0


def test_rejects_wrong_input_shape_and_values():
    net = random_network(np.random.default_rng(0), conv=False)
    with pytest.raises(NetworkValidationError, match="sample shape"):
        emulate(net, np.zeros((2, 5), np.uint8), 2)
    with pytest.raises(NetworkValidationError, match="8-bit"):
        emulate(net, np.full((2, 12), 300), 2)
    with pytest.raises(NetworkValidationError, match="steps"):
        emulate(net, np.zeros((2, 12), np.uint8), 0)


def test_pool_folded_synapses_run_factored_and_exact():
    """Converted pool+conv / pool+linear synapses take the sum-pool path and stay exact."""
    import torch
    from torch_nets import small_cnn

    from qcfs_lava.convert import convert
    from qcfs_lava.emulator import _compiled_network

    net, _ = convert(small_cnn(), (2, 8, 8), mean=0.3, std=0.4)
    compiled = [cl.synapses for cl in _compiled_network(net, torch.device("cpu"))]
    assert compiled[1][0].pool == (2, 2) and compiled[1][0].weight.shape[2:] == (3, 3)
    assert compiled[2][0].pool == (2, 2) and compiled[2][0].weight.shape == (5, 6 * 2 * 2)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(6, 2, 8, 8), dtype=np.uint8)
    pots, trains = reference_run(net, x, 5)
    res = emulate(net, x, 5, record="spikes")
    np.testing.assert_array_equal(res.potentials, pots)
    for got, want in zip(res.spikes, trains, strict=True):
        np.testing.assert_array_equal(got, want)


def test_emulator_and_lava_runner_share_one_argument_check():
    from qcfs_lava.results import RecordMode, check_run_arguments

    net = random_network(np.random.default_rng(4), conv=False)
    x = np.zeros((3, *net.input_shape), np.uint8)
    assert RecordMode.parse(None) is RecordMode.TOTAL
    assert RecordMode.parse("spikes") is RecordMode.SPIKES
    assert RecordMode.parse(RecordMode.COUNTS) is RecordMode.COUNTS
    args = check_run_arguments(net, x, 2, labels=[0, 1, 2], record="counts")
    assert args.record is RecordMode.COUNTS and args.labels.dtype == np.int64
    for bad in (dict(record="voltages"), dict(labels=[0, 1]), dict(steps=0)):
        kwargs = {"steps": 2, **bad}
        with pytest.raises(NetworkValidationError):
            emulate(net, x, **kwargs)
    res = emulate(net, x, 2, record=RecordMode.SPIKES)
    assert res.spikes is not None and res.neuron_counts is not None
    res = emulate(net, x, 2, record=None)
    assert res.spikes is None and res.neuron_counts is None


def test_float32_layers_are_used_and_equal_the_integer_path(monkeypatch):
    """Hidden layers fed by spikes run in float32; results and saturations are unchanged."""
    from qcfs_lava import emulator

    used = 0
    for seed in range(8):
        rng = np.random.default_rng(50 + seed)
        net = random_network(rng, conv=seed % 2 == 0, residual=seed % 4 < 2,
                             extreme=seed % 3 != 0)
        used += sum(emulator._compile_float32_layer(net, lay, emulator.torch.device("cpu"))
                    is not None for lay in net.layers)
        x = rng.integers(0, 256, size=(4, *net.input_shape), dtype=np.uint8)
        fast = emulate(net, x, 5, record="spikes")
        with monkeypatch.context() as m:
            m.setattr(emulator, "_compile_float32_layer", lambda *a: None)
            m.setattr(emulator, "_CACHE", weakref.WeakKeyDictionary())  # compile afresh
            slow = emulate(net, x, 5, record="spikes")
        pots, trains = reference_run(net, x, 5)
        np.testing.assert_array_equal(fast.potentials, pots)
        np.testing.assert_array_equal(fast.saturations, slow.saturations)
        for got, want in zip(fast.spikes, trains, strict=True):
            np.testing.assert_array_equal(got, want)
    assert used >= 4  # (layers fed by the input, or with a large bound, are not)


def _with_exponent(net, index: int, e: int):
    """``net`` with layer ``index``'s weight exponent set to ``e``."""
    layers = list(net.layers)
    layers[index] = dataclasses.replace(layers[index], weight_exp=e)
    return dataclasses.replace(net, layers=tuple(layers))


def test_shortcuts_are_taken_and_equal_the_reference(monkeypatch):
    """Each shortcut gives the reference loop's spikes and potentials, and each is taken.

    Shortcuts: a 1x1 depthwise synapse (an identity shortcut) as a per-channel product; a
    dense synapse over the rows of its active inputs only; a float32 layer whose bias is not
    a multiple of ``2**e``; no saturation check where the membrane provably stays in range
    (the saturation counts must equal those of a run that checks every layer).
    """
    import torch

    from qcfs_lava import emulator

    cpu = torch.device("cpu")
    taken = {"channel_scale": 0, "float32_odd_bias": 0, "unchecked": 0, "checked": 0}
    saturated = 0
    for seed in range(12):
        rng = np.random.default_rng(200 + seed)
        net = random_network(rng, conv=True, residual=True, extreme=seed % 3 == 0)
        if seed % 3 == 1:  # e above the bias's 2**6 grain: partial sums in units of 2**6
            net = _with_exponent(net, 1, int(rng.integers(7, 10)))
        x = rng.integers(0, 256, size=(4, *net.input_shape), dtype=np.uint8)
        steps = int(rng.integers(3, 9))
        for lay in net.layers:
            cl = emulator._compile_layer(net, lay, cpu)
            taken["channel_scale"] += sum(syn.channel_scale for syn in cl.synapses)
            odd = lay.weight_exp > 0 and np.any(np.asarray(lay.bias) % (1 << lay.weight_exp))
            taken["float32_odd_bias"] += bool(cl.float32 and odd)
            key = "checked" if cl.may_saturate(lay.v_init, steps) else "unchecked"
            taken[key] += 1
        pots, trains = reference_run(net, x, steps)
        runs = []
        for sparse, check_all in [(1, False), (10**9, True)]:
            with monkeypatch.context() as m:
                m.setattr(emulator, "_SPARSE_DENSE", sparse)  # 1: always gather rows
                m.setattr(emulator, "_CACHE", weakref.WeakKeyDictionary())
                if check_all:
                    m.setattr(emulator._CompiledLayer, "may_saturate", lambda *a: True)
                res = emulate(net, x, steps, record="spikes", batch_size=3)
            np.testing.assert_array_equal(res.potentials, pots)
            for got, want in zip(res.spikes, trains, strict=True):
                np.testing.assert_array_equal(got, want)
            runs.append(res)
        np.testing.assert_array_equal(runs[0].saturations, runs[1].saturations)
        saturated += int(runs[1].saturations.sum())
    assert all(count > 0 for count in taken.values()), taken
    assert saturated > 0
