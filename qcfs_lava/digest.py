"""Keyed 64-bit digests of spike trains: one number per sample and layer, same on both backends.

The digest of a layer's spike train ``s`` (``T`` steps of ``n`` neurons, torch layout) under a
key is the sum, modulo ``2**64``, of one random 64-bit word per spike position::

    D(s) = sum over t < T, i < n with s[t, i] = 1 of  K[t, i]   (mod 2**64)

The words ``K`` are drawn from PCG64 seeded by ``(key, layer index)``, so they are independent
of the network and of its inputs. Both backends compute ``D`` as the train is produced, one
step at a time: the Lava neuron model adds ``K[t][spiking neurons]`` (numpy's uint64 sums wrap
modulo ``2**64``), the batched emulator multiplies a step's spikes by ``K`` split into four
16-bit limbs (exact in float64) and joins the limbs (:func:`join_limbs`).

Why a collision is negligible: two trains ``s != s'`` get the same digest exactly when
``sum K[t, i] * (s - s')[t, i] = 0 (mod 2**64)``. The difference has some entry ``+1`` or
``-1``, whose word ``K[t, i]`` is uniform and independent of every other word; multiplying by
``+-1`` is a bijection modulo ``2**64``, so whatever the other terms are, the sum is zero
with probability exactly ``2**-64``, for any given pair of trains (the key is drawn after
the network and its inputs are fixed, and a fault cannot depend on it). Over ``M``
comparisons (samples times layers) the chance that some differing train goes unnoticed is at
most ``M * 2**-64``: below ``1e-13`` for a million comparisons (10,000 images x 100 layers).
A single changed spike also changes its neuron's spike count, which ``simulate --check``
compares as well, so it is always detected.
"""

from __future__ import annotations

import secrets

import numpy as np

DIGEST_BITS = 64
LIMB_BITS = 16
NUM_LIMBS = DIGEST_BITS // LIMB_BITS


def new_key() -> int:
    """A fresh random key (63 bits, so that it survives JSON and int64 unchanged)."""
    return secrets.randbits(63)


def digest_keys(key: int, layer: int, steps: int, num_neurons: int) -> np.ndarray:
    """The words ``K`` of one layer, indexed by step and torch-flattened neuron.

    Shape:
        ``(steps, num_neurons)`` uint64.
    """
    seed = np.random.SeedSequence([int(key) & ((1 << 64) - 1), int(layer)])
    raw = np.random.PCG64(seed).random_raw(int(steps) * int(num_neurons))
    return np.asarray(raw, dtype=np.uint64).reshape(int(steps), int(num_neurons))


def key_limbs(keys: np.ndarray) -> np.ndarray:
    """Split words into 16-bit limbs, as float64 (exact): ``(..., n) -> (..., n, 4)``."""
    shifts = np.arange(NUM_LIMBS, dtype=np.uint64) * np.uint64(LIMB_BITS)
    return ((keys[..., None] >> shifts) & np.uint64((1 << LIMB_BITS) - 1)).astype(np.float64)


def join_limbs(sums: np.ndarray) -> np.ndarray:
    """Digests from per-limb sums ``(..., 4)`` (exact integers below ``2**53``), mod ``2**64``.

    Shape:
        ``(..., 4)`` -> ``(...)`` uint64.
    """
    parts = np.rint(np.asarray(sums, dtype=np.float64)).astype(np.uint64)
    shifts = np.arange(NUM_LIMBS, dtype=np.uint64) * np.uint64(LIMB_BITS)
    with np.errstate(over="ignore"):
        return (parts << shifts).sum(axis=-1, dtype=np.uint64)


def digest_trains(spikes: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Digests of whole trains at once (a reference for tests and small runs).

    Shape:
        spikes ``(N, T, *shape)`` bool, keys ``(T, n)`` -> ``(N,)`` uint64.
    """
    flat = np.asarray(spikes, dtype=bool).reshape(len(spikes), -1)
    words = keys.reshape(-1)
    with np.errstate(over="ignore"):
        return np.array([words[row].sum(dtype=np.uint64) for row in flat], dtype=np.uint64)
