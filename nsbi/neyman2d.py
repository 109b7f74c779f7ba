"""Neyman confidence regions for two parameters of interest.

The construction of :mod:`nsbi.neyman` on a 2-D grid: at every grid point ``(a_i, b_j)``
pseudo-experiments are generated (:func:`nsbi.neyman.compute_chunk` with the point
``{a: a_i, b: b_j}``; the other parameters nominal or profiled) and the test statistic

    t(a, b) = -2 ln L(a, b, theta_hat_hat) + 2 ln L(a_hat, b_hat, theta_hat)

is computed for each toy; its CL quantile is the critical value ``c_CL(a, b)``. The confidence
region of a dataset is ``{(a, b): t_obs(a, b) <= c_CL(a, b)}``, where ``t_obs`` on the grid is
the ``Delta(-2 ln L)`` of its 2-D profile scan (:func:`nsbi.scan2d.scan2d`). The boundary is the
zero line of ``t_obs - c_CL`` (:func:`nsbi.scan2d.contour_lines`), drawn against Wilks' region
``t_obs <= chi2_2 quantile``; their areas and the ratio are reported.
:func:`coverage_2d` checks toys generated at a true point against the critical value there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from .neyman import DEFAULT_CLS, binomial_coverage, cl_key, quantile_with_error, read_chunk
from .scan2d import contour_lines, region_area

__all__ = ["asymptotic_critical_2d", "coverage_2d", "critical_grid", "gather_region", "regions"]


def asymptotic_critical_2d(cl: float) -> float:
    """Wilks' critical value of t for two parameters: the CL quantile of chi2 with 2 dof."""
    return float(stats.chi2.ppf(cl, 2))


def _chunks(chunks) -> list[Mapping]:
    out = [read_chunk(c) if not isinstance(c, Mapping) else c for c in chunks]
    if not out:
        raise ValueError("no chunks")
    seen = set()
    for c in out:
        if "point" not in c:
            raise ValueError("a chunk without a 'point': not a chunk of a 2-D construction")
        if c["kind"] != "t":
            raise ValueError(f"2-D regions use the two-sided t, got a chunk of {c['kind']!r}")
        key = tuple(c["seed"])
        if key in seen:
            raise ValueError(f"duplicate chunk seed {key} (same toys counted twice)")
        seen.add(key)
    return out


def _node(grid: np.ndarray, value: float, name: str) -> int:
    i = int(np.argmin(np.abs(grid - value)))
    if not np.isclose(grid[i], value, rtol=0, atol=1e-9 * max(1.0, float(np.ptp(grid)))):
        raise ValueError(f"toys at {name} = {value} are not on the grid {grid.tolist()}")
    return i


def critical_grid(
    chunks: Iterable[Mapping | str], pois: Sequence[str], x: Sequence[float], y: Sequence[float], cls=DEFAULT_CLS
) -> dict[str, Any]:
    """Per grid node of ``x`` x ``y`` (for the pair ``pois``): the number of toys, fallbacks and
    failed fits, and for every CL the critical value with its +-1 sigma band (binomial order
    statistics); arrays ``[len(x), len(y)]``, NaN at a node without toys."""
    a, b = pois
    x, y = np.asarray(x, float), np.asarray(y, float)
    by_node: dict[tuple[int, int], list[np.ndarray]] = {}
    n_fb = np.zeros((len(x), len(y)), int)
    n_fail = np.zeros((len(x), len(y)), int)
    for c in _chunks(chunks):
        if set(c["point"]) != {a, b}:
            raise ValueError(f"a chunk tests {sorted(c['point'])}, not the pair {[a, b]}")
        ij = (_node(x, c["point"][a], a), _node(y, c["point"][b], b))
        by_node.setdefault(ij, []).append(np.asarray(c["t"], float))
        n_fb[ij] += int(c["n_fallback"])
        n_fail[ij] += int(c["n_failed"])
    n = np.zeros((len(x), len(y)), int)
    crit = {cl_key(cl): {k: np.full((len(x), len(y)), np.nan) for k in ("value", "lo", "hi")} for cl in cls}
    for ij, ts in by_node.items():
        t = np.concatenate(ts)
        n[ij] = len(t)
        for cl in cls:
            q, lo, hi = quantile_with_error(t, cl)
            for key, v in zip(("value", "lo", "hi"), (q, lo, hi)):
                crit[cl_key(cl)][key][ij] = v
    return {"pois": [a, b], "x": x, "y": y, "n_toys": n, "n_fallback": n_fb, "n_failed": n_fail, "critical": crit}


