"""Bad arguments and inputs to the CLI end in exit code 2 with a message naming the option."""

from __future__ import annotations

import numpy as np
import pytest
from repo_files import EXAMPLE

from qcfs_lava.cli import main
from qcfs_lava.data import DataSplit, load_dataset
from qcfs_lava.errors import DatasetError


@pytest.mark.parametrize("value", ["0", "-5"])
def test_samples_must_be_positive(ckpt_path, value, capsys):
    for command, source in (("evaluate", ckpt_path), ("emulate", ckpt_path),
                            ("simulate", EXAMPLE)):
        with pytest.raises(SystemExit) as exc:
            main([command, str(source), f"--samples={value}"])
        assert exc.value.code == 2
        assert "--samples: must be >= 1" in capsys.readouterr().err


def test_evaluate_checks_the_input_shape(ckpt_path, monkeypatch, capsys):
    import qcfs_lava.data as data

    big = np.zeros((6, 1, 28, 28), dtype=np.uint8)
    labels = np.arange(6) % 2
    fake = DataSplit("mnist", big, labels, big, labels, np.array([0.1]), np.array([0.3]),
                     [str(i) for i in range(10)])
    monkeypatch.setattr(data, "load_dataset", lambda name, root=None, **kw: fake)
    rc = main(["evaluate", str(ckpt_path), "--dataset", "mnist", "--steps", "1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "(1, 28, 28)" in err and "(1, 8, 8)" in err and "--dataset digits" in err


def test_dataset_messages_name_cli_options(tmp_path):
    with pytest.raises(DatasetError, match="--data-root"):
        load_dataset("mnist")
    with pytest.raises(DatasetError) as exc:
        load_dataset("cifar10", tmp_path)
    assert "--data-root" in str(exc.value) or "qcfs-lava train" in str(exc.value)
    assert "(--download)" not in str(exc.value)
