"""Resuming training from a bad ``last.pt`` or with fewer epochs is refused, nothing rewritten."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from repo_files import UnsafePickle

from qcfs_lava.cli import main


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from qcfs_lava.train import TrainConfig, train

    out = tmp_path_factory.mktemp("run")
    train(TrainConfig(model="mlp", dataset="digits", out_dir=str(out), epochs=2, width=8,
                      batch_size=256))
    return out


@pytest.mark.parametrize("content", ["empty", "list", "unsafe"])
def test_resume_from_a_bad_last_pt(trained_run, tmp_path, content, capsys):
    out = tmp_path / "run"
    out.mkdir()
    last = out / "last.pt"
    if content == "empty":
        last.write_bytes(b"")
    elif content == "list":
        torch.save([1, 2, 3], last)
    else:
        last.write_bytes(pickle.dumps(UnsafePickle(), protocol=2))  # refused under weights_only
    rc = main(["train", "--model", "mlp", "--out", str(out), "--resume", "--epochs", "1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "cannot resume from" in err and "last.pt" in err


def test_resume_with_fewer_epochs_is_refused(trained_run, capsys):
    config = (trained_run / "config.json").read_text()
    rc = main(["train", "--model", "mlp", "--width", "8", "--batch-size", "256",
               "--out", str(trained_run), "--resume", "--epochs", "1"])
    assert rc == 2
    assert "already trained 2 epochs" in capsys.readouterr().err
    assert (trained_run / "config.json").read_text() == config  # not rewritten
    assert len(json.loads((trained_run / "metrics.json").read_text())) == 2
