"""Sample handling for training: a *sample* is a plain mapping ``column -> 1D array``
with one column per feature, ``weight`` (float, may be negative) and optionally
``event_key`` (uint64), exactly the columns of a prepared parquet file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "concat_samples",
    "mixture",
    "n_events",
    "read_sample",
    "sample_arrays",
]

WEIGHT = "weight"
EVENT_KEY = "event_key"


def read_sample(path: str | Path, columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Read a flat parquet file (as written by the prep stage) into ``{column: array}``."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prepared sample not found: {path}")
    table = pq.read_table(path, columns=list(columns) if columns is not None else None)
    return {name: table.column(name).to_numpy() for name in table.column_names}


def n_events(sample: Mapping[str, np.ndarray]) -> int:
    return len(sample[WEIGHT])


def sample_arrays(sample: Mapping[str, np.ndarray], features: Sequence[str], need_key: bool = False):
    """Return ``(X[N, F] float64, w[N] float64, key[N] uint64 | None)``; checks columns,
    lengths and finiteness and names what is wrong."""
    missing = [c for c in list(features) + [WEIGHT] if c not in sample]
    if need_key and EVENT_KEY not in sample:
        missing.append(EVENT_KEY)
    if missing:
        raise KeyError(f"sample lacks column(s) {missing}; has {sorted(sample)}")
    w = np.asarray(sample[WEIGHT], dtype=np.float64)
    n = len(w)
    cols = []
    for f in features:
        a = np.asarray(sample[f], dtype=np.float64)
        if a.shape != (n,):
            raise ValueError(f"column {f!r} has shape {a.shape}, expected ({n},)")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"column {f!r} contains non-finite values")
        cols.append(a)
    X = np.stack(cols, axis=1) if cols else np.empty((n, 0))
    if not np.all(np.isfinite(w)):
        raise ValueError("column 'weight' contains non-finite values")
    key = None
    if EVENT_KEY in sample:
        key = np.asarray(sample[EVENT_KEY])
        if key.shape != (n,):
            raise ValueError(f"column 'event_key' has shape {key.shape}, expected ({n},)")
        key = key.astype(np.uint64)
    return X, w, key


def concat_samples(samples: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate samples on their common columns."""
    if not samples:
        raise ValueError("no samples to concatenate")
    common = set(samples[0])
    for s in samples[1:]:
        common &= set(s)
    return {c: np.concatenate([np.asarray(s[c]) for s in samples]) for c in samples[0] if c in common}


def mixture(
    samples: Mapping[str, Mapping[str, np.ndarray]], coefficients: Mapping[str, float], normalise: bool = True
) -> dict[str, np.ndarray]:
    """Weighted mixture ``p_ref = sum_k a_k p_k / sum_k a_k`` of samples.

    With ``normalise=True`` (default) every component's weights are first scaled to unit
    sum, so ``a_k`` are the mixture fractions of the *normalised* densities; with
    ``normalise=False`` the raw weights (cross-section x luminosity) are multiplied by
    ``a_k``.  Components with coefficient 0 are dropped."""
    if not coefficients:
        raise ValueError("reference mixture has no components")
    parts = []
    for name, a in coefficients.items():
        a = float(a)
        if a < 0 or not np.isfinite(a):
            raise ValueError(f"mixture coefficient of {name!r} must be finite and >= 0, got {a}")
        if a == 0:
            continue
        if name not in samples:
            raise KeyError(f"reference component {name!r} not among samples {sorted(samples)}")
        s = dict(samples[name])
        w = np.asarray(s[WEIGHT], dtype=np.float64)
        if normalise:
            tot = w.sum()
            if not tot > 0:
                raise ValueError(f"reference component {name!r} has non-positive sum of weights {tot}")
            w = w / tot
        s[WEIGHT] = a * w
        parts.append(s)
    if not parts:
        raise ValueError("all reference mixture coefficients are zero")
    return concat_samples(parts)
