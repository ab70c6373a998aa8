"""AST mutators: each candidate changes one node of one function, keeping the rest of the file verbatim.

>>> src = "def f(a, b=1):\\n    if a < b and b:\\n        return a + 1\\n    return g(a, b)\\n"
>>> sorted({m.kind for m in candidates(src, "m.py")})
['boolop_flip', 'comparison_flip', 'dropped_branch', 'off_by_one', 'swapped_args', 'wrong_default']
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Iterator
from dataclasses import dataclass

MUTATOR_VERSION = "1"

CMP_FLIP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
            ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}


@dataclass(frozen=True)
class Mutation:
    file: str
    function: str
    kind: str
    index: int
    source: str
    """The whole mutated file."""
    line: int

    @property
    def id(self) -> str:
        return f"{self.function}__{self.kind}_{self.index}"


def _offsets(src: str) -> list[int]:
    starts, pos = [], 0
    for line in src.splitlines(keepends=True):
        starts.append(pos)
        pos += len(line)
    starts.append(pos)
    return starts


def _span(src: str, starts: list[int], node: ast.AST) -> tuple[int, int]:
    lines = src.splitlines(keepends=True)

    def at(lineno: int, col: int) -> int:  # col is a UTF-8 byte offset
        return starts[lineno - 1] + len(lines[lineno - 1].encode()[:col].decode("utf-8", "replace"))

    return at(node.lineno, node.col_offset), at(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]


def _functions(tree: ast.AST) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node.name, node
        elif isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef):
                    yield f"{node.name}.{sub.name}", sub


def _replace(src: str, starts: list[int], node: ast.AST, text: str) -> str:
    a, b = _span(src, starts, node)
    return src[:a] + text + src[b:]


def candidates(src: str, path: str) -> list[Mutation]:
    """Every single-node mutation of every (module-level or method) function in ``src``."""
    tree = ast.parse(src)
    starts = _offsets(src)
    out: list[Mutation] = []
    for fname, fn in _functions(tree):
        counter: dict[str, int] = {}

        def add(kind: str, new_src: str, line: int, counter: dict[str, int] = counter, fname: str = fname) -> None:
            if new_src == src:
                return
            try:
                ast.parse(new_src)
            except SyntaxError:
                return
            counter[kind] = counter.get(kind, 0) + 1
            out.append(Mutation(path, fname, kind, counter[kind], new_src, line))

        # wrong default
        for d in fn.args.defaults + [d for d in fn.args.kw_defaults if d is not None]:
            if isinstance(d, ast.Constant):
                v = d.value
                new = {True: "False", False: "True"}.get(v) if isinstance(v, bool) else (
                    repr(v + 1) if isinstance(v, int) else None)
                if new:
                    add("wrong_default", _replace(src, starts, d, new), d.lineno)
        for node in ast.walk(fn):
            if node is not fn and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
                continue
            if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in CMP_FLIP:
                m = copy.deepcopy(node)
                m.ops = [CMP_FLIP[type(node.ops[0])]()]
                add("comparison_flip", _replace(src, starts, node, ast.unparse(m)), node.lineno)
            elif isinstance(node, ast.BoolOp):
                m = copy.deepcopy(node)
                m.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
                add("boolop_flip", _replace(src, starts, node, f"({ast.unparse(m)})"), node.lineno)
            elif isinstance(node, ast.BinOp) and isinstance(node.right, ast.Constant) and type(
                    node.right.value) is int and isinstance(node.op, ast.Add | ast.Sub):
                add("off_by_one", _replace(src, starts, node.right, repr(node.right.value + 1)), node.lineno)
            elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and type(
                    node.slice.value) is int:
                add("off_by_one", _replace(src, starts, node.slice, repr(node.slice.value + 1)), node.lineno)
            elif isinstance(node, ast.Call) and len(node.args) >= 2 and not any(
                    isinstance(a, ast.Starred) for a in node.args[:2]):
                a0, a1 = (ast.get_source_segment(src, a) for a in node.args[:2])
                if a0 and a1 and a0 != a1:
                    s0, e0 = _span(src, starts, node.args[0])
                    s1, e1 = _span(src, starts, node.args[1])
                    add("swapped_args", src[:s0] + a1 + src[e0:s1] + a0 + src[e1:], node.lineno)
            elif isinstance(node, ast.If) and not node.orelse:
                parent_body = [b for b in _bodies(fn) if node in b]
                if parent_body and len(parent_body[0]) > 1:
                    a = starts[node.lineno - 1]
                    b = starts[node.end_lineno]  # type: ignore[attr-defined]
                    add("dropped_branch", src[:a] + src[b:], node.lineno)
    return out


def _bodies(fn: ast.AST) -> Iterator[list[ast.stmt]]:
    for node in ast.walk(fn):
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                yield body
