"""Keyed spike-train digests: exact modular sums, the same on every backend."""

from __future__ import annotations

import numpy as np

from qcfs_lava.digest import digest_keys, digest_trains, join_limbs, key_limbs
from qcfs_lava.emulator import emulate
from qcfs_lava.network import INPUT, IntegerNetwork, NeuronLayer, Synapse

KEY = 0x5EED_1234_ABCD


def _digest_net() -> IntegerNetwork:
    """A stem of ordinary neurons, then ``exact``: zero weights and a bias equal to its
    threshold, so every neuron's potential is exactly ``v_th`` at every step (it spikes every
    step and resets to 0). Raising one neuron's threshold by one at one step removes exactly
    that spike; the neuron then spikes at every later step of the window, as before."""
    rng = np.random.default_rng(11)
    vth = 40

    def w(shape, m):
        return 2 * rng.integers(-m, m + 1, shape)

    return IntegerNetwork((1, 6, 6), (
        NeuronLayer("stem", (3, 3, 3), (Synapse(INPUT, "conv", w((3, 1, 3, 3), 20), stride=2,
                                                padding=1),), 0, rng.integers(-50, 50, 3),
                    300, 300 << 5),
        NeuronLayer("exact", (4,), (Synapse(0, "dense", np.zeros((4, 27), int)),), 0,
                    np.full(4, vth), vth, 0),
        NeuronLayer("after", (5,), (Synapse(1, "dense", w((5, 4), 60)),
                                    Synapse(0, "dense", w((5, 27), 30))), 0,
                    rng.integers(-50, 50, 5), 200, 200 << 5),
        NeuronLayer("out", (3,), (Synapse(2, "dense", w((3, 5), 60)),), 1, np.zeros(3, int),
                    None, 0),
    ), levels=4, phi=0.5)


def _x(n: int = 4) -> np.ndarray:
    return np.random.default_rng(12).integers(0, 256, (n, 1, 6, 6), dtype=np.uint8)



def test_limb_sums_join_to_the_wrapping_sum():
    keys = digest_keys(KEY, 0, 3, 50)
    s = np.random.default_rng(0).integers(0, 2, (7, 3, 50)).astype(bool)
    limb = (s.reshape(7, -1).astype(np.float64) @ key_limbs(keys.reshape(-1)))
    want = [sum(int(k) for k in keys.reshape(-1)[row]) % (1 << 64) for row in s.reshape(7, -1)]
    assert join_limbs(limb).tolist() == want
    assert digest_trains(s, keys).tolist() == want


def test_keys_depend_on_key_and_layer():
    a = digest_keys(KEY, 0, 2, 10)
    assert a.dtype == np.uint64 and a.shape == (2, 10)
    assert np.array_equal(a, digest_keys(KEY, 0, 2, 10))
    assert not np.array_equal(a, digest_keys(KEY, 1, 2, 10))
    assert not np.array_equal(a, digest_keys(KEY + 1, 0, 2, 10))


def test_every_single_changed_spike_changes_the_digest():
    keys = digest_keys(KEY, 3, 4, 30)
    base = np.random.default_rng(1).integers(0, 2, (1, 4, 30)).astype(bool)
    flipped = np.repeat(base, 4 * 30, axis=0)
    flipped.reshape(len(flipped), -1)[np.arange(len(flipped)), np.arange(len(flipped))] ^= True
    assert (digest_trains(flipped, keys) != digest_trains(base, keys)[0]).all()


def test_emulator_digests_are_the_digests_of_its_trains():
    net = _digest_net()
    res = emulate(net, _x(), 5, record="spikes", digest_key=KEY, batch_size=3)
    assert res.digests.shape == (4, 3) and res.digest_key == KEY
    for li, s in enumerate(res.spikes):
        want = digest_trains(s, digest_keys(KEY, li, 5, net.layers[li].num_neurons))
        np.testing.assert_array_equal(res.digests[:, li], want)
