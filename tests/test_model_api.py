"""Code outside nsbi/model/ uses only the public API of the model package.

Every .py file of nsbi/ (outside nsbi/model/), scripts/, benchmarks/ and tests/ is parsed with
``ast``. A violation is

* ``X._name`` (or ``getattr``/``hasattr``/``setattr``/``delattr`` of ``X`` with the string
  ``"_name"``) where ``_name`` is a private name of nsbi/model/: a private attribute or
  method of one of its classes, or a private module-level name of one of its modules;
* the same on an object named like a model (``model``, ``m``, ``mc_model``, ``*_model``,
  ``self.model``, ...), whatever the private name (catches names the package no longer has);
* ``from nsbi.model[.module] import _name``.

``self._name`` / ``cls._name`` stay allowed where a class of the same file defines ``_name``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nsbi" / "model"
SCANNED = ("nsbi", "scripts", "benchmarks", "tests")
MODEL_LIKE = re.compile(r"^(m|m[0-9]|mo|mn|model|model[0-9]|.*_model|model_.*)$")
ATTR_FUNCS = {"getattr", "hasattr", "setattr", "delattr"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _targets(node: ast.AST):
    if isinstance(node, (ast.Tuple, ast.List)):
        for elt in node.elts:
            yield from _targets(elt)
    elif isinstance(node, ast.Starred):
        yield from _targets(node.value)
    else:
        yield node


def class_private_names(tree: ast.AST) -> set[str]:
    """Private attributes and methods defined by the classes of a module."""
    names: set[str] = set()
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for stmt in cls.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(stmt.name)
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                for t in stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]:
                    names.update(x.id for x in _targets(t) if isinstance(x, ast.Name))
        for node in ast.walk(cls):
            if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    for x in _targets(t):
                        if (
                            isinstance(x, ast.Attribute)
                            and isinstance(x.value, ast.Name)
                            and x.value.id in ("self", "cls")
                        ):
                            names.add(x.attr)
    return {n for n in names if _private(n)}


def module_private_names(tree: ast.Module) -> set[str]:
    """Private module-level functions, classes and variables."""
    names: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(stmt.name)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            for t in stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]:
                names.update(x.id for x in _targets(t) if isinstance(x, ast.Name))
    return {n for n in names if _private(n)}


def package_private_names() -> set[str]:
    names: set[str] = set()
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        names |= class_private_names(tree) | module_private_names(tree)
    return names


def _model_like(node: ast.AST) -> bool:
    """``model``, ``m``, ``self.mc_model``, ``toys.model`` ...: the last name looks like a model."""
    if isinstance(node, ast.Name):
        return bool(MODEL_LIKE.match(node.id))
    if isinstance(node, ast.Attribute):
        return bool(MODEL_LIKE.match(node.attr))
    return False


def violations(source: str, filename: str, private: set[str]) -> list[str]:
    """Private accesses to the model package in ``source`` (see the module docstring)."""
    tree = ast.parse(source, filename)
    own = class_private_names(tree)
    out = []

    def check(obj: ast.AST, attr: str, node: ast.AST) -> None:
        if not _private(attr):
            return
        if isinstance(obj, ast.Name) and obj.id in ("self", "cls") and attr in own:
            return
        if attr in private or _model_like(obj):
            out.append(f"{filename}:{node.lineno}: {ast.unparse(obj)}.{attr}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            check(node.value, node.attr, node)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ATTR_FUNCS
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            check(node.args[0], node.args[1].value, node)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nsbi.model"):
            out += [
                f"{filename}:{node.lineno}: from {node.module} import {a.name}" for a in node.names if _private(a.name)
            ]
    return out


def _scanned_files() -> list[Path]:
    files = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            if PACKAGE in path.parents:
                continue
            files.append(path)
    return files


def test_private_names_are_collected_from_the_package():
    names = package_private_names()
    # attributes, methods and module-level helpers of the package
    assert {"_data", "_unbinned", "_binned", "_hessian_jax", "_chunk_layout", "_nu"} <= names
    assert not any(n.startswith("__") for n in names)


def test_no_private_model_access_outside_the_package():
    private = package_private_names()
    files = _scanned_files()
    assert len(files) > 50 and any(p.name == "fit.py" for p in files)
    found = []
    for path in files:
        found += violations(path.read_text(), str(path.relative_to(ROOT)), private)
    assert not found, "private model attributes used outside nsbi/model/:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "snippet",
    [
        'n_events = sum(u.n_events for u in getattr(model, "_unb", []))',  # nsbi/fit.py before the API
        "obs = self._binned_obs_dict(model._b_obs if model._b_rows else np.zeros(0))",  # nsbi/toys.py
        "data = self.mc_model._data",
        "ni, _, sig = model._c_normal",
        "ref = m._hess_autodiff(p, m._data)",
        "x = thing._hessian_jax",  # a private method of Model on any object
        "from nsbi.model.unbinned import _chunk_layout",
    ],
)
def test_checker_catches_yesterdays_accesses(snippet):
    assert violations(snippet, "snippet.py", package_private_names())


def test_checker_allows_own_private_attributes():
    src = "class T:\n    def __init__(self):\n        self._data = 1\n    def f(self):\n        return self._data\n"
    assert violations(src, "own.py", package_private_names()) == []
    assert violations("def f(x):\n    return x.__class__, x._other\n", "other.py", {"_data"}) == []
