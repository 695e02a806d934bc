"""Issue 8: the sandbox stays in small pieces (no function over ~80 lines, no module over
~450), so that the next feature does not land in one growing `build_router`."""

from __future__ import annotations

import ast
from pathlib import Path

import sandbox

ROOT = Path(sandbox.__file__).parent
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 450


def test_no_long_functions_or_modules() -> None:
    long_functions, long_modules = [], []
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            long_modules.append(path.name)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long_functions.append(f"{path.relative_to(ROOT)}:{node.name} ({lines})")
    assert long_functions == [] and long_modules == []
    assert (ROOT / "control.py").read_text().count("\n") < 40  # only mounts the routers
