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
weights and missing inputs are errors that name the config key and the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import awkward as ak
import numpy as np

from . import config as nconfig
from .expr import ExpressionError, parse
from .io import InputError, check_inputs, iterate_chunks, write_json, write_parquet

__all__ = [
    "PrepError",
    "prepare",
    "prepare_from_config",
    "prep_spec",
    "region_spec",
    "split_region",
    "yields_summary",
    "write_prepared",
]


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
    return arr.astype(np.float64)


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


def prepare(
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
) -> dict[str, np.ndarray]:
    """Select events and compute features and weights.

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
    k_weight, k_feat = keys.get("weight", "weight"), keys.get("features", "features")
    k_key = keys.get("event_key", "input.event_key")

    # --- compile every expression first: errors before any I/O
    try:
        w_expr = parse(weight)
    except ExpressionError as err:
        raise PrepError(f"config key '{k_weight}': {err}") from None
    f_exprs = {}
    for name, text in features.items():
        try:
            f_exprs[name] = parse(text)
        except ExpressionError as err:
            raise PrepError(f"config key '{_feature_key(k_feat, name)}': {err}") from None
    s_exprs = {}
    for key, text in selections.items():
        try:
            s_exprs[key] = parse(text)
        except ExpressionError as err:
            raise PrepError(f"config key '{key}': {err}") from None
    # every branch name -> the (config key, expression) pairs that read it, for error messages
    users: dict[str, list[tuple[str, str]]] = {event_key: [(k_key, event_key)]}
    for key, text, e in [
        (k_weight, weight, w_expr),
        *[(_feature_key(k_feat, name), features[name], e) for name, e in f_exprs.items()],
        *[(key, selections[key], e) for key, e in s_exprs.items()],
    ]:
        for n in e.names:
            users.setdefault(n, []).append((key, text))
    names = set(users)

    try:
        check_inputs(files, tree, sorted(names), fmt=fmt, files_key=k_files, tree_key=k_tree, users=users)
    except InputError as err:
        raise PrepError(str(err)) from None

    out: dict[str, list[np.ndarray]] = {n: [] for n in [*f_exprs, "weight", "event_key"]}
    for path, ns in iterate_chunks(files, tree, sorted(names), step_size=step_size, fmt=fmt):
        n = len(ns[event_key])
        keep = np.ones(n, dtype=bool)
        for key, e in s_exprs.items():
            keep &= _mask(e.evaluate(ns), n, key, path)
        if not keep.any():
            continue
        sel = {k: v[keep] for k, v in ns.items()}
        m = int(keep.sum())
        with np.errstate(all="ignore"):
            for name, e in f_exprs.items():
                vals = _to_flat(e.evaluate(sel), m, f"feature '{name}'", _feature_key(k_feat, name), path)
                bad = ~np.isfinite(vals)
                if bad.any():
                    raise PrepError(
                        f"config key '{_feature_key(k_feat, name)}': feature '{name}' = {features[name]!r} is NaN/inf "
                        f"for {int(bad.sum())} selected event(s) in '{path}' ({label})" + _empty_list_hint(e, sel, bad)
                    )
                out[name].append(vals)
            w = _to_flat(w_expr.evaluate(sel), m, "weight", k_weight, path)
        if not np.isfinite(w).all():
            raise PrepError(f"config key '{k_weight}': weight {weight!r} is NaN/inf in '{path}' ({label})")
        out["weight"].append(w)
        keyvals = (
            ak.to_numpy(sel[event_key])
            if type(sel[event_key]).__module__.startswith("awkward")
            else np.asarray(sel[event_key])
        )
        if keyvals.ndim != 1 or not np.issubdtype(keyvals.dtype, np.integer):
            raise PrepError(f"config key '{k_key}': branch '{event_key}' must hold one integer per event in '{path}'")
        out["event_key"].append(keyvals.astype(np.uint64))

    result = {
        k: (np.concatenate(v) if v else np.zeros(0, dtype=np.uint64 if k == "event_key" else np.float64))
        for k, v in out.items()
    }
    if len(result["weight"]) == 0:
        raise PrepError(
            f"config keys {', '.join(repr(k) for k in selections)}: no event selected ({label}) in {', '.join(files)}"
        )
    if not np.any(result["weight"] != 0):
        raise PrepError(f"config key '{k_weight}': all selected event weights are zero ({label}) in {', '.join(files)}")
    return result


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
    """Plain-data description of a region split (selection and its config key)."""
    i = next(i for i, r in enumerate(cfg["regions"]) if r["name"] == region)
    return {"selection": str(cfg["regions"][i]["selection"]), "key": f"regions[{i}].selection", "region": region}


def split_region(
    columns: Mapping[str, np.ndarray],
    selection: str,
    key: str = "selection",
    scores: Mapping[str, np.ndarray] | None = None,
    label: str = "",
) -> dict[str, np.ndarray]:
    """Events of one region: ``selection`` evaluated on the prepared columns and, when a
    region classifier is configured, its per-event class probabilities ``score_<class>``
    (which are kept as columns)."""
    ns = dict(columns)
    ns.update(dict(scores or {}))
    try:
        mask = _mask(parse(selection).evaluate(ns), len(columns["weight"]), key, label)
    except ExpressionError as err:
        raise PrepError(f"config key '{key}': {err}") from None
    out = {k: np.asarray(v)[mask] for k, v in ns.items()}
    if len(out["weight"]) == 0:
        raise PrepError(f"config key '{key}': region selection {selection!r} selects no event ({label})")
    if not np.any(out["weight"] != 0):
        raise PrepError(f"config key '{key}': all event weights are zero after the region selection ({label})")
    return out


def write_prepared(
    result: Mapping[str, np.ndarray], parquet: str, yields: str, meta: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Write the prepared columns and their yield summary (both atomically)."""
    summary = {**yields_summary(result["weight"]), **dict(meta or {})}
    write_parquet(result, parquet)
    write_json(summary, yields)
    return summary


def prepare_from_config(cfg: Mapping[str, Any], process: str, variation: str) -> dict[str, np.ndarray]:
    """Convenience wrapper: run :func:`prepare` for one (process, variation)."""
    return prepare(**prep_spec(cfg, process, variation))
