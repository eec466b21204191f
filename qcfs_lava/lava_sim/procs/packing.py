"""Pack small non-negative integers into 52-bit words, and back.

Lava reads a Var back one element at a time (a float64 per message), so per-sample records
(spike trains, spike counts) are packed into words before they are read: a float64 holds any
integer below ``2**53`` exactly, so each word carries ``52 // bits`` values.
"""

from __future__ import annotations

import numpy as np

WORD_BITS = 52


def values_per_word(bits: int) -> int:
    """How many ``bits``-wide values one word holds."""
    if not 1 <= bits <= WORD_BITS:
        raise ValueError(f"bits must be in [1, {WORD_BITS}], got {bits}")
    return WORD_BITS // bits


def num_words(count: int, bits: int) -> int:
    """Words needed for ``count`` values of ``bits`` bits."""
    per = values_per_word(bits)
    return -(-int(count) // per)


def pack(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack a flat array of integers in ``[0, 2**bits)`` into int64 words.

    Shape:
        values ``(M,)`` -> words ``(num_words(M, bits),)``
    """
    per = values_per_word(bits)
    flat = np.asarray(values, dtype=np.int64).reshape(-1)
    padded = np.zeros(num_words(flat.size, bits) * per, dtype=np.int64)
    padded[: flat.size] = flat
    shifts = np.arange(per, dtype=np.int64) * bits
    return (padded.reshape(-1, per) << shifts).sum(axis=1)


def unpack(words: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack` for the trailing axis of ``words``.

    Shape:
        words ``(..., W)`` -> values ``(..., count)`` int64
    """
    per = values_per_word(bits)
    words = np.asarray(words)
    if words.dtype.kind == "f":
        words = np.rint(words)
    words = words.astype(np.int64)
    shifts = np.arange(per, dtype=np.int64) * bits
    vals = (words[..., None] >> shifts) & ((1 << bits) - 1)
    return vals.reshape(*words.shape[:-1], -1)[..., :count]
