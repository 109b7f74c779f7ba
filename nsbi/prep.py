"""Data preparation: preselection, features and weights, then the split into regions.

Stage 1 (:func:`prepare`, one job per (process, variation)): the inputs are read chunk by
chunk, the preselection and the sample's own cut are applied, the configured features and
the (varied) event weight are computed, and the result is written as a columnar parquet
file with one float64 column per feature, ``weight`` and ``event_key`` (uint64), next to a
JSON summary of the yields.

Stage 2 (:func:`split_region`, one job per (region, process, variation)): the region
selection, a cut on the features and, when configured, on the region classifier's scores
``score_<class>``, picks the events of each region.

Negative weights (e.g. interference samples) are legitimate and pass through unchanged;
the summary counts them. Features that evaluate to NaN/inf, an empty selection, all-zero
weights and missing inputs are errors that name the config key and the file. The one
exception: a sample may be absent from a binned region (a warning; the sample is left out of
that region's channel).
"""

from __future__ import annotations

import logging
import math
from collections import ChainMap
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from . import config as nconfig
from .expr import ExpressionError, parse
from .io import InputError, check_inputs, iter_row_groups, iterate_chunks, parquet_stream, write_json

__all__ = [
    "PrepError",
    "JobExpressions",
    "is_absent",
    "parse_job",
    "prep_spec",
    "prepare",
    "prepare_from_config",
    "region_spec",
    "select_chunks",
    "select_to_files",
    "split_region",
    "split_region_to_files",
    "write_prepared",
    "yields_of_parquet",
    "yields_summary",
]


log = logging.getLogger(__name__)


class PrepError(RuntimeError):
    """Data preparation failed; the message names the config key and the file."""


def _to_flat(value: Any, n: int, what: str, key: str, path: str) -> np.ndarray:
    """Convert an expression result to a flat float64 array of length ``n``."""
    if np.isscalar(value) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return np.full(n, float(value))
    try:
        arr = ak.to_numpy(value) if type(value).__module__.startswith("awkward") else np.asarray(value)
    except (ValueError, TypeError):
        raise PrepError(
            f"config key '{key}': {what} is not a single number per event in '{path}' "
            "(reduce jagged collections with max/min/sum/count or index them, e.g. lep_pt[0])"
        ) from None
    if arr.ndim != 1 or len(arr) != n:
        raise PrepError(f"config key '{key}': {what} is not a single number per event in '{path}'")
    return np.asarray(arr, dtype=np.float64)  # a float64 column is not copied


def _mask(value: Any, n: int, key: str, path: str) -> np.ndarray:
    if np.isscalar(value):
        return np.full(n, bool(value))
    arr = ak.to_numpy(value) if type(value).__module__.startswith("awkward") else np.asarray(value)
    if arr.ndim != 1 or len(arr) != n:
        raise PrepError(f"config key '{key}': selection is not one boolean per event in '{path}'")
    return arr.astype(bool)


def yields_summary(weight: np.ndarray) -> dict[str, Any]:
    return {
        "sumw": float(np.sum(weight)),
        "sumw2": float(np.sum(weight**2)),
        "n_events": int(len(weight)),
        "n_negative": int(np.sum(weight < 0)),
        "sumw_negative": float(np.sum(weight[weight < 0])),
    }


@dataclass
class JobExpressions:
    """The parsed expressions of one select job (:func:`parse_job`): the weight, the features
    and the selections (config key -> expression); ``users`` maps every branch read to the
    (config key, expression) pairs that read it (so a missing branch is reported under the
    key to fix); ``errors`` are the parse errors, each naming its config key."""

    weight: Any
    features: dict[str, Any]
    selections: dict[str, Any]
    users: dict[str, list[tuple[str, str]]]
    errors: list[str]


def parse_job(
    weight: str,
    features: Mapping[str, str],
    selections: Mapping[str, str],
    event_key: str,
    keys: Mapping[str, Any] | None = None,
) -> JobExpressions:
    """Parse every expression of a select job (arguments as :func:`select_chunks`), collecting
    every parse error rather than stopping at the first. Used by the select jobs and by
    :func:`nsbi.check.check_config`."""
    keys = dict(keys or {})
    k_weight, k_feat = keys.get("weight", "weight"), keys.get("features", "features")
    users: dict[str, list[tuple[str, str]]] = {event_key: [(keys.get("event_key", "input.event_key"), event_key)]}
    errors: list[str] = []

    def compile_(key: str, text: str) -> Any:
        try:
            e = parse(text)
        except ExpressionError as err:
            errors.append(f"config key '{key}': {err}")
            return None
        for n in e.names:
            users.setdefault(n, []).append((key, text))
        return e

    w_expr = compile_(k_weight, weight)
    f_exprs = {name: compile_(_feature_key(k_feat, name), text) for name, text in features.items()}
    s_exprs = {key: compile_(key, text) for key, text in selections.items()}
    return JobExpressions(w_expr, f_exprs, s_exprs, users, errors)


