"""``qcfs-lava train`` and ``qcfs-lava evaluate``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from qcfs_lava.cli import main
from qcfs_lava.data import DATASETS
from qcfs_lava.hardware import CHIPS
from qcfs_lava.model.reference import REFERENCE_ARCHS
from qcfs_lava.model.zoo import MODELS


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


def test_help_lists_come_from_the_library_registries(monkeypatch, capsys):
    def help_of(command: str) -> str:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        return " ".join(capsys.readouterr().out.split())

    text = help_of("train")
    assert ", ".join(MODELS) in text and ", ".join(DATASETS) in text.replace("- ", "-")
    assert ", ".join(REFERENCE_ARCHS) in help_of("import-reference")
    assert "{" + ",".join(CHIPS) + "}" in help_of("resources")
    # a new registry entry shows up without touching the CLI
    monkeypatch.setattr("qcfs_lava.model.zoo.MODELS", (*MODELS, "newnet"))
    assert "resnet34, newnet); default cnn" in help_of("train")
    # building the parser stays cheap: the registries' modules load only for the help
    code = "import sys; from qcfs_lava.cli import build_parser; build_parser(); " \
           "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
