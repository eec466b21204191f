"""The float SNN (docs/contract.md, section 2)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qcfs_lava.errors import UnsupportedLayerError
from qcfs_lava.model.qcfs import QCFS
from qcfs_lava.model.zoo import build_model
from qcfs_lava.snn import IFNeuron, evaluate_ann, evaluate_snn, simulate_snn, snn_outputs


@pytest.mark.parametrize("phi", [0.0, 0.5])
@pytest.mark.parametrize("lam", [1.0, 2.0])
def test_theorem1_spike_count_equals_qcfs_when_steps_equal_levels(phi, lam):
    levels = 8
    z = torch.arange(-64, 200, dtype=torch.float64) / 64  # dyadic: exact arithmetic
    neuron = IFNeuron(torch.tensor([lam], dtype=torch.float64), phi)
    spikes = sum(neuron(z) for _ in range(levels))
    expected = QCFS(levels, phi, lam).double()(z).detach()
    assert torch.equal(spikes / levels, expected)
    assert neuron.spikes == float((spikes / lam).sum())


def test_if_neuron_fires_on_equal_and_subtracts():
    neuron = IFNeuron(1.0, 0.5)
    assert float(neuron(torch.tensor([0.5]))) == 1.0  # v = 0.5 + 0.5 >= 1 fires
    assert float(neuron.v) == 0.0


def _tiny(model="cnn"):
    torch.manual_seed(0)
    m = build_model(model, in_channels=1, num_classes=3, input_size=8, levels=4, thresh=1.0,
                    width=4)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_var.fill_(0.5)
    return m.eval()


def test_snn_converges_to_ann_and_does_not_mutate_model():
    model = _tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    outs = snn_outputs(model, x, 256)
    assert isinstance(model[2], QCFS)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with torch.no_grad():
        ann = model(x)
    err_short = (outs[:4].mean(0) - ann).abs().mean()
    err_long = (outs.mean(0) - ann).abs().mean()
    assert err_short < 0.5 and err_long < 0.05  # T = L is close already, long T converges


def test_evaluate_snn_reports_every_step_count_from_one_pass():
    model = _tiny("resnet20")
    x = torch.randn(12, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    y = torch.randint(0, 3, (12,), generator=torch.Generator().manual_seed(3))
    result = simulate_snn(model, x, y, [1, 3, 6], batch_size=5)
    assert set(result.accuracy) == {1, 3, 6}
    outs = snn_outputs(model, x, 6)
    for t, acc in result.accuracy.items():
        assert acc == pytest.approx(float((outs[:t].mean(0).argmax(1) == y).float().mean()))
    assert result.spike_rates and all(0 <= r <= 1 for r in result.spike_rates.values())
    assert evaluate_snn(model, x, y, [3]) == {3: result.accuracy[3]}
    assert 0 <= evaluate_ann(model, x, y) <= 1


def test_relu_model_is_rejected():
    model = build_model("mlp", in_channels=1, num_classes=3, input_size=4, activation="relu",
                        width=4)
    with pytest.raises(UnsupportedLayerError, match="qcfs"):
        evaluate_snn(model, torch.zeros(1, 1, 4, 4), torch.zeros(1, dtype=torch.long), [1])