def select_chunks(
    *,
    files: Sequence[str],
    tree: str,
    weight: str,
    features: Mapping[str, str],
    selections: Mapping[str, str],
    event_key: str,
    step_size: int = 200_000,
    fmt: str = "flat",
    keys: Mapping[str, Any] | None = None,
    label: str = "",
) -> Iterator[dict[str, np.ndarray]]:
    """Select events and compute features and weights, one chunk of ``step_size`` input events
    at a time (a generator of column dicts; chunks without a selected event are skipped).
    Every expression is parsed and every input checked when this is called, before any event
    is read. :func:`prepare` collects the chunks, :func:`select_to_files` streams them to disk.

    Parameters
    ----------
    files, tree, fmt, step_size
        Inputs, read in chunks of ``step_size`` events.
    weight
        Weight expression.
    features
        Feature name -> expression.
    selections
        Config key -> cut expression; an event is kept if it passes all of them.
    event_key
        Branch with a per-event integer identifier (k-fold key).
    keys
        Config keys for error messages: ``files``, ``tree``, ``weight``, ``features``
        (``{feature name: key}``, or a prefix the feature name is appended to) and
        ``event_key``. A branch missing from the input is reported under the key of every
        expression that reads it.
    label
        Human-readable description (e.g. "region 'SR', sample 'S', variation 'nominal'").

    Returns a dict of numpy arrays: one per feature, ``weight`` and ``event_key``.
    """
    keys = dict(keys or {})
    k_files, k_tree = keys.get("files", "files"), keys.get("tree", "tree")
    # --- compile every expression first: errors before any I/O
    job = parse_job(weight, features, selections, event_key, keys)
    if job.errors:
        raise PrepError(job.errors[0])
    w_expr, f_exprs, s_exprs, users = job.weight, job.features, job.selections, job.users
    names = set(users)

    try:
        check_inputs(files, tree, sorted(names), fmt=fmt, files_key=k_files, tree_key=k_tree, users=users)
    except InputError as err:
        raise PrepError(str(err)) from None

    return _selected_chunks(
        files, tree, sorted(names), step_size, fmt, k_files, s_exprs, f_exprs, w_expr, event_key, keys, label
    )


def _selected_chunks(files, tree, names, step_size, fmt, k_files, s_exprs, f_exprs, w_expr, event_key, keys, label):
    """The generator behind :func:`select_chunks` (its checks have run when this starts). It
    holds no chunk while the next one is read: a consumer that lets go of each chunk (as
    :func:`select_to_files` does) has one chunk in memory, not two."""
    chunks = iterate_chunks(files, tree, names, step_size=step_size, fmt=fmt, files_key=k_files)
    for path, ns in _prep_errors(chunks):
        out = _select_chunk(path, ns, s_exprs, f_exprs, w_expr, event_key, keys, label)
        del ns
        if out is not None:
            yield out
        del out


