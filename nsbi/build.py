"""From the analysis config and the stage outputs to workspaces.

:func:`build_nsbi_workspace` assembles the NSBI workspace: each unbinned region from the
evaluation table (per-event log-ratios), yields from the prep summaries (normsys κ from the
``{syst}_up/_down`` yields, per-event shape systematics from the learned g_ck), each binned
region from histograms of its observable (normsys + histosys split, staterror from Σw²).

:func:`build_histogram_workspace` is the histogram-analysis baseline on the same events:
the unbinned regions binned in ``fit.histogram_baseline.observable`` with the same
systematics (histosys/normsys), plus the same binned control regions.

Datasets: ``observed`` (the data sample) and ``asimov``. The Asimov dataset is the MC
prediction at the nominal POI (``morphing.poi_init``) with all nuisance parameters at their
nominal values: each MC event (or bin) enters with weight ``f_c(poi_init) · w``.

``norm``-type systematics (e.g. luminosity) become normsys modifiers on the samples they
affect, in every region.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import config as ncfg
from .expr import parse
from .workspace import Workspace, binned_channel_from_histograms, build_workspace

__all__ = ["build_nsbi_workspace", "build_histogram_workspace", "morphing_at", "parameters", "pyhf_comparable"]


def morphing_at(cfg: Mapping[str, Any], value: float | None = None) -> dict[str, float]:
    """f_c(POI) of every MC sample at ``value`` (default ``morphing.poi_init``)."""
    m = cfg["morphing"]
    value = m["poi_init"] if value is None else value
    out = {}
    for name in ncfg.mc_samples(cfg):
        text = m["coefficients"].get(name, "1")
        out[name] = float(parse(str(text)).evaluate({m["poi"]: value}))
    return out


def parameters(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    m = cfg["morphing"]
    return [{"name": m["poi"], "bounds": [list(map(float, m["poi_bounds"]))], "inits": [float(m["poi_init"])]}]


def _norm_systematics(cfg, sample: str) -> dict[str, tuple[float, float]]:
    out = {}
    for s in cfg["systematics"]:
        if s["type"] == "norm" and ncfg.affects(s, sample, cfg):
            up = s.get("up", {}).get("norm")
            down = s.get("down", {}).get("norm")
            up = up if up is not None else 1.0 / down
            down = down if down is not None else 1.0 / up
            out[s["name"]] = (float(up), float(down))
    return out


def _morphing_expr(cfg, sample: str) -> str | None:
    text = cfg["morphing"]["coefficients"].get(sample)
    return None if text is None or str(text).strip() == "1" else str(text)


def _histogram(values: np.ndarray, weights: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted counts and Σw² per bin; values outside the edges go to the edge bins."""
    x = np.clip(values, edges[0], np.nextafter(edges[-1], -np.inf))
    idx = np.searchsorted(edges, x, side="right") - 1
    n = len(edges) - 1
    return np.bincount(idx, weights, minlength=n)[:n], np.bincount(idx, weights**2, minlength=n)[:n]


def _observable(columns: Mapping[str, np.ndarray], text: str) -> np.ndarray:
    return np.asarray(parse(text).evaluate(columns), dtype=float)


def _binned_region(cfg, name: str, observable: str, edges: np.ndarray, prep: Mapping, data_key: str | None):
    """Histogram channel + Asimov/observed counts for one region.

    ``prep[(process, variation)]`` maps to column dicts of the prepared parquet files.
    """
    nominal, sumw2, variations, normsys = {}, {}, {}, {}
    mc = ncfg.mc_samples(cfg)
    for proc in mc:
        cols = prep[(proc, ncfg.NOMINAL)]
        nominal[proc], sumw2[proc] = _histogram(_observable(cols, observable), cols["weight"], edges)
        variations[proc] = {}
        for syst in ncfg.shape_systematics(cfg, proc):
            hists = {}
            for d in ncfg.DIRECTIONS:
                key = (proc, f"{syst}_{d}")
                if key in prep:
                    c = prep[key]
                    hists[d] = _histogram(_observable(c, observable), c["weight"], edges)[0]
            if len(hists) == 1:  # symmetrise a one-sided variation
                (d, h), = hists.items()
                hists["down" if d == "up" else "up"] = 2 * nominal[proc] - h
            variations[proc][syst] = (hists["up"], hists["down"])
        normsys[proc] = _norm_systematics(cfg, proc)
    channel = binned_channel_from_histograms(
        name,
        nominal,
        variations=variations,
        morphing={p: _morphing_expr(cfg, p) or "1" for p in mc},
        sumw2=sumw2,
        normsys=normsys,
        bin_edges=edges,
    )
    coeff = morphing_at(cfg)
    asimov = sum(coeff[p] * nominal[p] for p in mc)
    observed = None
    if data_key is not None:
        d = prep[(data_key, ncfg.NOMINAL)]
        observed = _histogram(_observable(d, observable), d["weight"], edges)[0]
    return channel, asimov, observed


