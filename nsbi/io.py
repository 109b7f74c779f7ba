"""Reading ROOT inputs in bounded-memory chunks, and atomic writing of outputs.

Flat or jagged ntuples are read ``step_size`` events at a time, branch by branch (only the
branches the expressions need; :func:`iterate_chunks`). NanoAOD files are read the same way:
expressions address a collection field with a dotted name such as ``Muon.pt``, which is the
jagged branch ``Muon_pt`` (counted by ``nMuon``), so NanoAOD costs what flat reading costs.
Floating-point branches are converted to float64 on reading (:func:`as_float64`), so results
do not depend on ``step_size``.

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

import copy
import json
import math
import os
import sys
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
    "ParquetRowGroup",
    "ParquetStream",
    "ROW_GROUP_ROWS",
    "as_float64",
    "atomic_path",
    "check_inputs",
    "copy_json",
    "input_problems",
    "iter_parquet",
    "iter_row_groups",
    "iterate_chunks",
    "json_text",
    "jsonable",
    "null_to_nan",
    "parquet_columns",
    "parquet_num_rows",
    "parquet_stream",
    "read_json",
    "read_parquet",
    "read_validation_json",
    "write_json",
    "write_parquet",
    "write_root_tree",
    "upgrade_poi_keys",
]


class InputError(RuntimeError):
    """An input file, tree or branch named in the config is missing or unusable."""


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


def _file_problem(
    path: str,
    tree: str,
    needed: Mapping[str, str],
    files_key: str,
    tree_key: str,
    users: Mapping[str, Sequence[tuple[str, str]]],
) -> tuple[str | None, int]:
    """The problem with one input file (``None`` when it holds ``tree`` with every branch of
    ``needed``, expression name -> branch), and the tree's number of entries (0 on a problem).
    Only the file's directory and the tree's branch list are read, no event."""
    import uproot

    if not Path(path).is_file():
        return f"config key '{files_key}': input file '{path}' does not exist", 0
    try:
        fh = uproot.open(path)
    except Exception as err:  # noqa: BLE001 - uproot raises many types for bad files
        return f"config key '{files_key}': cannot open '{path}' as a ROOT file ({err})", 0
    with fh:
        if tree not in fh:
            trees = sorted(
                {
                    k.split(";")[0]
                    for k, c in fh.classnames().items()
                    if c.startswith(("TTree", "TNtuple", "ROOT::RNTuple"))
                }
            )
            return (
                f"config key '{tree_key}': file '{path}' has no tree '{tree}' (trees: {', '.join(trees) or 'none'})",
                0,
            )
        t = fh[tree]
        have = set(t.keys())
        missing = {n: b for n, b in needed.items() if b not in have}
        if missing:
            return _missing_branches_message(missing, have, users, files_key, tree, path), 0
        return None, t.num_entries


def input_problems(
    files: Sequence[str],
    tree: str,
    names: Sequence[str],
    *,
    fmt: str = "flat",
    files_key: str = "files",
    tree_key: str = "tree",
    users: Mapping[str, Sequence[tuple[str, str]]] | None = None,
) -> list[str]:
    """Every problem of :func:`check_inputs`, one message per file, without stopping at the
    first: a file that does not exist or does not open, lacks ``tree`` or lacks branches.

    For ``nsbi check``, which lists every problem of a config before any job runs. The
    messages are those :func:`check_inputs` raises. An empty list: every file is usable.
    """
    needed = {n: _branch_name(n, fmt) for n in names}
    problems = []
    for path in files:
        problem, _ = _file_problem(path, tree, needed, files_key, tree_key, users or {})
        if problem is not None:
            problems.append(problem)
    return problems


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
    naming the config key, at the first file with a problem (:func:`input_problems` lists
    them all).
    """
    total = 0
    needed = {n: _branch_name(n, fmt) for n in names}
    for path in files:
        problem, entries = _file_problem(path, tree, needed, files_key, tree_key, users or {})
        if problem is not None:
            raise InputError(problem)
        total += entries
    return total


