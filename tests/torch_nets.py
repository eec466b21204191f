"""Test helpers: small torch models with non-trivial BatchNorm statistics."""

from __future__ import annotations

import torch
from torch import nn

from qcfs_lava.model.qcfs import QCFS


def randomize_bn(model, seed=0):
    """Give every BatchNorm of ``model`` seeded non-trivial statistics and affine terms."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def small_cnn(levels=4, phi=0.5):
    """A 2-conv QCFS CNN with pools and a linear head, for 2x8x8 inputs."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), QCFS(levels, phi, 1.5),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), QCFS(levels, phi, 2.0),
        nn.Dropout(0.0), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(6 * 2 * 2, 5),
    )
    return randomize_bn(model)
