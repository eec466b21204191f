"""Argument ranges checked where they are parsed.

A value no reader would accept later (levels above LEVELS_MAX, a NaN or out-of-range phi, a
recorded T above STEPS_MAX) or no run can use (a batch size below 1) is a usage error, exit 2,
before any work: never a checkpoint every other command then refuses as damaged, never a
traceback, never a run that reports 0.00%.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qcfs_lava.calibrate import CalibrationConfig
from qcfs_lava.cli import main
from qcfs_lava.train import TrainConfig
from qcfs_lava.validate import LEVELS_MAX, STEPS_MAX

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "netx_exports" / "digits-cnn.net"
EXAMPLE_CKPT = ROOT / "netx_exports" / "digits-cnn.pt"


def usage_error(capsys, argv: list[str], needle: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, err


@pytest.mark.parametrize("value", ["0", "-3", "abc", "1.5"])
def test_resources_batch_size_must_be_positive(capsys, value):
    usage_error(capsys, ["resources", str(EXAMPLE), "--samples", "4", "--batch-size", value],
                "--batch-size")


@pytest.mark.parametrize(("option", "value"), [
    ("--levels", "1000000000"), ("--levels", str(LEVELS_MAX + 1)), ("--levels", "0"),
    ("--phi", "nan"), ("--phi", "5"), ("--phi", "-0.1"), ("--phi", "inf"),
])
def test_calibrate_ranges(capsys, tmp_path, option, value):
    argv = ["calibrate", str(EXAMPLE_CKPT), "--levels", "4", "--out", str(tmp_path / "q.pt")]
    argv += [option, value]
    usage_error(capsys, argv, option)
    assert not (tmp_path / "q.pt").exists()


@pytest.mark.parametrize(("option", "value"), [
    ("--levels", "1000000000"), ("--phi", "nan"), ("--phi", "2"),
])
def test_train_ranges(capsys, tmp_path, option, value):
    usage_error(capsys, ["train", "--out", str(tmp_path / "run"), option, value], option)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", [str(STEPS_MAX + 1), "1000000000"])
def test_export_steps_at_most_the_recorded_maximum(capsys, tmp_path, value):
    usage_error(capsys, ["export", str(EXAMPLE_CKPT), "--out", str(tmp_path / "a.net"),
                         "--steps", value], "--steps")


def test_import_reference_levels_range(capsys, tmp_path):
    usage_error(capsys, ["import-reference", "x.pth", "--arch", "vgg16", "--levels",
                         str(LEVELS_MAX + 1), "--out", str(tmp_path / "o.pt")], "--levels")


@pytest.mark.parametrize("kwargs", [{"levels": 10**9}, {"phi": float("nan")}, {"phi": 5.0}])
def test_library_configs_refuse_the_same_values(kwargs):
    with pytest.raises(ValueError):
        CalibrationConfig(**{"levels": 4, **kwargs})
    with pytest.raises(ValueError):
        TrainConfig(model="mlp", dataset="digits", out_dir="unused", **kwargs)


def test_the_edges_of_the_ranges_are_accepted():
    CalibrationConfig(levels=LEVELS_MAX, phi=0.0)
    CalibrationConfig(levels=1, phi=1.0)
