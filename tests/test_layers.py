"""The package's layers: every import points down (or sideways, without a cycle).

A *room* is a top-level module or sub-package of ``qcfs_lava``. Each room sits on one layer of
:data:`LAYERS`; a module may import rooms on its own layer or below, never above, and the rooms
never import each other in a circle. Imports inside functions count too. The check reads the
source with :mod:`ast`, so it sees every import, taken or not.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "qcfs_lava"

# layer -> rooms; "__init__" is the package root (it holds ``__version__``)
LAYERS: dict[int, tuple[str, ...]] = {
    0: ("__init__", "errors", "hardware", "validate", "io", "progress", "interrupt",
        "safe_hdf5", "geometry"),
    1: ("model", "data"),
    2: ("checkpoint", "snn", "calibrate", "train", "finetune"),
    3: ("network", "convert", "netx", "netx_format", "results", "digest"),
    4: ("emulator", "lava_sim", "nir_exchange"),
    5: ("analysis",),
    6: ("pipeline", "report", "sweep", "demo"),
    7: ("cli", "__main__"),
}

# Old import paths of modules that moved up a layer: each is nothing but an alias of the new
# module (so users' code keeps working) and no library module imports it.
MOVED = {
    "qcfs_lava.analysis.report": "qcfs_lava.report",
    "qcfs_lava.analysis.sweep": "qcfs_lava.sweep",
}

LAYER_OF = {room: layer for layer, rooms in LAYERS.items() for room in rooms}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> set[str]:
    """Every ``qcfs_lava`` module ``path`` imports, anywhere in its body, as absolute names."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "qcfs_lava"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "qcfs_lava":
                continue
            if node.module is None or target == "qcfs_lava":  # ``from . import x``: x a module
                found |= {f"{target}.{a.name}" for a in node.names}
            else:
                found.add(target)
    return found


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _room_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in _sources().items():
        if module in MOVED:
            continue
        graph.setdefault(_room(module), set()).update(
            _room(t) for t in _imports(path) if _room(t) != _room(module))
    return graph


def test_every_room_is_on_a_layer():
    rooms = {_room(m) for m in _sources()}
    unlisted = sorted(rooms - set(LAYER_OF))
    assert not unlisted, f"add these rooms to LAYERS in tests/test_layers.py: {unlisted}"
    stale = sorted(set(LAYER_OF) - rooms)
    assert not stale, f"LAYERS names rooms that do not exist: {stale}"
    assert len(LAYER_OF) == sum(len(r) for r in LAYERS.values()), "a room is on two layers"


def test_no_module_imports_a_room_above_it():
    upward = []
    for module, path in _sources().items():
        if module in MOVED:
            continue
        own = LAYER_OF[_room(module)]
        for target in sorted(_imports(path)):
            layer = LAYER_OF.get(_room(target))
            if layer is not None and layer > own:
                upward.append(f"{module} (layer {own}) imports {target} (layer {layer})")
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(room: str) -> list[str] | None:
        state[room] = 1
        path.append(room)
        for nxt in sorted(graph.get(room, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[room] = 2
        return None

    for room in sorted(graph):
        if room not in state and (found := visit(room)):
            return found
    return None


def test_no_cycle_between_rooms():
    cycle = _cycle(_room_graph())
    assert cycle is None, "rooms import each other in a circle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_lazy_and_relative_imports_are_seen(tmp_path, monkeypatch):
    fake = tmp_path / "qcfs_lava"
    (fake / "analysis").mkdir(parents=True)
    src = fake / "analysis" / "x.py"
    src.write_text("def f():\n    from qcfs_lava.pipeline import run_chain\n"
                   "from . import counts\nfrom ..cli import main\nfrom qcfs_lava import sweep\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert _imports(src) == {"qcfs_lava.pipeline", "qcfs_lava.analysis.counts",
                             "qcfs_lava.cli", "qcfs_lava.sweep"}


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_a_moved_module_keeps_its_old_path(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)
    tree = ast.parse(_sources()[old].read_text())
    code = [n for n in tree.body if not (isinstance(n, ast.Expr)
                                         and isinstance(n.value, ast.Constant))]
    assert len(code) == 3, f"{old} must be only an alias of {new}"
    users = [m for m, p in _sources().items() if old in _imports(p)]
    assert not users, f"library modules import the old path {old}: {users}"


def test_moved_names_keep_their_old_paths():
    from qcfs_lava import interrupt, snn, train, validate
    from qcfs_lava.analysis.report import ReportConfig, make_report
    from qcfs_lava.analysis.sweep import SweepConfig, run_sweep
    from qcfs_lava.report import ReportConfig as NewReportConfig
    from qcfs_lava.sweep import run_sweep as new_run_sweep

    assert validate.deferred_interrupt is interrupt.deferred_interrupt
    assert train.train_epoch is snn.train_epoch
    assert ReportConfig is NewReportConfig and callable(make_report)
    assert run_sweep is new_run_sweep and SweepConfig.__module__ == "qcfs_lava.sweep"
