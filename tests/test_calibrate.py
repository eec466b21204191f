"""Calibration of ReLU networks into QCFS networks, per layer and per channel."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from qcfs_lava.calibrate import (
    CalibrationConfig,
    activation_statistics,
    calibrate,
    calibrate_checkpoint,
    percentile,
)
from qcfs_lava.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from qcfs_lava.cli import main
from qcfs_lava.convert import convert
from qcfs_lava.data import load_dataset
from qcfs_lava.emulator import emulate
from qcfs_lava.errors import UnsupportedLayerError
from qcfs_lava.model.qcfs import QCFS
from qcfs_lava.model.zoo import build_model


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.weight.data = 0.5 + 1.5 * torch.rand(n, generator=gen)
            m.bias.data = -0.2 + 0.7 * torch.rand(n, generator=gen)
            m.running_mean = -0.2 + 0.4 * torch.rand(n, generator=gen)
            m.running_var = 0.5 + 1.5 * torch.rand(n, generator=gen)
    return model.eval()


class _ChannelQCFS(nn.Module):
    """QCFS with one threshold per channel: the reference the transform must equal."""

    def __init__(self, lambdas, levels: int, phi: float) -> None:
        super().__init__()
        self.lam = torch.as_tensor(np.asarray(lambdas), dtype=torch.float64)
        self.levels, self.phi = levels, phi

    def forward(self, x):
        lam = self.lam.view(1, -1, *([1] * (x.dim() - 2)))
        y = torch.floor(x * self.levels / lam + self.phi) / self.levels
        return torch.clamp(y, 0.0, 1.0) * lam


def _reference(model: nn.Module, result) -> nn.Module:
    """``model`` with each ReLU replaced by the (per-channel) QCFS the calibration chose."""
    import copy

    ref = copy.deepcopy(model)
    cfg = result.config
    for a in result.activations:
        parent_path, _, leaf = a.name.rpartition(".")
        parent = ref.get_submodule(parent_path) if parent_path else ref
        lam = a.channel_lambdas if a.per_channel else None
        new = (_ChannelQCFS(lam, cfg.levels, cfg.phi) if lam is not None
               else QCFS(cfg.levels, cfg.phi, a.layer_lambda).double())
        setattr(parent, leaf, new)
    return ref.eval()


def test_percentile_equals_numpy_linear():
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(5, 1001, generator=gen)
    for q in (0.0, 50.0, 99.0, 99.9, 100.0):
        np.testing.assert_allclose(percentile(values, q).item(),
                                   np.percentile(values.numpy(), q), rtol=1e-12)
        np.testing.assert_allclose(percentile(values, q, dim=1).numpy(),
                                   np.percentile(values.numpy(), q, axis=1), rtol=1e-12)


def test_known_statistics_give_expected_lambdas():
    # z = x * (1, 2, -1) with x = 0, 1/1000, ..., 999/1000: the ReLU outputs are known exactly
    lin = nn.Linear(1, 3)
    lin.weight.data = torch.tensor([[1.0], [2.0], [-1.0]])
    lin.bias.data.zero_()
    head = nn.Linear(3, 2)
    model = nn.Sequential(lin, nn.ReLU(), head).eval()
    x = (torch.arange(1000, dtype=torch.float32) / 1000).view(-1, 1)
    xs = x.numpy()[:, 0].astype(np.float64)
    relu = np.stack([xs, 2 * xs, np.zeros_like(xs)], axis=1).astype(np.float32)
    stats = activation_statistics(model, x, 99.0, per_channel=True, batch_size=128)
    layer, channels = stats["1"]
    assert layer == pytest.approx(np.percentile(relu, 99.0), rel=1e-6)
    np.testing.assert_allclose(channels, np.percentile(relu, 99.0, axis=0), rtol=1e-6)
    assert channels[2] == 0.0

    per_layer = calibrate(model, x, CalibrationConfig(levels=4, percentile=99.0))
    assert per_layer.model[1].thresh.item() == pytest.approx(layer, rel=1e-6)
    assert per_layer.activations[0].per_channel is False

    result = calibrate(model, x, CalibrationConfig(levels=4, percentile=99.0, per_channel=True))
    a = result.activations[0]
    p99 = np.percentile(xs.astype(np.float32), 99.0)
    # the dead channel takes the layer lambda; the threshold is the largest channel lambda
    np.testing.assert_allclose(a.channel_lambdas, [p99, 2 * p99, layer], rtol=1e-6)
    assert a.per_channel and a.threshold == pytest.approx(2 * p99, rel=1e-6)
    assert result.model[1].thresh.item() == pytest.approx(2 * p99, rel=1e-6)
    # rows scaled by Lambda / lambda_c, the next layer's columns by the inverse
    np.testing.assert_allclose(result.model[0].weight.detach().numpy()[:, 0],
                               [2.0, 2.0, -1.0 * 2 * p99 / layer], rtol=1e-5)
    np.testing.assert_allclose(result.model[2].weight.detach().numpy(),
                               head.weight.detach().numpy() * [0.5, 1.0, layer / (2 * p99)],
                               rtol=1e-5)
    assert isinstance(model[1], nn.ReLU) and model[0].weight[0, 0].item() == 1.0  # untouched


@pytest.mark.parametrize("name", ["cnn", "resnet20", "vgg11", "mlp"])
def test_per_channel_transform_equals_per_channel_thresholds(name):
    size = 32 if name == "vgg11" else 8
    torch.manual_seed(1)
    model = build_model(name, in_channels=1, num_classes=10, input_size=size, activation="relu",
                        width=16 if name == "mlp" else 4, **({"hidden": 32} if name == "vgg11"
                                                             else {}))
    model = _randomize_bn(model).double()
    x = torch.randn(48, 1, size, size, dtype=torch.float64)
    result = calibrate(model, x, CalibrationConfig(levels=4, percentile=99.0, per_channel=True))
    applied = [a.per_channel for a in result.activations]
    assert any(applied)
    if name == "resnet20":  # inside every block; not where an identity shortcut follows
        assert applied.count(True) == 9 and not result.activations[0].per_channel
        assert all(a.note for a in result.activations if not a.per_channel)
    else:
        assert all(applied)
    lambdas = [a.channel_lambdas for a in result.activations if a.per_channel]
    assert any(lam.max() > 1.5 * lam.min() for lam in lambdas)  # thresholds really differ
    with torch.no_grad():
        ref, got = _reference(model, result)(x), result.model(x)
    # thresholds are float32 parameters: agreement to their precision, no level flips
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)


def test_shared_relu_is_rejected():
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(4, 4), relu, nn.Linear(4, 4), relu, nn.Linear(4, 2))
    with pytest.raises(UnsupportedLayerError, match="more than once"):
        calibrate(model, torch.randn(8, 4))


def test_no_activation_is_rejected():
    with pytest.raises(UnsupportedLayerError, match="no nn.ReLU"):
        calibrate(nn.Sequential(nn.Linear(4, 2)), torch.randn(8, 4))


@pytest.fixture(scope="module")
def relu_checkpoint(tmp_path_factory):
    """An untrained digits cnn with ReLU and random BatchNorm statistics."""
    split = load_dataset("digits")
    torch.manual_seed(0)
    kwargs = dict(in_channels=1, num_classes=10, input_size=8, activation="relu", levels=4,
                  phi=0.5, thresh=1.0)
    model = _randomize_bn(build_model("cnn", **kwargs))
    path = tmp_path_factory.mktemp("ckpt") / "relu.pt"
    save_checkpoint(Checkpoint(
        model="cnn", model_kwargs=kwargs, state_dict=model.state_dict(), levels=4, phi=0.5,
        activation="relu", dataset="digits", input_shape=(1, 8, 8), num_classes=10,
        class_names=split.class_names, mean=split.mean.tolist(), std=split.std.tolist(),
    ), path)
    return path


def test_calibrate_checkpoint_with_finetune(relu_checkpoint):
    config = CalibrationConfig(levels=4, per_channel=True, samples=300, finetune_epochs=1)
    ckpt, result, acc = calibrate_checkpoint(relu_checkpoint, config)
    assert ckpt.activation == "qcfs" and ckpt.levels == 4
    assert set(acc) == {"source_ann", "calibrated_ann", "finetuned_ann"}
    assert len(result.finetune) == 1
    model = ckpt.build_model()
    assert sum(isinstance(m, QCFS) for m in model.modules()) == 2


def test_calibrate_command_output_is_accepted_by_emulate(relu_checkpoint, tmp_path, capsys):
    out = tmp_path / "qcfs.pt"
    rc = main(["calibrate", str(relu_checkpoint), "--levels", "4", "--per-channel",
               "--samples", "200", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "per channel" in text and "calibrated QCFS ANN" in text
    info = json.loads((tmp_path / "qcfs.pt.json").read_text())
    assert info["config"]["per_channel"] is True and len(info["activations"]) == 2
    assert all(a["per_channel"] for a in info["activations"])
    assert load_checkpoint(out).activation == "qcfs"
    rc = main(["emulate", str(out), "--steps", "2,4", "--samples", "20"])
    assert rc == 0 and "error budget" in capsys.readouterr().out


def test_calibrate_command_bad_input_exits_2(relu_checkpoint, tmp_path, capsys):
    assert main(["calibrate", str(tmp_path / "missing.pt"), "--levels", "4",
                 "--out", str(tmp_path / "o.pt")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["calibrate", str(relu_checkpoint), "--levels", "4",
                 "--out", str(relu_checkpoint)]) == 2
    assert "never overwritten" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", str(relu_checkpoint), "--levels", "0", "--out", "x.pt"])
    assert exc.value.code == 2


def _per_channel_network(steps: int = 4):
    split = load_dataset("digits")
    torch.manual_seed(3)
    model = _randomize_bn(build_model("cnn", in_channels=1, num_classes=10, input_size=8,
                                      activation="relu", width=4), seed=3)
    from qcfs_lava.data import normalize

    x_cal = normalize(split.x_train[:200], split)
    result = calibrate(model, x_cal, CalibrationConfig(levels=4, per_channel=True))
    assert all(a.per_channel for a in result.activations)
    net, _ = convert(result.model, (1, 8, 8), split.mean, split.std)
    return net, result, split


def test_per_channel_integer_network_tracks_the_qcfs_model():
    from qcfs_lava.snn import evaluate_snn

    net, result, split = _per_channel_network()
    from qcfs_lava.data import normalize

    x, y = split.x_test[:100], split.y_test[:100]
    run = emulate(net, x, 16, labels=y)
    float_acc = evaluate_snn(result.model, normalize(x, split), torch.as_tensor(y), [16])[16]
    assert abs(run.accuracy - float_acc) <= 0.05


@pytest.mark.lava
def test_per_channel_thresholds_lava_equals_emulator():
    pytest.importorskip("lava", reason="lava-nc is not installed")
    from qcfs_lava.lava_sim import simulate
    from qcfs_lava.results import compare_results

    net, _, split = _per_channel_network()
    x, y = np.ascontiguousarray(split.x_test[:3]), split.y_test[:3]
    emu = emulate(net, x, 4, labels=y, record="spikes")
    lava = simulate(net, x, 4, labels=y, record="spikes")
    assert compare_results(lava, emu) == []
    assert int(emu.spike_counts.sum()) > 0
