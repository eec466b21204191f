"""SNN fine-tuning (qcfs_lava.finetune) and `train --init-from`: deployed semantics kept."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from qcfs_lava.calibrate import CalibrationConfig, calibrate, calibration_subset
from qcfs_lava.checkpoint import load_checkpoint
from qcfs_lava.cli import main
from qcfs_lava.convert import convert
from qcfs_lava.data import load_dataset, normalize, torch_dataset
from qcfs_lava.emulator import emulate
from qcfs_lava.finetune import (
    FinetuneConfig,
    SurrogateIF,
    finetune_snn,
    multi_step_loss,
    snn_steps_forward,
)
from qcfs_lava.model.qcfs import QCFS
from qcfs_lava.snn import IFNeuron, evaluate_ann, snn_outputs, to_snn

EXAMPLE = "netx_exports/digits-cnn.pt"


def _digits():
    split = load_dataset("digits", seed=0)
    return split, normalize(split.x_test, split), torch.as_tensor(split.y_test)


def test_surrogate_neuron_forward_is_the_deployed_if_neuron():
    """Same values as the float SNN's neuron over many steps (fire on >=, subtract, v0)."""
    torch.manual_seed(0)
    x = torch.randn(3, 5, 4) * 2
    plain, trained = IFNeuron(1.7, 0.5), SurrogateIF(1.7, 0.5)
    for _ in range(8):
        assert torch.equal(plain(x), trained(x).detach())
    # an input landing exactly on the threshold fires (>=), as in the integer network
    exact = SurrogateIF(2.0, 0.5)
    assert exact(torch.tensor([1.0])).item() == 2.0


def test_gradient_is_finite_and_nonzero_through_the_steps():
    model = load_checkpoint(EXAMPLE).build_model()
    split, x, y = _digits()
    from qcfs_lava.finetune import _to_trainable_snn

    snn = _to_trainable_snn(model, train_thresholds=True).eval()
    out = snn_steps_forward(snn, x[:32], 4)
    loss = multi_step_loss(out, y[:32], (1, 2, 4))
    loss.backward()
    first_conv = next(m for m in snn.modules() if isinstance(m, nn.Conv2d))
    grads = [first_conv.weight.grad] + [m.thresh.grad for m in snn.modules()
                                        if isinstance(m, SurrogateIF)]
    for g in grads:
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    # the gradient reaches the first layer through every step: step 1 alone differs from 4
    snn.zero_grad()
    multi_step_loss(snn_steps_forward(snn, x[:32], 4), y[:32], (1,)).backward()
    g1 = first_conv.weight.grad.clone()
    assert not torch.allclose(g1, grads[0])


def test_finetuned_model_keeps_the_deployed_semantics():
    """The tuned checkpoint's float SNN is what the integer SNN computes (quantization aside)."""
    ckpt = load_checkpoint(EXAMPLE)
    model = ckpt.build_model()
    split, x, y = _digits()
    result = finetune_snn(model, torch_dataset(split, train=True),
                          FinetuneConfig(steps=2, epochs=1, batch_size=64))
    tuned = result.model
    changed = [n for n, (a, b) in result.thresholds.items() if a != b]
    assert changed, "thresholds are trained by default"
    # the input model is untouched
    assert torch.equal(model.state_dict()["0.weight"], ckpt.state_dict["0.weight"])
    # the QCFS thresholds written back are the SNN neuron thresholds
    assert [float(m.thresh) for m in to_snn(tuned).modules() if isinstance(m, IFNeuron)] == \
        [b for _, b in result.thresholds.values()]
    net, report = convert(tuned, ckpt.input_shape, mean=ckpt.mean, std=ckpt.std)
    xs = split.x_test[:64]
    res = emulate(net, xs, 8)
    with torch.no_grad():
        float_logits = snn_outputs(tuned.double(), normalize(xs, split).double(), 8).sum(0)
    scale = report.layers[-1].scale
    integer_logits = res.potentials / scale
    err = np.abs(integer_logits - float_logits.numpy())
    spread = float_logits.abs().max().item()
    assert err.max() < 0.05 * spread, (err.max(), spread)
    assert np.mean(res.predictions == float_logits.argmax(1).numpy()) >= 0.95


