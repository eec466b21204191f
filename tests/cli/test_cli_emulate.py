import json

import pytest
import torch

from qcfs_lava.checkpoint import Checkpoint, save_checkpoint
from qcfs_lava.cli import main
from qcfs_lava.data import load_dataset
from qcfs_lava.model.zoo import build_model


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory):
    """An untrained (random) digits cnn: enough to exercise the command end to end."""
    split = load_dataset("digits")
    torch.manual_seed(0)
    kwargs = dict(in_channels=1, num_classes=10, input_size=8, levels=4, phi=0.5, thresh=1.0)
    model = build_model("cnn", **kwargs)
    path = tmp_path_factory.mktemp("ckpt") / "cnn.pt"
    save_checkpoint(Checkpoint(
        model="cnn", model_kwargs=kwargs, state_dict=model.state_dict(), levels=4, phi=0.5,
        activation="qcfs", dataset="digits", input_shape=(1, 8, 8), num_classes=10,
        class_names=split.class_names, mean=split.mean.tolist(), std=split.std.tolist(),
    ), path)
    return path


def test_emulate_checkpoint_prints_budget_and_writes_json(digits_checkpoint, tmp_path, capsys):
    out = tmp_path / "emu.json"
    rc = main(["emulate", str(digits_checkpoint), "--steps", "2,4", "--samples", "40",
               "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "error budget" in text and "quantization report" in text
    data = json.loads(out.read_text())
    assert data["error_budget"]["samples"] == 40
    assert set(data["runs"]) == {"2", "4"}
    assert len(data["runs"]["4"]["predictions"]) == 40
    assert data["quantization"][0]["vth_mant"] >= 1


def test_emulate_missing_file_is_a_clear_error(tmp_path, capsys):
    rc = main(["emulate", str(tmp_path / "nope.pt"), "--dataset", "digits"])
    assert rc == 2
    assert "no such file" in capsys.readouterr().err
