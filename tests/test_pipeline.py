"""The chain runner and the one normalisation fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qcfs_lava.checkpoint import Checkpoint, save_checkpoint
from qcfs_lava.data import load_dataset
from qcfs_lava.errors import CheckpointError
from qcfs_lava.model.zoo import build_model
from qcfs_lava.pipeline import load_source, run_chain


def _ckpt(mean, std, activation="qcfs"):
    torch.manual_seed(0)
    kwargs = dict(in_channels=1, num_classes=10, input_size=8, activation=activation,
                  levels=4, phi=0.5, thresh=2.0, width=4)
    model = build_model("cnn", **kwargs)
    return Checkpoint(model="cnn", model_kwargs=kwargs, state_dict=model.state_dict(), levels=4,
                      phi=0.5, activation=activation, dataset="digits", input_shape=(1, 8, 8),
                      num_classes=10, mean=mean, std=std)


def test_normalization_uses_the_recorded_values_else_identity():
    mean, std = _ckpt([0.25], [0.5]).normalization()
    assert mean.tolist() == [0.25] and std.tolist() == [0.5]
    mean, std = _ckpt([], []).normalization()
    assert mean.tolist() == [0.0] and std.tolist() == [1.0]


def test_chain_progress_in_a_log_is_one_line_per_stage(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("QCFS_LAVA_PROGRESS", raising=False)
    path = save_checkpoint(_ckpt([0.5], [0.25]), tmp_path / "c.pt")
    split = load_dataset("digits")
    run_chain(load_source(path), split.x_test[:40], split.y_test[:40], [1, 2], batch_size=8,
              progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    stages = [line.split(":")[0] for line in err.splitlines()]
    assert stages == ["QCFS ANN", "float SNN, T in [1, 2]", "integer SNN, T=1",
                      "integer SNN, T=2"]


def test_chain_without_recorded_normalization_agrees_with_the_converter(tmp_path):
    """The float models and the converter see the same (identity) normalisation."""
    path = save_checkpoint(_ckpt([], []), tmp_path / "bare.pt")
    source = load_source(path, steps=4)
    assert source.sha256 == source.network.metadata["checkpoint_sha256"]
    split = load_dataset("digits")
    chain = run_chain(source, split.x_test[:24], split.y_test[:24], [4], batch_size=8)
    budget = chain.budget
    assert budget.steps == [4] and budget.samples == 24
    assert budget.qcfs_ann is not None and set(budget.float_snn) == {4}
    assert budget.integer_snn[4] == chain.runs[4].accuracy
    assert np.array_equal(chain.runs[4].labels, split.y_test[:24])


def test_load_source_rejects_a_relu_checkpoint(tmp_path):
    path = save_checkpoint(_ckpt([0.5], [0.5], activation="relu"), tmp_path / "relu.pt")
    with pytest.raises(CheckpointError, match="only QCFS models convert"):
        load_source(path)


def test_lava_check_round_trips_and_formats_both_ways():
    from qcfs_lava.pipeline import ErrorBudget, LavaCheck

    ran = LavaCheck(samples=2, steps=4, accuracy=0.5, integer_snn_accuracy_same_subset=0.5,
                    mismatches=0, mismatch_details=(), lava_extra={"wall_s": 1.0})
    skipped = LavaCheck(skipped="ImportError: no lava")
    for check in (ran, skipped):
        assert LavaCheck.from_dict(check.to_dict()) == check
    assert ran.identical and not skipped.identical
    assert skipped.to_dict() == {"skipped": "ImportError: no lava"}
    assert "2 samples" in ran.format() and "0 mismatches" in ran.format()
    assert skipped.format() == "Lava run skipped: ImportError: no lava"
    assert any("**0** (must be 0)" in line for line in ran.format_markdown())
    budget = ErrorBudget(steps=[1, 4], samples=10, qcfs_ann=0.9, float_snn={1: 0.5, 4: 0.8},
                         integer_snn={1: 0.4, 4: 0.8}, lava=ran)
    assert budget.to_dict()["lava"] == ran.to_dict()
    text = budget.format(steps=[4])
    assert "80.00%" in text and "50.00%" not in text.splitlines()[3] and ran.format() in text
    md = budget.format_markdown(4)
    assert "| float SNN (contract section 2) | 80.00% |" in md and "Lava simulation" in md