def test_fixed_thresholds_stay():
    model = load_checkpoint(EXAMPLE).build_model()
    split, _, _ = _digits()
    result = finetune_snn(model, torch_dataset(split, train=True),
                          FinetuneConfig(steps=1, epochs=1, train_thresholds=False))
    assert all(a == b for a, b in result.thresholds.values())


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="loss_steps"):
        FinetuneConfig(steps=2, loss_steps=(4,))
    with pytest.raises(ValueError, match="epochs"):
        FinetuneConfig(epochs=0)
    with pytest.raises(ValueError, match="lr"):
        FinetuneConfig(lr=float("nan"))


def test_finetune_cli_writes_a_checkpoint_every_command_accepts(tmp_path, capsys):
    out = tmp_path / "tuned.pt"
    assert main(["finetune-snn", EXAMPLE, "--steps", "2", "--epochs", "1",
                 "--loss-steps", "1,2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "float SNN at T=2" in text
    ckpt = load_checkpoint(out)
    assert ckpt.activation == "qcfs" and ckpt.epoch == load_checkpoint(EXAMPLE).epoch + 1
    meta = json.loads((tmp_path / "tuned.pt.json").read_text())
    assert meta["config"]["loss_steps"] == [1, 2]
    assert main(["export", str(out), "--out", str(tmp_path / "t.net"), "--steps", "2"]) == 0
    # the output is never the input, and an existing output needs --force
    assert main(["finetune-snn", EXAMPLE, "--steps", "2", "--out", EXAMPLE]) == 2
    assert main(["finetune-snn", EXAMPLE, "--steps", "2", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err


def test_finetune_refuses_a_relu_checkpoint(tmp_path, capsys):
    relu = tmp_path / "relu"
    assert main(["train", "--model", "cnn", "--activation", "relu", "--epochs", "1",
                 "--out", str(relu)]) == 0
    assert main(["finetune-snn", str(relu / "best.pt"), "--steps", "2",
                 "--out", str(tmp_path / "x.pt")]) == 2
    assert "calibrate it first" in capsys.readouterr().err


@pytest.mark.slow
def test_train_init_from_starts_at_the_calibrated_model(tmp_path):
    relu = tmp_path / "relu"
    assert main(["train", "--model", "cnn", "--activation", "relu", "--epochs", "2",
                 "--out", str(relu)]) == 0
    out = tmp_path / "qcfs"
    assert main(["train", "--model", "cnn", "--epochs", "1", "--thresh-decay",
                 "--init-from", str(relu / "best.pt"), "--out", str(out)]) == 0
    init = load_checkpoint(out / "init.pt")
    assert init.activation == "qcfs" and init.epoch == 0
    # equal to calibrating the ReLU checkpoint directly on the same training subset
    split = load_dataset("digits", seed=0)
    cal = CalibrationConfig(levels=4, phi=0.5, percentile=99.5, seed=0)
    index = calibration_subset(len(split.y_train), cal.samples, cal.seed)
    source = load_checkpoint(relu / "best.pt").build_model()
    expected = calibrate(source, normalize(split.x_train[index], split), cal).model
    x = normalize(split.x_test, split)
    got = init.build_model()
    with torch.no_grad():
        assert torch.allclose(got(x), expected(x), atol=1e-5)
    thresholds = [float(m.thresh.detach()) for m in got.modules() if isinstance(m, QCFS)]
    assert thresholds and all(t != 4.0 for t in thresholds)  # calibrated, not the recipe's
    config = json.loads((out / "config.json").read_text())
    assert config["init"]["calibrated_ann"] == pytest.approx(
        evaluate_ann(expected, x, torch.as_tensor(split.y_test)))
    assert config["thresh_decay"] is True


def test_init_from_a_different_model_is_refused(tmp_path, capsys):
    assert main(["train", "--model", "mlp", "--epochs", "1", "--init-from", EXAMPLE,
                 "--out", str(tmp_path / "x")]) == 2
    assert "same model" in capsys.readouterr().err


def test_threshold_decay_puts_thresholds_in_the_decayed_group():
    from qcfs_lava.train import _param_groups

    model = nn.Sequential(nn.Linear(3, 3), QCFS(4, 0.5, 8.0))
    groups = _param_groups(model, 5e-4, thresh_decay=True)
    assert any(p is model[1].thresh for p in groups[0]["params"])
    groups = _param_groups(model, 5e-4)
    assert any(p is model[1].thresh for p in groups[1]["params"])
