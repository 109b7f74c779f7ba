"""From the analysis config and the stage outputs to workspaces.

:func:`build_nsbi_workspace` assembles the NSBI workspace: each unbinned region from the
evaluation table (per-event log-ratios), yields from the prep summaries (normsys κ from the
``{syst}_up/_down`` yields, per-event shape systematics from the learned g_ck), each binned
region from histograms of its observable (normsys + histosys split, staterror from Σw²).

:func:`build_histogram_workspace` is the histogram-analysis baseline on the same events:
the unbinned regions binned in ``fit.histogram_baseline.observable`` with the same
systematics (histosys/normsys), plus the same binned control regions.

Datasets: ``observed`` (the data sample) and ``asimov``, the expectation at the nominal POI
(``morphing.poi_init``) with all nuisance parameters at their nominal values: in binned
regions the MC prediction Σ_c f_c ν_c, in unbinned regions the reference events reweighted
by the model itself (see :func:`asimov_events`).

``norm``-type systematics (e.g. luminosity) become normsys modifiers on the samples they
affect, in every region.

A binned region models the samples ``regions[].samples`` lists (default: every MC sample).
A sample with no selected event (or zero total weight) in a binned region, for its nominal
or any variation, is left out of that region's channel (:func:`absent_samples`), with a
warning and a record in the workspace metadata (``absent_samples``); a region empty for
every MC sample is an error.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import config as ncfg
from .expr import parse
from .histogram import histogram
from .model.interpolation import code4_mean_nodes
from .prep import is_absent, yields_summary
from .workspace import Workspace, binned_channel_from_histograms, build_workspace

log = logging.getLogger(__name__)

__all__ = [
    "absent_samples",
    "asimov_events",
    "normalise_ratios",
    "shape_norm_nodes",
    "reference_weights",
    "build_nsbi_workspace",
    "build_histogram_workspace",
    "morphing_at",
    "parameters",
    "pyhf_comparable",
]


def morphing_at(cfg: Mapping[str, Any], value: float | None = None) -> dict[str, float]:
    """f_c(POI) of every MC sample with the main POI at ``value`` (default ``morphing.poi_init``)
    and any other POI at its ``init``."""
    m = cfg["morphing"]
    values = ncfg.poi_inits(cfg, **{m["poi"]: m["poi_init"] if value is None else value})
    out = {}
    for name in ncfg.mc_samples(cfg):
        text = m["coefficients"].get(name, "1")
        out[name] = float(parse(str(text)).evaluate(values))
    return out


def parameters(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Measurement entries (bounds, inits) of every POI."""
    return [
        {"name": p["name"], "bounds": [list(map(float, p["bounds"]))], "inits": [float(p["init"])]}
        for p in cfg["morphing"]["pois"]
    ]


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
    return histogram(values, edges, weights, flow="clip")


def _observable(columns: Mapping[str, np.ndarray], text: str) -> np.ndarray:
    return np.asarray(parse(text).evaluate(columns), dtype=float)


def absent_samples(cfg: Mapping[str, Any], region: str, prep: Mapping) -> list[dict[str, Any]]:
    """MC samples absent from a binned region: no selected event, or zero total weight, for
    the nominal or any of the sample's variations (``prep[(process, variation)]``: the
    prepared columns). One record ``{"region", "sample", "variations"}`` per sample.

    Such a sample is left out of the region's channel as a whole: an empty variation has no
    shape or normalisation to interpolate (κ = 0 has no logarithm in code 4). A region empty
    for every MC sample is an error naming its selection.
    """
    out = []
    mc = ncfg.region_samples(cfg, region)
    for proc in mc:
        empty = [
            var
            for var in ncfg.variations(cfg, proc)
            if (proc, var) in prep and is_absent(yields_summary(np.asarray(prep[(proc, var)]["weight"])))
        ]
        if empty:
            out.append({"region": region, "sample": proc, "variations": empty})
    if len(out) == len(mc):
        i = next(i for i, r in enumerate(cfg["regions"]) if r["name"] == region)
        raise ncfg.ConfigError(
            f"config key 'regions[{i}].selection': region '{region}' selects no MC event of any sample"
        )
    return out


