"""The QCFS activation: values, gradients, model surgery."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qcfs_lava.model.qcfs import QCFS, replace_relu_with_qcfs, replace_relu_with_qcfs_


def test_forward_values_by_hand():
    act = QCFS(levels=4, phi=0.5, thresh=2.0)
    z = torch.tensor([-1.0, 0.0, 0.2, 0.3, 0.8, 1.3, 1.9, 2.5])
    # a = 2 * clip(floor(z * 4 / 2 + 0.5) / 4, 0, 1)
    expected = torch.tensor([0.0, 0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.0])
    assert torch.equal(act(z), expected)
    plain = QCFS(levels=4, phi=0.0, thresh=2.0)
    assert torch.equal(plain(z), torch.tensor([0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 1.5, 2.0]))


def test_input_gradient_is_straight_through_inside_the_clip():
    act = QCFS(levels=4, phi=0.5, thresh=2.0)
    z = torch.tensor([-1.0, 0.3, 1.3, 3.0], requires_grad=True)
    act(z).sum().backward()
    assert torch.equal(z.grad, torch.tensor([0.0, 1.0, 1.0, 0.0]))


def _ste_surrogate(z, lam, levels, phi, frac):
    """The function whose exact derivative the straight-through estimator reports: floor
    replaced by ``u - frac`` with the fractional part frozen at the evaluation point."""
    u = z * levels / lam + phi
    return lam * torch.clamp((u - frac) / levels, 0, 1)


@pytest.mark.parametrize("phi", [0.0, 0.5])
def test_threshold_gradient_matches_finite_differences(phi):
    levels, lam0 = 4, 1.75
    g = torch.Generator().manual_seed(0)
    z = torch.rand(80, generator=g, dtype=torch.float64) * 3 - 0.5
    u = z * levels / lam0 + phi
    frac = u - torch.floor(u)
    floor = torch.floor(u)
    # away from floor jumps and inside the clip range (floor(u) = 0 or L sit on clip edges)
    keep = (frac > 0.05) & (frac < 0.95) & (floor >= 1) & (floor <= levels - 1)
    assert keep.sum() > 10
    z, frac = z[keep], frac[keep]
    act = QCFS(levels, phi, lam0).double()
    act(z).sum().backward()
    eps = 1e-6
    fd = (_ste_surrogate(z, lam0 + eps, levels, phi, frac).sum()
          - _ste_surrogate(z, lam0 - eps, levels, phi, frac).sum()) / (2 * eps)
    assert torch.allclose(act.thresh.grad, fd.reshape(1), rtol=1e-6)
    # in the clipped regions the surrogate is the true function: compare with plain FD
    high = torch.tensor([5.0, 9.0], dtype=torch.float64)
    act.thresh.grad = None
    act(high).sum().backward()
    step = 0.125  # the output is linear in lambda there; a dyadic step is exact in float32
    true_fd = (QCFS(levels, phi, lam0 + step).double()(high).sum()
               - QCFS(levels, phi, lam0 - step).double()(high).sum()) / (2 * step)
    assert torch.allclose(act.thresh.grad, true_fd.detach().reshape(1), rtol=1e-6)


def test_levels_must_be_positive():
    with pytest.raises(ValueError):
        QCFS(levels=0)


def test_replace_relu_and_maxpool_returns_new_model_with_warning():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Sequential(nn.Linear(2, 2), nn.ReLU()), nn.Linear(2, 2))
    with pytest.warns(UserWarning, match="MaxPool2d"):
        new = replace_relu_with_qcfs(model, levels=8, phi=0.0, thresh=3.0)
    assert isinstance(model[1], nn.ReLU) and isinstance(model[2], nn.MaxPool2d)  # untouched
    assert isinstance(new[1], QCFS) and isinstance(new[4][1], QCFS)
    assert isinstance(new[2], nn.AvgPool2d)
    assert new[1].levels == 8 and new[1].phi == 0.0 and float(new[1].thresh.detach()) == 3.0


def test_replace_in_place_without_maxpool_does_not_warn(recwarn):
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    assert replace_relu_with_qcfs_(model) is model
    assert isinstance(model[1], QCFS)
    assert not [w for w in recwarn if "MaxPool" in str(w.message)]
