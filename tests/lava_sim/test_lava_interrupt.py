"""Ctrl-C during a Lava simulation: exit code 130, one message, no traceback, no process left."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "netx_exports" / "digits-cnn.net"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.lava
@pytest.mark.slow
def test_ctrl_c_during_simulate_exits_130_without_traceback():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
           "QCFS_LAVA_PROGRESS": "lines"}
    # a session of its own, so the signal below reaches exactly what a terminal's Ctrl-C
    # would: the command and every process Lava forked
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from qcfs_lava.cli import main; sys.exit(main())",
         "simulate", str(EXAMPLE), "--steps", "64", "--samples", "359"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )
    try:
        seen = ""
        deadline = time.monotonic() + 180
        while "simulating" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                seen += os.read(proc.stdout.fileno(), 4096).decode(errors="replace")
        assert "simulating" in seen, "the Lava run did not start"
        time.sleep(4)  # inside the run (359 samples x 64 steps take far longer)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-2000:]
    assert "interrupted" in err
    for _ in range(50):  # every process Lava forked is gone too
        if not _group_alive(proc.pid):
            break
        time.sleep(0.1)
    assert not _group_alive(proc.pid), "Lava processes were left running"
