"""Reading ROOT inputs in bounded-memory chunks, and atomic writing of outputs.

Flat or jagged ntuples are read with :func:`uproot.iterate` (only the branches the
expressions need, ``step_size`` events at a time). NanoAOD files are read with coffea's
NanoEvents (``NanoAODSchema``) chunk by chunk; expressions then address collection fields
with dotted names such as ``Muon.pt``.

Every problem with the inputs is raised as :class:`InputError` *before* any event is
processed, with a message naming the file and the config key that points at it.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot

__all__ = ["InputError", "check_inputs", "iterate_chunks", "atomic_path", "write_json", "write_parquet"]


class InputError(RuntimeError):
    """An input file, tree or branch named in the config is missing or unusable."""


def _branch_names(names: Sequence[str], fmt: str) -> set[str]:
    """Branches needed for a set of expression names."""
    if fmt == "nanoaod":
        # Muon.pt -> Muon_pt; a bare name is itself a branch (e.g. event, run)
        return {n.replace(".", "_") for n in names}
    return set(names)


def check_inputs(
    files: Sequence[str],
    tree: str,
    names: Sequence[str],
    *,
    fmt: str = "flat",
    files_key: str = "files",
    tree_key: str = "tree",
) -> int:
    """Check that every file exists and holds ``tree`` with the needed branches.

    Returns the total number of entries. Raises :class:`InputError` naming the config key.
    """
    total = 0
    needed = _branch_names(names, fmt)
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
            missing = sorted(b for b in needed if b not in have)
            if missing:
                raise InputError(
                    f"config key '{files_key}': tree '{tree}' in '{path}' lacks branch(es) {', '.join(missing)}"
                )
            total += t.num_entries
    return total


def iterate_chunks(
    files: Sequence[str], tree: str, names: Sequence[str], *, step_size: int, fmt: str = "flat"
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Yield ``(file, namespace)`` per chunk; namespace maps expression names to arrays."""
    names = sorted(set(names))
    if fmt == "flat":
        for path in files:
            for chunk in uproot.iterate({path: tree}, expressions=names, step_size=step_size, library="ak"):
                yield path, {n: chunk[n] for n in names}
        return
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


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename onto it only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
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


def write_json(obj: Any, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_parquet(columns: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write equal-length columns (numeric, or strings/objects stored as strings) to parquet."""
    cols = {}
    for k, v in columns.items():
        if isinstance(v, np.ndarray) and v.dtype.kind == "O":
            v = v.astype(str)
        cols[k] = v
    with atomic_path(path) as tmp:
        ak.to_parquet(ak.zip(cols, depth_limit=1), tmp)


def read_parquet(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a prepared parquet file into a dict of numpy arrays."""
    arr = ak.from_parquet(path)
    return {f: ak.to_numpy(arr[f]) for f in arr.fields}
