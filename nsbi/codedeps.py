"""Source files a workflow script runs, computed from the imports in the code.

Snakemake reruns a job when its ``script:`` changes but does not see the modules the
script imports. The rules therefore declare, as their ``code`` input, every source file
of the workflow's own packages that their script imports directly or indirectly
(:func:`script_dependencies`), and Snakemake's checksums then rerun exactly the jobs
whose code changed.

The imports are read statically with :mod:`ast` (nothing is imported, so this is cheap
enough to run each time the workflow loads and needs neither torch nor jax):

* ``import a.b``, ``from a.b import c`` (``a.b.c`` when that is a module),
  ``from . import x`` and other relative imports, and ``importlib.import_module("a.b")``
  / ``__import__("a.b")`` with a literal name;
* imports anywhere in a file (inside functions, ``try`` or ``if`` blocks included): a
  module that may be imported is a dependency;
* importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` first, so they are
  dependencies too (and so are their own imports);
* a package with a module-level ``__getattr__`` (PEP 562 lazy names) may import any of
  its submodules when one of its names is looked up: ``from pkg import name``, where
  ``name`` is not a submodule, depends on all direct submodules of ``pkg``.

Only modules found as source files under ``root`` (the checkout, where the workflow's
packages live) are followed; everything else (numpy, torch, ...) is left out, and so are
namespace packages (directories without ``__init__.py``). Attribute access
on an imported package (``import pkg; pkg.name``) is not followed.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

__all__ = ["find_module", "module_imports", "script_dependencies"]


def _resolve_relative(module: str | None, level: int, current: str, is_package: bool) -> str | None:
    """Absolute name of ``from <level dots><module> import ...`` inside module ``current``."""
    if level == 0:
        return module
    parts = current.split(".") if current else []
    if not is_package:
        parts = parts[:-1]
    if level - 1 > len(parts) or not parts:
        return None  # beyond the top-level package (or not inside a package): not resolvable
    base = parts[: len(parts) - (level - 1)]
    if not base:
        return None
    return ".".join(base + ([module] if module else []))


def _literal_import_call(node: ast.Call) -> str | None:
    """The module name of ``importlib.import_module("x")`` / ``import_module("x")`` /
    ``__import__("x")`` with a literal string argument."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in ("import_module", "__import__") or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and not arg.value.startswith("."):
        return arg.value
    return None


def module_imports(source: str, module: str = "", is_package: bool = False) -> tuple[set[str], set[str]]:
    """Modules the code ``source`` of module ``module`` may import.

    Returns ``(names, from_names)``: ``names`` are the absolute dotted names of the
    imported modules (``from a import b`` gives ``a`` in ``names`` and ``a.b`` in
    ``from_names``, since ``a.b`` is only a module if ``a`` has a submodule ``b``).
    Relative imports are resolved against ``module`` (its package when ``is_package``);
    those that cannot be resolved (a script has no package) are dropped.
    """
    names: set[str] = set()
    from_names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_relative(node.module, node.level, module, is_package)
            if base is None:
                continue
            names.add(base)
            from_names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call):
            name = _literal_import_call(node)
            if name:
                names.add(name)
    return names, from_names


def _defines_getattr(source: str) -> bool:
    tree = ast.parse(source)
    return any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body)


@cache
def _file_info(path: str, stamp: tuple[int, int], module: str, is_package: bool):
    """Parsed imports of one file (cached per file version: ``stamp`` is mtime and size)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        names, from_names = module_imports(text, module, is_package)
    except SyntaxError as err:
        raise SyntaxError(f"{path}: {err}") from err
    return frozenset(names), frozenset(from_names), (is_package and _defines_getattr(text))


def _info(path: Path, module: str, is_package: bool):
    st = path.stat()
    return _file_info(str(path), (st.st_mtime_ns, st.st_size), module, is_package)


def find_module(name: str, search: Sequence[str | Path]) -> tuple[Path, bool] | None:
    """Source file of module ``name`` in the first directory of ``search`` that holds it:
    ``(path, is_package)`` for ``a/b.py`` or ``a/b/__init__.py``, else None."""
    parts = name.split(".")
    for base in search:
        stem = Path(base).joinpath(*parts)
        if (stem / "__init__.py").is_file():
            return stem / "__init__.py", True
        if stem.with_name(parts[-1] + ".py").is_file():
            return stem.with_name(parts[-1] + ".py"), False
    return None


def _submodules(package_init: Path, package: str) -> list[str]:
    out = []
    for entry in sorted(os.scandir(package_init.parent), key=lambda e: e.name):
        if entry.is_file() and entry.name.endswith(".py") and entry.name != "__init__.py":
            out.append(f"{package}.{entry.name[:-3]}")
        elif entry.is_dir() and Path(entry.path, "__init__.py").is_file():
            out.append(f"{package}.{entry.name}")
    return out


def script_dependencies(script: str | Path, root: str | Path, search: Iterable[str | Path] | None = None) -> list[str]:
    """Sorted source files under ``root`` that ``script`` imports, directly or through
    other modules, with the ``__init__.py`` of every package on the way; the script itself
    is not listed.

    ``search``: directories where top-level modules are looked up, in order (default:
    ``[root]``; Snakemake appends the script's directory to ``sys.path`` after
    site-packages, so helpers beside the scripts are not followed unless asked). Paths are
    returned as given: absolute when ``root`` is.
    """
    script = Path(script)
    path_list = [Path(p) for p in search] if search is not None else [Path(root)]
    names, from_names = module_imports(script.read_text(encoding="utf-8"))
    found: dict[str, tuple[Path, bool] | None] = {}
    todo: list[tuple[str, bool]] = [(n, False) for n in names] + [(n, True) for n in from_names]
    files: set[Path] = set()

    def locate(name: str) -> tuple[Path, bool] | None:
        if name not in found:
            found[name] = find_module(name, path_list)
        return found[name]

    while todo:
        name, via_from = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            hit = locate(prefix)
            if hit is None:
                # ``from pkg import name`` with ``name`` not a submodule: a lazy package
                # (module-level __getattr__) may import any of its submodules for it
                if via_from and i == len(parts) and i > 1:
                    parent = locate(".".join(parts[:-1]))
                    if parent and parent[1] and _info(parent[0], ".".join(parts[:-1]), True)[2]:
                        todo += [(m, False) for m in _submodules(parent[0], ".".join(parts[:-1]))]
                break
            path, is_package = hit
            if path in files:
                continue
            files.add(path)
            sub_names, sub_from, _ = _info(path, prefix, is_package)
            todo += [(n, False) for n in sub_names] + [(n, True) for n in sub_from]
    files.discard(script)
    return sorted(str(f) for f in files)
