"""Safe parsing and evaluation of the small expression language used in configs.

Selections (``"(m4l > 220) & (abs(y4l) < 2.5)"``), feature definitions
(``"max(lep_pt)"``, ``"lep_eta[0]"``), weight expressions (``"weight * w_kfac"``) and
morphing coefficients (``"mu - sqrt(mu)"``) are parsed with Python's :mod:`ast` module and
only a fixed set of node types, operators and functions is accepted. Nothing is ever passed
to ``eval``.

Evaluation is backend-agnostic: ``xp`` is the array module (numpy or jax.numpy); when an
operand is an awkward array, awkward's own functions are used, so jagged collections work
with the reductions ``max min sum count any all`` (over the innermost axis) and integer
indexing ``lep_pt[0]`` (missing entries become ``nan``). ``max``/``min`` of an empty list is
``nan`` too, unless a value is given as in Python: ``max(jet_pt, default=0)``.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Expression", "ExpressionError", "parse", "FUNCTIONS"]


class ExpressionError(ValueError):
    """An expression could not be parsed or evaluated."""


_ELEMENTWISE = {
    "sqrt": "sqrt",
    "exp": "exp",
    "log": "log",
    "log10": "log10",
    "abs": "abs",
    "sin": "sin",
    "cos": "cos",
    "tan": "tan",
    "arcsin": "arcsin",
    "arccos": "arccos",
    "arctan": "arctan",
    "arctan2": "arctan2",
    "sinh": "sinh",
    "cosh": "cosh",
    "tanh": "tanh",
    "where": "where",
    "minimum": "minimum",
    "maximum": "maximum",
    "clip": "clip",
    "isfinite": "isfinite",
}
_NARGS = {"arctan2": 2, "where": 3, "minimum": 2, "maximum": 2, "clip": 3}
_REDUCTIONS = {"max", "min", "sum", "count", "any", "all"}
FUNCTIONS = frozenset(_ELEMENTWISE) | _REDUCTIONS
_CONSTANTS = {"pi": math.pi, "e": math.e}

_BINOPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
    ast.Mod: lambda a, b: a % b,
    ast.BitAnd: lambda a, b: a & b,
    ast.BitOr: lambda a, b: a | b,
    ast.BitXor: lambda a, b: a ^ b,
}
_CMPOPS = {
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
}


def _dotted(node: ast.AST, text: str) -> str:
    """``Muon.pt`` -> "Muon.pt" (collections of NanoAOD-like inputs); nothing else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise ExpressionError(f"attribute access is only allowed on names (e.g. Muon.pt) in {text!r}")
    parts.append(node.id)
    if any(p.startswith("_") for p in parts):
        raise ExpressionError(f"names starting with '_' are not allowed in {text!r}")
    return ".".join(reversed(parts))


def _is_awkward(x: Any) -> bool:
    return type(x).__module__.startswith("awkward")


def _check(node: ast.AST, text: str, names: set[str]) -> None:
    """Walk the tree and reject anything outside the whitelist."""
    if isinstance(node, ast.Expression):
        _check(node.body, text, names)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ExpressionError(f"only numeric constants are allowed, got {node.value!r} in {text!r}")
    elif isinstance(node, ast.Name):
        if node.id in FUNCTIONS:
            raise ExpressionError(f"function {node.id!r} used without call in {text!r}")
        if node.id not in _CONSTANTS:
            names.add(node.id)
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            raise ExpressionError(f"operator {type(node.op).__name__} not allowed in {text!r}")
        _check(node.left, text, names)
        _check(node.right, text, names)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.USub, ast.UAdd, ast.Invert, ast.Not)):
            raise ExpressionError(f"operator {type(node.op).__name__} not allowed in {text!r}")
        _check(node.operand, text, names)
    elif isinstance(node, ast.BoolOp):
        for v in node.values:
            _check(v, text, names)
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _CMPOPS:
                raise ExpressionError(f"comparison {type(op).__name__} not allowed in {text!r}")
        _check(node.left, text, names)
        for c in node.comparators:
            _check(c, text, names)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            fname = getattr(node.func, "id", ast.unparse(node.func))
            raise ExpressionError(f"unknown function {fname!r} in {text!r}; allowed: {', '.join(sorted(FUNCTIONS))}")
        for kw in node.keywords:
            if node.func.id not in ("max", "min") or kw.arg != "default":
                raise ExpressionError(
                    f"keyword arguments are not allowed in {text!r} (except max/min(..., default=<number>))"
                )
            if _number(kw.value) is None:
                raise ExpressionError(f"{node.func.id}(..., default=) takes a number in {text!r}")
        want = _NARGS.get(node.func.id, 1)
        if len(node.args) != want:
            raise ExpressionError(f"{node.func.id}() takes {want} argument(s), got {len(node.args)} in {text!r}")
        for a in node.args:
            _check(a, text, names)
    elif isinstance(node, ast.Subscript):
        idx = node.slice
        if not (isinstance(idx, ast.Constant) and isinstance(idx.value, int)) and not (
            isinstance(idx, ast.UnaryOp)
            and isinstance(idx.op, ast.USub)
            and isinstance(idx.operand, ast.Constant)
            and isinstance(idx.operand.value, int)
        ):
            raise ExpressionError(f"only integer indices are allowed, e.g. lep_pt[0], in {text!r}")
        _check(node.value, text, names)
    elif isinstance(node, ast.Attribute):
        names.add(_dotted(node, text))
    elif isinstance(node, ast.IfExp):
        raise ExpressionError(f"conditional expressions are not allowed, use where() in {text!r}")
    else:
        raise ExpressionError(f"syntax {type(node).__name__} not allowed in {text!r}")


