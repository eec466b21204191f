"""The repository stands on its own: its docs cite only files it contains."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".py", ".md", ".ipynb", ".toml", ".json", ".txt", ".cfg", ".yaml", ".yml"}
# built from parts so that this file does not match itself
OUTSIDE_SPEC = re.compile(r"\b" + "SP" + r"EC\b|\.\./shared/" + "SP" + "EC")


def _text_files():
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in {".git", ".venv", "runs", "data"} or not path.is_file():
            continue
        if path.suffix in TEXT_SUFFIXES or path.name in {"Makefile", "run"}:
            yield path


def test_no_file_cites_a_contract_outside_the_repository():
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in _text_files()
                 for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
                 if OUTSIDE_SPEC.search(line)]
    assert not offenders, offenders


def test_the_contract_is_in_the_repository_and_linked_from_the_readme():
    contract = ROOT / "docs" / "contract.md"
    text = contract.read_text()
    for n in range(1, 7):
        assert f"\n## {n}. " in text
    assert "docs/contract.md" in (ROOT / "README.md").read_text()


README = (ROOT / "README.md").read_text()
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _relative_links(path: Path) -> list[str]:
    return [t for t in LINK.findall(path.read_text()) if "://" not in t]


def test_readme_is_a_short_door():
    assert len(README.splitlines()) <= 200
    for section in ("## Two commands", "## A five-minute tour", "## In Python",
                    "## Results at a glance", "## Where to go next", "## Layout"):
        assert section in README, section
    assert "make demo" in README and "make test" in README


def test_readme_spells_commands_one_way():
    """Activation is said once; every command after it is the bare ``qcfs-lava``."""
    assert ". .venv/bin/activate" in README
    for other in (".venv/bin/qcfs-lava", "$B/qcfs-lava", "python -m qcfs_lava "):
        assert other not in README, other


def test_every_docs_page_is_linked_from_the_readme():
    linked = {t for t in _relative_links(ROOT / "README.md")}
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert pages - linked == set()


@pytest.mark.parametrize("page", ["README.md", "netx_exports/README.md",
                                  *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))])
def test_relative_links_point_at_files_in_the_repository(page):
    path = ROOT / page
    missing = [t for t in _relative_links(path) if not (path.parent / t).exists()]
    assert not missing, missing


@pytest.mark.slow
@pytest.mark.lava
def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    """The README's Python example runs as printed (its output folder moved to a tmp dir)."""
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    assert "runs/readme/" in code
    monkeypatch.chdir(ROOT)
    exec(compile(code.replace("runs/readme/", f"{tmp_path}/"), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert re.search(r"emulator \d+\.\d\d%, Lava \d+\.\d\d%", out), out


def test_licence_citation_and_changelog():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "BSD-3-Clause"  # an SPDX expression, not a table
    assert (ROOT / "LICENSE").read_text().startswith("BSD 3-Clause License")
    citation = (ROOT / "CITATION.cff").read_text()
    assert "cff-version:" in citation
    assert ("Optimal ANN-SNN Conversion for High-accuracy and Ultra-low-latency Spiking Neural "
            "Networks") in citation
    assert "year: 2022" in citation and "qcfs-lava" in citation
    assert "## Unreleased" in (ROOT / "CHANGELOG.md").read_text()
