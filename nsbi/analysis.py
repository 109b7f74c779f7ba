"""The fit stage as one function: best fit, profile scans, pulls and impacts of a workspace.

Used by the Snakemake fit rule and usable on its own::

    from nsbi import workspace, analysis
    ws = workspace.load("results/hzz4l/workspace/nsbi.json")
    out = analysis.fit_and_scan(ws, "asimov", {"low": 0, "high": 3, "points": 31})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from . import fit as F

__all__ = ["fit_and_scan", "write_fit_outputs", "compare_scans", "scan_pair", "scan_poi"]


def fit_and_scan(
    ws, dataset: str, scan: Mapping[str, Any], minos: bool = False, with_impacts: bool = True
) -> dict[str, Any]:
    """Fit ``dataset`` of ``ws``; scan the POI on ``linspace(low, high, points)`` (profiled and
    stat-only, i.e. constrained nuisance parameters fixed at their best-fit values)."""
    model = ws.model(dataset=dataset)
    res = F.fit(model, errors="exact", minos=minos)
    values = np.linspace(float(scan["low"]), float(scan["high"]), int(scan["points"]))
    prof = F.scan(model, values=values, best_fit=res)
    stat = F.scan(model, values=values, best_fit=res, mode="stat_only")
    out = {
        "model": model,
        "fit": res,
        "pulls": F.pulls(model, res),
        "scan": prof,
        "scan_stat_only": stat,
        "impacts": F.impacts(model, res) if with_impacts else [],
    }
    return out


def scan_poi(ws, dataset: str, poi: str, scan: Mapping[str, Any] | None = None):
    """Profile scan of the parameter ``poi`` of ``dataset`` of ``ws`` (every other parameter,
    the main POI included, profiled) on ``linspace(low, high, points)`` of ``scan``, or with
    ``scan=None`` on 31 points in its best fit +- 4 errors (:func:`nsbi.fit.scan`)."""
    model = ws.model(dataset=dataset)
    if poi not in model.par_names:
        raise ValueError(f"scan: {poi!r} is not a parameter of the {dataset} model")
    best = F.fit(model, errors="exact")
    values = None if scan is None else np.linspace(float(scan["low"]), float(scan["high"]), int(scan["points"]))
    return F.scan(model, values=values, poi=poi, best_fit=best, npoints=31)


def scan_pair(ws, dataset: str, pois, x: Mapping[str, Any], y: Mapping[str, Any]):
    """Fit ``dataset`` of ``ws`` and scan the pair ``pois`` on the grid ``x`` x ``y`` (each
    ``{low, high, points}``), every other parameter profiled (:func:`nsbi.scan2d.scan2d`)."""
    from .scan2d import scan2d

    model = ws.model(dataset=dataset)
    for name in pois:
        if name not in model.par_names:
            raise ValueError(f"2-D scan: {name!r} is not a parameter of the {dataset} model")
    best = F.fit(model, errors="exact")
    gx = np.linspace(float(x["low"]), float(x["high"]), int(x["points"]))
    gy = np.linspace(float(y["low"]), float(y["high"]), int(y["points"]))
    return scan2d(model, gx, gy, pois, best_fit=best)


def write_fit_outputs(out: Mapping[str, Any], paths: Mapping[str, str], poi_label: str | None = None) -> None:
    """Write the JSON summaries and the plots of :func:`fit_and_scan`; ``poi_label``: the POI
    in the plots (default: the label of its name, see :mod:`nsbi.plotting.labels`)."""
    from .io import write_json
    from .plotting.fit_plots import plot_impacts, plot_pulls, plot_scan

    model = out["model"]
    write_json({**out["fit"].to_dict(), "pulls": out["pulls"]}, paths["fit"])
    write_json(out["scan"].to_dict(), paths["scan"])
    write_json(out["scan_stat_only"].to_dict(), paths["scan_stat"])
    write_json(out["impacts"], paths["impacts"])
    plot_scan(
        [out["scan"], out["scan_stat_only"]], paths["scan_plot"], labels=["stat+syst", "stat only"], poi_label=poi_label
    )
    plot_pulls(out["pulls"], paths["pulls_plot"])
    plot_impacts(out["impacts"], paths["impacts_plot"], poi=model.poi_name, poi_label=poi_label)


def compare_scans(scans: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Summary of several scans (name -> ScanResult.to_dict()): best value and interval widths."""
    out = {}
    for name, s in scans.items():
        row = {"best": s["best"], "mode": s["mode"]}
        for level, (lo, hi) in s["intervals"].items():
            row[f"interval_{level}"] = [lo, hi]
            row[f"width_{level}"] = hi - lo if np.isfinite(lo) and np.isfinite(hi) else None
        out[name] = row
    return out


