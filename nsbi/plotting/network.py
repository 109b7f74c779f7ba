"""Plots of the network outputs in an unbinned region.

* Data vs MC of each learned log-ratio log r_c(x) (the networks' outputs, self-normalised on
  the reference MC as in the workspace), stacked by process at the nominal POI.
* The sensitivity map: per event, q(x; POI) = -2 log p(x|POI) / p(x|POI_ref) of the NSBI
  model (nuisance parameters nominal), with

      p(x|POI) = Σ_c f_c(POI) ν_c r_c(x) p_ref(x) / Σ_c f_c(POI) ν_c,

  shown in the plane of two features: the mean of q per bin and the expected contribution
  Σ_i A_i q_i per bin (A_i: the MC weights at POI_ref), i.e. which phase space drives the
  measurement. With the extended likelihood, Σ_i A_i q_i + 2 [ν(POI) - ν_ref] - 2 ν_ref
  log(ν(POI)/ν_ref) is the unbinned region's Asimov -2 Δln L at fixed nuisance parameters
  (written to the summary).

The POI is drawn with ``poi_label`` (LaTeX / mathtext; the workflow passes
``morphing.poi_label``), by default the label of its name
(:func:`nsbi.plotting.labels.resolve_poi_label`: ``mu`` -> ``$\\mu$``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..histogram import fill  # noqa: E402
from .labels import poi_math, resolve_poi_label  # noqa: E402

__all__ = ["log_density_ratio", "sensitivity_histograms", "sensitivity_figure", "run_network_plots"]


def log_density_ratio(
    logr: Mapping[str, np.ndarray],
    yields: Mapping[str, float],
    coeff: Mapping[str, float],
    coeff_ref: Mapping[str, float],
) -> np.ndarray:
    """Per-event log p(x|θ) / p(x|θ_ref) of the mixture model above.

    ``logr``: process -> log r_c per event; ``yields``: ν_c; ``coeff``/``coeff_ref``: f_c at θ
    and θ_ref. Events where a mixture density is not positive get NaN.
    """
    names = list(logr)

    def log_density(f):
        dens = sum(float(f.get(c, 0.0)) * float(yields[c]) * np.exp(np.asarray(logr[c], np.float64)) for c in names)
        total = sum(float(f.get(c, 0.0)) * float(yields[c]) for c in names)
        if not total > 0:
            raise ValueError(f"expected total yield {total} is not positive at coefficients {dict(f)}")
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(dens > 0, np.log(np.where(dens > 0, dens, 1.0)), np.nan) - np.log(total)

    return log_density(coeff) - log_density(coeff_ref)


def sensitivity_histograms(x, y, q, weights, edges_x, edges_y) -> dict[str, Any]:
    """Weighted mean of ``q`` per (x, y) bin and the per-bin sum Σ w q (events with NaN q are
    dropped and counted)."""
    x, y, q, w = (np.asarray(a, np.float64) for a in (x, y, q, weights))
    ok = np.isfinite(q)
    # under/overflow in the edge bins (flow="clip")
    hw = fill((x[ok], y[ok]), (edges_x, edges_y), w[ok])
    hq = fill((x[ok], y[ok]), (edges_x, edges_y), w[ok] * q[ok])
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(hw.values() != 0, hq.values() / hw.values(), np.nan)
    return {
        "mean": mean,
        "contribution": hq.values(),
        "sum_wq": float(np.sum(w[ok] * q[ok])),
        "n_invalid": int((~ok).sum()),
        "edges_x": np.asarray(edges_x),
        "edges_y": np.asarray(edges_y),
    }


def sensitivity_figure(h: Mapping[str, Any], xlabel: str, ylabel: str, title: str = "", poi_label: str | None = None):
    """Two panels: mean per-event q and its expected contribution per bin; the colour bars
    write the POI with ``poi_label`` (default ``$\\mu$``)."""
    m = poi_math(resolve_poi_label(poi_label))
    ratio = rf"p(x|{m})/p(x|{{{m}}}_\mathrm{{ref}})"
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    ex, ey = h["edges_x"], h["edges_y"]
    mean = np.ma.masked_invalid(h["mean"]).T
    lim = float(np.nanmax(np.abs(h["mean"]))) if np.any(np.isfinite(h["mean"])) else 1.0
    m0 = axes[0].pcolormesh(ex, ey, mean, cmap="RdBu_r", vmin=-lim, vmax=lim)
    fig.colorbar(m0, ax=axes[0], label=rf"mean of $-2\log {ratio}$")
    contrib = h["contribution"].T
    clim = float(np.max(np.abs(contrib))) or 1.0
    m1 = axes[1].pcolormesh(ex, ey, contrib, cmap="RdBu_r", vmin=-clim, vmax=clim)
    ratio_i = ratio.replace("p(x|", "p(x_i|")
    fig.colorbar(m1, ax=axes[1], label=rf"$\sum_i A_i \cdot (-2\log {ratio_i})$ per bin")
    for ax, sub in zip(axes, ("per event", "expected contribution")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title} ({sub})" if title else sub, fontsize=11)
    fig.tight_layout()
    return fig


def _edges(values, weights, bins):
    from .datamc import auto_edges

    return auto_edges([np.asarray(values)], [np.asarray(weights)], bins=bins)


def run_network_plots(
    mc_events: Mapping[str, np.ndarray],
    mc_table: Mapping[str, np.ndarray],
    data_table: Mapping[str, np.ndarray] | None,
    processes: Sequence[str],
    coefficients: Mapping[str, str],
    poi: str,
    poi_ref: float,
    poi_values: Sequence[float],
    reference: Mapping[str, float],
    x: str,
    y: str,
    bins: int,
    logr_outputs: Sequence[str | Path],
    sensitivity_outputs: Sequence[str | Path],
    labels: Mapping[str, str] | None = None,
    sample_labels: Mapping[str, str] | None = None,
    region_label: str = "",
    poi_label: str | None = None,
    data_label: str = "Data",
    other_pois: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Write the data/MC plots of log r_c (one per process, ``logr_outputs``) and one
    sensitivity map per POI value (``sensitivity_outputs``); return a summary.

    ``mc_events``: features, ``weight`` and ``process`` of the region's MC events;
    ``mc_table``/``data_table``: their ``logr_<c>`` columns (same row order); ``coefficients``:
    morphing expressions f_c(``poi``) (processes without one have f_c = 1); ``poi_label``: the
    POI in titles and colour bars (default from its name, ``mu`` -> ``$\\mu$``); ``data_label``:
    the legend entry of the data; ``other_pois``: the values of any further POI of the morphing
    expressions (held fixed while ``poi`` varies).
    """
    from ..build import normalise_ratios
    from ..expr import parse
    from .datamc import datamc_figure

    exprs = {c: parse(str(coefficients.get(c, "1"))) for c in processes}

    def coeff(value):
        return {c: float(e.evaluate({**(other_pois or {}), poi: value})) for c, e in exprs.items()}

    labels = dict(labels or {})
    proc = np.asarray(mc_events["process"]).astype(str)
    w = np.asarray(mc_events["weight"], np.float64)
    norm = normalise_ratios(
        {"process": proc, "weight": w, **{f"logr_{c}": mc_table[f"logr_{c}"] for c in processes}},
        reference,
        processes,
        {},
    )
    logr = {c: np.asarray(mc_table[f"logr_{c}"], np.float64) - norm[f"logr_{c}"] for c in processes}
    yields = {c: float(w[proc == c].sum()) for c in processes}
    f_ref = coeff(poi_ref)
    samples = [c for c in processes if c in set(proc)] + sorted(set(proc) - set(processes))
    label = resolve_poi_label(poi_label, poi)
    title = f"{region_label}, {label} = {poi_ref:g}"
    summary: dict[str, Any] = {
        "poi": poi,
        "poi_ref": poi_ref,
        "log_normalisation": norm,
        "yields": yields,
        "sensitivity": {},
    }
    for c, out in zip(processes, logr_outputs):
        mc = {s: (logr[c][proc == s], w[proc == s]) for s in samples}
        data = None
        if data_table is not None:
            data = np.asarray(data_table[f"logr_{c}"], np.float64) - norm[f"logr_{c}"]
        edges = _edges(logr[c], w, 25)
        fig = datamc_figure(
            mc,
            f_ref,
            data,
            edges,
            xlabel=rf"$\log r_{{\mathrm{{{c}}}}}(x)$ (network output)",
            labels=sample_labels,
            title=title,
            data_label=data_label,
        )
        fig.savefig(out, bbox_inches="tight")
        plt.close(fig)
    a = np.array([float(f_ref.get(s, 1.0)) for s in proc]) * w  # expected events at poi_ref
    ex, ey = _edges(mc_events[x], a, bins), _edges(mc_events[y], a, bins)
    nu_ref = sum(f_ref.get(c, 0.0) * yields[c] for c in processes)
    for value, out in zip(poi_values, sensitivity_outputs):
        f = coeff(value)
        q = -2.0 * log_density_ratio(logr, yields, f, f_ref)
        h = sensitivity_histograms(mc_events[x], mc_events[y], q, a, ex, ey)
        fig = sensitivity_figure(
            h, labels.get(x, x), labels.get(y, y), title=f"{region_label}, {label} = {value:g}", poi_label=label
        )
        fig.savefig(out, bbox_inches="tight")
        plt.close(fig)
        nu = sum(f.get(c, 0.0) * yields[c] for c in processes)
        summary["sensitivity"][f"{value:g}"] = {
            "sum_A_q": h["sum_wq"],
            "n_invalid": h["n_invalid"],
            "asimov_twice_delta_nll_fixed_nuisances": h["sum_wq"]
            + 2.0 * (nu - nu_ref)
            - 2.0 * float(a.sum()) * np.log(nu / nu_ref),
        }
    return summary
