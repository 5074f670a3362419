"""The house's size rules, checked on every run: no module over 400 lines and no function over
60 lines of code (blank lines, comments and docstrings not counted) in the project's packages."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("study", "analysis", "sweeps", "bench")
MAX_MODULE_LINES = 400
MAX_FUNCTION_CODE_LINES = 60


def docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)
        if isinstance(node, kinds) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                if isinstance(first.value.value, str):
                    lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def code_lines(source: str) -> set[int]:
    """Lines that hold a code token (not a comment, newline or indentation)."""
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in skip and tok.type != tokenize.ENDMARKER:
            lines.update(range(tok.start[0], tok.end[0] + 1))
    return lines


def offenders() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            name = path.relative_to(REPO)
            if len(source.splitlines()) > MAX_MODULE_LINES:
                found.append(f"{name}: {len(source.splitlines())} lines")
            tree = ast.parse(source)
            code = code_lines(source) - docstring_lines(tree)
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    span = range(node.lineno, (node.end_lineno or node.lineno) + 1)
                    count = len(code.intersection(span))
                    if count > MAX_FUNCTION_CODE_LINES:
                        found.append(f"{name}:{node.lineno} {node.name}: {count} code lines")
    return found


def test_no_module_or_function_is_over_its_size() -> None:
    assert offenders() == []


def test_the_count_sees_a_long_function() -> None:
    body = "\n".join(f"    x{i} = {i}  # a comment" for i in range(61))
    source = f'def f():\n    """Doc."""\n\n{body}\n'
    code = code_lines(source) - docstring_lines(ast.parse(source))
    assert len(code) == 62  # the def line and 61 assignments; the docstring and blank not counted
