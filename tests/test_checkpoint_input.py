"""A bad checkpoint (ill-typed fields, an unsafe pickle, a .net file) is refused by name."""

from __future__ import annotations

import pickle

import pytest
import torch
from repo_files import EXAMPLE, EXAMPLE_CKPT, UnsafePickle

from qcfs_lava.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from qcfs_lava.cli import main
from qcfs_lava.errors import CheckpointError
from qcfs_lava.model.zoo import build_model


def checkpoint_dict() -> dict:
    return torch.load(EXAMPLE_CKPT, map_location="cpu", weights_only=True)


BAD_FIELDS = {
    "version": "1",
    "levels": 4.5,
    "model_kwargs": ["not", "a", "dict"],
    "model": 3,
    "mean": [0.1, 0.2],
    "state_dict": [1, 2],
}


@pytest.mark.parametrize("field", sorted(BAD_FIELDS) + ["levels0", "dataset"])
def test_ill_typed_checkpoint_fields_are_refused(tmp_path, field, capsys):
    data = checkpoint_dict()
    if field == "levels0":
        data["levels"] = 0
    elif field == "dataset":
        data["dataset"] = "imagenet-from-mars"
    else:
        data[field] = BAD_FIELDS[field]
    path = tmp_path / "bad.pt"
    torch.save(data, path)
    key = "levels" if field == "levels0" else field
    with pytest.raises(CheckpointError, match=rf"bad\.pt is invalid: .*'{key}'"):
        load_checkpoint(path)
    out = tmp_path / "bad.net"
    assert main(["export", str(path), "--out", str(out)]) == 2
    assert "bad.pt is invalid" in capsys.readouterr().err
    assert not out.exists()


def test_unsafe_pickle_message_keeps_torchs_explanation(tmp_path):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"format": UnsafePickle()}, protocol=2))
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    text = str(exc.value)
    assert "refusing to load checkpoint" in text and "weights_only" in text
    assert "posix.system" in text  # torch's explanation of what was blocked, not cut away
    assert len(text) > 200


def test_a_net_file_given_as_checkpoint_says_so(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(EXAMPLE), "--out", str(out)]) == 2
    assert "is a NetX (.net) file, not a checkpoint" in capsys.readouterr().err
    assert not out.exists()  # no empty output folder left behind
    assert main(["evaluate", str(EXAMPLE)]) == 2
    assert "is a NetX (.net) file, not a checkpoint" in capsys.readouterr().err


def test_checkpoint_round_trip_still_loads(ckpt_path):
    ck = load_checkpoint(ckpt_path)
    assert isinstance(ck, Checkpoint) and ck.levels == 4 and ck.input_shape == (1, 8, 8)
    again = ck.to_dict()
    save_checkpoint(ck, ckpt_path.parent / "again.pt")
    assert load_checkpoint(ckpt_path.parent / "again.pt").to_dict()["mean"] == again["mean"]
    assert build_model(ck.model, **ck.model_kwargs) is not None
