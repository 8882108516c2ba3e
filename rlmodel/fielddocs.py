"""Field docstrings of dataclasses: the string literal under each field, as `--help`-style text."""

from __future__ import annotations

import ast
import inspect
import textwrap


def field_docs(cls: type) -> dict[str, str]:
    """{field: its docstring, whitespace collapsed} for the annotated fields of `cls` that have one."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    out = {}
    for node, nxt in zip(body, body[1:], strict=False):
        documented = isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(
            nxt.value.value, str)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and documented:
            out[node.target.id] = " ".join(nxt.value.value.split())
    return out