@dataclass(frozen=True)
class Expression:
    """A parsed, validated expression. Call :meth:`evaluate` with a namespace."""

    text: str
    names: frozenset[str]
    _tree: ast.Expression = field(repr=False, compare=False)

    def evaluate(self, namespace: Mapping[str, Any], xp: Any = np) -> Any:
        missing = self.names - set(namespace)
        if missing:
            raise ExpressionError(f"expression {self.text!r} uses undefined name(s): {', '.join(sorted(missing))}")
        return _Evaluator(namespace, xp, self.text).visit(self._tree.body)

    __call__ = evaluate

    def call_arguments(self, function: str) -> list[str]:
        """The arguments (as text) of every call of ``function``: ``["mu"]`` for
        ``mu - sqrt(mu)`` and ``"sqrt"``."""
        calls = (n for n in ast.walk(self._tree) if isinstance(n, ast.Call) and n.func.id == function)
        return [ast.unparse(a) for n in calls for a in n.args]

    def empty_list_terms(self) -> list[tuple[str, str]]:
        """The sub-expressions that are NaN when a jagged list is too short, each with a
        suggestion: ``max(x)``/``min(x)`` without ``default=`` (empty list) and ``x[i]``
        (fewer than i+1 entries). Used to explain a NaN feature."""
        out = []
        for node in ast.walk(self._tree):
            if isinstance(node, ast.Call) and node.func.id in ("max", "min") and not node.keywords:
                arg = ast.unparse(node.args[0])
                fix = f"{node.func.id}({arg}, default=<value>) or a selection count({arg}) > 0"
                out.append((ast.unparse(node), fix))
            elif isinstance(node, ast.Subscript):
                i, arg = ast.literal_eval(node.slice), ast.unparse(node.value)
                need = i + 1 if i >= 0 else -i
                out.append((ast.unparse(node), f"a selection count({arg}) >= {need}"))
        return out


class _Evaluator:
    def __init__(self, ns: Mapping[str, Any], xp: Any, text: str):
        self.ns, self.xp, self.text = ns, xp, text

    def visit(self, node: ast.AST) -> Any:
        xp = self.xp
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return _CONSTANTS[node.id] if node.id in _CONSTANTS else self.ns[node.id]
        if isinstance(node, ast.BinOp):
            return _BINOPS[type(node.op)](self.visit(node.left), self.visit(node.right))
        if isinstance(node, ast.UnaryOp):
            v = self.visit(node.operand)
            if isinstance(node.op, ast.USub):
                return -v
            if isinstance(node.op, ast.UAdd):
                return +v
            if isinstance(v, (bool, int, float)):
                return not v
            return ~_as_bool(v, xp)
        if isinstance(node, ast.BoolOp):
            vals = [_as_bool(self.visit(v), xp) for v in node.values]
            out = vals[0]
            for v in vals[1:]:
                out = (out & v) if isinstance(node.op, ast.And) else (out | v)
            return out
        if isinstance(node, ast.Compare):
            left = self.visit(node.left)
            out = None
            for op, comp in zip(node.ops, node.comparators):
                right = self.visit(comp)
                res = _CMPOPS[type(op)](left, right)
                out = res if out is None else (out & res)
                left = right
            return out
        if isinstance(node, ast.Attribute):
            return self.ns[_dotted(node, self.text)]
        if isinstance(node, ast.Subscript):
            return _index(self.visit(node.value), ast.literal_eval(node.slice), self.text)
        if isinstance(node, ast.Call):
            args = [self.visit(a) for a in node.args]
            default = next((_number(k.value) for k in node.keywords), None)
            return _call(node.func.id, args, xp, self.text, default)
        raise ExpressionError(f"cannot evaluate {ast.unparse(node)!r}")  # pragma: no cover


def _as_bool(v: Any, xp: Any) -> Any:
    if _is_awkward(v):
        return v
    return xp.asarray(v).astype(bool)


