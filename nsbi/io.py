"""Reading ROOT inputs in bounded-memory chunks, and atomic writing of outputs.

Flat or jagged ntuples are read with :func:`uproot.iterate` (only the branches the
expressions need, ``step_size`` events at a time). NanoAOD files are read with coffea's
NanoEvents (``NanoAODSchema``) chunk by chunk; expressions then address collection fields
with dotted names such as ``Muon.pt``. coffea is an optional dependency (the ``nanoaod``
extra: ``pip install "nsbi[nanoaod]"``), imported only when ``input.format: nanoaod``.

Every problem with the inputs is raised as :class:`InputError` *before* any event is
processed, with a message naming the file and the config key that points at it.

Writing
-------
Output files are written through :func:`atomic_path`: the content goes to a temporary file
in the target directory, which is renamed onto the target only when the writer succeeded,
so a failed job never leaves a truncated output (nor a temporary file).

JSON is written by :func:`write_json` only, as *strict* JSON readable by any parser:
numpy scalars and arrays become Python numbers and lists, and non-finite floats (NaN,
±inf) are written as ``null`` (``allow_nan=False``: no ``NaN``/``Infinity`` tokens).
Readers that need the floats back use :func:`null_to_nan` (or ``read_json(...,
nan_keys=...)``) on the numeric fields.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

# awkward and uproot are imported where used, so that importing the writers (as nsbi.workspace
# does) does not load the ROOT/awkward stack

__all__ = [
    "InputError",
    "atomic_path",
    "check_inputs",
    "iterate_chunks",
    "json_text",
    "jsonable",
    "null_to_nan",
    "read_json",
    "read_parquet",
    "write_json",
    "write_parquet",
    "write_root_tree",
]

NANOAOD_INSTALL = 'pip install "nsbi[nanoaod]"'


class InputError(RuntimeError):
    """An input file, tree or branch named in the config is missing or unusable."""


def _require_coffea() -> None:
    """Raise :class:`InputError` (naming ``input.format`` and the install command) when coffea
    is not importable; it is only needed for ``input.format: nanoaod``."""
    try:
        import coffea  # noqa: F401
    except ImportError:
        raise InputError(
            "config key 'input.format': 'nanoaod' inputs are read with coffea, which is not installed; "
            f"install the optional dependency with: {NANOAOD_INSTALL}"
        ) from None


def _branch_name(name: str, fmt: str) -> str:
    """The branch an expression name reads (NanoAOD: Muon.pt -> Muon_pt; a bare name such as
    ``event`` is itself a branch)."""
    return name.replace(".", "_") if fmt == "nanoaod" else name


def _missing_branches_message(
    missing: Mapping[str, str],
    have: set[str],
    users: Mapping[str, Sequence[tuple[str, str]]],
    files_key: str,
    tree: str,
    path: str,
) -> str:
    """Name the config key of every expression that reads a missing branch (the key to fix),
    with the expression, the file and close matches among the tree's branches."""
    import difflib

    by_key: dict[tuple[str, str], list[str]] = {}
    for name in sorted(missing):
        for key, text in users.get(name) or [(files_key, "")]:
            by_key.setdefault((key, text), []).append(missing[name])
    parts = []
    for (key, text), branches in by_key.items():
        close = sorted({c for b in branches for c in difflib.get_close_matches(b, sorted(have), n=3, cutoff=0.6)})
        part = f"config key '{key}'" + (f" ({text!r})" if text else "")
        part += f" reads branch(es) {', '.join(branches)}"
        parts.append(part + (f" (close matches in the tree: {', '.join(close)})" if close else ""))
    return f"{'; '.join(parts)}, missing from tree '{tree}' in '{path}' (a file of config key '{files_key}')"


def check_inputs(
    files: Sequence[str],
    tree: str,
    names: Sequence[str],
    *,
    fmt: str = "flat",
    files_key: str = "files",
    tree_key: str = "tree",
    users: Mapping[str, Sequence[tuple[str, str]]] | None = None,
) -> int:
    """Check that every file exists and holds ``tree`` with the needed branches.

    ``users[name]`` lists the (config key, expression) pairs that read ``name``: a missing
    branch is reported under those keys (the feature, weight or selection to fix), not
    under ``files_key``. Returns the total number of entries. Raises :class:`InputError`
    naming the config key.
    """
    if fmt == "nanoaod":
        _require_coffea()
    import uproot

    total = 0
    needed = {n: _branch_name(n, fmt) for n in names}
    for path in files:
        if not Path(path).is_file():
            raise InputError(f"config key '{files_key}': input file '{path}' does not exist")
        try:
            fh = uproot.open(path)
        except Exception as err:  # noqa: BLE001 - uproot raises many types for bad files
            raise InputError(f"config key '{files_key}': cannot open '{path}' as a ROOT file ({err})") from None
        with fh:
            if tree not in fh:
                trees = sorted(
                    {
                        k.split(";")[0]
                        for k, c in fh.classnames().items()
                        if c.startswith(("TTree", "TNtuple", "ROOT::RNTuple"))
                    }
                )
                raise InputError(
                    f"config key '{tree_key}': file '{path}' has no tree '{tree}' (trees: {', '.join(trees) or 'none'})"
                )
            t = fh[tree]
            have = set(t.keys())
            missing = {n: b for n, b in needed.items() if b not in have}
            if missing:
                raise InputError(_missing_branches_message(missing, have, users or {}, files_key, tree, path))
            total += t.num_entries
    return total


