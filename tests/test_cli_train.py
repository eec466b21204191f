"""``qcfs-lava train`` and ``qcfs-lava evaluate``."""

from __future__ import annotations

import json

from qcfs_lava.cli import main


def test_train_then_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "cnn", "--width", "4", "--epochs", "2",
                 "--out", str(out)]) == 0
    assert (out / "best.pt").is_file() and (out / "config.json").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["epochs"] == 2 and config["width"] == 4 and config["thresh"] == 4.0
    report = tmp_path / "eval.json"
    assert main(["evaluate", str(out / "best.pt"), "--steps", "1,4", "--samples", "50",
                 "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "ANN (qcfs) accuracy" in printed and "float SNN T=4" in printed
    result = json.loads(report.read_text())
    assert result["samples"] == 50 and set(result["snn_accuracy"]) == {"1", "4"}
    assert 0 <= result["ann_accuracy"] <= 1 and len(result["sha256"]) == 64


def test_evaluate_missing_checkpoint_is_a_clean_error(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "none.pt")]) == 2
    assert "not found" in capsys.readouterr().err
