"""The one histogramming path of the package: (weighted) histograms with ``hist``.

:func:`fill` returns a :class:`hist.Hist` on variable-width axes with the given edges
(``Weight`` storage for weighted fills: sums of weights and of squared weights per bin;
``Double`` storage for unweighted counts); :func:`histogram` returns the two arrays.  The
histogram-baseline workspace, the data/MC and network plots and the training diagnostics
all use it.

Bin ``i`` holds ``edges[i] <= x < edges[i+1]``. Values outside the edges follow ``flow``:

``"clip"`` (default; the workspace policy)
    underflow goes to the first bin, overflow (including ``x == edges[-1]`` and ``+inf``)
    to the last, so the histogram holds every event's weight.
``"drop"``
    values outside ``[edges[0], edges[-1]]`` are left out; ``x == edges[-1]`` goes to the last
    bin, exactly as :func:`numpy.histogram`.

NaN values are left out under both policies (NaN weights propagate into their bin).
There are no under/overflow bins in the returned histogram.
"""

from __future__ import annotations

from collections.abc import Sequence

import hist
import numpy as np

__all__ = ["FLOW_POLICIES", "fill", "histogram"]

FLOW_POLICIES = ("clip", "drop")


def _edges(edges) -> np.ndarray:
    e = np.asarray(edges, np.float64)
    if e.ndim != 1 or len(e) < 2 or not np.all(np.diff(e) > 0):
        raise ValueError(f"bin edges must be a 1-d, strictly increasing sequence of >= 2 values, got {edges!r}")
    return e


def _coordinates(values, edges: np.ndarray, flow: str) -> tuple[np.ndarray, np.ndarray]:
    """Values mapped inside ``[edges[0], edges[-1])`` per ``flow`` and the mask of kept ones."""
    x = np.asarray(values, np.float64).ravel()
    below_last = np.nextafter(edges[-1], -np.inf)
    keep = ~np.isnan(x)
    if flow == "clip":
        x = np.clip(x, edges[0], below_last)
    elif flow == "drop":
        keep &= (x >= edges[0]) & (x <= edges[-1])
        x = np.where(x == edges[-1], below_last, x)
    else:
        raise ValueError(f"flow must be one of {FLOW_POLICIES}, got {flow!r}")
    return x, keep


def fill(
    values,
    edges,
    weights=None,
    *,
    flow: str = "clip",
    names: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
) -> hist.Hist:
    """Histogram of ``values`` in bins ``edges``.

    1-d: ``values`` an array, ``edges`` a sequence of numbers. N-d: ``values`` and ``edges``
    sequences of N arrays (one per axis). ``weights``: per-event weights (``Weight`` storage)
    or ``None`` (unweighted counts, ``Double`` storage). ``names``/``labels``: axis names and
    labels (default ``x``, ``y``, ``z``, ...). See the module docstring for ``flow``.
    """
    one_d = np.ndim(edges[0]) == 0
    all_values = [values] if one_d else list(values)
    all_edges = [_edges(edges)] if one_d else [_edges(e) for e in edges]
    if len(all_values) != len(all_edges):
        raise ValueError(f"{len(all_values)} value arrays for {len(all_edges)} axes")
    names = list(names) if names is not None else ["x", "y", "z", *(f"x{i}" for i in range(3, len(all_edges)))]
    labels = list(labels) if labels is not None else names
    coords, keep = [], None
    for v, e in zip(all_values, all_edges):
        x, k = _coordinates(v, e, flow)
        if coords and len(x) != len(coords[0]):
            raise ValueError(f"value arrays of different lengths ({len(coords[0])} and {len(x)})")
        coords.append(x)
        keep = k if keep is None else keep & k
    axes = [
        hist.axis.Variable(e, name=n, label=lab, underflow=False, overflow=False)
        for e, n, lab in zip(all_edges, names, labels)
    ]
    if weights is None:
        h = hist.Hist(*axes, storage=hist.storage.Double())
        h.fill(*(x[keep] for x in coords))
        return h
    w = np.broadcast_to(np.asarray(weights, np.float64), coords[0].shape)
    h = hist.Hist(*axes, storage=hist.storage.Weight())
    h.fill(*(x[keep] for x in coords), weight=w[keep])
    return h


def histogram(values, edges, weights=None, *, flow: str = "clip") -> tuple[np.ndarray, np.ndarray]:
    """``(sum of weights, sum of squared weights)`` per bin (see :func:`fill`); unweighted:
    ``(counts, counts)``."""
    h = fill(values, edges, weights, flow=flow)
    sumw = np.asarray(h.values(), np.float64)
    return sumw, (np.asarray(h.variances(), np.float64) if weights is not None else sumw.copy())
