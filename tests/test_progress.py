"""Progress output: bars on a terminal, one line per finished stage in a log."""

from __future__ import annotations

import numpy as np

from qcfs_lava import progress
from qcfs_lava.emulator import emulate


def test_without_a_terminal_each_stage_prints_one_line_and_no_bar(monkeypatch, capsys):
    monkeypatch.delenv(progress.ENV_VAR, raising=False)
    assert progress.mode() == "lines"  # pytest's captured stderr is not a terminal
    wrapped = progress.bar(range(5), desc="work")
    assert not hasattr(wrapped, "n")  # not a tqdm bar
    assert list(wrapped) == [0, 1, 2, 3, 4]
    wrapped.set_postfix(loss=1.0)
    with progress.stage("stage one"):
        pass
    with progress.stage("quiet", enabled=False):
        pass
    err = capsys.readouterr().err
    assert "\r" not in err
    assert err.splitlines() == [err.splitlines()[0]]
    assert err.startswith("stage one: done in ") and err.endswith(" s\n")


def test_environment_variable_forces_the_mode(monkeypatch, capsys):
    monkeypatch.setenv(progress.ENV_VAR, "bars")
    assert progress.mode() == "bars"
    wrapped = progress.bar(range(3), desc="work")
    assert hasattr(wrapped, "n") and list(wrapped) == [0, 1, 2]
    monkeypatch.setenv(progress.ENV_VAR, "off")
    with progress.stage("silent"):
        pass
    assert "silent" not in capsys.readouterr().err


def test_emulator_progress_in_a_log_has_no_carriage_returns(monkeypatch, capsys):
    from netgen import random_network

    monkeypatch.delenv(progress.ENV_VAR, raising=False)
    net = random_network(np.random.default_rng(0), conv=False)
    x = np.random.default_rng(1).integers(0, 256, (6, *net.input_shape), dtype=np.uint8)
    emulate(net, x, 3, batch_size=2, progress=True)
    assert "\r" not in capsys.readouterr().err


def test_counter_prints_periodic_lines_in_logs(monkeypatch, capsys):
    monkeypatch.setenv(progress.ENV_VAR, "lines")
    ticks = iter([0.0, 3.0, 11.0, 15.0, 22.0, 30.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(ticks))
    with progress.counter(100, desc="emulate", unit="step", interval=10.0) as c:
        for _ in range(5):
            c.update(10)
    err = capsys.readouterr().err.splitlines()
    assert err == ["emulate: 20/100 step (20%), 11 s", "emulate: 40/100 step (40%), 22 s"]


def test_counter_is_silent_when_off(monkeypatch, capsys):
    monkeypatch.setenv(progress.ENV_VAR, "off")
    with progress.counter(10, desc="emulate") as c:
        c.update(10)
    assert capsys.readouterr().err == ""