def _binned_region(cfg, name: str, observable: str, edges: np.ndarray, prep: Mapping, data_key: str | None):
    """Histogram channel + Asimov/observed counts for one region, and the samples left out of
    it (:func:`absent_samples`).

    ``prep[(process, variation)]`` maps to column dicts of the prepared parquet files.
    """
    nominal, sumw2, variations, normsys = {}, {}, {}, {}
    absent = absent_samples(cfg, name, prep)
    for a in absent:
        log.warning(
            "region '%s': sample '%s' has no selected event (or zero total weight) for %s: "
            "left out of this binned region",
            name,
            a["sample"],
            ", ".join(f"variation '{v}'" for v in a["variations"]),
        )
    gone = {a["sample"] for a in absent}
    mc = [p for p in ncfg.region_samples(cfg, name) if p not in gone]
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
                ((d, h),) = hists.items()
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
    return channel, asimov, observed, absent


def reference_weights(process: np.ndarray, weight: np.ndarray, reference: Mapping[str, float]) -> np.ndarray:
    """Per-event weights u_i of the reference density p_ref = Σ_j a_j p_j / Σ_j a_j.

    Each component's weights are normalised to unit sum (as in training), so Σ_i u_i = 1 and
    Σ_i u_i h(x_i) estimates ∫ p_ref h. Events of other processes get u = 0.
    """
    process = np.asarray(process).astype(str)
    weight = np.asarray(weight, float)
    u = np.zeros(len(weight))
    total = float(sum(reference.values()))
    for name, a in reference.items():
        sel = process == name
        wsum = weight[sel].sum()
        if not sel.any() or not wsum > 0:
            raise ValueError(f"reference component '{name}' has no events with positive total weight")
        u[sel] = (a / total) * weight[sel] / wsum
    return u


def normalise_ratios(
    table: Mapping[str, np.ndarray], reference: Mapping[str, float], processes, shape_systs
) -> dict[str, float]:
    """Log normalisation constants that make the learned ratios integrate to one on the MC.

    r̃_c = r_c / Σ_i u_i r_c(x_i) (so ∫ r̃_c p_ref = 1 on the reference events), and for each
    per-event systematic g̃_ck = g_ck / Σ_i u_i r̃_c(x_i) g_ck(x_i) (so ∫ g̃_ck p_c = 1). With
    exact ratios the constants are 0 up to MC noise; their size is a diagnostic of the
    learned ratios (written to the workspace metadata).
    """
    u = reference_weights(table["process"], table["weight"], reference)
    out = {}
    for c in processes:
        logr = np.asarray(table[f"logr_{c}"], float)
        n_c = float(np.sum(u * np.exp(logr)))
        out[f"logr_{c}"] = float(np.log(n_c))
        rt = np.exp(logr - out[f"logr_{c}"])
        for syst in shape_systs.get(c, []):
            for d in ncfg.DIRECTIONS:
                col = f"logr_{c}__{syst}_{d}"
                if col in table:
                    out[col] = float(np.log(np.sum(u * rt * np.exp(np.asarray(table[col], float)))))
    return out


def shape_norm_nodes(
    table: Mapping[str, np.ndarray], reference: Mapping[str, float], processes, shape_systs, nodes: int = 256
) -> dict[str, dict[str, dict]]:
    """Weighted nodes of ln g̃_ck up/down under p_c, for the shape normalisation of the model.

    ``table`` holds normalised log-ratios (after :func:`normalise_ratios`); p_c is estimated
    by the reference events with weights u_i r̃_c(x_i). Returns
    ``{process: {syst: {"up": {"log": [...], "p": [...]}, "down": {...}}}}`` (the ``data.norm``
    of the eventsys modifiers, see :func:`nsbi.model.interpolation.code4_mean_nodes`).
    """
    u = reference_weights(table["process"], table["weight"], reference)
    keep = u != 0
    out: dict[str, dict[str, dict]] = {}
    for c in processes:
        pc = u[keep] * np.exp(np.asarray(table[f"logr_{c}"], float)[keep])
        for syst in shape_systs.get(c, []):
            entry = {}
            for d in ncfg.DIRECTIONS:
                col = f"logr_{c}__{syst}_{d}"
                if col not in table:
                    break
                lg, pr = code4_mean_nodes(np.asarray(table[col], float)[keep], pc, nodes)
                entry[d] = {"log": lg.tolist(), "p": pr.tolist()}
            else:
                out.setdefault(c, {})[syst] = entry
    return out


