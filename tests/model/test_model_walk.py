"""One walk of a torch model: the registry that convert, the NIR export and calibration share."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from qcfs_lava import calibrate
from qcfs_lava.convert import HANDLERS, convert, handler_for
from qcfs_lava.errors import QuantizationError, UnsupportedLayerError
from qcfs_lava.geometry import conv_output_shape, pair, pool_output_shape
from qcfs_lava.model import walk
from qcfs_lava.model.qcfs import QCFS
from qcfs_lava.nir_exchange import export as nir_export

ROOT = Path(__file__).resolve().parents[2]
KINDS = {kind.name for kind in walk.MODULE_KINDS}


def _instance(cls: type[nn.Module]) -> nn.Module:
    """A module of ``cls`` (constructor arguments do not matter for the lookup)."""
    return cls.__new__(cls)


def test_every_consumer_handles_exactly_the_registered_kinds():
    assert {h.kind.name for h in HANDLERS} == KINDS
    assert set(nir_export.HANDLERS) == KINDS
    assert set(calibrate.ROLES) == KINDS


def test_convert_nir_export_and_calibrate_accept_the_same_modules():
    registered = [cls for kind in walk.MODULE_KINDS for cls in kind.types]
    for cls in registered:
        m = _instance(cls)
        kind = walk.kind_of(m)
        assert handler_for(m) is not None and handler_for(m).kind is kind
        assert kind.name in nir_export.HANDLERS
        assert calibrate._role(m) == calibrate.ROLES[kind.name]
    for cls in (nn.GELU, nn.MaxPool2d, nn.LSTM, nn.Upsample):
        m = _instance(cls)
        assert walk.kind_of(m) is None and handler_for(m) is None
        assert calibrate._role(m) is None
    # calibration also takes the ReLU it replaces; convert and the NIR export do not
    assert calibrate._role(nn.ReLU()) == "activation" and handler_for(nn.ReLU()) is None


@pytest.mark.parametrize("consumer, action", [("convert", "convert"),
                                              ("NIR export", "export to NIR")])
def test_unsupported_modules_are_named_once_with_the_registry_list(consumer, action):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.GELU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(8, 2))
    with pytest.raises(UnsupportedLayerError) as err:
        walk.check_supported(model, consumer=consumer, action=action)
    msg = str(err.value)
    assert f"cannot {action} these modules" in msg
    assert "1 (GELU)" in msg and "2 (MaxPool2d)" in msg and "retrain with AvgPool2d" in msg
    for kind in walk.MODULE_KINDS:
        assert kind.label in msg
    with pytest.raises(UnsupportedLayerError, match=f"{consumer} expects an nn.Sequential"):
        walk.check_supported(nn.Conv2d(1, 1, 1), consumer=consumer, action=action)


def test_convert_reports_the_registry_list():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.GELU(), nn.Flatten(), nn.Linear(72, 2))
    with pytest.raises(UnsupportedLayerError, match="cannot convert") as err:
        convert(model, (1, 8, 8))
    assert walk.SUPPORTED in str(err.value)


def test_leaves_flatten_nested_sequentials_and_keep_blocks_whole():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.residual = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1))
            self.shortcut = nn.Sequential()
            self.act = QCFS()

    block = Block()
    model = nn.Sequential(nn.Sequential(nn.Conv2d(1, 2, 1), QCFS()), block, nn.Flatten())
    assert [p for p, _ in walk.leaves(model)] == ["0.0", "0.1", "1", "2"]
    assert walk.is_block(block) and not walk.is_block(model)
    relu = nn.ReLU()
    assert walk.leaves(relu) == [("ReLU", relu)] and walk.leaves(relu, "a.b") == [("a.b", relu)]


def test_fold_batchnorm_is_the_inference_affine():
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(3).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    lin = nn.Linear(4, 3).double()
    w, b = walk.fold_batchnorm("bn", bn, walk.to_float64(lin.weight), walk.to_float64(lin.bias))
    x = torch.randn(5, 4, dtype=torch.float64)
    with torch.no_grad():
        want = bn.double()(lin(x)).numpy()
    np.testing.assert_allclose(x.numpy() @ w.T + b, want, rtol=1e-12, atol=1e-12)
    with pytest.raises(UnsupportedLayerError, match="does not match"):
        walk.fold_batchnorm("bn", bn, np.zeros((2, 4)), np.zeros(2))
    with torch.no_grad():
        bn.running_var[0] = float("nan")
    with pytest.raises(QuantizationError, match="NaN"):
        walk.fold_batchnorm("bn", bn, np.zeros((3, 4)), np.zeros(3))


def test_geometry_helpers():
    assert pair(3) == (3, 3) and pair((2, 5)) == (2, 5) and pair(np.array([4])) == (4, 4)
    with pytest.raises(ValueError, match="pair"):
        pair((1, 2, 3))
    conv = nn.Conv2d(1, 1, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2))
    out = conv(torch.zeros(1, 1, 9, 7)).shape[2:]
    assert conv_output_shape((9, 7), (3, 2), (2, 1), (1, 0), (1, 2)) == tuple(out)
    pool = nn.AvgPool2d(3, stride=2, padding=1)
    assert pool_output_shape((9, 8), (3, 3), (2, 2), (1, 1)) == tuple(
        pool(torch.zeros(1, 1, 9, 8)).shape[2:])
    assert walk.adaptive_pool_kernel("p", nn.AdaptiveAvgPool2d(2), 8, 6) == (4, 3)
    with pytest.raises(UnsupportedLayerError, match="uniform"):
        walk.adaptive_pool_kernel("p", nn.AdaptiveAvgPool2d(3), 8, 6)


# module-level helpers of the walk, each defined once in the package
_WALKER_HELPERS = {"pair", "_pair", "is_block", "_is_block", "leaves", "_leaves", "_flat",
                   "fold_batchnorm", "_fold_bn", "adaptive_pool_kernel", "conv_output_shape"}
_ALLOWED: set[tuple[str, str]] = set()


def test_each_walker_helper_is_defined_once():
    defined: dict[str, list[str]] = {}
    for path in sorted((ROOT / "qcfs_lava").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name in _WALKER_HELPERS \
                    and (rel, node.name) not in _ALLOWED:
                defined.setdefault(node.name.lstrip("_"), []).append(rel)
    assert all(len(where) == 1 for where in defined.values()), defined
    assert set(defined["pair"]) == {"qcfs_lava/geometry.py"}
    assert set(defined["is_block"]) == {"qcfs_lava/model/walk.py"}


def test_a_new_module_type_is_one_registration(monkeypatch):
    """Registering ``nn.Dropout1d`` as a ``skip`` is all convert, the NIR export's walk and
    calibration need (the registry is patched for this test only)."""
    import dataclasses

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), QCFS(4, 0.5, 1.0), nn.Dropout1d(0.1),
                          nn.Linear(3, 2)).eval()
    with pytest.raises(UnsupportedLayerError, match="Dropout1d"):
        convert(model, (4,))
    kinds = tuple(dataclasses.replace(k, types=k.types + (nn.Dropout1d,)) if k.name == "skip"
                  else k for k in walk.MODULE_KINDS)
    monkeypatch.setattr(walk, "MODULE_KINDS", kinds)
    net, _ = convert(model, (4,))
    plain, _ = convert(nn.Sequential(*[m for m in model if not isinstance(m, nn.Dropout1d)]),
                       (4,))
    assert net.equals(plain)
    assert calibrate._role(nn.Dropout1d()) == "pass"
    pytest.importorskip("nir", reason="the NIR export needs the optional nir extra")
    graph = nir_export.to_nir(model, (4,))
    assert not any("Dropout" in name for name in graph.nodes)
