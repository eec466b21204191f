"""The emulator's progress counter follows the time steps."""

from __future__ import annotations

from repo_files import EXAMPLE

from qcfs_lava.data import load_dataset
from qcfs_lava.emulator import emulate
from qcfs_lava.netx import read_netx


def test_progress_advances_inside_a_batch(monkeypatch):
    """The emulator's progress counter advances every time step, not once per batch."""
    import qcfs_lava.emulator as emulator_module

    calls: list[tuple[str, int]] = []

    class Recorder:
        def __init__(self, total: int) -> None:
            calls.append(("total", total))

        def update(self, n: int = 1) -> None:
            calls.append(("update", n))

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            return None

    monkeypatch.setattr(emulator_module, "counter", lambda total, **kw: Recorder(total))
    split = load_dataset("digits")
    emulate(read_netx(EXAMPLE), split.x_test[:1], 7, progress=True)
    assert calls == [("total", 7)] + [("update", 1)] * 7
