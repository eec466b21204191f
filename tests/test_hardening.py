"""Bad input ends in one typed error (exit code 2, 130 for Ctrl-C) and no file is lost.

Each test feeds one kind of damaged, ill-typed or misdirected input to the readers or the CLI.
Commands that could crash the interpreter (a damaged HDF5 file) or that need a real Ctrl-C run
in a subprocess.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from qcfs_lava.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from qcfs_lava.cli import main
from qcfs_lava.data import DataSplit, load_dataset
from qcfs_lava.emulator import emulate
from qcfs_lava.errors import CheckpointError, DatasetError, NetxFormatError
from qcfs_lava.model.zoo import build_model
from qcfs_lava.netx import read_netx, write_netx

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "netx_exports" / "digits-cnn.net"
EXAMPLE_CKPT = ROOT / "netx_exports" / "digits-cnn.pt"
# The example as format 1 wrote it (no digest header): old files must stay readable.
FORMAT1 = ROOT / "tests" / "data" / "digits-cnn-format1.net"


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


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ck") / "ck.pt"
    path.write_bytes(EXAMPLE_CKPT.read_bytes())
    return path


def checkpoint_dict() -> dict:
    return torch.load(EXAMPLE_CKPT, map_location="cpu", weights_only=True)


# --------------------------------------------------------------------------- damaged NetX files


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


# --------------------------------------------------------------------------- non-finite values


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


# --------------------------------------------------------------------------- ill-typed values


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


# --------------------------------------------------------------------------- checkpoints


BAD_FIELDS = {
    "version": "1",
    "levels": 4.5,
    "model_kwargs": ["not", "a", "dict"],
    "model": 3,
    "mean": [0.1, 0.2],
    "state_dict": [1, 2],
}


@pytest.mark.parametrize("field", sorted(BAD_FIELDS) + ["levels0", "dataset"])
def test_ill_typed_checkpoint_fields_are_refused(tmp_path, field, capsys):
    data = checkpoint_dict()
    if field == "levels0":
        data["levels"] = 0
    elif field == "dataset":
        data["dataset"] = "imagenet-from-mars"
    else:
        data[field] = BAD_FIELDS[field]
    path = tmp_path / "bad.pt"
    torch.save(data, path)
    key = "levels" if field == "levels0" else field
    with pytest.raises(CheckpointError, match=rf"bad\.pt is invalid: .*'{key}'"):
        load_checkpoint(path)
    out = tmp_path / "bad.net"
    assert main(["export", str(path), "--out", str(out)]) == 2
    assert "bad.pt is invalid" in capsys.readouterr().err
    assert not out.exists()


# --------------------------------------------------------------------------- counts


@pytest.mark.parametrize("value", ["0", "-5"])
def test_samples_must_be_positive(ckpt_path, value, capsys):
    for command, source in (("evaluate", ckpt_path), ("emulate", ckpt_path),
                            ("simulate", EXAMPLE)):
        with pytest.raises(SystemExit) as exc:
            main([command, str(source), f"--samples={value}"])
        assert exc.value.code == 2
        assert "--samples: must be >= 1" in capsys.readouterr().err


# --------------------------------------------------------------------------- output paths


def test_export_out_that_is_a_directory_or_blocked_json(ckpt_path, tmp_path, capsys):
    assert main(["export", str(ckpt_path), "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    out = tmp_path / "f.net"
    (tmp_path / "f.net.json").mkdir()
    assert main(["export", str(ckpt_path), "--out", str(out)]) == 2
    assert "f.net.json is a directory" in capsys.readouterr().err
    assert not out.exists()


def test_json_in_an_unwritable_place_is_refused_before_any_work(ckpt_path, tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder\n")
    for command in ("emulate", "evaluate"):
        rc = main([command, str(ckpt_path), "--samples", "2", "--steps", "1",
                   "--json", str(blocker / "out.json")])
        captured = capsys.readouterr()
        assert rc == 2
        assert "is not a directory" in captured.err and "--json" in captured.err
        assert "accuracy" not in captured.out  # refused before computing anything


def test_read_only_folder_is_refused_before_any_work(ckpt_path, tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("running as root: a read-only folder is still writable")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert main(["export", str(ckpt_path), "--out", str(folder / "f.net")]) == 2
        assert "not writable" in capsys.readouterr().err
    finally:
        folder.chmod(0o755)


# --------------------------------------------------------------------------- overwriting


def test_export_never_overwrites_its_input(tmp_path, capsys):
    ck = tmp_path / "ck.pt"
    ck.write_bytes(EXAMPLE_CKPT.read_bytes())
    before = ck.read_bytes()
    for extra in ([], ["--force"]):
        assert main(["export", str(ck), "--out", str(ck), *extra]) == 2
        assert "is the input file" in capsys.readouterr().err
    assert ck.read_bytes() == before


def test_json_over_a_checkpoint_needs_force(ckpt_path, tmp_path, capsys):
    victim = tmp_path / "other.pt"
    victim.write_bytes(EXAMPLE_CKPT.read_bytes())
    before = victim.read_bytes()
    rc = main(["emulate", str(EXAMPLE), "--samples", "2", "--steps", "1", "--json", str(victim)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "is a torch checkpoint" in err and "--force" in err
    assert victim.read_bytes() == before
    rc = main(["emulate", str(EXAMPLE), "--samples", "2", "--steps", "1", "--json", str(victim),
               "--force"])
    assert rc == 0 and json.loads(victim.read_text())["command"] == "emulate"


# --------------------------------------------------------------------------- the .net/.json pair


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


# --------------------------------------------------------------------------- reference weights


def _reference():
    from test_reference import resnet20_reference

    return resnet20_reference(width=4)


@pytest.mark.parametrize("damage", ["transposed", "nan", "threshold"])
def test_reference_import_checks_shapes_and_values(tmp_path, damage, capsys):
    sd = _reference()
    if damage == "transposed":
        sd["fc.weight"] = sd["fc.weight"].t().contiguous()  # (16, 10) instead of (10, 16)
    elif damage == "nan":
        sd["conv1.0.weight"][0, 0, 0, 0] = float("nan")
    else:
        sd["conv1.2.thresh"] = -sd["conv1.2.thresh"].abs()
    src = tmp_path / "ref.pth"
    torch.save(sd, src)
    out = tmp_path / "ck.pt"
    rc = main(["import-reference", str(src), "--arch", "resnet20", "--levels", "4",
               "--in-channels", "3", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    needle = {"transposed": "fc.weight: reference shape (16, 10), model needs (10, 16)",
              "nan": "conv1.0.weight: holds NaN", "threshold": "must be > 0"}[damage]
    assert needle in err
    assert not out.exists()


# --------------------------------------------------------------------------- input shape


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


# --------------------------------------------------------------------------- resuming training


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from qcfs_lava.train import TrainConfig, train

    out = tmp_path_factory.mktemp("run")
    train(TrainConfig(model="mlp", dataset="digits", out_dir=str(out), epochs=2, width=8,
                      batch_size=256))
    return out


@pytest.mark.parametrize("content", ["empty", "list", "unsafe"])
def test_resume_from_a_bad_last_pt(trained_run, tmp_path, content, capsys):
    out = tmp_path / "run"
    out.mkdir()
    last = out / "last.pt"
    if content == "empty":
        last.write_bytes(b"")
    elif content == "list":
        torch.save([1, 2, 3], last)
    else:
        last.write_bytes(pickle.dumps(_Evil(), protocol=2))  # refused under weights_only
    rc = main(["train", "--model", "mlp", "--out", str(out), "--resume", "--epochs", "1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "cannot resume from" in err and "last.pt" in err


def test_resume_with_fewer_epochs_is_refused(trained_run, capsys):
    config = (trained_run / "config.json").read_text()
    rc = main(["train", "--model", "mlp", "--width", "8", "--batch-size", "256",
               "--out", str(trained_run), "--resume", "--epochs", "1"])
    assert rc == 2
    assert "already trained 2 epochs" in capsys.readouterr().err
    assert (trained_run / "config.json").read_text() == config  # not rewritten
    assert len(json.loads((trained_run / "metrics.json").read_text())) == 2


# --------------------------------------------------------------------------- Ctrl-C, progress


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


# --------------------------------------------------------------------------- messages


class _Evil:
    def __reduce__(self):
        return (os.system, ("true",))


def test_unsafe_pickle_message_keeps_torchs_explanation(tmp_path):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"format": _Evil()}, protocol=2))
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    text = str(exc.value)
    assert "refusing to load checkpoint" in text and "weights_only" in text
    assert "posix.system" in text  # torch's explanation of what was blocked, not cut away
    assert len(text) > 200


def test_a_net_file_given_as_checkpoint_says_so(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(EXAMPLE), "--out", str(out)]) == 2
    assert "is a NetX (.net) file, not a checkpoint" in capsys.readouterr().err
    assert not out.exists()  # no empty output folder left behind
    assert main(["evaluate", str(EXAMPLE)]) == 2
    assert "is a NetX (.net) file, not a checkpoint" in capsys.readouterr().err


def test_dataset_messages_name_cli_options(tmp_path):
    with pytest.raises(DatasetError, match="--data-root"):
        load_dataset("mnist")
    with pytest.raises(DatasetError) as exc:
        load_dataset("cifar10", tmp_path)
    assert "--data-root" in str(exc.value) or "qcfs-lava train" in str(exc.value)
    assert "(--download)" not in str(exc.value)


def test_checkpoint_round_trip_still_loads(ckpt_path):
    ck = load_checkpoint(ckpt_path)
    assert isinstance(ck, Checkpoint) and ck.levels == 4 and ck.input_shape == (1, 8, 8)
    again = ck.to_dict()
    save_checkpoint(ck, ckpt_path.parent / "again.pt")
    assert load_checkpoint(ckpt_path.parent / "again.pt").to_dict()["mean"] == again["mean"]
    assert build_model(ck.model, **ck.model_kwargs) is not None
