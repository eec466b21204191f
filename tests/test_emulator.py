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
    from test_convert import small_cnn

    from qcfs_lava.convert import convert
    from qcfs_lava.emulator import _compile

    net, _ = convert(small_cnn(), (2, 8, 8), mean=0.3, std=0.4)
    compiled = _compile(net, torch.device("cpu"))
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
            slow = emulate(net, x, 5, record="spikes")
        pots, trains = reference_run(net, x, 5)
        np.testing.assert_array_equal(fast.potentials, pots)
        np.testing.assert_array_equal(fast.saturations, slow.saturations)
        for got, want in zip(fast.spikes, trains, strict=True):
            np.testing.assert_array_equal(got, want)
    assert used >= 4  # (layers fed by the input, or with a large bound, are not)
