"""The snntorch and sinabs shims run qcfs-lava NIR files with the float SNN's semantics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("nir", reason="the optional extra is absent: pip install 'qcfs-lava[nir]'")
pytest.importorskip("nirtorch", reason="nirtorch is absent: pip install 'qcfs-lava[nir]'")

from nir_models import DIGITS_CKPT, active_resnet, float_snn  # noqa: E402

from qcfs_lava.nir_exchange.export import export_checkpoint, to_nir  # noqa: E402
from qcfs_lava.nir_exchange.shims import run_sinabs, run_snntorch  # noqa: E402

RUNNERS = {"snntorch": run_snntorch, "sinabs": run_sinabs}


def _runner(name: str):
    pytest.importorskip(name, reason=f"{name} is absent: see docs/nir.md for "
                        "installing the optional extra")
    return RUNNERS[name]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from qcfs_lava.checkpoint import load_checkpoint
    from qcfs_lava.data import load_dataset, normalize

    path = tmp_path_factory.mktemp("nir") / "digits-cnn.nir"
    export_checkpoint(DIGITS_CKPT, path, steps=8)
    ckpt = load_checkpoint(DIGITS_CKPT)
    split = load_dataset("digits")
    xf = normalize(split.x_test, ckpt.mean, ckpt.std)
    ref, _ = float_snn(ckpt.build_model(), xf, 8)
    return path, xf, split.y_test, ref


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUNNERS))
def test_shim_predictions_equal_float_snn_on_digits(name, digits):
    """The whole digits test split: identical predictions at every T <= 8."""
    run = _runner(name)
    path, xf, y, ref = digits
    out = run(path, xf)
    assert out.shape == ref.shape == (8, len(y), 10)
    for t in range(1, 9):
        np.testing.assert_array_equal(out[:t].mean(0).argmax(1), ref[:t].mean(0).argmax(1))
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4)
    assert np.mean(out.mean(0).argmax(1) == y) > 0.98


@pytest.mark.parametrize("name", sorted(RUNNERS))
def test_shim_runs_residual_network(name):
    """Residual adds (two edges into one IF node) are summed in the same step."""
    run = _runner(name)
    model = active_resnet(seed=2)
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    graph = to_nir(model, (1, 8, 8), steps=5)
    out = run(graph, x)  # float32, like the float SNN
    ref, _ = float_snn(model, x, 5)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(out.mean(0).argmax(1), ref.mean(0).argmax(1))