def iterate_chunks(
    files: Sequence[str], tree: str, names: Sequence[str], *, step_size: int, fmt: str = "flat"
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Yield ``(file, namespace)`` per chunk; namespace maps expression names to arrays."""
    names = sorted(set(names))
    import uproot

    if fmt == "flat":
        for path in files:
            for chunk in uproot.iterate({path: tree}, expressions=names, step_size=step_size, library="ak"):
                yield path, {n: chunk[n] for n in names}
        return
    _require_coffea()
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    for path in files:
        with uproot.open(path) as fh:
            n_entries = fh[tree].num_entries
        for start in range(0, n_entries, step_size):
            with warnings.catch_warnings():
                # files without every standard collection: coffea warns per missing link
                warnings.filterwarnings("ignore", message="Missing cross-reference", category=RuntimeWarning)
                events = NanoEventsFactory.from_root(
                    {path: tree},
                    schemaclass=NanoAODSchema,
                    entry_start=start,
                    entry_stop=min(start + step_size, n_entries),
                    mode="eager",
                ).events()
            ns = {}
            for n in names:
                obj: Any = events
                for part in n.split("."):
                    obj = obj[part]
                ns[n] = obj
            yield path, ns


def _umask() -> int:
    """The process's umask, read without changing it where Linux reports it (os.umask can only
    be read by setting it, which briefly affects files other threads create)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file (``.{name}.XXXX.tmp`` in the target directory, so the rename is atomic)
    exists, empty, when the block starts and gets the permissions of a newly created file
    (``0o666 & ~umask``, not ``mkstemp``'s ``0o600``). If the block raises, neither the
    target nor the temporary file is left behind (an existing target is left untouched).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_root_tree(path: str | os.PathLike[str], tree: str, columns: Mapping[str, Any]) -> None:
    """Write flat and jagged columns as a classic TTree (uproot's ``mktree``), atomically.

    Jagged awkward columns sharing a counter are written with ``n<name>``-style counter
    branches by uproot. (Assigning a dict to a file key would write an RNTuple instead.)
    """
    cols = dict(columns)
    import awkward as ak
    import uproot

    with atomic_path(path) as tmp:
        with uproot.recreate(tmp) as fh:
            types = {k: (v.type if isinstance(v, ak.Array) else v.dtype) for k, v in cols.items()}
            fh.mktree(
                tree,
                {
                    k: (t.content if hasattr(t, "content") and isinstance(cols[k], ak.Array) else t)
                    for k, t in types.items()
                },
            )
            fh[tree].extend(cols)


def _json_key(k: Any) -> Any:
    """Keys as the JSON text will have them (so that ``sort_keys`` works on mixed key types):
    numbers, booleans and None as JSON spells them (``1``, ``0.5``, ``true``, ``null``)."""
    if isinstance(k, np.generic):
        k = k.item()
    if k is None or isinstance(k, (bool, int, float)):
        return json.dumps(k)
    return k


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays converted to Python numbers/lists (tuples to lists),
    non-finite floats to ``None`` and mapping keys to strings -- the strict-JSON policy of
    :func:`write_json`."""
    if isinstance(obj, Mapping):
        return {_json_key(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def json_text(obj: Any, *, indent: int | None = 2, sort_keys: bool = True) -> str:
    """Strict JSON text of ``obj`` (see :func:`jsonable`); raises ``TypeError`` for objects
    JSON cannot represent. For JSON strings embedded in other files (e.g. ONNX metadata)."""
    return json.dumps(jsonable(obj), indent=indent, sort_keys=sort_keys, allow_nan=False)


def write_json(obj: Any, path: str | os.PathLike[str], *, indent: int | None = 2, sort_keys: bool = True) -> Path:
    """Write ``obj`` to ``path`` as strict JSON, atomically; the one JSON writer of the package.

    numpy scalars/arrays are converted to Python, NaN and ±inf are written as ``null`` (so
    the file is valid JSON for any parser); ``indent``/``sort_keys`` as in :func:`json.dumps`
    (``sort_keys=False`` keeps insertion order). Returns ``Path(path)``.
    """
    text = json_text(obj, indent=indent, sort_keys=sort_keys) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def null_to_nan(obj: Any) -> Any:
    """Inverse of the writer's non-finite policy for numeric data: ``None`` -> NaN, recursively
    in lists and dict values (use it on numeric fields only: ``None`` may mean "absent")."""
    if obj is None:
        return math.nan
    if isinstance(obj, Mapping):
        return {k: null_to_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [null_to_nan(v) for v in obj]
    return obj


def read_json(path: str | os.PathLike[str], *, nan_keys: Iterable[str] = ()) -> Any:
    """Read a JSON file; the top-level fields ``nan_keys`` (numeric data written by
    :func:`write_json`) get ``null`` back as NaN (:func:`null_to_nan`)."""
    obj = json.loads(Path(path).read_text())
    for k in nan_keys:
        if k in obj:
            obj[k] = null_to_nan(obj[k])
    return obj


def write_parquet(columns: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write equal-length columns (numeric, or strings/objects stored as strings) to parquet."""
    import awkward as ak

    cols = {}
    for k, v in columns.items():
        if isinstance(v, np.ndarray) and v.dtype.kind == "O":
            v = v.astype(str)
        cols[k] = v
    with atomic_path(path) as tmp:
        ak.to_parquet(ak.zip(cols, depth_limit=1), tmp)


def read_parquet(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a prepared parquet file into a dict of numpy arrays."""
    import awkward as ak

    arr = ak.from_parquet(path)
    return {f: ak.to_numpy(arr[f]) for f in arr.fields}