def _select_chunk(path, ns, s_exprs, f_exprs, w_expr, event_key, keys, label) -> dict[str, np.ndarray] | None:
    """The selected events of one chunk (``ns``: expression name -> array) as flat columns: one
    per feature, ``weight`` and ``event_key``; ``None`` when no event passes. When every event
    passes, a feature or weight that is a float64 branch is that branch's array, not a copy."""
    k_weight, k_feat = keys.get("weight", "weight"), keys.get("features", "features")
    k_key = keys.get("event_key", "input.event_key")
    n = len(ns[event_key])
    keep = np.ones(n, dtype=bool)
    for key, e in s_exprs.items():
        keep &= _mask(e.evaluate(ns), n, key, path)
    if not keep.any():
        return None
    out: dict[str, np.ndarray] = {}
    sel = ns if keep.all() else {k: v[keep] for k, v in ns.items()}  # no copy when every event passes
    m = int(keep.sum())
    with np.errstate(all="ignore"):
        for name, e in f_exprs.items():
            vals = _to_flat(e.evaluate(sel), m, f"feature '{name}'", _feature_key(k_feat, name), path)
            bad = ~np.isfinite(vals)
            if bad.any():
                raise PrepError(
                    f"config key '{_feature_key(k_feat, name)}': feature '{name}' = {e.text!r} is NaN/inf "
                    f"for {int(bad.sum())} selected event(s) in '{path}' ({label})" + _empty_list_hint(e, sel, bad)
                )
            out[name] = vals
        w = _to_flat(w_expr.evaluate(sel), m, "weight", k_weight, path)
    if not np.isfinite(w).all():
        raise PrepError(f"config key '{k_weight}': weight {w_expr.text!r} is NaN/inf in '{path}' ({label})")
    out["weight"] = w
    keyvals = (
        ak.to_numpy(sel[event_key])
        if type(sel[event_key]).__module__.startswith("awkward")
        else np.asarray(sel[event_key])
    )
    if keyvals.ndim != 1 or not np.issubdtype(keyvals.dtype, np.integer):
        raise PrepError(f"config key '{k_key}': branch '{event_key}' must hold one integer per event in '{path}'")
    out["event_key"] = keyvals.astype(np.uint64, copy=False)  # a uint64 branch is not copied
    return out


def prepare(**spec: Any) -> dict[str, np.ndarray]:
    """Every selected event of :func:`select_chunks` in memory: ``{feature: values, "weight",
    "event_key"}`` (for tests and small inputs; the workflow streams, :func:`select_to_files`)."""
    keys = dict(spec.get("keys") or {})
    out: dict[str, list[np.ndarray]] = {}
    for chunk in select_chunks(**spec):
        for k, v in chunk.items():
            out.setdefault(k, []).append(v)
    result = {k: np.concatenate(v) for k, v in out.items()}
    n = len(result["weight"]) if result else 0
    sumw_nonzero = bool(n and np.any(result["weight"] != 0))
    _check_selected(n, sumw_nonzero, spec, keys)
    return result


def _check_selected(n: int, any_nonzero_weight: bool, spec: Mapping[str, Any], keys: Mapping[str, Any]) -> None:
    """No event selected, or only zero weights: an error naming the selections or the weight."""
    label, files = spec.get("label", ""), ", ".join(spec["files"])
    if n == 0:
        raise PrepError(
            f"config keys {', '.join(repr(k) for k in spec['selections'])}: no event selected ({label}) in {files}"
        )
    if not any_nonzero_weight:
        raise PrepError(
            f"config key '{keys.get('weight', 'weight')}': all selected event weights are zero ({label}) in {files}"
        )


def is_absent(summary: Mapping[str, Any]) -> bool:
    """Whether a yield summary describes a sample absent from its region: no event, or only
    zero weights (Σw² = 0)."""
    return summary["n_events"] == 0 or summary["sumw2"] == 0


def yields_of_parquet(path: str | Path) -> dict[str, Any]:
    """:func:`yields_summary` of a parquet file's ``weight`` column, read row group by row group
    (only that column) and combined with :func:`math.fsum`: the same numbers whatever chunk
    size wrote the file, in bounded memory."""
    parts: dict[str, list[float]] = {"sumw": [], "sumw2": [], "sumw_negative": []}
    n = n_neg = 0
    for group in iter_row_groups(path):
        w = group["weight"]
        parts["sumw"].append(float(np.sum(w)))
        parts["sumw2"].append(float(np.sum(w**2)))
        parts["sumw_negative"].append(float(np.sum(w[w < 0])))
        n, n_neg = n + len(w), n_neg + int(np.sum(w < 0))
    return {
        "sumw": math.fsum(parts["sumw"]),
        "sumw2": math.fsum(parts["sumw2"]),
        "n_events": n,
        "n_negative": n_neg,
        "sumw_negative": math.fsum(parts["sumw_negative"]),
    }


def _write_streamed(chunks: Iterable[Any], parquet: str, yields: str, meta, check) -> dict[str, Any]:
    """Stream ``chunks`` into ``parquet`` and write its yield summary to ``yields``; ``check(n,
    any_nonzero_weight)`` runs before either file appears (a failure leaves neither). A chunk is
    a mapping of columns, or a pair (columns, indices of the rows to write)."""
    with parquet_stream(parquet) as out:
        nonzero, columns = False, None
        for chunk in chunks:
            chunk, rows = chunk if isinstance(chunk, tuple) else (chunk, None)
            out.write(chunk, rows)
            nonzero = nonzero or _any_nonzero(chunk["weight"], rows)
            columns = columns or {k: np.asarray(chunk[k])[:0].copy() for k in chunk}  # a view would keep the chunk
            del chunk, rows  # before the next chunk is made
        check(out.n_rows, nonzero)
        out.close(columns)
        summary = {**yields_of_parquet(out.path), **dict(meta or {})}
        write_json(summary, yields)
    return summary