def gather_region(
    chunks: Iterable[Mapping | str], scans: Mapping[str, Mapping], cls: Sequence[float] = DEFAULT_CLS
) -> dict[str, Any]:
    """Critical values on the grid of the 2-D scans ``scans`` (``{dataset: Scan2DResult.to_dict()}``,
    e.g. observed and Asimov, all on one grid) and each dataset's Neyman region next to Wilks'
    region: the nodes inside, the boundary lines, their areas and the area ratio."""
    if not scans:
        raise ValueError("no 2-D scan to draw a region for")
    first = next(iter(scans.values()))
    pois, x, y = list(first["pois"]), np.asarray(first["x"], float), np.asarray(first["y"], float)
    for name, s in scans.items():
        if list(s["pois"]) != pois or not (np.allclose(s["x"], x) and np.allclose(s["y"], y)):
            raise ValueError(f"the {name} scan is not on the grid of the others")
    grid = critical_grid(chunks, pois, x, y, cls)
    missing = np.argwhere(grid["n_toys"] == 0)
    if len(missing):
        i, j = missing[0]
        raise ValueError(f"{len(missing)} grid node(s) without toys, e.g. {pois[0]} = {x[i]}, {pois[1]} = {y[j]}")
    out: dict[str, Any] = {
        "pois": pois,
        "x": x.tolist(),
        "y": y.tolist(),
        "cls": [float(c) for c in cls],
        "n_toys": grid["n_toys"].tolist(),
        "n_fallback": grid["n_fallback"].tolist(),
        "n_failed": grid["n_failed"].tolist(),
        "critical": {k: {kk: vv.tolist() for kk, vv in v.items()} for k, v in grid["critical"].items()},
        "critical_asymptotic": {cl_key(cl): asymptotic_critical_2d(cl) for cl in cls},
    }
    out["datasets"] = regions(scans, {k: v["value"] for k, v in grid["critical"].items()}, cls)
    return out


def regions(scans: Mapping[str, Mapping], critical: Mapping[str, Any], cls: Sequence[float]) -> dict[str, Any]:
    """Each dataset's Neyman region ``{t <= c_CL}`` on the grid of its 2-D scan (``scans``:
    ``{dataset: Scan2DResult.to_dict()}``, one grid) for the critical values ``critical``
    (``{cl_key: array [len(x), len(y)]}`` on that grid, from toys at its nodes or learned),
    next to Wilks' region: the nodes inside, the boundary lines, their areas and the ratio."""
    out: dict[str, Any] = {}
    for name, s in scans.items():
        x, y = np.asarray(s["x"], float), np.asarray(s["y"], float)
        t = np.asarray(s["delta_twice_nll"], float)
        ds: dict[str, Any] = {"best": s["best"], "regions": {}}
        for cl in cls:
            k = cl_key(cl)
            d = t - np.asarray(critical[k], float)
            lines = contour_lines(x, y, d, 0.0)
            w = asymptotic_critical_2d(cl)
            wlines = contour_lines(x, y, t, w)
            area, warea = region_area(x, y, d, 0.0), region_area(x, y, t, w)
            ds["regions"][k] = {
                "toys": {"inside": (d <= 0).tolist(), "contours": [p.tolist() for p in lines], "area": area},
                "asymptotic": {"inside": (t <= w).tolist(), "contours": [p.tolist() for p in wlines], "area": warea},
                "area_ratio_toys_over_asymptotic": area / warea if warea > 0 else float("nan"),
            }
        out[name] = ds
    return out


def coverage_2d(chunks: Iterable[Mapping | str], region: Mapping[str, Any]) -> dict[str, Any]:
    """Coverage of the construction ``region`` (:func:`gather_region`) at true points: toys
    generated at a grid node (chunks of that point) are covered at CL when their t is at most
    the node's critical value; the covered fraction with binomial errors, for the toy and the
    asymptotic critical values."""
    pois = region["pois"]
    x, y = np.asarray(region["x"], float), np.asarray(region["y"], float)
    by_node: dict[tuple[int, int], list[np.ndarray]] = {}
    for c in _chunks(chunks):
        ij = (_node(x, c["point"][pois[0]], pois[0]), _node(y, c["point"][pois[1]], pois[1]))
        by_node.setdefault(ij, []).append(np.asarray(c["t"], float))
    points = []
    for (i, j), ts in sorted(by_node.items()):
        t = np.concatenate(ts)
        row: dict[str, Any] = {"point": {pois[0]: float(x[i]), pois[1]: float(y[j])}, "n_toys": len(t), "toys": {}}
        row["asymptotic"] = {}
        for cl in region["cls"]:
            k = cl_key(cl)
            c = float(np.asarray(region["critical"][k]["value"])[i, j])
            row["toys"][k] = {**binomial_coverage(int(np.sum(t <= c)), len(t), cl), "critical": c}
            w = region["critical_asymptotic"][k]
            row["asymptotic"][k] = binomial_coverage(int(np.sum(t <= w)), len(t), cl)
        points.append(row)
    return {"pois": pois, "cls": region["cls"], "points": points}
