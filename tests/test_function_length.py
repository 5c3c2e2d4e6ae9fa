"""No function in shipped code is longer than 50 lines (docstring and signature included):
a function that long does several things, and its reader holds all of them at once."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("contracts", "projections", "services", "flowledger")
MAX_LINES = 50


def _long_functions() -> list[str]:
    found = []
    for package in SHIPPED:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > MAX_LINES:
                        where = f"{path.relative_to(ROOT)}:{node.lineno}"
                        found.append(f"{where} {node.name} ({lines} lines)")
    return found


def test_no_function_in_shipped_code_is_longer_than_50_lines() -> None:
    assert _long_functions() == []
