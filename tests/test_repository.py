"""The repository stands on its own: its docs cite only files it contains."""

from __future__ import annotations

import re
from pathlib import Path

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