def _numeric(table: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in table.items() if np.asarray(v).dtype.kind in "fiu"}


def asimov_events(
    cfg: Mapping[str, Any], table: Mapping[str, np.ndarray], reference: Mapping[str, float], value: float | None = None
) -> dict[str, np.ndarray]:
    """Asimov events at POI = ``value`` (default ``poi_init``), nuisance parameters nominal:
    the reference events reweighted by the model itself,
    A_i = u_i · Σ_c f_c(POI) ν_c r̃_c(x_i)  (= ν(POI) p(x_i|POI)/p_ref(x_i) · u_i).

    ``table`` holds normalised log-ratios (see :func:`normalise_ratios`) and a ``process``
    column; ν_c are the nominal yields Σ_{i∈c} w_i. Σ_i A_i = ν(POI) exactly, so an Asimov
    fit returns POI = ``value`` for any ratios.
    """
    proc = np.asarray(table["process"]).astype(str)
    w = np.asarray(table["weight"], float)
    u = reference_weights(proc, w, reference)
    coeff = morphing_at(cfg, value)
    density = np.zeros(len(w))
    for c, f in coeff.items():
        if f != 0.0:
            nu_c = w[proc == c].sum()
            density += f * nu_c * np.exp(np.asarray(table[f"logr_{c}"], float))
    keep = u > 0
    out = {k: v[keep] for k, v in _numeric(table).items()}
    out["weight"] = u[keep] * density[keep]
    return out


def _yields(cfg, region: str, yields: Mapping[tuple[str, str, str], float], norms=None) -> dict[str, Any]:
    processes = {}
    for proc in ncfg.mc_samples(cfg):
        sumw = {var: yields[(region, proc, var)] for var in ncfg.variations(cfg, proc)}
        shape = ncfg.shape_systematics(cfg, proc)
        processes[proc] = {
            "sumw": sumw,
            "morphing": _morphing_expr(cfg, proc),
            "eventsys": shape,
            "eventsys_norm": (norms or {}).get(proc, {}),
            "yield_systematics": shape,
            "normsys": _norm_systematics(cfg, proc),
        }
    return {"processes": processes}


def build_nsbi_workspace(
    cfg: Mapping[str, Any],
    yields: Mapping[tuple[str, str, str], float],
    tables: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
    prep: Mapping[str, Mapping[tuple[str, str], Mapping[str, np.ndarray]]],
    reference: Mapping[str, float] | None = None,
) -> Workspace:
    """NSBI workspace.

    ``yields[(region, process, variation)]`` = Σw from the prep summaries;
    ``tables[region][dataset]`` = evaluation table columns (``weight``, ``process``,
    ``logr_*``) for the unbinned regions, datasets ``asimov`` (all MC events of the region,
    unscaled) and ``observed``; ``prep[region][(process, variation)]`` = prepared columns of
    the binned regions; ``reference`` = the training reference mixture (default:
    :func:`nsbi.config.reference_mixture`).

    The learned ratios are normalised on the MC (:func:`normalise_ratios`), and every per-event
    shape systematic carries the nodes that keep its interpolated factor normalised for all
    alpha (:func:`shape_norm_nodes`, ``data.norm`` of the eventsys modifier); the Asimov
    dataset of an unbinned region is the reference events reweighted by the model at the
    nominal POI (:func:`asimov_events`); the Asimov dataset of a binned region is the MC
    prediction at the nominal POI.
    """
    reference = dict(reference or ncfg.reference_mixture(cfg))
    unbinned, binned, datasets = {}, [], {"asimov": {}, "observed": {}}
    data = ncfg.data_sample(cfg)
    corrections, absent = {}, []
    mc = ncfg.mc_samples(cfg)
    shape = {c: ncfg.shape_systematics(cfg, c) for c in mc}
    for r in cfg["regions"]:
        name = r["name"]
        if r["type"] == "unbinned":
            mc_table = dict(tables[name]["asimov"])
            corr = normalise_ratios(mc_table, reference, mc, shape)
            corrections[name] = corr
            for col, logn in corr.items():
                mc_table[col] = np.asarray(mc_table[col], float) - logn
            unbinned[name] = _yields(cfg, name, yields, shape_norm_nodes(mc_table, reference, mc, shape))
            datasets["asimov"][name] = asimov_events(cfg, mc_table, reference)
            if data is not None:
                obs = _numeric(tables[name]["observed"])
                for col, logn in corr.items():
                    obs[col] = np.asarray(obs[col], float) - logn
                datasets["observed"][name] = obs
        else:
            edges = np.asarray(ncfg.bin_edges(r["binning"]), float)
            ch, asimov, observed, gone = _binned_region(cfg, name, r["observable"], edges, prep[name], data)
            absent += gone
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
        metadata={
            "analysis": cfg["analysis"],
            "kind": "nsbi",
            "log_normalisation": corrections,
            "reference": reference,
            "absent_samples": absent,
        },
    )