def _any_nonzero(weight: np.ndarray, rows: np.ndarray | None) -> bool:
    """Whether a weight (of the rows ``rows``, all when None) is not zero."""
    return bool(np.any((weight if rows is None else weight[rows]) != 0))


def select_to_files(parquet: str, yields: str, meta: Mapping[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    """The select job: :func:`select_chunks` streamed into ``parquet`` (row groups of
    :data:`nsbi.io.ROW_GROUP_ROWS`; memory one chunk plus one row group) and its yield summary
    into ``yields``. Returns the summary. Nothing is written when a check fails."""
    keys = dict(spec.get("keys") or {})
    return _write_streamed(
        select_chunks(**spec), parquet, yields, meta, lambda n, nz: _check_selected(n, nz, spec, keys)
    )


def _prep_errors(chunks: Any) -> Any:
    """The chunks, with a damaged input (:class:`InputError`) raised as :class:`PrepError`."""
    try:
        yield from chunks
    except InputError as err:
        raise PrepError(str(err)) from None


def _empty_list_hint(expr: Any, columns: Mapping[str, Any], bad: np.ndarray) -> str:
    """Why a feature is NaN when the reason is a too-short jagged list: which term is NaN for
    how many of the ``bad`` events, and what to write instead."""
    rows = np.flatnonzero(bad)
    sub = {k: v[rows] for k, v in columns.items()}
    parts = []
    for term, fix in expr.empty_list_terms():
        with np.errstate(all="ignore"):
            vals = np.asarray(ak.to_numpy(parse(term).evaluate(sub)), dtype=float)
        n = int(np.isnan(vals).sum())
        if n:
            parts.append(f"{term} has no value for {n} of them (list too short); use {fix}")
    return ": " + "; ".join(parts) if parts else ""


def _feature_key(keys: str | Mapping[str, str], name: str) -> str:
    """Config key of a feature: from the ``{name: key}`` map of :func:`prep_spec`, or a prefix."""
    return keys[name] if isinstance(keys, Mapping) and name in keys else f"{keys}.{name}"


def prep_spec(cfg: Mapping[str, Any], process: str, variation: str) -> dict[str, Any]:
    """The plain-data description of one selection job (passed as Snakemake params)."""
    inputs = nconfig.variation_inputs(cfg, process, variation)
    features = {f["name"]: str(f.get("expr", f["name"])) for f in cfg["features"]}
    selections = {
        "preselection": str(cfg["preselection"]),
        inputs["selection_key"]: inputs["selection"],
    }
    return {
        "files": inputs["files"],
        "tree": inputs["tree"],
        "weight": inputs["weight"],
        "features": features,
        "selections": selections,
        "event_key": cfg["input"]["event_key"],
        "step_size": int(cfg["input"]["step_size"]),
        "fmt": cfg["input"]["format"],
        "keys": {
            "files": inputs["files_key"],
            "tree": inputs["tree_key"],
            "weight": inputs["weight_key"],
            "features": {
                f["name"]: f"features[{i}].{'expr' if 'expr' in f else 'name'}" for i, f in enumerate(cfg["features"])
            },
            "event_key": "input.event_key",
        },
        "label": f"sample '{process}', variation '{variation}'",
    }


def region_spec(cfg: Mapping[str, Any], region: str) -> dict[str, Any]:
    """Plain-data description of a region split (selection and its config key). A binned
    region may be empty for a sample (``allow_empty``): the sample is then left out of that
    region's channel (:func:`nsbi.build.absent_samples`); an unbinned region may not, since
    its ratios are trained on the region's events."""
    i = next(i for i, r in enumerate(cfg["regions"]) if r["name"] == region)
    return {
        "selection": str(cfg["regions"][i]["selection"]),
        "key": f"regions[{i}].selection",
        "region": region,
        "allow_empty": cfg["regions"][i]["type"] == "binned",
    }


def _region_expr(selection: str, key: str) -> Any:
    try:
        return parse(selection)
    except ExpressionError as err:
        raise PrepError(f"config key '{key}': {err}") from None


def _region_mask(ns: Mapping[str, Any], n: int, expr, key: str, label: str) -> np.ndarray:
    """Which of the ``n`` rows of ``ns`` (columns and scores) pass the region selection; only
    the columns the selection names are looked up, each once."""
    try:
        used = {name: ns[name] for name in expr.names if name in ns}  # a missing name: the error below
        return _mask(expr.evaluate(used), n, key, label)
    except ExpressionError as err:
        raise PrepError(f"config key '{key}': {err}") from None


def _region_parts(sample: str, expr, key: str, scorer, label: str) -> Iterator[tuple[Mapping[str, Any], np.ndarray]]:
    """Per row group of ``sample``: its columns and scores (``scorer`` of the row group), which
    replace a column of the same name and follow the columns, as a mapping that reads each
    column on lookup (:class:`nsbi.io.ParquetRowGroup`), with the indices of the rows that pass
    the region selection. Nothing of a row group is held while the next one is read."""
    for group in iter_row_groups(sample):
        ns = ChainMap(dict(scorer(group)) if scorer else {}, group)  # lookups: scores first
        rows = np.flatnonzero(_region_mask(ns, group.num_rows, expr, key, label))
        del group
        yield ns, rows
        del ns, rows


def _check_region(
    n: int, any_nonzero_weight: bool, selection: str, key: str, label: str, allow_empty: bool = False
) -> None:
    """No event (or only zero weights) after the region selection: an error naming the
    selection, or with ``allow_empty`` (binned regions) a warning: the sample is absent from
    the region."""
    if n and any_nonzero_weight:
        return
    if n == 0:
        what = f"region selection {selection!r} selects no event"
    else:
        what = "all event weights are zero after the region selection"
    if allow_empty:
        log.warning("config key '%s': %s (%s): the sample is absent from this binned region", key, what, label)
        return
    hint = "; a sample may be absent from a binned region, not from an unbinned one"
    raise PrepError(f"config key '{key}': {what} ({label}){hint}")


def split_region(
    columns: Mapping[str, np.ndarray],
    selection: str,
    key: str = "selection",
    scores: Mapping[str, np.ndarray] | None = None,
    label: str = "",
    allow_empty: bool = False,
) -> dict[str, np.ndarray]:
    """Events of one region: ``selection`` evaluated on the prepared columns and, when a
    region classifier is configured, its per-event class probabilities ``score_<class>``
    (which are kept as columns)."""
    ns = ChainMap(dict(scores or {}), columns)  # the columns, then the scores, which replace a column
    mask = _region_mask(ns, len(columns["weight"]), _region_expr(selection, key), key, label)
    out = {k: np.asarray(ns[k])[mask] for k in ns}
    _check_region(len(out["weight"]), bool(np.any(out["weight"] != 0)), selection, key, label, allow_empty)
    return out


def split_region_to_files(
    sample: str,
    parquet: str,
    yields: str,
    selection: str,
    key: str = "selection",
    scorer: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]] | None = None,
    label: str = "",
    meta: Mapping[str, Any] | None = None,
    allow_empty: bool = False,
) -> dict[str, Any]:
    """The prep job: :func:`split_region` of the selected events in ``sample`` (a parquet file
    of the select job), row group by row group (``scorer`` gives the region-classifier scores
    of each group), streamed into ``parquet`` with its yield summary in ``yields``. Memory: the
    writer's row group, the columns the selection (and ``scorer``) reads, and one column of a
    row group at a time, whose kept rows are copied straight into the writer's row group
    (:func:`_region_parts`, :meth:`nsbi.io.ParquetStream.write` with ``rows``); not the file.
    An empty region is an error, and nothing is written, unless ``allow_empty`` (a binned
    region): then both files are written (no row, zero yields)."""
    expr = _region_expr(selection, key)
    return _write_streamed(
        _region_parts(sample, expr, key, scorer, label),
        parquet,
        yields,
        meta,
        lambda n, nz: _check_region(n, nz, selection, key, label, allow_empty),
    )


def write_prepared(
    result: Mapping[str, np.ndarray], parquet: str, yields: str, meta: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Write columns held in memory and their yield summary (both atomically), exactly as the
    streaming jobs write them (:func:`select_to_files`)."""
    return _write_streamed([dict(result)], parquet, yields, meta, lambda n, nz: None)


def prepare_from_config(cfg: Mapping[str, Any], process: str, variation: str) -> dict[str, np.ndarray]:
    """Convenience wrapper: run :func:`prepare` for one (process, variation)."""
    return prepare(**prep_spec(cfg, process, variation))
