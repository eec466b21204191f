"""Conversion-error breakdown (clipping / quantization / unevenness)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qcfs_lava.analysis.breakdown import error_breakdown
from qcfs_lava.errors import AnalysisError
from qcfs_lava.model.qcfs import QCFS


def _model(levels=4, phi=0.5) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(5, 12), QCFS(levels, phi, thresh=1.0),
        nn.Linear(12, 8), QCFS(levels, phi, thresh=1.5),
        nn.Linear(8, 3),
    )
    return model.eval()


def test_first_layer_exact_when_steps_equal_levels():
    # constant input, v(0) = theta/2: spikes after T steps = clip(floor(T z / theta + 1/2), 0, T),
    # which is the QCFS value for L = T: the first layer has no error at all.
    model = _model(levels=4)
    x = torch.randn(64, 5) * 2
    y = torch.randint(0, 3, (64,))
    res = error_breakdown(model, x, [3, 4], labels=y, batch_size=20)
    first = res[4].layers[0]
    assert first.total_error == pytest.approx(0.0, abs=1e-12)
    assert first.quant_fraction == 0.0  # every ANN value k/4 is on the T=4 grid
    # T = 3 cannot represent 1/4, 1/2, 3/4 of theta: quantization error appears
    first3 = res[3].layers[0]
    assert first3.quant_fraction > 0 and first3.quant_error >= first3.grid_error > 0
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    assert res[4].ann_accuracy == pytest.approx(acc)
    assert 0.0 <= res[3].snn_accuracy <= 1.0


def test_buckets_partition_and_clip_fraction():
    model = _model(levels=2)
    x = torch.randn(50, 5) * 3
    res = error_breakdown(model, x, 5)[5]
    with torch.no_grad():
        z = model[0](x)
    clip = ((z < 0) | (z > 1.0)).double().mean().item()
    for layer in res.layers:
        assert layer.clip_fraction + layer.quant_fraction + layer.uneven_fraction == \
            pytest.approx(1.0)
        assert layer.clip_error + layer.quant_error + layer.uneven_error == \
            pytest.approx(layer.total_error)
    assert res.layers[0].clip_fraction == pytest.approx(clip)
    assert res.layers[0].elements == 50 * 12
    assert res.layers[1].threshold == pytest.approx(1.5)
    assert res.ann_accuracy is None
    assert [layer.name for layer in res.layers] == ["1", "3"]


def test_model_without_qcfs_is_rejected():
    with pytest.raises(AnalysisError, match="no QCFS"):
        error_breakdown(nn.Sequential(nn.Linear(2, 2)), torch.zeros(1, 2), 2)
    with pytest.raises(AnalysisError, match="positive"):
        error_breakdown(_model(), torch.zeros(1, 5), 0)
