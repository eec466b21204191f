"""The model registry and its layout contract."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qcfs_lava.model.qcfs import QCFS
from qcfs_lava.model.zoo import MODELS, BasicBlock, build_model

ALLOWED = (nn.Sequential, nn.Conv2d, nn.BatchNorm2d, QCFS, nn.ReLU, nn.AvgPool2d,
           nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear, nn.Dropout, nn.Identity, BasicBlock)
SIZES = {"mlp": 8, "cnn": 8, "vgg11": 32, "vgg16": 32, "resnet18": 8, "resnet20": 8,
         "resnet34": 8}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("activation", ["qcfs", "relu"])
def test_every_model_follows_the_layout_contract(name, activation):
    size = SIZES[name]
    model = build_model(name, in_channels=3, num_classes=5, input_size=size,
                        activation=activation, levels=2, width=2, hidden=4)
    assert isinstance(model, nn.Sequential)
    bad = [n for n, m in model.named_modules() if not isinstance(m, ALLOWED)]
    assert not bad
    leaves = [m for m in model.modules() if not isinstance(m, (nn.Sequential, BasicBlock))]
    assert isinstance(leaves[-1], nn.Linear) and leaves[-1].out_features == 5
    acts = [m for m in model.modules() if isinstance(m, (QCFS, nn.ReLU))]
    assert acts and all(isinstance(a, QCFS if activation == "qcfs" else nn.ReLU) for a in acts)
    x = torch.randn(2, 3, size, size)
    assert model(x).shape == (2, 5)
    model.eval()
    assert torch.equal(model(x), _chain(model, x))


def _chain(model, x):
    for child in model.children():
        x = child(x)
    return x


def test_resnet_blocks_add_before_the_activation():
    model = build_model("resnet20", in_channels=1, num_classes=3, input_size=8, width=2)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 9
    for block in blocks:
        kinds = [type(m) for m in block.residual]
        assert kinds == [nn.Conv2d, nn.BatchNorm2d, QCFS, nn.Conv2d, nn.BatchNorm2d]
        assert len(block.shortcut) in (0, 2)
        x = torch.randn(1, block.residual[0].in_channels, 8, 8)
        block.eval()
        assert torch.equal(block(x), block.act(block.residual(x) + block.shortcut(x)))
    assert sum(len(b.shortcut) == 2 for b in blocks) == 2  # 16->32 and 32->64
    assert [len(list(getattr(model, f"conv{k}_x").children())) for k in (2, 3, 4)] == [3, 3, 3]


def test_resnet18_and_34_block_counts():
    for name, count in (("resnet18", 8), ("resnet34", 16)):
        model = build_model(name, in_channels=3, num_classes=10, input_size=8, width=2)
        assert sum(isinstance(m, BasicBlock) for m in model.modules()) == count


def test_qcfs_options_reach_every_activation():
    model = build_model("cnn", in_channels=1, num_classes=10, input_size=28, levels=8, phi=0.0,
                        thresh=3.0)
    acts = [m for m in model.modules() if isinstance(m, QCFS)]
    assert len(acts) == 2
    assert all(a.levels == 8 and a.phi == 0.0 and float(a.thresh.detach()) == 3.0 for a in acts)


def test_bad_names_and_sizes_raise():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("alexnet", in_channels=1, num_classes=2, input_size=8)
    with pytest.raises(ValueError, match="activation"):
        build_model("cnn", in_channels=1, num_classes=2, input_size=8, activation="gelu")
    with pytest.raises(ValueError, match="multiple of 32"):
        build_model("vgg16", in_channels=3, num_classes=2, input_size=8)


def test_vgg_without_hidden_layers_converts():
    import torch

    from qcfs_lava.convert import convert

    model = build_model("vgg11", in_channels=3, num_classes=10, input_size=32, width=2,
                        hidden=0).eval()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 1 and linears[0].in_features == 16 and model(
        torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    net, _ = convert(model, (3, 32, 32), [0.5] * 3, [0.25] * 3)
    assert len(net.layers) == 9  # 8 conv layers + the output layer
