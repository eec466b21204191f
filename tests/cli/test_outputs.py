"""One output-path rule for every command that writes.

The rule, applied before any work: the path is resolved (``..``, symbolic links) and compared
with every input of the command (network, checkpoint, dataset file, NIR file); an input is never
replaced, not even with ``--force``; an existing file of another kind needs ``--force``; a
folder, a device, a named pipe or another special file is never replaced; the folder must really
take a new file. Each case runs the command in-process and checks that it exits 2 before any
work, naming the option, with every file as it was.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest

from qcfs_lava.checkpoint import load_checkpoint, save_checkpoint
from qcfs_lava.cli import main
from qcfs_lava.data import load_dataset

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "netx_exports" / "digits-cnn.net"
EXAMPLE_CKPT = ROOT / "netx_exports" / "digits-cnn.pt"


@pytest.fixture()
def work(tmp_path, monkeypatch):
    """A working folder holding copies of the committed digits files and a digits npz."""
    shutil.copy(EXAMPLE, tmp_path / "in.net")
    shutil.copy(EXAMPLE_CKPT, tmp_path / "v1.pt")
    split = load_dataset("digits")
    np.savez(tmp_path / "ds.npz", x=split.x_test[:40], y=split.y_test[:40],
             x_test=split.x_test[:20], y_test=split.y_test[:20])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def refused(capsys, argv: list[str], *needles: str) -> str:
    """Run ``qcfs-lava ARGV``; it must exit 2 before any work (nothing printed to stdout)."""
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2, (rc, out[-500:], err[-800:])
    assert out == "", out[-500:]  # refused before any work
    for needle in needles:
        assert needle in err, err
    return err


# --------------------------------------------------------------------------- 1: spelled inputs


@pytest.mark.parametrize("spelling", ["nothere/../{}", "./sub/../{}", "link-to-input", "hardlink"])
@pytest.mark.parametrize("command", ["export", "emulate", "evaluate", "simulate", "calibrate"])
def test_an_input_spelled_another_way_is_never_replaced(work, capsys, command, spelling):
    source = "in.net" if command == "simulate" else "v1.pt"
    if spelling == "link-to-input":
        os.symlink(work / source, work / "alias")
        target = "alias"
    elif spelling == "hardlink":
        os.link(work / source, work / "alias")
        target = "alias"
    else:
        (work / "sub").mkdir()
        target = spelling.format(source)
    before = snapshot(work)
    argv = {
        "export": ["export", source, "--out", target, "--steps", "4", "--force"],
        "emulate": ["emulate", source, "--json", target, "--force"],
        "evaluate": ["evaluate", source, "--json", target, "--force"],
        "simulate": ["simulate", source, "--json", target, "--force"],
        "calibrate": ["calibrate", source, "--levels", "4", "--out", target, "--force"],
    }[command]
    refused(capsys, argv, "is the input file")
    assert snapshot(work) == before
    assert not (work / "nothere").exists()


# --------------------------------------------------------------------------- 2: resources


def test_resources_json_follows_the_rule(work, capsys):
    before = snapshot(work)
    refused(capsys, ["resources", "in.net", "--json", "in.net"], "is the input file")
    refused(capsys, ["resources", "in.net", "--json", "nothere/../in.net", "--force"],
            "is the input file")
    refused(capsys, ["resources", "in.net", "--json", "v1.pt"], "torch checkpoint", "--force")
    assert snapshot(work) == before
    assert main(["resources", "in.net", "--json", "v1.pt", "--force"]) == 0  # same-kind rule
    assert (work / "v1.pt").read_bytes().startswith(b"{")


def test_special_files_are_never_replaced(work, capsys):
    os.mkfifo(work / "pipe")
    targets = ["pipe"]
    try:
        os.mknod(work / "dev", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        targets.append("dev")
    except (PermissionError, OSError):
        pass  # without the right to make a device node, the named pipe stands for it
    for name in targets:
        for argv in (["resources", "in.net", "--json", name, "--force"],
                     ["emulate", "in.net", "--json", name, "--force"],
                     ["export", "v1.pt", "--out", name, "--force"]):
            refused(capsys, argv, "not a regular file")
        mode = os.lstat(work / name).st_mode
        assert stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)
    if "dev" in targets:
        assert stat.S_ISCHR(os.lstat(work / "dev").st_mode)


# --------------------------------------------------------------------------- 3: run-nir


@pytest.fixture()
def nir_file(work):
    pytest.importorskip("nir", reason="run-nir needs the [nir] extra")
    assert main(["export", "v1.pt", "--out", "in.nir", "--format", "nir", "--steps", "4"]) == 0
    return work / "in.nir"


def test_run_nir_json_never_replaces_its_inputs(nir_file, work, capsys):
    capsys.readouterr()
    before = snapshot(work)
    refused(capsys, ["run-nir", "in.nir", "--json", "in.nir", "--force"], "is the input file")
    refused(capsys, ["run-nir", "in.nir", "--dataset", "npz:ds.npz", "--json", "ds.npz",
                     "--force"], "is the input file")
    refused(capsys, ["run-nir", "in.nir", "--checkpoint", "v1.pt", "--json", "x/../v1.pt",
                     "--force"], "is the input file")
    refused(capsys, ["run-nir", "in.nir", "--json", "in.net"], "--force")
    assert snapshot(work) == before


# --------------------------------------------------------------------------- 4: calibrate


def test_calibrate_needs_force_over_another_kind_and_guards_its_sidecar(work, capsys):
    before = snapshot(work)
    refused(capsys, ["calibrate", "v1.pt", "--levels", "4", "--out", "in.net"],
            "HDF5", "--force")
    # the sidecar OUT.json is an output too: an input named OUT.json is never replaced
    shutil.copy(work / "v1.pt", work / "q.pt.json")
    refused(capsys, ["calibrate", "q.pt.json", "--levels", "4", "--out", "q.pt", "--force"],
            "is the input file")
    # a --data-root that is a file (cifar10-subset's .npz) is an input as well
    (work / "x.pt.json").write_bytes(b"PK\x03\x04")
    refused(capsys, ["calibrate", "v1.pt", "--levels", "4", "--out", "x.pt", "--force",
                     "--data-root", "x.pt.json"], "is the input file")
    assert (work / "x.pt.json").read_bytes() == b"PK\x03\x04"
    kept = {k: v for k, v in snapshot(work).items() if k not in ("q.pt.json", "x.pt.json")}
    assert kept == before


# --------------------------------------------------------------------------- 5: datasets


def test_a_dataset_file_is_never_replaced_even_with_force(work, capsys):
    before = snapshot(work)
    for argv in (["emulate", "in.net", "--dataset", "npz:ds.npz", "--json", "ds.npz"],
                 ["evaluate", "v1.pt", "--dataset", "npz:ds.npz", "--json", "./ds.npz"],
                 ["simulate", "in.net", "--dataset", "npz:ds.npz", "--json", "ds.npz"],
                 ["resources", "in.net", "--samples", "4", "--dataset", "npz:ds.npz",
                  "--json", "ds.npz"]):
        refused(capsys, [*argv, "--force"], "is the input file")
    assert snapshot(work) == before


def test_a_dataset_recorded_in_the_checkpoint_is_an_input_too(work, capsys):
    ckpt = load_checkpoint(work / "v1.pt")
    save_checkpoint(dataclasses.replace(ckpt, dataset=f"npz:{work / 'ds.npz'}"), work / "r.pt")
    before = snapshot(work)
    rc = main(["emulate", "r.pt", "--json", "ds.npz", "--force", "--steps", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "is the input file" in err, err
    assert snapshot(work) == before


def test_two_outputs_of_one_command_may_not_coincide(work, capsys):
    os.symlink("a.net", work / "a.net.json")  # the sidecar would land on the .net itself
    refused(capsys, ["export", "v1.pt", "--out", "a.net", "--steps", "2", "--force"],
            "also the command's output")


# --------------------------------------------------------------------------- 19: before work


def test_unwritable_places_are_refused_before_any_work(work, capsys):
    (work / "folder").mkdir()
    refused(capsys, ["emulate", "in.net", "--json", "folder"], "--json", "directory")
    refused(capsys, ["resources", "in.net", "--json", "folder"], "--json", "directory")
    if Path("/proc/self").is_dir():
        for argv in (["emulate", "in.net", "--json", "/proc/qcfs-lava.json"],
                     ["resources", "in.net", "--json", "/proc/qcfs-lava.json"],
                     ["calibrate", "v1.pt", "--levels", "4", "--out", "/proc/q.pt"]):
            err = refused(capsys, argv, "cannot write in the folder /proc")
            assert ".tmp" not in err


def test_a_read_only_mount_is_refused_before_any_work(work, capsys):
    ro = work / "ro"
    ro.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here ({proc.stderr.strip()[:80]}); /proc "
                    "stands for an unwritable folder in the other test")
    try:
        refused(capsys, ["calibrate", "v1.pt", "--levels", "4", "--out", str(ro / "q.pt")],
                "--out", "cannot write in the folder", "Read-only")
        refused(capsys, ["export", "v1.pt", "--out", str(ro / "q.net")], "Read-only")
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def test_json_config_records_only_the_options(work, capsys):
    import json

    assert main(["emulate", "in.net", "--samples", "2", "--steps", "1", "--json", "r.json"]) == 0
    config = json.loads((work / "r.json").read_text())["config"]
    assert config["json"] == "r.json" and not [k for k in config if k.startswith("_")]