def _float64_leaves(layout: Any, **_: Any) -> Any:
    import awkward as ak

    if layout.is_numpy and layout.dtype.kind == "f" and layout.dtype != np.float64:
        return ak.contents.NumpyArray(layout.data.astype(np.float64), parameters=layout.parameters)
    return None


def as_float64(values: Any) -> Any:
    """Floating-point values (flat or jagged) as float64; integers and booleans unchanged.

    Every expression is then computed in double precision whatever the chunk: with float32
    branches, awkward's option handling (``lep_pt[1]`` pads with None and fills NaN) promoted
    some chunks to float64 and not others, so results depended on the chunk size.
    """
    if isinstance(values, np.ndarray):
        return values.astype(np.float64) if values.dtype.kind == "f" and values.dtype != np.float64 else values
    import awkward as ak

    return ak.transform(_float64_leaves, values) if isinstance(values, ak.Array) else values


def iterate_chunks(
    files: Sequence[str],
    tree: str,
    names: Sequence[str],
    *,
    step_size: int,
    fmt: str = "flat",
    files_key: str = "files",
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Yield ``(file, namespace)`` per chunk of at most ``step_size`` events; namespace maps
    expression names to arrays (floating-point branches as float64, :func:`as_float64`). A
    file that cannot be read (e.g. a damaged basket) raises :class:`InputError` naming
    ``files_key``, the file, tree, branch and entry range.

    Each chunk is read branch by branch (:class:`_BranchReader`), and the generator keeps no
    reference to a chunk it has yielded: once the consumer lets go of a chunk, its memory is
    free before the next one is read. Chunks end where every branch starts a new basket
    (:func:`_chunk_ranges`), so that each basket is decompressed once."""
    names = sorted(set(names))
    import uproot

    # NanoAOD: a collection field `Muon.pt` is the jagged branch `Muon_pt` (counted by nMuon), so
    # both formats read the branches the expressions name
    branches = {n: _branch_name(n, fmt) for n in names}
    wanted = sorted(set(branches.values()))
    for path in files:
        with uproot.open(path, array_cache=None, object_cache=None) as fh:
            t = fh[tree]
            if isinstance(t, uproot.behaviors.TTree.TTree):
                readers = {b: _BranchReader(t[b]) for b in wanted}
                ranges = _chunk_ranges(t.num_entries, [r.offsets for r in readers.values()], step_size)
            else:  # an RNTuple (what uproot writes for `file[name] = {...}`): its fields per range
                readers = {b: _FieldReader(t, b) for b in wanted}
                ranges = _chunk_ranges(t.num_entries, [], step_size)
            for start, stop in ranges:
                try:
                    arrays = {b: r.read(start, stop) for b, r in readers.items()}
                except Exception as err:  # noqa: BLE001 - zlib.error, uproot's DeserializationError, ValueError, ...
                    raise InputError(
                        _damaged_message(path, tree, wanted, start, stop - start, err, files_key)
                    ) from None
                ns = {n: arrays[b] for n, b in branches.items()}
                del arrays
                yield path, ns
                del ns  # the consumer alone holds the chunk now


def _chunk_ranges(n: int, offsets: Sequence[Sequence[int]], step_size: int) -> Iterator[tuple[int, int]]:
    """Consecutive entry ranges ``[start, stop)`` covering ``n`` entries, each of at most
    ``step_size`` entries: a range ends at the last entry within ``step_size`` where every
    branch starts a new basket (``offsets``: each branch's basket boundaries), or after
    ``step_size`` entries where a basket holds more than that."""
    common = set.intersection(*(set(map(int, o)) for o in offsets)) if offsets else set()
    cuts = np.array(sorted({0, n} | {c for c in common if 0 < c < n}))
    start = 0
    while start < n:
        limit = min(start + step_size, n)
        stop = int(cuts[np.searchsorted(cuts, limit, side="right") - 1])
        stop = stop if stop > start else limit
        yield start, stop
        start = stop


class _BranchReader:
    """Consecutive entry ranges of one branch, read without uproot's array cache: a flat
    numeric branch as a numpy array, any other (jagged, fixed-size, strings) as an awkward
    array, floats as float64 (:func:`as_float64`); the values of :func:`uproot.iterate` with
    ``library="ak"``. A range that ends inside a basket (a basket of more entries than a
    chunk) is read to the basket's end and the entries past the range are kept for the next
    range, so that no basket is decompressed twice; memory is then one such basket, as with
    :func:`uproot.iterate`."""

    def __init__(self, branch: Any):
        from uproot.interpretation.numerical import AsDtype

        interp = branch.interpretation
        self.branch, self.offsets = branch, np.asarray(branch.entry_offsets, dtype=np.int64)
        self.library = "np" if isinstance(interp, AsDtype) and interp.inner_shape == () else "ak"
        self._kept: Any = None  # the entries from the next range's start on, already read

    def read(self, start: int, stop: int) -> Any:
        """Entries ``[start, stop)``, ``start`` being the previous range's ``stop``."""
        parts = []
        if self._kept is not None:
            parts.append(self._kept[: stop - start])
            rest = self._kept[stop - start :]
            self._kept = rest if len(rest) else None
            start += len(parts[0])
        if start < stop:
            i = int(np.searchsorted(self.offsets, stop))
            end = int(self.offsets[i]) if i < len(self.offsets) else stop  # the end of stop - 1's basket
            values = self.branch.array(entry_start=start, entry_stop=end, library=self.library, array_cache=None)
            values = as_float64(values)
            if end > stop:  # views: the basket's arrays live until both parts are dropped
                self._kept = values[stop - start :]
                values = values[: stop - start]
            parts.append(values)
        return parts[0] if len(parts) == 1 else _concatenate(parts)


class _FieldReader:
    """Entry ranges of one field of an RNTuple (no per-branch baskets to align to): the values
    of :func:`uproot.iterate` with ``library="ak"`` (flat numeric fields as numpy arrays),
    floats as float64 (:func:`as_float64`)."""

    def __init__(self, ntuple: Any, field: str):
        self.ntuple, self.field = ntuple, field

    def read(self, start: int, stop: int) -> Any:
        values = self.ntuple.arrays([self.field], entry_start=start, entry_stop=stop)[self.field]
        if values.ndim == 1 and values.fields == []:
            try:
                import awkward as ak

                values = ak.to_numpy(values)
            except ValueError:  # option or variable-length values stay awkward
                pass
        return as_float64(values)


def _concatenate(parts: Sequence[Any]) -> Any:
    """Consecutive pieces of one branch (numpy or awkward arrays) as one array."""
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts)
    import awkward as ak

    return ak.concatenate(parts)


def _damaged_message(
    path: str, tree: str, branches: Sequence[str], start: int, step_size: int, err: Exception, files_key: str
) -> str:
    """Say which file, tree, branch and entries could not be read (the branch is found by
    reading each one alone over the failing entry range)."""
    import uproot

    stop, culprit = start + step_size, None
    try:
        with uproot.open(path) as fh:
            t = fh[tree]
            stop = min(stop, t.num_entries)
            for b in branches:
                try:
                    t[b].array(entry_start=start, entry_stop=stop, library="np")
                except Exception:  # noqa: BLE001 - the same errors as above: this is the damaged branch
                    culprit = b
                    break
    except Exception:  # noqa: BLE001 - the file may not even open again; report what is known
        pass
    where = f"branch '{culprit}', " if culprit else ""
    return (
        f"config key '{files_key}': file '{path}' is damaged: tree '{tree}', {where}entries {start}-{stop - 1} "
        f"cannot be read ({type(err).__name__}: {err})"
    )


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


def copy_json(obj: Any) -> Any:
    """A deep copy of a JSON-like document (dicts, lists, tuples, strings, numbers), several
    times faster than :func:`copy.deepcopy`, which dominated loading a published likelihood;
    other objects (numpy arrays, ...) are copied by :func:`copy.deepcopy`."""
    if isinstance(obj, dict):
        return {k: copy_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [copy_json(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(copy_json(v) for v in obj)
    if obj is None or isinstance(obj, (str, int, float)):
        return obj
    return copy.deepcopy(obj)


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


#: Keys of the validation outputs (:mod:`nsbi.neyman`) that named the POI "mu", per kind of
#: output: (where, old key, new key); ``where`` is the path from the top of the object to the
#: mappings holding the key, ``"*"`` standing for every value of a mapping or item of a list.
#: The old keys are read, with a DeprecationWarning, for one more version.
RENAMED_POI_KEYS: dict[str, tuple[tuple[tuple[str, ...], str, str], ...]] = {
    # one (POI grid point, toy batch) of toys: nsbi.neyman.compute_chunk
    "chunk": (((), "mu", "poi_value"), ((), "mu_index", "poi_index"), ((), "mu_hat", "poi_hat")),
    # t of one dataset on a POI grid: nsbi.neyman.observed_t
    "t_curve": (((), "mu", "poi_values"), ((), "mu_hat", "poi_hat")),
    # the gathered Neyman belt: nsbi.neyman.gather
    "belt": (((), "mu", "poi_values"), (("datasets", "*"), "mu_hat", "poi_hat")),
    # coverage: nsbi.neyman.coverage_from_chunks
    "coverage": ((("points", "*"), "mu_true", "poi_true"),),
}


def _holders(obj: Any, where: tuple[str, ...]) -> Iterator[Any]:
    if not where:
        yield obj
        return
    step, rest = where[0], where[1:]
    if step == "*":
        items = obj.values() if isinstance(obj, Mapping) else obj if isinstance(obj, list) else ()
        for item in items:
            yield from _holders(item, rest)
    elif isinstance(obj, Mapping) and step in obj:
        yield from _holders(obj[step], rest)


def caller_stacklevel() -> int:
    """``stacklevel`` for :func:`warnings.warn`, called from the function that calls this
    one, that names the first frame outside the nsbi package (the user's code or job script:
    where a DeprecationWarning is meant to be seen). Frames whose module name is None are
    passed over too: Python drops a warning attributed to one, and Snakemake runs the
    Snakefile with ``__name__ = None`` (the warning then names the Snakemake code that runs it)."""
    package = str(Path(__file__).resolve().parent) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and (
        str(Path(frame.f_code.co_filename).resolve()).startswith(package) or frame.f_globals.get("__name__") is None
    ):
        frame, level = frame.f_back, level + 1
    return level


def upgrade_poi_keys(obj: Any, kind: str, source: Any = None) -> Any:
    """``obj`` (a validation output of type ``kind``, see :data:`RENAMED_POI_KEYS`) with the
    POI-neutral keys: keys written by an earlier version (``mu``, ``mu_hat``, ``mu_true``, ...)
    are renamed, with one DeprecationWarning that names them, the new keys and ``source`` (the
    file). The one reader of the old keys, used by every reader of these outputs. Returns
    ``obj`` itself when it has no old key, else an upgraded copy (``obj`` is not changed); an
    object with both an old key and its new one is a ``ValueError``."""
    renames = RENAMED_POI_KEYS[kind]
    found: list[tuple[str, str]] = []
    for where, old, new in renames:
        for holder in _holders(obj, where):
            if isinstance(holder, Mapping) and old in holder:
                if new in holder:
                    raise ValueError(f"{source or kind}: both the old key '{old}' and its new name '{new}'")
                if (old, new) not in found:
                    found.append((old, new))
    if not found:
        return obj
    import copy

    obj = copy.deepcopy(obj)
    for where, old, new in renames:
        for holder in _holders(obj, where):
            if isinstance(holder, dict) and old in holder:
                items = [(new if k == old else k, v) for k, v in holder.items()]
                holder.clear()
                holder.update(items)
    olds = ", ".join(f"'{o}'" for o, _ in found)
    news = ", ".join(f"'{n}'" for _, n in found)
    warnings.warn(
        f"{source or kind}: key(s) {olds} of a {kind} written by an earlier nsbi version are deprecated and "
        f"will not be read by the next version; read as {news} (rerun the job that wrote it to update the file)",
        DeprecationWarning,
        stacklevel=caller_stacklevel(),
    )
    return obj


def read_validation_json(path: str | os.PathLike[str], kind: str) -> Any:
    """Read a validation output of type ``kind`` (:data:`RENAMED_POI_KEYS`) written by
    :func:`write_json`, with the keys of an earlier version upgraded (:func:`upgrade_poi_keys`)."""
    return upgrade_poi_keys(json.loads(Path(path).read_text()), kind, path)


#: rows per parquet row group: a file's layout (and bytes) do not depend on the chunk size it
#: was produced in, and readers that go row group by row group hold at most this many rows
ROW_GROUP_ROWS = 65_536

#: bytes of a parquet data page (pyarrow's default is 1 MiB, more than a float64 column of a
#: row group, 512 KiB): the writer encodes and compresses one page at a time, so that writing
#: a row group does not allocate two whole column chunks
DATA_PAGE_BYTES = 64 * 1024

#: bytes read from a parquet file at a time (:func:`iter_row_groups`): a column of a row group is
#: read and decompressed in pieces, not read whole first
READ_BUFFER_BYTES = 64 * 1024


def _arrow_column(values: Any) -> Any:
    import pyarrow as pa

    v = np.asarray(values)
    if v.dtype.kind in "OU":  # strings (e.g. the process of each event)
        return pa.array(v.astype(str).tolist(), type=pa.string())
    return pa.array(v)


class ParquetStream:
    """Columns written to parquet chunk by chunk, in row groups of ``row_group_rows`` rows
    (buffered across chunks), so memory is one chunk plus one row group however long the
    file. Use through :func:`parquet_stream`, which makes the file appear atomically.

    The whole row groups of a chunk are written straight from its arrays (numeric columns
    reach pyarrow without a copy); only the rows that do not fill a group are copied, into a
    buffer of one row group allocated once, so the stream never keeps a chunk alive after
    :meth:`write` returns. With ``rows``, :meth:`write` copies only those rows into the buffer,
    one column at a time (:meth:`_write_rows`): a job that keeps part of each row group of a
    file (the region split) then holds one column of its input, not the row group. Only string
    columns are dictionary-encoded: a float column's row group of 65 536 rows never reaches
    pyarrow's dictionary size limit, so dictionary encoding made continuous features larger on
    disk, slower to write and costlier in memory. Data pages hold :data:`DATA_PAGE_BYTES`."""

    def __init__(self, path: str | os.PathLike[str], row_group_rows: int = ROW_GROUP_ROWS):
        self.path, self.rows = Path(path), int(row_group_rows)
        self._writer: Any = None
        self._buffer: dict[str, np.ndarray] | None = None  # the rows of the next, unfilled group
        self._n_buffer = 0
        self._closed = False
        self.n_rows = 0

    def write(self, columns: Mapping[str, Any], rows: np.ndarray | None = None) -> None:
        """Append equal-length columns (the same names in every call). With ``rows`` (increasing
        row indices), only those rows: see :meth:`_write_rows`."""
        if rows is not None:
            self._write_rows(columns, np.asarray(rows))
            return
        chunk = {k: np.asarray(v) for k, v in columns.items()}
        n = len(next(iter(chunk.values()))) if chunk else 0
        if self._writer is None:
            self._open(chunk)
        self.n_rows += n
        start = 0
        if self._n_buffer:  # first fill the group the previous chunks began
            start = min(self.rows - self._n_buffer, n)
            self._fill(chunk, 0, start)
            if self._n_buffer < self.rows:
                return
            self._write_buffer()
        end = start + (n - start) // self.rows * self.rows
        for i in range(start, end, self.rows):  # whole groups, without a copy
            self._write_group({k: v[i : i + self.rows] for k, v in chunk.items()})
        if end < n:
            self._fill(chunk, end, n)

    def _write_rows(self, columns: Mapping[str, Any], rows: np.ndarray) -> None:
        """Append rows ``rows`` of ``columns``, copied straight into the row-group buffer column
        by column; each column is looked up when it is copied and let go of before the next, so
        that a mapping that reads its columns on lookup (:class:`ParquetRowGroup`) is held one
        column at a time. A column is looked up again for the rows that start the next group."""
        if self._writer is None:
            self._open({k: np.asarray(columns[k])[:0].copy() for k in columns})
        self.n_rows += len(rows)
        start = 0
        while start < len(rows):
            part = rows[start : start + self.rows - self._n_buffer]
            self._fill_rows(columns, part)
            start += len(part)
            if self._n_buffer == self.rows:
                self._write_buffer()

    def _fill_rows(self, columns: Mapping[str, Any], rows: np.ndarray) -> None:
        """Copy rows ``rows`` of ``columns`` into the row-group buffer (dtypes as :meth:`_fill`)."""
        buffer, at = self._buffers(), self._n_buffer
        for k in columns:
            values, out = np.asarray(columns[k]), buffer[k][at : at + len(rows)]
            if values.dtype == out.dtype:
                np.take(values, rows, out=out)
            else:
                np.copyto(out, values[rows], casting="same_kind")
            del values  # before the next column is read
        self._n_buffer += len(rows)

    def _open(self, chunk: Mapping[str, np.ndarray]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._empty = {k: v[:0].copy() for k, v in chunk.items()}  # the columns of a file without rows
        schema = pa.schema([(k, _arrow_column(v).type) for k, v in self._empty.items()])
        strings = [f.name for f in schema if pa.types.is_string(f.type)]
        self._writer = pq.ParquetWriter(self.path, schema, use_dictionary=strings, data_page_size=DATA_PAGE_BYTES)
        self._schema = schema

    def _fill(self, chunk: Mapping[str, np.ndarray], start: int, stop: int) -> None:
        """Copy rows ``[start, stop)`` of ``chunk`` into the row-group buffer, which has the
        dtypes of the first chunk (strings as objects; values that would need a change of kind,
        e.g. floats into an integer column, are an error)."""
        buffer, at = self._buffers(), self._n_buffer
        for k, v in chunk.items():
            np.copyto(buffer[k][at : at + stop - start], v[start:stop], casting="same_kind")
        self._n_buffer += stop - start

    def _buffers(self) -> dict[str, np.ndarray]:
        """The row-group buffer, allocated at the first use."""
        if self._buffer is None:
            self._buffer = {
                k: np.empty(self.rows, dtype=object if v.dtype.kind in "OU" else v.dtype)
                for k, v in self._empty.items()
            }
        return self._buffer

    def _write_buffer(self) -> None:
        """Write the buffered rows as one row group and empty the buffer."""
        n, self._n_buffer = self._n_buffer, 0
        self._write_group({k: v[:n] for k, v in (self._buffer or {}).items()})

    def _write_group(self, columns: Mapping[str, np.ndarray]) -> None:
        """Write one row group (an empty one for a file without rows)."""
        import pyarrow as pa

        table = pa.table({k: _arrow_column(columns[k]) for k in self._schema.names}, schema=self._schema)
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))

    def close(self, columns: Mapping[str, Any] | None = None) -> None:
        """Write the last, partial row group and the footer (once; later calls do nothing);
        ``columns`` (names and dtypes, e.g. zero-length arrays) define the schema of a file no
        row was written to."""
        if self._closed:
            return
        self._closed = True
        if self._writer is None:
            self._open({k: np.asarray(v) for k, v in (columns or {}).items()})
        if self._n_buffer:
            self._write_buffer()
        elif self.n_rows == 0:
            self._write_group(self._empty)
        self._writer.close()


@contextmanager
def parquet_stream(path: str | os.PathLike[str], row_group_rows: int | None = None) -> Iterator[ParquetStream]:
    """A :class:`ParquetStream` into a temporary file renamed onto ``path`` when the block
    succeeds (:func:`atomic_path`): a block that raises, e.g. after a failed check on the
    last chunk, leaves nothing behind."""
    with atomic_path(path) as tmp:
        stream = ParquetStream(tmp, row_group_rows or ROW_GROUP_ROWS)
        try:
            yield stream
        except BaseException:
            if stream._writer is not None and not stream._closed:
                stream._writer.close()
            raise
        stream.close()


def write_parquet(columns: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write equal-length columns (numeric, or strings/objects stored as strings) to parquet
    (the same layout as a :func:`parquet_stream` of the same rows)."""
    with parquet_stream(path) as out:
        out.write(columns)


def _numpy_column(col: Any, view: bool = False) -> np.ndarray:
    """One column (a pyarrow ChunkedArray) as a numpy array: strings as ``str``, other types
    copied, or with ``view`` a read-only view of pyarrow's buffer where the column is one chunk
    of integers or floats without nulls (no copy)."""
    import pyarrow as pa

    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return np.asarray(col.to_pylist(), dtype=str)
    numeric = pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
    if view and numeric and col.num_chunks == 1 and col.null_count == 0:
        return col.chunk(0).to_numpy(zero_copy_only=True)
    return col.to_numpy()


def _numpy_columns(table: Any) -> dict[str, np.ndarray]:
    return {name: _numpy_column(col) for name, col in zip(table.column_names, table.columns)}


def parquet_columns(path: str | os.PathLike[str]) -> list[str]:
    """The column names of a parquet file (from its footer; no data is read)."""
    import pyarrow.parquet as pq

    return list(pq.ParquetFile(path).schema_arrow.names)


def parquet_num_rows(path: str | os.PathLike[str]) -> int:
    """The number of rows of a parquet file (from its footer; no data is read)."""
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def iter_parquet(path: str | os.PathLike[str], columns: Sequence[str] | None = None) -> Iterator[dict[str, np.ndarray]]:
    """The row groups of a parquet file, one dict of numpy arrays each (only ``columns``)."""
    import pyarrow.parquet as pq

    fh = pq.ParquetFile(path)
    for i in range(fh.num_row_groups):
        yield _numpy_columns(fh.read_row_group(i, columns=None if columns is None else list(columns)))


class ParquetRowGroup(Mapping[str, np.ndarray]):
    """One row group of a parquet file as a mapping of column name -> numpy array, each column
    read alone when it is looked up (and read again at each lookup: nothing is cached), so
    that a consumer that uses one column at a time holds one column, not the row group.
    Numeric columns are read-only views of pyarrow's buffers (:func:`_numpy_column`)."""

    def __init__(self, fh: Any, index: int):
        self._fh, self._index = fh, int(index)
        self._names = list(fh.schema_arrow.names)
        self.num_rows = int(fh.metadata.row_group(self._index).num_rows)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise KeyError(name)
        table = self._fh.read_row_group(self._index, [name], use_threads=False)
        return _numpy_column(table.column(0), view=True)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def iter_row_groups(path: str | os.PathLike[str]) -> Iterator[ParquetRowGroup]:
    """The row groups of a parquet file, each a :class:`ParquetRowGroup` (columns read on
    lookup, one at a time, in pieces of :data:`READ_BUFFER_BYTES`, without pre-buffering:
    memory is the columns the consumer holds)."""
    import pyarrow.parquet as pq

    fh = pq.ParquetFile(path, pre_buffer=False, buffer_size=READ_BUFFER_BYTES)
    for i in range(fh.num_row_groups):
        yield ParquetRowGroup(fh, i)


def read_parquet(path: str | os.PathLike[str], columns: Sequence[str] | None = None) -> dict[str, Any]:
    """Read a parquet file into a dict of numpy arrays (only ``columns``, when given)."""
    import pyarrow.parquet as pq

    return _numpy_columns(pq.read_table(path, columns=None if columns is None else list(columns)))
