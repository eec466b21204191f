"""Joining a Ray cluster: bounded, typed, interruptible.

``simulate --workers N --address A`` checks that a Ray (gRPC) server answers at ``A`` within
``RAY_CONNECT_TIMEOUT_S`` before Ray's own connection code (which retries for minutes) runs;
``auto`` without a cluster and ``ray://`` without Ray Client are typed errors naming the fix;
Ctrl-C ends the command within 2 s; ``QCFS_LAVA_PROGRESS=off`` silences the sharded run.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fake_ray import FakeRay

from qcfs_lava.cli import main
from qcfs_lava.emulator import emulate
from qcfs_lava.errors import LavaSimulationError, MissingExtraError
from qcfs_lava.lava_sim import shards
from qcfs_lava.netx import read_netx

ray = pytest.importorskip("ray", reason="ray is not installed (pip install \"qcfs-lava[ray]\")")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "netx_exports" / "digits-cnn.net"


@pytest.fixture()
def silent_port():
    """A port that accepts connections (the kernel's backlog) but never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture()
def closed_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    return port


def test_a_silent_address_is_refused_within_the_timeout(silent_port):
    t0 = time.monotonic()
    with pytest.raises(LavaSimulationError, match="no answer within"):
        shards._check_address(f"127.0.0.1:{silent_port}", timeout_s=1.0)
    assert time.monotonic() - t0 < 10


def test_nothing_listening_is_a_typed_error_at_once(closed_port, capsys):
    t0 = time.monotonic()
    rc = main(["simulate", str(EXAMPLE), "--workers", "2", "--samples", "2",
               "--address", f"127.0.0.1:{closed_port}"])
    err = capsys.readouterr().err
    assert rc == 2 and "no Ray cluster answers" in err and "--address" in err, err
    assert "disk space" not in err
    assert time.monotonic() - t0 < shards.RAY_CONNECT_TIMEOUT_S + 30


def test_a_non_ray_service_is_refused(monkeypatch):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    import threading

    def answer_http():
        conn, _ = server.accept()
        conn.recv(64)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        conn.close()

    thread = threading.Thread(target=answer_http, daemon=True)
    thread.start()
    try:
        with pytest.raises(LavaSimulationError, match="not a Ray"):
            shards._check_address(f"127.0.0.1:{port}")
    finally:
        server.close()


@pytest.mark.parametrize("address", ["auto", "nonsense", "host:notaport"])
def test_auto_without_a_cluster_and_bad_addresses_name_the_fix(address, monkeypatch, capsys):
    from ray._private import services

    def no_cluster(addr, temp_dir=None):
        if addr == "auto":  # what Ray raises when it finds no running instance
            raise ConnectionError("Could not find any running Ray instance.")
        return services.__dict__["_original_canonicalize"](addr, temp_dir)

    monkeypatch.setitem(services.__dict__, "_original_canonicalize",
                        services.canonicalize_bootstrap_address)
    monkeypatch.setattr(services, "canonicalize_bootstrap_address", no_cluster)
    rc = main(["simulate", str(EXAMPLE), "--workers", "2", "--samples", "2",
               "--address", address])
    err = capsys.readouterr().err
    assert rc == 2 and "--address" in err and "ray status" in err, err
    assert "disk space" not in err and "Traceback" not in err


def test_ray_client_address_without_the_extra_names_it(monkeypatch):
    from ray._private import utils

    monkeypatch.setattr(utils, "get_ray_client_dependency_error",
                        lambda: "No module named 'grpc'")
    with pytest.raises(MissingExtraError, match=r"ray\[client\]"):
        shards._check_address("ray://127.0.0.1:10001")


def test_ctrl_c_ends_a_hanging_connection_within_2_s(silent_port):
    """The command answers Ctrl-C at once (its message within 2 s; Ray's own connection code
    took 30 s or ignored it); the interpreter's teardown (torch, numpy) follows."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from qcfs_lava.cli import main; sys.exit(main())",
         "simulate", str(EXAMPLE), "--workers", "2", "--samples", "2",
         "--address", f"127.0.0.1:{silent_port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        seen = b""
        deadline = time.monotonic() + 120
        while b"simulating" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                seen += os.read(proc.stdout.fileno(), 4096)
        assert b"simulating" in seen, "the command never reached the Ray connection"
        time.sleep(1.0)  # inside the connection attempt now
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        err = b""
        while b"interrupted" not in err and time.monotonic() - t0 < 30:
            ready, _, _ = select.select([proc.stderr], [], [], 0.05)
            if ready:
                chunk = os.read(proc.stderr.fileno(), 4096)
                if not chunk:
                    break
                err += chunk
        answered = time.monotonic() - t0
        proc.wait(timeout=60)
        err += proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-800:]
    assert b"interrupted" in err and b"Traceback" not in err
    assert answered < 2.0, f"Ctrl-C was answered after {answered:.1f} s"


@pytest.mark.parametrize("progress_mode", ["off", "lines", "bars"])
def test_sharded_progress_follows_the_setting(monkeypatch, capsys, progress_mode):
    net = read_netx(EXAMPLE)
    x = np.random.default_rng(0).integers(0, 256, (4, 1, 8, 8), dtype=np.uint8)
    monkeypatch.setitem(sys.modules, "ray", FakeRay())
    monkeypatch.setattr(shards, "_run_shard",
                        lambda net, xs, steps, record, config, *digest: emulate(
                            net, xs, steps, record=record))
    monkeypatch.setenv("QCFS_LAVA_PROGRESS", progress_mode)
    capsys.readouterr()
    result = shards.simulate_sharded(net, x, 2, workers=2, record="counts", progress=True)
    assert result.extra["shards"] == 2
    err = capsys.readouterr().err
    if progress_mode == "bars":
        assert "lava x2 shards" in err
    else:  # no bar; a short run prints no progress line either
        assert err == ""
