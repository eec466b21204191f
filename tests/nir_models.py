"""Test helpers for the NIR tests: the float SNN's per-step outputs and a spiking ResNet."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from qcfs_lava.model.qcfs import QCFS
from qcfs_lava.model.zoo import build_model
from qcfs_lava.snn import IFNeuron, to_snn

ROOT = Path(__file__).resolve().parent.parent
DIGITS_CKPT = ROOT / "netx_exports" / "digits-cnn.pt"


@torch.no_grad()
def float_snn(model: nn.Module, x: torch.Tensor, steps: int):
    """The float SNN's classifier output per step and total spikes per IFNeuron (by name)."""
    snn = to_snn(model)
    outputs = torch.stack([snn(x) for _ in range(steps)]).numpy()
    spikes = {name: m.spikes for name, m in snn.named_modules() if isinstance(m, IFNeuron)}
    return outputs, spikes


def active_resnet(seed: int = 0) -> nn.Sequential:
    """A seeded ResNet-20 (width 4, 8x8 input) whose BatchNorms and thresholds make every
    layer spike."""
    torch.manual_seed(seed)
    model = build_model("resnet20", in_channels=1, num_classes=10, input_size=8, width=4,
                        levels=4, thresh=1.0)
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
            m.weight.data.copy_(0.8 + 0.4 * torch.rand(c, generator=gen))
            m.bias.data.copy_(0.3 + 0.2 * torch.randn(c, generator=gen))
        elif isinstance(m, QCFS):
            m.thresh.data.fill_(float(0.5 + torch.rand(1, generator=gen)))
    return model.eval()
