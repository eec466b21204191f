"""Output paths: a blocked, unwritable or overwriting target is refused before any work."""

from __future__ import annotations

import json
import os

import pytest
from repo_files import EXAMPLE, EXAMPLE_CKPT

from qcfs_lava.cli import main


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
