"""Everyday mistakes end in exit code 2, one error line, and nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from qcfs_lava.cli import build_parser, main

EXAMPLES = Path(__file__).resolve().parents[2] / "netx_exports"


def _refused(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "cnnx"], "unknown model 'cnnx'; choose one of mlp, cnn"),
    (["train", "--model", "vgg11"], "multiple of 32, got 8; use a dataset of larger images"),
    (["sweep", "--model", "cnnx"], "unknown model 'cnnx'"),
    (["sweep", "--model", "vgg16", "--levels", "2"], "multiple of 32, got 8"),
])
def test_wrong_model_is_refused_before_any_folder_exists(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    err = _refused([*argv, "--out", str(out)], capsys)
    assert message in err
    assert not out.exists()


def test_vgg_on_digits_names_the_models_that_fit(tmp_path, capsys):
    err = _refused(["train", "--model", "vgg11", "--out", str(tmp_path / "o")], capsys)
    assert "(mlp, cnn, resnet18" in err


@pytest.mark.parametrize("command, source", [("emulate", "digits-cnn.pt"),
                                             ("emulate", "digits-cnn.net"),
                                             ("simulate", "digits-cnn.net"),
                                             ("evaluate", "digits-cnn.pt")])
def test_data_of_another_shape_is_refused_naming_the_files_dataset(command, source, rgb16,
                                                                   capsys):
    err = _refused([command, str(EXAMPLES / source), "--dataset", rgb16, "--samples", "2"],
                   capsys)
    assert "has samples of shape (3, 16, 16)" in err and "takes (1, 8, 8)" in err
    assert "pass --dataset digits" in err


def test_report_on_data_of_another_shape_leaves_no_folder(tmp_path, rgb16, capsys):
    out = tmp_path / "report"
    err = _refused(["report", str(EXAMPLES / "digits-cnn.pt"), "--dataset", rgb16,
                    "--out", str(out)], capsys)
    assert "has samples of shape" in err
    assert not out.exists()


@pytest.fixture(scope="module")
def rgb16(tmp_path_factory) -> str:
    """``--dataset`` value of a small RGB 16x16 dataset (4 classes)."""
    import numpy as np

    path = tmp_path_factory.mktemp("data") / "rgb16.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (40, 3, 16, 16), dtype=np.uint8),
             y=np.repeat(np.arange(4), 10))
    return f"npz:{path}"


def _help(command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[command].format_help()


def test_simulate_help_states_the_real_defaults():
    text = " ".join(_help("simulate").split())
    assert "(default: 16)" in text
    assert "default: the T recorded in the file" in text


def test_simulate_takes_the_files_steps_and_says_when_steps_overrides_it(capsys):
    from qcfs_lava.cli.simulate import FALLBACK_STEPS, _resolve_steps

    assert _resolve_steps(None, 16) == 16
    assert capsys.readouterr().out == ""
    assert _resolve_steps(8, 16) == 8
    assert "--steps 8 overrides the T = 16 recorded in the file" in capsys.readouterr().out
    assert _resolve_steps(16, 16) == 16
    assert capsys.readouterr().out == ""
    assert _resolve_steps(None, None) == FALLBACK_STEPS
    assert "records no T" in capsys.readouterr().out