def _asimov_events(cfg, table: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Asimov events: MC events weighted by f_c(poi_init)·w; zero-coefficient events dropped."""
    coeff = morphing_at(cfg)
    proc = np.asarray(table["process"]).astype(str)
    factor = np.zeros(len(proc))
    for name, c in coeff.items():
        factor[proc == name] = c
    keep = factor != 0
    out = {k: np.asarray(v)[keep] for k, v in table.items() if k != "process" and np.asarray(v).dtype.kind in "fiu"}
    out["weight"] = np.asarray(table["weight"], float)[keep] * factor[keep]
    return out


def _yields(cfg, region: str, yields: Mapping[tuple[str, str, str], float]) -> dict[str, Any]:
    processes = {}
    for proc in ncfg.mc_samples(cfg):
        sumw = {var: yields[(region, proc, var)] for var in ncfg.variations(cfg, proc)}
        shape = ncfg.shape_systematics(cfg, proc)
        processes[proc] = {
            "sumw": sumw,
            "morphing": _morphing_expr(cfg, proc),
            "eventsys": shape,
            "yield_systematics": shape,
            "normsys": _norm_systematics(cfg, proc),
        }
    return {"processes": processes}


def build_nsbi_workspace(
    cfg: Mapping[str, Any],
    yields: Mapping[tuple[str, str, str], float],
    tables: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
    prep: Mapping[str, Mapping[tuple[str, str], Mapping[str, np.ndarray]]],
) -> Workspace:
    """NSBI workspace.

    ``yields[(region, process, variation)]`` = Σw from the prep summaries;
    ``tables[region][dataset]`` = evaluation table columns (``weight``, ``process``,
    ``logr_*``) for the unbinned regions, datasets ``asimov`` (all MC events, unscaled) and
    ``observed``; ``prep[region][(process, variation)]`` = prepared columns of the binned regions.
    """
    unbinned, binned, datasets = {}, [], {"asimov": {}, "observed": {}}
    data = ncfg.data_sample(cfg)
    for r in cfg["regions"]:
        name = r["name"]
        if r["type"] == "unbinned":
            unbinned[name] = _yields(cfg, name, yields)
            datasets["asimov"][name] = _asimov_events(cfg, tables[name]["asimov"])
            if data is not None:
                obs = {k: np.asarray(v) for k, v in tables[name]["observed"].items() if np.asarray(v).dtype.kind in "fiu"}
                datasets["observed"][name] = obs
        else:
            edges = np.asarray(ncfg.bin_edges(r["binning"]), float)
            ch, asimov, observed = _binned_region(cfg, name, r["observable"], edges, prep[name], data)
            binned.append(ch)
            datasets["asimov"][name] = asimov
            if observed is not None:
                datasets["observed"][name] = observed
    if data is None:
        del datasets["observed"]
    return build_workspace(
        unbinned=unbinned,
        binned=binned,
        datasets=datasets,
        poi=cfg["morphing"]["poi"],
        parameters=parameters(cfg),
        measurement="NSBI",
        metadata={"analysis": cfg["analysis"], "kind": "nsbi"},
    )


def build_histogram_workspace(
    cfg: Mapping[str, Any], prep: Mapping[str, Mapping[tuple[str, str], Mapping[str, np.ndarray]]]
) -> Workspace:
    """Histogram baseline: unbinned regions binned in ``fit.histogram_baseline``, same CRs."""
    hb = cfg["fit"]["histogram_baseline"]
    binned, datasets = [], {"asimov": {}, "observed": {}}
    data = ncfg.data_sample(cfg)
    for r in cfg["regions"]:
        if r["type"] == "unbinned":
            observable = hb["observable"]
            if "binning" not in hb:
                raise ncfg.ConfigError("config key 'fit.histogram_baseline.binning': required for the histogram baseline")
            edges = np.asarray(ncfg.bin_edges(hb["binning"]), float)
        else:
            observable, edges = r["observable"], np.asarray(ncfg.bin_edges(r["binning"]), float)
        ch, asimov, observed = _binned_region(cfg, r["name"], observable, edges, prep[r["name"]], data)
        binned.append(ch)
        datasets["asimov"][r["name"]] = asimov
        if observed is not None:
            datasets["observed"][r["name"]] = observed
    if data is None:
        del datasets["observed"]
    return build_workspace(
        binned=binned,
        datasets=datasets,
        poi=cfg["morphing"]["poi"],
        parameters=parameters(cfg),
        measurement="HIST",
        metadata={"analysis": cfg["analysis"], "kind": "histogram"},
    )


def pyhf_comparable(spec: Mapping[str, Any], cfg: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The binned part of a workspace spec in a form pyhf can express.

    pyhf has no non-linear morphing, so every sample with a morphing expression gets a
    normfactor ``f_<sample>_<channel>`` in its place, fixed at f_c(poi_init) (given ``cfg``;
    else 1), and the first of them becomes the POI. All HistFactory modifiers are kept, so
    the comparison checks the binned machinery (every modifier, constraints, Poisson terms)
    parameter by parameter; the fits then profile the nuisance parameters.
    """
    spec = copy.deepcopy(dict(spec))
    coeff = morphing_at(cfg) if cfg is not None else {}
    channels, factors = [], []
    for ch in spec["channels"]:
        if ch.get("type", "binned") != "binned":
            continue
        for s in ch["samples"]:
            if s.pop("morphing", None) is not None:
                name = f"f_{s['name']}_{ch['name']}"
                s["modifiers"].append({"name": name, "type": "normfactor", "data": None})
                factors.append((name, coeff.get(s["name"], 1.0)))
        channels.append(ch)
    spec["channels"] = channels
    names = {c["name"] for c in channels}
    spec["observations"] = [
        {**o, "channels": [c for c in o["channels"] if c["name"] in names]} for o in spec.get("observations", [])
    ]
    used = {m["name"] for ch in channels for s in ch["samples"] for m in s["modifiers"]}
    for meas in spec.get("measurements", []):
        conf = meas["config"]
        conf["parameters"] = [p for p in conf.get("parameters", []) if p["name"] in used]
        for name, value in factors:
            conf["parameters"].append({"name": name, "inits": [float(value)], "bounds": [[-10.0, 10.0]], "fixed": True})
        if conf["poi"] not in used and factors:
            conf["poi"] = factors[0][0]
    return spec