def scan_from_dict(s: Mapping[str, Any]) -> F.ScanResult:
    """Inverse of ``ScanResult.to_dict``."""
    return F.ScanResult(
        poi=s["poi"],
        values=np.array(s["values"]),
        twice_nll=np.array(s["twice_nll"], dtype=float),
        delta=np.array(s["delta_twice_nll"], dtype=float),
        best=s["best"],
        best_twice_nll=s["best_twice_nll"],
        intervals={k: tuple(v) for k, v in s["intervals"].items()},
        mode=s["mode"],
    )


def expected_significance(scan: Mapping[str, Any], value: float = 0.0) -> float | None:
    """sqrt(Δ(−2 ln L)) at POI = ``value`` from an Asimov scan (the expected significance to
    exclude it), interpolated linearly between scan points; None outside the scan."""
    x = np.asarray(scan["values"], float)
    d = np.asarray(scan["delta_twice_nll"], float)
    ok = np.isfinite(d)
    if not (x[ok].min() <= value <= x[ok].max()):
        return None
    return float(np.sqrt(max(np.interp(value, x[ok], d[ok]), 0.0)))


def closure_report(scans: Mapping[tuple[str, str], Mapping[str, Any]], target_ratio: float = 1.05) -> dict[str, Any]:
    """Side-by-side intervals (68 %, 95 %), widths and the expected significance to exclude
    POI = 0 for each (kind, mode) scan, and the NSBI/oracle 68 % width ratio: within target when
    |ratio - 1| <= ``target_ratio`` - 1."""
    rows = {}
    for (kind, mode), s in scans.items():
        row = {"best": s["best"]}
        for level, (lo, hi) in s["intervals"].items():
            row[f"interval_{level}"] = [lo, hi]
            row[f"width_{level}"] = hi - lo if np.isfinite(lo) and np.isfinite(hi) else None
        row["expected_significance_poi0"] = expected_significance(s, 0.0)
        rows[f"{kind}_{'stat_syst' if mode == 'scan' else 'stat_only'}"] = row
    out: dict[str, Any] = {"scans": rows}
    for mode in ("stat_syst", "stat_only"):
        n, o = rows.get(f"nsbi_{mode}", {}), rows.get(f"oracle_{mode}", {})
        if n.get("width_68") and o.get("width_68"):
            ratio = n["width_68"] / o["width_68"]
            out[f"nsbi_over_oracle_width_68_{mode}"] = ratio
            # "within 5 %" both ways: an NSBI interval much narrower than the oracle's (the
            # physical limit) signals mis-modelled ratios, not a better analysis
            out[f"within_target_{mode}"] = bool(abs(ratio - 1.0) <= target_ratio - 1.0)
    out["target_ratio"] = target_ratio
    return out


def closure2d_report(scans: Mapping[str, Any], target_ratio: float = 1.10) -> dict[str, Any]:
    """The 2-D counterpart of :func:`closure_report`: for each workspace kind's 2-D profile scan
    (a :class:`nsbi.scan2d.Scan2DResult` or its dict) of one pair of POIs on the Asimov dataset,
    the best-fit point, correlation and the areas of the 68 % and 95 % regions; then every
    kind's area over the oracle's (the physical limit). The NSBI/oracle 68 % area ratio is
    within target when |ratio - 1| <= ``target_ratio`` - 1; an area is null when its region is
    not closed inside the scanned rectangle."""
    from .scan2d import Scan2DResult

    res = {k: s if isinstance(s, Scan2DResult) else Scan2DResult.from_dict(s) for k, s in scans.items()}
    pois = {r.pois for r in res.values()}
    if len(pois) != 1:
        raise ValueError(f"the 2-D scans compared are of different parameter pairs: {sorted(pois)}")
    rows = {}
    for kind, r in res.items():
        areas = r.areas()
        rows[kind] = {
            "best": list(r.best),
            "correlation": r.correlation,
            **{f"area_{lv}": (a if np.isfinite(a) else None) for lv, a in areas.items()},
        }
    out: dict[str, Any] = {"pois": list(pois.pop()), "scans": rows}
    oracle = rows.get("oracle")
    if oracle:
        for kind, row in rows.items():
            if kind == "oracle":
                continue
            for lv in ("68", "95"):
                a, o = row.get(f"area_{lv}"), oracle.get(f"area_{lv}")
                out[f"{kind}_over_oracle_area_{lv}"] = a / o if a and o else None
        ratio = out.get("nsbi_over_oracle_area_68")
        out["within_target"] = None if ratio is None else bool(abs(ratio - 1.0) <= target_ratio - 1.0)
    out["target_ratio"] = target_ratio
    return out
