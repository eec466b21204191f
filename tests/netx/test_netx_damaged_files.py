"""A damaged, crafted or ill-typed NetX file ends in one typed error; the .net/.json pair holds.

Commands that could crash the interpreter (a damaged HDF5 file) run in a subprocess.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from repo_files import EXAMPLE, FORMAT1, ROOT

from qcfs_lava.cli import main
from qcfs_lava.errors import NetxFormatError
from qcfs_lava.netx import read_netx, write_netx


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``qcfs-lava ARGS`` in a fresh interpreter (a crash there cannot take pytest down)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", "import sys; from qcfs_lava.cli import main; sys.exit(main())",
         *args], capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )


def assert_clean_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def patched(src: Path, dst: Path, offset: int, value: int) -> Path:
    data = bytearray(src.read_bytes())
    data[offset] = value
    dst.write_bytes(bytes(data))
    return dst


@contextlib.contextmanager
def crafted(path: Path):
    """Edit with h5py and stamp a matching digest (a crafted, not merely damaged, file)."""
    from qcfs_lava.safe_hdf5 import write_digest_header

    with h5py.File(path, "r+") as f:
        yield f
    write_digest_header(path)


def replace_dataset(f, key: str, value) -> None:
    del f[key]
    f.create_dataset(key, data=value)


@pytest.fixture()
def net_copy(tmp_path) -> Path:
    path = tmp_path / "f.net"
    path.write_bytes(EXAMPLE.read_bytes())
    return path


@pytest.mark.slow
def test_damaged_net_file_that_made_hdf5_raise_is_a_clean_error(tmp_path):
    """One changed byte of a format-1 file made h5py raise RuntimeError in every command."""
    bad = patched(FORMAT1, tmp_path / "f.net", 7952, 0x9E)
    for command in ("inspect", "emulate", "simulate"):
        proc = run_cli(command, str(bad), *(("--samples", "1") if command != "inspect" else ()))
        assert_clean_error(proc, str(bad), "damaged")


def test_damaged_current_file_is_refused_before_parsing(net_copy):
    patched(net_copy, net_copy, 7952, 0x9E)
    with pytest.raises(NetxFormatError, match="do not match the digest"):
        read_netx(net_copy)


@pytest.mark.slow
def test_byte_that_crashed_the_hdf5_library_is_a_clean_error(tmp_path):
    """Byte 8025 = 0xAD of the format-1 file made HDF5 segfault (exit 139) in `inspect`."""
    bad = patched(FORMAT1, tmp_path / "f.net", 8025, 0xAD)
    proc = run_cli("inspect", str(bad))
    assert_clean_error(proc, str(bad), "crashes the HDF5 library", "export the network again")
    # the same byte of the current example (digest header): refused before HDF5 runs
    bad2 = patched(EXAMPLE, tmp_path / "g.net", 8025 + 512, 0xAD)
    assert_clean_error(run_cli("inspect", str(bad2)), "do not match the digest")


def test_format1_file_still_reads():
    old, new = read_netx(FORMAT1), read_netx(EXAMPLE)
    assert old.format_version == 1 and new.format_version == 2
    for a, b in zip(old.layers, new.layers, strict=True):
        assert (a.vth_mant, a.v_init, a.weight_exp) == (b.vth_mant, b.v_init, b.weight_exp)
        for sa, sb in zip(a.synapses, b.synapses, strict=True):
            np.testing.assert_array_equal(sa.weight, sb.weight)


def test_current_file_reads_in_lava_dl_layout():
    """The digest lives in HDF5's user block: plain h5py sees the usual NetX groups."""
    with h5py.File(EXAMPLE, "r") as f:
        assert f.userblock_size == 512
        assert f["layer/1/neuron/vThMant"][()] == read_netx(EXAMPLE).layers[0].vth_mant


