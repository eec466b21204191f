"""Import of reference QCFS state dicts (both code bases) and their SNN semantics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from qcfs_lava.errors import CheckpointError
from qcfs_lava.model.reference import import_reference
from qcfs_lava.snn import snn_outputs

VGG16_STAGES = ((1, 1), (2, 2), (4, 4, 4), (8, 8, 8), (8, 8, 8))


def _bn(sd, prefix, c, g):
    sd[f"{prefix}.weight"] = 0.5 + torch.rand(c, generator=g, dtype=torch.float64)
    sd[f"{prefix}.bias"] = 0.3 * torch.randn(c, generator=g, dtype=torch.float64)
    sd[f"{prefix}.running_mean"] = 0.1 * torch.randn(c, generator=g, dtype=torch.float64)
    sd[f"{prefix}.running_var"] = 0.5 + torch.rand(c, generator=g, dtype=torch.float64)
    sd[f"{prefix}.num_batches_tracked"] = torch.tensor(3)


def _representable(sd):
    """Round to float32 (the model's dtype) so both sides start from the same numbers."""
    return {k: v.float().double() if v.is_floating_point() else v for k, v in sd.items()}


def _thr(g):
    return 0.5 + 1.5 * torch.rand(1, generator=g, dtype=torch.float64)


def _conv(cout, cin, k, g):
    scale = (2.0 / (cin * k * k)) ** 0.5
    return torch.randn(cout, cin, k, k, generator=g, dtype=torch.float64) * scale


def vgg16_reference(width=2, hidden=8, classes=10, leaf="thresh", seed=0):
    g = torch.Generator().manual_seed(seed)
    sd, cin = {}, 3
    for s, stage in enumerate(VGG16_STAGES, start=1):
        for j, mult in enumerate(stage):
            c = mult * width
            sd[f"layer{s}.{4 * j}.weight"] = _conv(c, cin, 3, g)
            sd[f"layer{s}.{4 * j}.bias"] = 0.1 * torch.randn(c, generator=g, dtype=torch.float64)
            _bn(sd, f"layer{s}.{4 * j + 1}", c, g)
            sd[f"layer{s}.{4 * j + 2}.{leaf}"] = _thr(g)
            cin = c
    shapes = ((hidden, cin), (hidden, hidden), (classes, hidden))
    for i, (o, n) in zip((1, 4, 7), shapes, strict=True):
        sd[f"classifier.{i}.weight"] = torch.randn(o, n, generator=g, dtype=torch.float64) / n**0.5
        sd[f"classifier.{i}.bias"] = 0.1 * torch.randn(o, generator=g, dtype=torch.float64)
    sd[f"classifier.2.{leaf}"] = _thr(g)
    sd[f"classifier.5.{leaf}"] = _thr(g)
    return _representable(sd)


def resnet20_reference(width=4, classes=10, old=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    leaf, block_act = ("up", "relu") if old else ("thresh", "act")
    sd = {"conv1.0.weight": _conv(width, 3, 3, g)}
    _bn(sd, "conv1.1", width, g)
    sd[f"conv1.2.{leaf}"] = _thr(g)
    cin = width
    for k, mult in zip((2, 3, 4), (1, 2, 4), strict=True):
        c = mult * width
        for i in range(3):
            p = f"conv{k}_x.{i}"
            sd[f"{p}.residual_function.0.weight"] = _conv(c, cin, 3, g)
            _bn(sd, f"{p}.residual_function.1", c, g)
            sd[f"{p}.residual_function.2.{leaf}"] = _thr(g)
            sd[f"{p}.residual_function.3.weight"] = _conv(c, c, 3, g)
            _bn(sd, f"{p}.residual_function.4", c, g)
            if cin != c:
                sd[f"{p}.shortcut.0.weight"] = _conv(c, cin, 1, g)
                _bn(sd, f"{p}.shortcut.1", c, g)
            sd[f"{p}.{block_act}.{leaf}"] = _thr(g)
            cin = c
    sd["fc.weight"] = torch.randn(classes, cin, generator=g, dtype=torch.float64) / cin**0.5
    sd["fc.bias"] = 0.1 * torch.randn(classes, generator=g, dtype=torch.float64)
    return _representable(sd)


class ReferenceIF:
    """The reference SNN neuron, written from its description: mem starts at 0.5 * thresh,
    spike when mem >= thresh, subtract thresh, emit spike * thresh."""

    def __init__(self):
        self.mem = {}

    def __call__(self, name, x, thresh):
        mem = self.mem.get(name, 0.5 * thresh) + x
        spike = (mem >= thresh).to(x.dtype) * thresh
        self.mem[name] = mem - spike
        return spike


def _bn_apply(sd, p, x):
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"],
                        sd[f"{p}.bias"], training=False, eps=1e-5)


def _leaf(sd, p):
    return sd[f"{p}.thresh"] if f"{p}.thresh" in sd else sd[f"{p}.up"]


def reference_vgg_step(sd, x, neuron):
    for s, stage in enumerate(VGG16_STAGES, start=1):
        for j in range(len(stage)):
            x = F.conv2d(x, sd[f"layer{s}.{4 * j}.weight"], sd[f"layer{s}.{4 * j}.bias"], padding=1)
            x = _bn_apply(sd, f"layer{s}.{4 * j + 1}", x)
            x = neuron(f"{s}.{j}", x, _leaf(sd, f"layer{s}.{4 * j + 2}"))
        x = F.avg_pool2d(x, 2)
    x = x.flatten(1)
    x = neuron("c2", F.linear(x, sd["classifier.1.weight"], sd["classifier.1.bias"]),
               _leaf(sd, "classifier.2"))
    x = neuron("c5", F.linear(x, sd["classifier.4.weight"], sd["classifier.4.bias"]),
               _leaf(sd, "classifier.5"))
    return F.linear(x, sd["classifier.7.weight"], sd["classifier.7.bias"])


def reference_resnet20_step(sd, x, neuron):
    x = neuron("conv1", _bn_apply(sd, "conv1.1", F.conv2d(x, sd["conv1.0.weight"], padding=1)),
               _leaf(sd, "conv1.2"))
    for k in (2, 3, 4):
        for i in range(3):
            p = f"conv{k}_x.{i}"
            stride = 2 if (k > 2 and i == 0) else 1
            r = F.conv2d(x, sd[f"{p}.residual_function.0.weight"], stride=stride, padding=1)
            r = neuron(f"{p}.r", _bn_apply(sd, f"{p}.residual_function.1", r),
                       _leaf(sd, f"{p}.residual_function.2"))
            r = _bn_apply(sd, f"{p}.residual_function.4",
                          F.conv2d(r, sd[f"{p}.residual_function.3.weight"], padding=1))
            if f"{p}.shortcut.0.weight" in sd:
                s = _bn_apply(sd, f"{p}.shortcut.1",
                              F.conv2d(x, sd[f"{p}.shortcut.0.weight"], stride=stride))
            else:
                s = x
            act = f"{p}.act" if f"{p}.act.thresh" in sd else f"{p}.relu"
            x = neuron(f"{p}.a", r + s, _leaf(sd, act))
    x = F.adaptive_avg_pool2d(x, 1).flatten(1)
    return F.linear(x, sd["fc.weight"], sd["fc.bias"])


def _reference_mean(step, sd, x, T):
    neuron = ReferenceIF()
    outs = torch.stack([step(sd, x, neuron) for _ in range(T)])
    return outs.cumsum(0) / torch.arange(1, T + 1, dtype=x.dtype).view(-1, 1, 1)


def _ours_mean(model, x, T):
    outs = snn_outputs(model.double(), x, T)
    return outs.cumsum(0) / torch.arange(1, T + 1, dtype=x.dtype).view(-1, 1, 1)


@pytest.mark.parametrize("leaf", ["thresh", "up"])
def test_vgg16_import_matches_reference_snn(leaf):
    sd = vgg16_reference(leaf=leaf)
    model = import_reference(sd, "vgg16", num_classes=10, levels=4)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref, ours = _reference_mean(reference_vgg_step, sd, x, 6), _ours_mean(model, x, 6)
    assert torch.allclose(ours, ref, atol=1e-9)
    assert ref.abs().sum() > 0  # the network is not silent


@pytest.mark.parametrize("old", [False, True])
def test_resnet20_import_matches_reference_snn(old):
    sd = resnet20_reference(old=old)
    model = import_reference(sd, "resnet20", num_classes=10, levels=8)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 16, 16, generator=g, dtype=torch.float64)
    ref, ours = _reference_mean(reference_resnet20_step, sd, x, 5), _ours_mean(model, x, 5)
    assert torch.allclose(ours, ref, atol=1e-9)
    # QCFS thresholds and levels arrive in the model
    first = model.conv1[2]
    assert first.levels == 8 and first.phi == 0.5
    key = "conv1.2.up" if old else "conv1.2.thresh"
    assert torch.equal(first.thresh.detach().double(), sd[key])


