"""A full disk is an error with exit code 2, never a crash or a lost file.

HDF5 files (NetX, NIR) and checkpoints are built in memory and written with plain ``os.write``
calls, so the operating system's ``ENOSPC`` arrives as an ``OSError``. Two ways to fill a disk:
a 64 KiB tmpfs mounted in a temporary folder (where this machine allows ``mount``; the commands
then run in a child process, since the old code died there of a segmentation fault), and, always,
a writer that raises ``ENOSPC``.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qcfs_lava.checkpoint import load_checkpoint, save_checkpoint
from qcfs_lava.cli import main
from qcfs_lava.netx import read_netx, write_netx

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "netx_exports" / "digits-cnn.net"
EXAMPLE_CKPT = ROOT / "netx_exports" / "digits-cnn.pt"


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", "import sys; from qcfs_lava.cli import main; sys.exit(main())",
         *args], capture_output=True, text=True, timeout=timeout, env=env, check=False, cwd=cwd)


@pytest.fixture()
def tiny_fs(tmp_path):
    """A 64 KiB tmpfs in a temporary folder, or a skip saying why there is none."""
    where = tmp_path / "tiny"
    where.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: the ENOSPC-writer tests cover a full disk")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()[:80]}): the ENOSPC-writer "
                    "tests cover a full disk")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def _fill(folder: Path, keep: int = 2048) -> None:
    """Leave about ``keep`` bytes free on ``folder``'s file system."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    if free > keep:
        (folder / "ballast").write_bytes(b"\0" * (free - keep))


@pytest.mark.parametrize("fmt", ["netx", "nir"])
def test_export_onto_a_full_tmpfs_is_a_clean_error(tiny_fs, fmt):
    if fmt == "nir":
        pytest.importorskip("nir", reason="the NIR export needs the [nir] extra")
    out = tiny_fs / f"model.{'net' if fmt == 'netx' else 'nir'}"
    out.write_bytes(b"")  # an earlier (empty) output must survive
    proc = run_cli("export", str(EXAMPLE_CKPT), "--out", str(out), "--steps", "4",
                   "--format", fmt)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-1500:])
    assert "Traceback" not in proc.stderr
    assert "No space left on device" in proc.stderr and str(out) in proc.stderr
    assert ".tmp" not in proc.stderr  # the user's file is named, not a hidden temporary one
    assert out.read_bytes() == b""
    assert sorted(p.name for p in tiny_fs.iterdir()) == [out.name]


def test_calibrate_onto_a_full_tmpfs_is_a_clean_error(tiny_fs):
    _fill(tiny_fs)
    proc = run_cli("calibrate", str(EXAMPLE_CKPT), "--levels", "4", "--samples", "64",
                   "--out", str(tiny_fs / "qcfs.pt"))
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-1500:])
    assert "Traceback" not in proc.stderr and "No space left on device" in proc.stderr
    assert not (tiny_fs / "qcfs.pt").exists()


@pytest.mark.slow
def test_train_onto_a_full_tmpfs_is_a_clean_error(tiny_fs):
    _fill(tiny_fs, keep=8192)
    proc = run_cli("train", "--model", "mlp", "--width", "8", "--epochs", "1",
                   "--out", str(tiny_fs / "run"))
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-1500:])
    assert "Traceback" not in proc.stderr and "No space left on device" in proc.stderr


@pytest.fixture()
def enospc(monkeypatch):
    """Every ``os.write`` of qcfs_lava.io fails as on a full disk."""
    import qcfs_lava.io as qio

    def write(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(qio.os, "write", write)


def test_write_netx_on_a_full_disk_raises_oserror_and_keeps_the_old_file(tmp_path, enospc):
    net = read_netx(EXAMPLE)
    out = tmp_path / "a.net"
    out.write_bytes(b"old")
    with pytest.raises(OSError) as info:
        write_netx(net, out, config={"command": "test"})
    assert info.value.errno == errno.ENOSPC and info.value.filename in (str(out), str(
        out.with_name(out.name + ".json")))
    assert out.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["a.net"]


def test_save_checkpoint_on_a_full_disk_raises_oserror(tmp_path, enospc):
    ckpt = load_checkpoint(EXAMPLE_CKPT)
    with pytest.raises(OSError) as info:
        save_checkpoint(ckpt, tmp_path / "c.pt")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "c.pt")
    assert os.listdir(tmp_path) == []


def test_cli_on_a_full_disk_exits_2_naming_the_option_file(tmp_path, enospc, capsys):
    out = tmp_path / "x.net"
    assert main(["export", str(EXAMPLE_CKPT), "--out", str(out), "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and ".tmp" not in err
    assert os.listdir(tmp_path) == []


def test_nir_written_in_memory_carries_a_digest_and_reads_back(tmp_path):
    pytest.importorskip("nir", reason="needs the [nir] extra")
    from qcfs_lava.nir_exchange.semantics import read_nir
    from qcfs_lava.safe_hdf5 import DIGEST_MAGIC, verify_hdf5

    out = tmp_path / "m.nir"
    assert main(["export", str(EXAMPLE_CKPT), "--out", str(out), "--format", "nir",
                 "--steps", "4"]) == 0
    assert out.read_bytes().startswith(DIGEST_MAGIC)
    assert verify_hdf5(out).digest
    assert "input" in read_nir(out).nodes
