"""Ctrl-C during a command: exit code 130, no traceback."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import pytest
from repo_files import EXAMPLE, ROOT


@pytest.mark.slow
def test_ctrl_c_exits_130_without_traceback():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QCFS_LAVA_PROGRESS": "bars"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from qcfs_lava.cli import main; sys.exit(main())",
         "emulate", str(EXAMPLE), "--steps", "100000", "--samples", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # Ctrl-C's default action, as in a terminal's foreground job: a test run started in
        # the background of a non-interactive shell ignores SIGINT, and Python keeps an
        # inherited "ignore" (no KeyboardInterrupt at all)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        seen = ""
        deadline = time.monotonic() + 120
        while "emulate:" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready:
                seen += os.read(proc.stderr.fileno(), 4096).decode(errors="replace")
        assert "emulate:" in seen, "no progress bar appeared"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in seen + err and "interrupted" in seen + err