def build_histogram_workspace(
    cfg: Mapping[str, Any], prep: Mapping[str, Mapping[tuple[str, str], Mapping[str, np.ndarray]]]
) -> Workspace:
    """Histogram baseline: unbinned regions binned in ``fit.histogram_baseline``, same CRs."""
    hb = cfg["fit"]["histogram_baseline"]
    binned, datasets, absent = [], {"asimov": {}, "observed": {}}, []
    data = ncfg.data_sample(cfg)
    for r in cfg["regions"]:
        if r["type"] == "unbinned":
            observable = hb["observable"]
            if "binning" not in hb:
                raise ncfg.ConfigError(
                    "config key 'fit.histogram_baseline.binning': required for the histogram baseline"
                )
            edges = np.asarray(ncfg.bin_edges(hb["binning"]), float)
        else:
            observable, edges = r["observable"], np.asarray(ncfg.bin_edges(r["binning"]), float)
        ch, asimov, observed, gone = _binned_region(cfg, r["name"], observable, edges, prep[r["name"]], data)
        absent += gone
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
        metadata={"analysis": cfg["analysis"], "kind": "histogram", "absent_samples": absent},
    )


def pyhf_comparable(spec: Mapping[str, Any], cfg: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The binned part of a workspace spec in a form pyhf can express.

    pyhf has no non-linear morphing, so every sample with a morphing expression gets a
    normfactor ``f_<sample>_<channel>`` in its place, fixed at f_c(poi_init) (given ``cfg``;
    else 1), and the first of them becomes the POI (without any, e.g. with background-only
    control regions, the first one-number parameter of the binned part does). All HistFactory
    modifiers are kept, so the comparison checks the binned machinery (every modifier,
    constraints, Poisson terms) parameter by parameter; the fits then profile the nuisance
    parameters.
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
    # one-number parameters, any of which can stand in as pyhf's POI when no sample of the binned
    # part depends on the analysis POI (e.g. background-only control regions): pyhf needs one,
    # and which one changes no likelihood value or fit
    scalar = [
        m["name"]
        for ch in channels
        for s in ch["samples"]
        for m in s["modifiers"]
        if m["type"] in ("normfactor", "normsys", "histosys", "lumi")
    ]
    for meas in spec.get("measurements", []):
        conf = meas["config"]
        conf["parameters"] = [p for p in conf.get("parameters", []) if p["name"] in used]
        for name, value in factors:
            conf["parameters"].append({"name": name, "inits": [float(value)], "bounds": [[-10.0, 10.0]], "fixed": True})
        if conf["poi"] not in used and (factors or scalar):
            conf["poi"] = factors[0][0] if factors else scalar[0]
    return spec
