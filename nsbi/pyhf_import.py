"""Published pyhf likelihoods as inputs: JSON Patches and patchsets applied to a pyhf workspace.

A published likelihood (e.g. on HEPData) is a background-only pyhf workspace plus a patchset:
one JSON Patch (RFC 6902) per signal hypothesis, each adding the signal sample and often
removing validation-region channels (but not their observations, which pyhf ignores, as
:func:`nsbi.workspace.from_pyhf` does).

* :func:`read_patch` reads a JSON Patch file (a list of operations, or one patch of a patchset:
  an object with ``"patch"``);
* :func:`apply_patch` applies one to a workspace dict, operation by operation, so that an
  operation that does not apply is named (its index, op and path, and the patch file);
* :func:`read_patchset` reads a pyhf patchset (validated by :class:`pyhf.patchset.PatchSet`);
* :func:`apply_patchset` verifies the patchset's digests against the background-only workspace
  (pyhf's :meth:`~pyhf.patchset.PatchSet.verify`: sha256/md5 of the canonical JSON) and applies
  the patch of one point, chosen by name or by values (``"1000,100"``);
* :func:`read_pyhf_workspace` does all of it for files: the patchset point first (its digest is
  that of the unpatched workspace), then the patch files in order.

Errors are :class:`nsbi.workspace.WorkspaceError` naming the files (and the point).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .workspace import WorkspaceError

__all__ = [
    "apply_patch",
    "apply_patchset",
    "find_patch",
    "parse_point",
    "read_json",
    "read_patch",
    "read_patchset",
    "read_pyhf_workspace",
]

#: at most this many points are listed in the error for an unknown point
MAX_LISTED_POINTS = 50


def read_json(path: str | Path, what: str = "file") -> Any:
    """JSON content of ``path``; a missing file or invalid JSON is a :class:`WorkspaceError`."""
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise WorkspaceError(f"{what} {path}: no such file") from None
    except json.JSONDecodeError as e:
        raise WorkspaceError(f"{what} {path}: not valid JSON: {e}") from None


def _check_ops(ops: Any, source: str) -> list[dict]:
    if isinstance(ops, Mapping) and "patch" in ops:  # one entry of a patchset
        ops = ops["patch"]
    if not isinstance(ops, list):
        raise WorkspaceError(f"{source}: a JSON Patch is a list of operations, got {type(ops).__name__}")
    for i, op in enumerate(ops):
        if not isinstance(op, Mapping) or "op" not in op or "path" not in op:
            raise WorkspaceError(f"{source}: operation {i} needs 'op' and 'path': {op!r}")
    return list(ops)


def read_patch(path: str | Path) -> list[dict]:
    """The operations of a JSON Patch file: a list of operations, or an object with ``"patch"``
    (one patch of a patchset, as ``pyhf patchset extract`` writes them without metadata)."""
    return _check_ops(read_json(path, "patch"), f"patch {path}")


def apply_patch(spec: Mapping, ops: Sequence[Mapping], source: str = "patch", target: str = "workspace") -> dict:
    """``spec`` with the JSON Patch ``ops`` applied (a new dict; ``spec`` is not changed).

    The operations are applied one at a time (RFC 6902 semantics, package ``jsonpatch``, which
    pyhf uses), so an operation that fails is named: ``source: operation i (op path) does not
    apply to target: ...``.
    """
    import jsonpatch
    import jsonpointer

    doc = copy.deepcopy(dict(spec))
    for i, op in enumerate(_check_ops(list(ops), source)):
        try:
            doc = jsonpatch.JsonPatch([op]).apply(doc, in_place=True)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, KeyError, IndexError, TypeError) as e:
            what = f"{op.get('op')} {op.get('path')}"
            raise WorkspaceError(f"{source}: operation {i} ({what}) does not apply to {target}: {e}") from None
    return doc


def read_patchset(spec_or_path: Mapping | str | Path, source: str | None = None):
    """A :class:`pyhf.patchset.PatchSet` from a file or a dict; schema errors name the file."""
    import pyhf

    if isinstance(spec_or_path, Mapping):
        spec, source = spec_or_path, source or "patchset"
    else:
        source = source or f"patchset {spec_or_path}"
        spec = read_json(spec_or_path, "patchset")
    if not isinstance(spec, Mapping):
        raise WorkspaceError(f"{source}: top level must be a JSON object")
    try:
        return pyhf.PatchSet(dict(spec))
    except pyhf.exceptions.InvalidSpecification as e:
        where = f"$.{e.path}" if e.path else "$"
        raise WorkspaceError(f"{source}: not a pyhf patchset: at {where}: {e.parent.message}") from None
    except pyhf.exceptions.InvalidPatchSet as e:
        raise WorkspaceError(f"{source}: not a valid pyhf patchset: {e}") from None


def parse_point(point: str | Sequence) -> tuple:
    """Values of a point given as text (``"1000,100"``, ``"1000 100"``): numbers where they
    parse as numbers, else strings. A sequence is returned as a tuple."""
    if not isinstance(point, str):
        return tuple(point)
    out: list[Any] = []
    for tok in point.replace(",", " ").split():
        try:
            out.append(int(tok))
        except ValueError:
            try:
                out.append(float(tok))
            except ValueError:
                out.append(tok)
    return tuple(out)


def _describe(patch, labels) -> str:
    vals = ", ".join(f"{k}={v}" for k, v in zip(labels, patch.values))
    return f"{patch.name} ({vals})"


def find_patch(patchset, point: str | Sequence, source: str = "patchset"):
    """The patch of ``patchset`` whose name is ``point`` or whose values equal ``point``
    (:func:`parse_point`); an unknown point is an error listing the available ones."""
    if isinstance(point, str):
        for p in patchset.patches:
            if p.name == point:
                return p
    values = parse_point(point)
    for p in patchset.patches:
        if len(p.values) == len(values) and all(a == b for a, b in zip(p.values, values)):
            return p
    avail = [_describe(p, patchset.labels) for p in patchset.patches]
    more = f", ... ({len(avail)} in all)" if len(avail) > MAX_LISTED_POINTS else ""
    raise WorkspaceError(
        f"{source}: no point {point!r} (neither a patch name nor values of {', '.join(patchset.labels)}); "
        f"available points: {', '.join(avail[:MAX_LISTED_POINTS])}{more}"
    )


def apply_patchset(
    spec: Mapping,
    patchset,
    point: str | Sequence,
    source: str = "patchset",
    target: str = "background-only workspace",
) -> dict:
    """The workspace of ``point`` of ``patchset`` (a :class:`pyhf.patchset.PatchSet`, a dict or a
    file): the digests are verified against ``spec`` as pyhf does, then the point's patch is
    applied (:func:`apply_patch`). Errors name ``source`` (the patchset file), ``target`` and the point."""
    import pyhf

    if not isinstance(patchset, pyhf.PatchSet):
        if not isinstance(patchset, Mapping) and source == "patchset":
            source = f"patchset {patchset}"
        patchset = read_patchset(patchset, source)
    patch = find_patch(patchset, point, source)
    try:
        patchset.verify(dict(spec))
    except pyhf.exceptions.PatchSetVerificationError as e:
        raise WorkspaceError(
            f"{source}: made for another background-only workspace than {target} (point {patch.name!r}): {e}"
        ) from None
    return apply_patch(spec, patch.patch, source=f"{source}, point {patch.name!r}", target=target)


def read_pyhf_workspace(
    path: str | Path,
    patches: Sequence[str | Path] = (),
    patchset: str | Path | None = None,
    point: str | None = None,
    spec: Mapping | None = None,
) -> tuple[dict, list[dict]]:
    """The pyhf workspace dict of ``path`` (or ``spec``, read from it already) with the point
    ``point`` of ``patchset`` and then the JSON Patch files ``patches`` applied, in that order.

    Returns ``(spec, applied)``; ``applied`` describes what was applied, for the workspace
    metadata: ``{"patchset": file, "point": name, "values": [...], "labels": [...]}`` and
    ``{"patch": file}``.
    """
    if (patchset is None) != (point is None):
        raise WorkspaceError("--patchset and --point go together: give both or neither")
    if spec is None:
        spec = read_json(path, "workspace")
    if not isinstance(spec, Mapping):
        raise WorkspaceError(f"workspace {path}: top level must be a JSON object")
    applied: list[dict] = []
    if patchset is not None:
        src = f"patchset {patchset}"
        ps = read_patchset(patchset, src)
        patch = find_patch(ps, point, src)
        spec = apply_patchset(spec, ps, patch.name, source=src, target=f"workspace {path}")
        applied.append(
            {"patchset": str(patchset), "point": patch.name, "labels": list(ps.labels), "values": list(patch.values)}
        )
    for f in patches:
        spec = apply_patch(spec, read_patch(f), source=f"patch {f}", target=f"workspace {path}")
        applied.append({"patch": str(f)})
    return dict(spec), applied
