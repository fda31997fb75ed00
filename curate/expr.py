"""A small, safe expression language over attribute columns, compiled to vectorised pyarrow.compute calls.

    langid__fasttext__en >= 0.65
    quality_signals__heuristics__word_count >= 50 and not quality_signals__heuristics__dup_line_frac > 0.3
    langid__fasttext__en + langid__fasttext__fr >= 0.5 or chars > 10000
Allowed: column names (attributes made by earlier steps, plus ``chars`` = text length), numbers, strings,
True/False/None, comparisons (chains too), ``in`` / ``not in`` a literal list, ``and``/``or``/``not``, + - * /,
``abs()`` and ``is_null()``. Anything else (attribute access, calls, subscripts) is rejected at parse time: the
config is data, not code. Nulls follow SQL (Kleene) logic; a rule that evaluates to null is not satisfied.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

VIRTUAL = {"chars": pa.int64()}

_CMP = {ast.Eq: "equal", ast.NotEq: "not_equal", ast.Lt: "less", ast.LtE: "less_equal", ast.Gt: "greater",
        ast.GtE: "greater_equal"}
_BIN = {ast.Add: "add", ast.Sub: "subtract", ast.Mult: "multiply", ast.Div: "divide"}


class ExprError(ValueError):
    pass


Compiled = Callable[[pa.Table], Any]


def names_in(expr: str) -> set[str]:
    return {n.id for n in ast.walk(_parse(expr)) if isinstance(n, ast.Name) and n.id not in ("True", "False", "None")}


def _parse(expr: str) -> ast.Expression:
    try:
        return ast.parse(expr, mode="eval")
    except SyntaxError as e:
        raise ExprError(f"cannot parse {expr!r}: {e.msg}") from None


def compile_expr(expr: str, available: dict[str, pa.DataType] | None = None) -> Compiled:
    """Compile once; the result maps a table to a boolean array. Unknown names fail here, not mid-run."""
    tree = _parse(expr)
    if available is not None:
        known = {**available, **VIRTUAL}
        unknown = sorted(n for n in names_in(expr) if n not in known)
        if unknown:
            raise ExprError(f"{expr!r} names {unknown}, which no earlier step makes "
                            f"(available: {', '.join(sorted(known))})")
    return _build(tree.body, expr)


def _build(node: ast.AST, src: str) -> Compiled:
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, (int, float, str, bool)) and node.value is not None:
            raise ExprError(f"unsupported constant {node.value!r} in {src!r}")
        value = node.value
        return lambda t: pa.scalar(value)
    if isinstance(node, ast.Name):
        name = node.id
        if name == "chars":
            return lambda t: pc.utf8_length(t.column("text"))
        return lambda t: t.column(name)
    if isinstance(node, ast.BoolOp):
        parts = [_build(v, src) for v in node.values]
        fn = pc.and_kleene if isinstance(node.op, ast.And) else pc.or_kleene

        def boolop(t: pa.Table) -> Any:
            acc = parts[0](t)
            for p in parts[1:]:
                acc = fn(acc, p(t))
            return acc

        return boolop
    if isinstance(node, ast.UnaryOp):
        inner = _build(node.operand, src)
        if isinstance(node.op, ast.Not):
            return lambda t: pc.invert(inner(t))
        if isinstance(node.op, ast.USub):
            return lambda t: pc.negate(inner(t))
        raise ExprError(f"unsupported operator in {src!r}")
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        left, right, op = _build(node.left, src), _build(node.right, src), _BIN[type(node.op)]
        return lambda t: getattr(pc, op)(left(t), right(t))
    if isinstance(node, ast.Compare):
        return _compare(node, src)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 1 and not node.keywords:
        arg = _build(node.args[0], src)
        if node.func.id == "abs":
            return lambda t: pc.abs(arg(t))
        if node.func.id == "is_null":
            return lambda t: pc.is_null(arg(t))
    raise ExprError(f"unsupported syntax {ast.dump(node)[:60]}... in {src!r}")


def _compare(node: ast.Compare, src: str) -> Compiled:
    terms = [node.left, *node.comparators]
    checks: list[Compiled] = []
    for left, op, right in zip(terms, node.ops, terms[1:]):
        lf = _build(left, src)
        if isinstance(op, (ast.In, ast.NotIn)):
            if not isinstance(right, (ast.List, ast.Tuple, ast.Set)) or not all(
                    isinstance(e, ast.Constant) for e in right.elts):
                raise ExprError(f"`in` needs a literal list in {src!r}")
            values = pa.array([e.value for e in right.elts])
            negate = isinstance(op, ast.NotIn)

            def member(t: pa.Table, lf=lf, values=values, negate=negate) -> Any:
                col = lf(t)
                res = pc.is_in(col, value_set=values.cast(col.type) if col.type != values.type else values)
                res = pc.if_else(pc.is_null(col), pa.scalar(None, pa.bool_()), res)
                return pc.invert(res) if negate else res

            checks.append(member)
        elif type(op) in _CMP:
            rf, fname = _build(right, src), _CMP[type(op)]
            checks.append(lambda t, lf=lf, rf=rf, fname=fname: getattr(pc, fname)(lf(t), rf(t)))
        else:
            raise ExprError(f"unsupported comparison in {src!r}")

    def all_checks(t: pa.Table) -> Any:
        acc = checks[0](t)
        for c in checks[1:]:
            acc = pc.and_kleene(acc, c(t))
        return acc

    return all_checks


def evaluate(fn: Compiled, table: pa.Table) -> pa.Array:
    """Boolean array with nulls replaced by False (an unknown value does not satisfy a rule)."""
    res = fn(table)
    if isinstance(res, pa.Scalar):
        res = pa.array([res.as_py()] * table.num_rows, pa.bool_())
    if isinstance(res, pa.ChunkedArray):
        res = res.combine_chunks()
    if res.type != pa.bool_():
        raise ExprError(f"expression gives {res.type}, not a boolean")
    return pc.fill_null(res, False)