@pytest.mark.parametrize("what", ["phi", "metadata"])
def test_nan_in_header_is_a_clean_error(net_copy, what):
    with crafted(net_copy) as f:
        if what == "phi":
            f["qcfs/metadata"].attrs["phi"] = np.float64("nan")
        else:
            f["qcfs/metadata"].attrs["metadata"] = '{"steps": NaN}'
    with pytest.raises(NetxFormatError, match=r"f\.net: .*(finite|NaN)"):
        read_netx(net_copy)


@pytest.mark.parametrize("where", ["vInit", "shape", "format_version"])
def test_inf_where_an_integer_belongs_is_a_clean_error(net_copy, where):
    with crafted(net_copy) as f:
        if where == "vInit":
            replace_dataset(f, "layer/1/neuron/vInit", np.float64("inf"))
        elif where == "shape":
            replace_dataset(f, "layer/1/shape", np.array([np.inf, 6, 6]))
        else:
            f["qcfs"].attrs["format_version"] = np.float64("inf")
    with pytest.raises(NetxFormatError, match=r"f\.net: .*integer"):
        read_netx(net_copy)


ILL_TYPED = {
    "vThMant float": ("layer/1/neuron/vThMant", lambda v: np.float64(v) + 0.9),
    "weights float": ("layer/1/weight", lambda v: v.astype(np.float64)),
    "weights uint64": ("layer/1/weight", lambda v: v.astype(np.int64).astype(np.uint64)),
    "weightExp fraction": ("layer/1/neuron/weightExp", lambda v: np.float64(-1.9)),
    "stride fraction": ("layer/1/stride", lambda v: np.array([2.5, 2.5])),
    "spiking 2": ("layer/1/neuron/spiking", lambda v: np.int8(2)),
}


@pytest.mark.parametrize("case", sorted(ILL_TYPED))
def test_ill_typed_values_are_refused_not_coerced(net_copy, case):
    key, change = ILL_TYPED[case]
    with crafted(net_copy) as f:
        replace_dataset(f, key, change(f[key][()]))
    with pytest.raises(NetxFormatError, match=r"f\.net: "):
        read_netx(net_copy)


def test_interrupt_between_the_two_replacements_keeps_the_pair(tmp_path, monkeypatch):
    """Ctrl-C arrives right after the first file of the pair is moved into place."""
    import qcfs_lava.io as qio
    from qcfs_lava.netx import read_export_config

    net = read_netx(EXAMPLE)
    path = tmp_path / "f.net"
    write_netx(net, path, config={"run": "old"})
    real_replace = os.replace
    calls = []

    def replace_then_interrupt(src, dst):
        real_replace(src, dst)
        calls.append(dst)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the signal is delivered here, between the two replacements

    monkeypatch.setattr(qio.os, "replace", replace_then_interrupt)
    changed = type(net)(net.input_shape, net.layers, net.levels, net.phi,
                        metadata={**net.metadata, "steps": 4})
    with pytest.raises(KeyboardInterrupt):
        write_netx(changed, path, config={"run": "new"})
    assert len(calls) == 2  # both were replaced before the interrupt surfaced
    assert read_export_config(path)["run"] == "new"
    assert read_netx(path).metadata["steps"] == 4


def test_stale_json_beside_a_new_net_is_detected(tmp_path):
    from qcfs_lava.netx import read_export_config

    net = read_netx(EXAMPLE)
    a, b = tmp_path / "a.net", tmp_path / "b.net"
    write_netx(net, a, config={"run": "a"})
    write_netx(type(net)(net.input_shape, net.layers, net.levels, net.phi,
                         metadata={**net.metadata, "steps": 2}), b, config={"run": "b"})
    (tmp_path / "b.net.json").write_bytes((tmp_path / "a.net.json").read_bytes())
    with pytest.raises(NetxFormatError, match=r"b\.net\.json does not belong to .*b\.net"):
        read_export_config(b)
    assert main(["inspect", str(b)]) == 0  # the .net itself is fine; inspect says so