def test_ann_forward_matches_reference_ann():
    sd = resnet20_reference(seed=3)
    model = import_reference(sd, "resnet20", num_classes=10, levels=4).double()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)

    def qcfs(name, z, thresh):  # the reference ANN activation: clamp, then floor(x L + 0.5) / L
        return torch.floor(torch.clamp(z / thresh, 0, 1) * 4 + 0.5) / 4 * thresh

    with torch.no_grad():
        assert torch.allclose(model(x), reference_resnet20_step(sd, x, qcfs), atol=1e-9)


def test_import_from_file_with_module_prefix(tmp_path):
    sd = {f"module.{k}": v for k, v in resnet20_reference().items()}
    torch.save(sd, tmp_path / "ref.pth")
    model = import_reference(tmp_path / "ref.pth", "resnet20", num_classes=10, levels=4)
    assert model.fc.out_features == 10


def test_mismatched_keys_are_listed_in_one_error():
    sd = resnet20_reference()
    del sd["conv3_x.0.shortcut.0.weight"]
    sd["conv9_x.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        import_reference(sd, "resnet20", num_classes=10, levels=4)
    message = str(info.value)
    assert "conv3_x.0.shortcut.0.weight" in message and "conv9_x.0.extra.weight" in message


def test_wrong_num_classes_and_arch_are_errors():
    with pytest.raises(CheckpointError, match="wrong shape"):
        import_reference(resnet20_reference(), "resnet20", num_classes=100, levels=4)
    with pytest.raises(CheckpointError, match="conv1.0.weight"):
        import_reference(vgg16_reference(), "resnet18", num_classes=10, levels=4)
    with pytest.raises(CheckpointError, match="unknown reference arch"):
        import_reference({}, "alexnet", num_classes=10, levels=4)
