"""Settings are values passed in: no test or benchmark overwrites a library module's attribute.

A test that must fake the environment uses ``monkeypatch`` (undone after the test); a
setting a user or an experiment varies is an argument (e.g. ``ConversionConfig``).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "qcfs_lava"


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _module_names(tree: ast.AST) -> set[str]:
    """Names a file binds to modules of the package (``import``/``from ... import``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    names.add(alias.asname or PACKAGE)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == PACKAGE:
            for alias in node.names:
                if _is_module(f"{node.module}.{alias.name}"):
                    names.add(alias.asname or alias.name)
    return names


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _targets(node: ast.AST):
    if isinstance(node, (ast.Tuple, ast.List)):
        for elt in node.elts:
            yield from _targets(elt)
    elif isinstance(node, ast.Starred):
        yield from _targets(node.value)
    else:
        yield node


def offences(source: str) -> list[tuple[int, str]]:
    """``(line, text)`` of every assignment to an attribute of a package module in ``source``
    (``module.X = ...``, ``module.Class.X += ...``, ``setattr(module, ...)``, ``del``)."""
    tree = ast.parse(source)
    modules = _module_names(tree)
    found = []
    for node in ast.walk(tree):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = [t for target in node.targets for t in _targets(target)]
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = list(_targets(node.target))
        elif isinstance(node, ast.Delete):
            targets = [t for target in node.targets for t in _targets(target)]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("setattr", "delattr") and node.args:
            if _root(node.args[0]) in modules:
                found.append((node.lineno, ast.unparse(node)))
            continue
        for target in targets:
            if isinstance(target, ast.Attribute) and _root(target) in modules:
                found.append((node.lineno, ast.unparse(target)))
    return found


def test_the_check_finds_each_form_of_patching():
    source = (
        "from qcfs_lava import convert as convert_mod\n"
        "from qcfs_lava import hardware as hw\n"
        "import qcfs_lava.emulator\n"
        "from qcfs_lava.convert import convert\n"
        "convert_mod.LAYER_COPIES_MAX = 4\n"
        "hw.WEIGHT_MIN, hw.WEIGHT_MAX = -1, 1\n"
        "qcfs_lava.emulator._A_LIMIT *= 2\n"
        "setattr(hw, 'STATE_MAX', 1)\n"
        "convert.__doc__ = ''\n"  # a function, not a module: not a setting
        "monkeypatch.setattr(hw, 'STATE_MAX', 1)\n"  # undone after the test: allowed
        "x = hw.STATE_MAX\n"
    )
    assert [line for line, _ in offences(source)] == [5, 6, 6, 7, 8]


def test_no_test_or_benchmark_assigns_a_library_module_attribute():
    found = []
    for folder in ("tests", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == Path(__file__).resolve():
                continue
            found += [f"{path.relative_to(ROOT)}:{line}: {text}"
                      for line, text in offences(path.read_text())]
    assert not found, "pass a config or use monkeypatch instead:\n" + "\n".join(found)
