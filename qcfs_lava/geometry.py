"""Pairs and output shapes of 2-D convolutions and poolings, defined once.

Numpy only (no torch, no lava): the converter, the NIR exchange, the integer network and the
analyses all import it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["conv_output_shape", "pair", "pool_output_shape"]


def pair(value) -> tuple[int, int]:
    """``value`` as a pair of ints: a scalar is repeated, a 1- or 2-element sequence is read.

    Raises:
        ValueError: ``value`` has more than two elements (or none).
    """
    if np.isscalar(value):
        return int(value), int(value)
    flat = np.asarray(value).reshape(-1)
    if flat.size == 1:
        return int(flat[0]), int(flat[0])
    if flat.size != 2:
        raise ValueError(f"must be an int or a pair, got {value!r}")
    return int(flat[0]), int(flat[1])


def conv_output_shape(
    in_hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
) -> tuple[int, int]:
    """Spatial output size of a 2-D convolution (torch's formula, floor mode)."""
    return tuple(
        (in_hw[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
        for i in range(2)
    )


def pool_output_shape(
    in_hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int] = (0, 0),
) -> tuple[int, int]:
    """Spatial output size of a 2-D pooling window (floor mode): a convolution's, undilated."""
    return conv_output_shape(in_hw, kernel, stride, padding)
