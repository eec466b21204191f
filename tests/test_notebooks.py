"""The deployment notebooks run top to bottom and still show what is committed in them.

Each notebook is executed (nbclient) and its text outputs are compared with the committed
ones, so a change that alters what a notebook shows fails here until the notebook is re-run
and committed:

    .venv/bin/python tests/test_notebooks.py [NAME ...]   # re-execute in place (all by default)

Timings and progress lines (stderr) are left out of the comparison, and images are not
compared (their bytes depend on the matplotlib version).
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is a dev dependency")
nbclient = pytest.importorskip("nbclient", reason="nbclient is a dev dependency")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

# notebooks whose numbers cannot repeat exactly, and why; for these only the shape of the
# outputs (which cells print, how many lines) is compared
NOT_REPRODUCIBLE = {
    "01_train": "it trains a model, and training on several CPU threads is not bit-reproducible",
}

_VOLATILE = [
    (re.compile(r"\b\d+(\.\d+)? s\b"), "<seconds> s"),  # "done in 0.6 s"
    (re.compile(r"\d+(\.\d+)? samples/s"), "<rate> samples/s"),
    (re.compile(r"'(wall_s|samples_per_s)': [0-9.e+-]+"), r"'\1': <volatile>"),
]


def execute(path: Path):
    """The notebook at ``path``, executed in its folder (a new node; the file is unchanged)."""
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return nb


def _text(output) -> str | None:
    """What a reader sees of one output, timings masked; None for what is not compared."""
    kind = output.get("output_type")
    if kind == "stream":
        if output.get("name") != "stdout":
            return None  # progress lines and warnings
        text = output.get("text", "")
    elif kind in ("execute_result", "display_data"):
        text = output.get("data", {}).get("text/plain", "")
    elif kind == "error":
        text = f"{output.get('ename')}: {output.get('evalue')}"
    else:
        return None
    text = "".join(text) if isinstance(text, list) else text
    for pattern, repl in _VOLATILE:
        text = pattern.sub(repl, text)
    return text


def shown(nb, exact: bool = True) -> list[tuple[int, str]]:
    """``(cell index, text)`` of every compared output; line counts only when not ``exact``."""
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        text = "".join(t for t in map(_text, cell.get("outputs", [])) if t is not None)
        out.append((i, text if exact else f"{len(text.splitlines())} lines"))
    return out


def test_all_four_notebooks_present():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04"]


def test_comparison_masks_timings_but_not_results():
    def nb(text):
        cell = nbformat.v4.new_code_cell("x")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text),
                        nbformat.v4.new_output("stream", name="stderr", text="12 s")]
        return nbformat.v4.new_notebook(cells=[cell])

    assert shown(nb("done in 1.5 s, 3.2 samples/s\n")) == shown(nb("done in 9 s, 1 samples/s\n"))
    assert shown(nb("format version 1\n")) != shown(nb("format version 2\n"))
    assert shown(nb("acc 98.33%\n"), exact=False) == shown(nb("acc 97.00%\n"), exact=False)


@pytest.mark.slow
@pytest.mark.lava
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes_and_shows_its_committed_outputs(path):
    committed = nbformat.read(path, as_version=4)
    nb = execute(path)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, [_text(e) for e in errors]
    exact = path.stem not in NOT_REPRODUCIBLE
    assert shown(nb, exact) == shown(committed, exact), (
        f"{path.name} now shows other outputs than the committed ones: re-run it with "
        f"`python tests/test_notebooks.py {path.stem}` and commit it")


def main(names: list[str]) -> int:
    """Re-execute the named notebooks (all when none) and write them back with their outputs."""
    chosen = [p for p in NOTEBOOKS if not names or p.stem in names or p.name in names]
    for path in chosen:
        print(f"executing {path.name} ...", flush=True)
        nb = execute(path)
        clean = copy.deepcopy(nb)
        nbformat.validate(clean)
        nbformat.write(clean, path)
    return 0 if chosen else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