def _index(v: Any, i: int, text: str) -> Any:
    if _is_awkward(v):
        import awkward as ak

        padded = ak.pad_none(v, abs(i) + (0 if i < 0 else 1), axis=-1)
        return ak.fill_none(padded[..., i], np.nan)
    arr = np.asarray(v)
    if arr.ndim < 2:
        raise ExpressionError(f"cannot index a flat column in {text!r}")
    return arr[..., i]


def _number(node: ast.AST) -> float | None:
    """The value of a numeric literal (``3``, ``-1.5``), else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _number(node.operand)
        return None if v is None else (-v if isinstance(node.op, ast.USub) else v)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    return None


def _call(name: str, args: list[Any], xp: Any, text: str, default: float | None = None) -> Any:
    """Apply a whitelisted function; ``default`` is max/min's value for an empty list."""
    empty = np.nan if default is None else default
    if any(_is_awkward(a) for a in args):
        import awkward as ak

        if name in _REDUCTIONS:
            (a,) = args
            if name == "count":
                return ak.num(a, axis=-1)
            red = getattr(ak, name)(a, axis=-1)
            if name in ("max", "min"):
                red = ak.fill_none(red, empty)
            return red
        if name == "where":
            return ak.where(*args)
        return getattr(np, _ELEMENTWISE[name])(*args)
    if name in _REDUCTIONS:
        (a,) = args
        arr = xp.asarray(a)
        if arr.ndim < 2:
            raise ExpressionError(f"{name}() needs a jagged or 2D collection in {text!r}")
        if name == "count":
            return xp.full(arr.shape[:-1], arr.shape[-1])
        if name in ("max", "min") and arr.shape[-1] == 0:
            return xp.full(arr.shape[:-1], empty)
        return getattr(xp, name)(arr, axis=-1)
    return getattr(xp, _ELEMENTWISE[name])(*args)


def _from_c_operators(src: str) -> str:
    """TTree::Draw / RDataFrame spellings: ``&&`` -> ``and``, ``||`` -> ``or``, ``!x`` -> ``~x``
    (``!=`` stays), with C++'s precedence: ``and``/``or`` bind more loosely than comparisons and
    ``~`` as tightly as ``!``."""
    src = src.replace("&&", " and ").replace("||", " or ")
    return re.sub(r"!(?!=)", "~", src)


def _parenthesised(node: ast.AST, src: str) -> bool:
    """Whether ``node`` is written inside its own parentheses in ``src``."""
    before = src[: node.col_offset].rstrip()
    after = src[node.end_col_offset :].lstrip()
    return before.endswith("(") and after.startswith(")")


def _check_precedence(tree: ast.AST, src: str, text: str) -> None:
    """Reject ``a >= 1 & b >= 4``: ``&``/``|``/``^`` bind more tightly than comparisons, so that
    means ``a >= (1 & b) >= 4``, a chained comparison, not the intended cut. A parenthesised
    ``(1 & b)`` is accepted as written."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        parts = [node.left, *node.comparators]
        # only between two comparisons: `(x & 1) > 0` written `x & 1 > 0` is a valid bit test
        for part in parts[1:-1]:
            if not (isinstance(part, ast.BinOp) and isinstance(part.op, (ast.BitAnd, ast.BitOr, ast.BitXor))):
                continue
            if _parenthesised(part, src):
                continue
            sym = {ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^"}[type(part.op)]
            reading = (
                src[node.col_offset : part.col_offset]
                + f"({src[part.col_offset : part.end_col_offset]})"
                + src[part.end_col_offset : node.end_col_offset]
            )
            # a op1 X & Y op2 b  ->  (a op1 X) & (Y op2 b)
            lhs = src[parts[0].col_offset : part.left.end_col_offset]
            rhs = src[part.right.col_offset : parts[-1].end_col_offset]
            hint = f"; write ({lhs}) {sym} ({rhs})"
            raise ExpressionError(
                f"'{sym}' binds more tightly than comparisons in {text!r}: it reads as {reading}{hint}, "
                "or use 'and'/'or' ('&&'/'||')"
            )


def parse(text: str, allowed_names: set[str] | frozenset[str] | None = None) -> Expression:
    """Parse ``text`` into an :class:`Expression`.

    ``allowed_names`` (optional) restricts the variables the expression may use; an
    :class:`ExpressionError` naming the unknown variables is raised otherwise.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        text = repr(text)
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError(f"expression must be a non-empty string, got {text!r}")
    src = _from_c_operators(text.strip())
    try:
        tree = ast.parse(src, mode="eval")
    except SyntaxError as err:
        raise ExpressionError(f"invalid syntax in {text!r}: {err.msg}") from None
    names: set[str] = set()
    _check(tree, text, names)
    _check_precedence(tree, src, text)
    if allowed_names is not None:
        unknown = names - set(allowed_names)
        if unknown:
            raise ExpressionError(
                f"unknown name(s) {', '.join(sorted(unknown))} in {text!r}; "
                f"available: {', '.join(sorted(allowed_names))}"
            )
    return Expression(text=text, names=frozenset(names), _tree=tree)
