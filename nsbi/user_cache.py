"""nsbi's per-user cache: where compiled artefacts that a later process can reuse are kept.

Two things live there, each in its own subdirectory of :func:`cache_root`
(``$XDG_CACHE_HOME/nsbi``, else ``~/.cache/nsbi``):

* ``jax/``: JAX's persistent compilation cache (:mod:`nsbi.jax_setup`; ``$NSBI_JAX_CACHE``
  overrides it);
* ``schemas/``: the Python source that fastjsonschema generates for a JSON schema
  (:func:`compiled_schema_check`), imported by later processes instead of generated again
  (generating the checks of the nsbi and pyhf workspace schemas took 0.15 s of every
  command-line fit).

Everything here can be deleted at any time: it is rebuilt when missing. A cache that cannot be
written (a read-only home) only costs time. Files are written through
:func:`nsbi.io.atomic_path` (a temporary name, then a rename), so a reader never sees half a file, and are named by a digest of everything they are built
from, so a changed schema or library version never meets an old file.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nsbi.io import atomic_path, json_text

__all__ = ["cache_root", "compiled_schema_check"]


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/nsbi`` (``~/.cache/nsbi`` when unset or empty)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "nsbi"


def compiled_schema_check(
    name: str,
    schema_doc: Mapping,
    handlers: Mapping[str, Callable[[str], Any]] | None = None,
    sources: Sequence[bytes] = (),
) -> Callable[[Any], Any]:
    """fastjsonschema's validator of ``schema_doc`` (raises ``fastjsonschema.JsonSchemaException``).

    The generated source is kept as ``schemas/<name>-<digest>.py`` in :func:`cache_root` and
    imported from there by later processes (Python keeps its bytecode beside it, as for any
    module). ``handlers`` resolve the URIs the schema refers to (their documents are inlined in
    the generated code): pass their content in ``sources`` (bytes), so that the digest, which
    covers ``schema_doc``, ``sources`` and fastjsonschema's version, changes with them."""
    import fastjsonschema

    def in_memory():
        return fastjsonschema.compile(dict(schema_doc), handlers=dict(handlers or {}))

    digest = hashlib.sha256()
    for part in (fastjsonschema.VERSION.encode(), json_text(schema_doc, indent=None).encode(), *sources):
        digest.update(bytes(part) + b"\0")
    path = cache_root() / "schemas" / f"{name}-{digest.hexdigest()[:20]}.py"
    if not path.is_file():
        code = fastjsonschema.compile_to_code(dict(schema_doc), handlers=dict(handlers or {}))
        # the generated code names its entry point after the schema's $id; it is its first function
        entry = next(n.name for n in ast.parse(code).body if isinstance(n, ast.FunctionDef))
        code += f"\n\nvalidate = {entry}\n"
        try:
            with atomic_path(path) as tmp:
                tmp.write_text(code)
        except OSError:  # a cache that cannot be written: the check compiled in memory
            return in_memory()
    try:
        spec = importlib.util.spec_from_file_location(f"nsbi_schema_check_{path.stem.replace('-', '_')}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.validate
    except (OSError, SyntaxError, AttributeError):  # unreadable or damaged: the next process rewrites it
        path.unlink(missing_ok=True)
        return in_memory()
