"""Training: resume after interruption, checkpoints, distributed training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qcfs_lava.checkpoint import checkpoint_sha256, load_checkpoint
from qcfs_lava.errors import CheckpointError
from qcfs_lava.train import TrainConfig, train


def _config(out, **kw):
    options = {"width": 16, "epochs": 3, "batch_size": 128, "lr": 0.05} | kw
    return TrainConfig(model="mlp", dataset="digits", out_dir=str(out), **options)


class InterruptError(Exception):
    pass


def _stop_after(n):
    def callback(epoch, metrics):
        if epoch == n:
            raise InterruptError

    return callback


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    full = train(_config(tmp_path / "full"))
    with pytest.raises(InterruptError):
        train(_config(tmp_path / "cut"), on_epoch_end=_stop_after(1))
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["epoch"] == 1
    resumed = train(_config(tmp_path / "cut", resume=True))
    a = torch.load(full.parent / "last.pt", weights_only=True)
    b = torch.load(resumed.parent / "last.pt", weights_only=True)
    assert b["epoch"] == 3
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    metrics = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    config = json.loads((tmp_path / "cut" / "config.json").read_text())
    assert config["model"] == "mlp" and config["resume"] is True


def test_checkpoint_round_trip_and_errors(tmp_path):
    best = train(_config(tmp_path / "run", epochs=1))
    ckpt = load_checkpoint(best)
    assert ckpt.model == "mlp" and ckpt.dataset == "digits" and ckpt.input_shape == (1, 8, 8)
    assert ckpt.levels == 4 and ckpt.num_classes == 10 and len(ckpt.mean) == 1
    model = ckpt.build_model()
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, ckpt.state_dict[key])
    assert len(checkpoint_sha256(best)) == 64
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(best.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a qcfs-lava checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_train_config_refuses_unknown_optimizer_and_zero_epochs():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\n"
        "from qcfs_lava.train import TrainConfig, train\n"
        "train(TrainConfig(model='cnn', dataset='digits', out_dir=sys.argv[1], width=8,\n"
        "                  epochs=2, batch_size=32, device='cpu'))\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    out = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--standalone", str(script), str(out)],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt.epoch >= 1 and ckpt.best_accuracy > 0.3  # chance is 0.1


def test_checkpoint_fields_come_from_the_checkpoint_dataclass(tmp_path):
    import dataclasses

    from qcfs_lava.checkpoint import Checkpoint, _field_checks, check_checkpoint_dict
    from qcfs_lava.errors import CheckpointError

    names = [f.name for f in dataclasses.fields(Checkpoint)]
    assert list(_field_checks()) == names  # one check per field, none missing or extra
    ck = Checkpoint(model="mlp", model_kwargs={"hidden": 8}, state_dict={"w": torch.ones(2)},
                    levels=4, phi=0.5, activation="qcfs", dataset="digits",
                    input_shape=(1, 8, 8), num_classes=10)
    data = ck.to_dict()
    assert set(data) == {"format", "version", *names}
    fields = check_checkpoint_dict(data, "x.pt")
    assert set(fields) == set(names) and fields["class_names"] == [] and fields["epoch"] == 0
    for key in ("model", "input_shape"):
        broken = {k: v for k, v in data.items() if k != key}
        with pytest.raises(CheckpointError, match=f"'{key}' is missing"):
            check_checkpoint_dict(broken, "x.pt")
