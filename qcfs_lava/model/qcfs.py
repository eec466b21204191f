"""The QCFS activation (Bu et al., ICLR 2022) and model surgery around it."""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn


def floor_ste(x: torch.Tensor) -> torch.Tensor:
    """``floor(x)`` forward, identity backward (straight-through estimator)."""
    return x + (torch.floor(x) - x).detach()


class QCFS(nn.Module):
    r"""Quantization clip-floor-shift activation.

    .. math::
        a = \lambda \cdot \mathrm{clip}\left(\frac{1}{L}\left\lfloor \frac{z L}{\lambda}
            + \varphi \right\rfloor, 0, 1\right)

    ``floor`` passes the gradient straight through; ``lambda`` (``thresh``) is trained by
    autograd of the expression. After conversion ``lambda`` is the spiking threshold.

    Args:
        levels: quantization levels ``L >= 1``.
        phi: shift; 0.5 is clip-floor-shift (the paper's method), 0.0 plain clip-floor.
        thresh: initial value of the trainable threshold ``lambda`` (reference: 8.0).

    Shape:
        any; applied element-wise.
    """

    def __init__(self, levels: int = 4, phi: float = 0.5, thresh: float = 8.0) -> None:
        super().__init__()
        if int(levels) < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.levels = int(levels)
        self.phi = float(phi)
        self.thresh = nn.Parameter(torch.tensor([float(thresh)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x / self.thresh
        y = floor_ste(y * self.levels + self.phi) / self.levels
        y = torch.clamp(y, 0.0, 1.0)
        return y * self.thresh

    def extra_repr(self) -> str:
        return f"levels={self.levels}, phi={self.phi}, thresh={self.thresh.item():.4g}"


def _replace(model: nn.Module, levels: int, phi: float, thresh: float) -> list[str]:
    swapped_pools = []
    for name, child in list(model.named_children()):
        if isinstance(child, nn.ReLU):
            setattr(model, name, QCFS(levels, phi, thresh))
        elif isinstance(child, nn.MaxPool2d):
            setattr(
                model,
                name,
                nn.AvgPool2d(child.kernel_size, child.stride, child.padding, child.ceil_mode),
            )
            swapped_pools.append(name)
        else:
            swapped_pools += [f"{name}.{n}" for n in _replace(child, levels, phi, thresh)]
    return swapped_pools


def replace_relu_with_qcfs_(
    model: nn.Module, levels: int = 4, phi: float = 0.5, thresh: float = 8.0
) -> nn.Module:
    """In place: every ``nn.ReLU`` becomes a :class:`QCFS`, every ``MaxPool2d`` an ``AvgPool2d``.

    MaxPool has no exact spiking equivalent; swapping it changes the function the network
    computes, so a warning names each swapped module (retrain afterwards).
    """
    swapped = _replace(model, levels, phi, thresh)
    if swapped:
        warnings.warn(
            f"replaced MaxPool2d with AvgPool2d at {swapped}: max pooling has no exact spiking "
            "equivalent; retrain (or fine-tune) the model with average pooling",
            stacklevel=2,
        )
    return model


def replace_relu_with_qcfs(
    model: nn.Module, levels: int = 4, phi: float = 0.5, thresh: float = 8.0
) -> nn.Module:
    """Like :func:`replace_relu_with_qcfs_` but returns a new model; ``model`` is untouched."""
    return replace_relu_with_qcfs_(copy.deepcopy(model), levels, phi, thresh)
