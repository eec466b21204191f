"""Every module of the package stays readable: no module over 700 lines, no function over 120."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "qcfs_lava"
MODULE_LINES = 700
FUNCTION_LINES = 120


def oversized(source: str, name: str) -> list[str]:
    """What in one module's source is over the limits, as readable lines."""
    found = []
    lines = source.count("\n")
    if lines > MODULE_LINES:
        found.append(f"{name}: {lines} lines (limit {MODULE_LINES})")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > FUNCTION_LINES:
                found.append(f"{name}: {node.name}() {length} lines (limit {FUNCTION_LINES})")
    return found


def test_no_module_or_function_of_the_package_is_over_the_limits():
    found = [problem for path in sorted(PACKAGE.rglob("*.py"))
             for problem in oversized(path.read_text(encoding="utf-8"),
                                      str(path.relative_to(PACKAGE.parent)))]
    assert not found, "split these:\n" + "\n".join(found)


def test_the_size_check_finds_a_long_function_and_a_long_module():
    body = "\n".join(f"    x{i} = {i}" for i in range(FUNCTION_LINES))
    assert oversized(f"def f():\n{body}\n", "m.py") == [
        f"m.py: f() {FUNCTION_LINES + 1} lines (limit {FUNCTION_LINES})"]
    assert oversized("x = 1\n" * (MODULE_LINES + 1), "m.py") == [
        f"m.py: {MODULE_LINES + 1} lines (limit {MODULE_LINES})"]
    assert oversized("def f():\n    return 1\n", "m.py") == []
