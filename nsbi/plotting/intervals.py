"""Plots of toy-based intervals: Neyman belt / critical values, coverage, bias/linearity.

Inputs are the JSON-able dicts of :mod:`nsbi.neyman` (``gather``, ``coverage_from_chunks``,
``linearity``), so the plots can be remade from the written JSON files (those written with the
former keys ``mu``/``mu_hat``/``mu_true`` too, with a DeprecationWarning).

The POI is drawn with ``poi_label`` (LaTeX / mathtext, e.g. ``"$c_W$"``; the workflow passes
``morphing.poi_label``); by default the label derived from the POI name the results carry
(:func:`nsbi.plotting.labels.resolve_poi_label`: ``mu`` -> ``$\\mu$``).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ..io import upgrade_poi_keys
from .labels import poi_math, resolve_poi_label
from .style import finish, use_style

__all__ = ["plot_belt", "plot_coverage", "plot_learned", "plot_linearity", "plot_region2d", "plot_t_distribution"]

_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:purple"]


def _arr(v):
    return np.array([np.nan if x is None else x for x in v], float)


def _t_symbol(kind: str | None, m: str) -> str:
    """Math-mode test statistic of the POI with math form ``m``: t or the one-sided q~."""
    if kind == "focused":
        return rf"t^{{f}}_{{{m}}}"
    return rf"\tilde q_{{{m}}}" if kind == "q" else rf"t_{{{m}}}"


def plot_belt(belt: dict, path=None, xlabel: str | None = None, poi_label: str | None = None):
    """Toy critical values c_CL(POI) (+-1 sigma bands) vs the POI, the asymptotic chi2 levels,
    the observed and Asimov t, and the toy-based intervals of the observed data.
    ``xlabel`` replaces the x-axis label (default: ``poi_label``)."""
    use_style()
    belt = upgrade_poi_keys(belt, "belt")
    label = resolve_poi_label(poi_label, belt.get("poi"))
    m = poi_math(label)
    t_sym = _t_symbol(belt.get("kind"), m)
    mu = np.asarray(belt["poi_values"], float)
    fig, ax = plt.subplots(figsize=(7, 5))
    for i, (k, c) in enumerate(belt["critical"].items()):
        col = _COLORS[i % len(_COLORS)]
        ax.fill_between(mu, _arr(c["lo"]), _arr(c["hi"]), color=col, alpha=0.25, lw=0)
        ax.plot(mu, _arr(c["value"]), "o-", color=col, ms=3, label=f"toys, CL = {k}")
        asym = belt["critical_asymptotic"][k]
        if asym is not None and np.isfinite(asym):  # the focused statistic has none
            ax.axhline(asym, color=col, ls="--", lw=1, label=rf"$\chi^2$ quantile, CL = {k}")
    styles = {"observed": ("k-", "observed"), "asimov": ("k:", "Asimov")}
    for name, ds in belt.get("datasets", {}).items():
        fmt, lab = styles.get(name, ("k-.", name))
        ax.plot(mu, _arr(ds["t"]), fmt, lw=1.5, label=rf"${t_sym}$ {lab}")
    obs = belt.get("datasets", {}).get("observed") or belt.get("datasets", {}).get("asimov")
    if obs:
        for i, iv in enumerate(obs["intervals"].values()):
            t = iv["toys"]
            if not t.get("empty"):
                for x in (t["lo"], t["hi"]):
                    ax.axvline(x, color=_COLORS[i % len(_COLORS)], lw=0.8, alpha=0.7)
    ymax = np.nanmax([np.nanmax(_arr(c["hi"])) for c in belt["critical"].values()])
    if belt.get("kind") == "focused":  # t_f can be negative
        ymin = np.nanmin([np.nanmin(_arr(c["lo"])) for c in belt["critical"].values()])
        ax.set_ylim(min(ymin, 0.0) - 0.5, max(1.6 * ymax, 1.0))
    else:
        ax.set_ylim(0, max(1.6 * ymax, 1.0))
    ax.set_xlabel(xlabel or label)
    ax.set_ylabel(rf"${t_sym} = -2\ln\lambda({m})$" if belt.get("kind") == "t" else rf"${t_sym}$")
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    return finish(fig, path)


def plot_coverage(cov: dict, path=None, xlabel: str | None = None, poi_label: str | None = None):
    """Coverage vs the true POI (asymptotic and toy-based critical values) with binomial
    errors. ``xlabel`` replaces the x-axis label (default: "true" and ``poi_label``)."""
    use_style()
    cov = upgrade_poi_keys(cov, "coverage")
    label = resolve_poi_label(poi_label, cov.get("poi"))
    fig, ax = plt.subplots(figsize=(7, 5))
    mu = np.array([p["poi_true"] for p in cov["points"]], float)
    for i, cl in enumerate(cov["cls"]):
        k = f"{cl:g}"
        col = _COLORS[i % len(_COLORS)]
        ax.axhline(cl, color=col, lw=1, ls="--")
        for src, mk, dx in (("asymptotic", "s", -0.005), ("toys", "o", 0.005)):
            rows = [p[src].get(k) for p in cov["points"]]
            if any(r is None for r in rows):
                continue
            span = (mu.max() - mu.min()) or 1.0
            ax.errorbar(
                mu + dx * span,
                [r["fraction"] for r in rows],
                yerr=[r["error"] for r in rows],
                fmt=mk,
                color=col,
                mfc="none" if src == "asymptotic" else col,
                label=f"CL {k}, {src}",
            )
    ax.set_xlabel(xlabel or f"true {label}")
    ax.set_ylabel("coverage")
    ax.legend(fontsize=8)
    return finish(fig, path)


def plot_linearity(lin: dict, path=None, xlabel: str | None = None, poi_label: str | None = None):
    """Fitted vs injected POI on Asimov datasets (with errors), and fitted - injected.
    ``xlabel`` replaces the x-axis label (default: "injected" and ``poi_label``)."""
    use_style()
    label = resolve_poi_label(poi_label, lin.get("poi"))
    x = np.array([p["poi_injected"] for p in lin["points"]])
    y = np.array([p["poi_fitted"] for p in lin["points"]])
    e = np.array([p["poi_error"] for p in lin["points"]])
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    lim = [min(x.min(), y.min()), max(x.max(), y.max())]
    ax.plot(lim, lim, "k--", lw=1, label="fitted = injected")
    shifted = [bool(p.get("shifted")) for p in lin["points"]]
    nom = ~np.array(shifted, bool)
    ax.errorbar(x[nom], y[nom], yerr=e[nom], fmt="o", label="Asimov fit")
    for i, p in enumerate(lin["points"]):
        if shifted[i]:
            text = ", ".join(f"{k} = {p['injected'][k]:g}" for k in p["shifted"])
            ax.errorbar(x[i], y[i], yerr=e[i], fmt="s", mfc="none", label=f"Asimov fit, {text}")
    if lin.get("linear_fit"):
        lf = lin["linear_fit"]
        ax.plot(
            lim,
            [lf["intercept"] + lf["slope"] * v for v in lim],
            "r-",
            lw=1,
            label=f"slope {lf['slope']:.4f}, intercept {lf['intercept']:.2g}",
        )
    ax.set_ylabel(f"fitted {label}")
    ax.legend(fontsize=8)
    ax2.axhline(0, color="k", lw=1)
    ax2.errorbar(x, y - x, yerr=e, fmt="o")
    ax2.set_ylabel("fitted - injected")
    ax2.set_xlabel(xlabel or f"injected {label}")
    return finish(fig, path)


def plot_t_distribution(
    t, path=None, kind: str = "t", mu: float | None = None, bins: int = 40, poi_label: str | None = None
):
    """Histogram of toy t values with the asymptotic chi2_1 (or half-chi2) density; ``mu``:
    the POI value of the toys, shown with ``poi_label`` (default ``$\\mu$``)."""
    from scipy import stats

    use_style()
    t = np.asarray(t, float)
    fig, ax = plt.subplots(figsize=(7, 5))
    top = max(np.quantile(t, 0.995), 6.0)
    edges = np.linspace(0, top, bins + 1)
    ax.hist(t, edges, density=True, histtype="step", label=f"toys (N = {len(t)})")
    xs = np.linspace(edges[1] / 4, top, 300)
    pdf = stats.chi2.pdf(xs, 1) * (0.5 if kind == "q" else 1.0)
    ax.plot(xs, pdf, "r--", label=r"$\chi^2_1$" if kind == "t" else r"$\frac{1}{2}\chi^2_1$")
    ax.set_yscale("log")
    label = resolve_poi_label(poi_label)
    ax.set_xlabel(f"${_t_symbol(kind, poi_math(label))}$" + (f" ({label} = {mu:g})" if mu is not None else ""))
    ax.set_ylabel("density")
    ax.legend()
    return finish(fig, path)


def plot_region2d(region: dict, path=None, axis_labels=None):
    """The Neyman regions of :func:`nsbi.neyman2d.gather_region`: per dataset (one panel each)
    the toy region (solid) and Wilks' region (dashed) at every CL, the grid nodes (dots) and the
    best fit (cross); the title gives the area ratios toys / Wilks."""
    use_style()
    names = list(region["datasets"])
    fig, axes = plt.subplots(1, len(names), figsize=(6.5 * len(names), 5.5), squeeze=False)
    x, y = _arr(region["x"]), _arr(region["y"])
    labels = axis_labels or [resolve_poi_label(None, p) for p in region["pois"]]
    for ax, name in zip(axes[0], names):
        ds = region["datasets"][name]
        X, Y = np.meshgrid(x, y, indexing="ij")
        ax.plot(X.ravel(), Y.ravel(), ".", color="grey", ms=3)
        ratios = []
        # the regions are keyed (nsbi.neyman.cl_key) in the order of region["cls"]
        for k, (cl, r) in enumerate(zip(region["cls"], ds["regions"].values())):
            for j, line in enumerate(r["toys"]["contours"]):
                line = _arr(line)
                ax.plot(line[:, 0], line[:, 1], "-", color=f"C{k}", label=f"{cl:.0%} toys" if j == 0 else None)
            for j, line in enumerate(r["asymptotic"]["contours"]):
                line = _arr(line)
                ax.plot(line[:, 0], line[:, 1], "--", color=f"C{k}", label=f"{cl:.0%} Wilks" if j == 0 else None)
            ratios.append(f"{cl:.0%}: {r['area_ratio_toys_over_asymptotic']:.3f}")
        ax.plot(*ds["best"], "k+", ms=12, mew=2)
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
        ax.set_title(f"{name}; area toys / Wilks {', '.join(ratios)}", fontsize=10)
        ax.legend(fontsize=8)
    return finish(fig, path)


def plot_learned(result: dict, toys=(), path=None, xlabel: str | None = None, poi_label: str | None = None):
    """Learned critical values (:func:`nsbi.learned_critical.learned_construction`): left, the
    toys' t (a sample of at most 3000) with the learned c_CL and Wilks' value, and the observed
    and Asimov t curves; right, the audited coverage at each audit point with binomial errors."""
    use_style()
    label = xlabel or resolve_poi_label(poi_label, result.get("poi"))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    poi = np.concatenate([_arr(b["poi"]) for b in toys]) if toys else np.empty(0)
    t = np.concatenate([_arr(b["t"]) for b in toys]) if toys else np.empty(0)
    if len(t):
        keep = np.random.default_rng(0).permutation(len(t))[:3000]
        ax.plot(poi[keep], t[keep], ".", color="grey", ms=2, alpha=0.5, label=f"toys ({len(t)})")
    x = _arr(result["poi_values"])
    for k, (key, c) in enumerate(result["critical"].items()):
        ax.plot(x, _arr(c), "-", color=f"C{k}", label=f"learned c, {float(key):.0%}")
        asym = result["critical_asymptotic"][key]
        if asym is not None and np.isfinite(asym):  # the focused statistic has none
            ax.axhline(asym, color=f"C{k}", ls=":", lw=1)
    for style, (name, ds) in zip(("k-", "k--"), result["datasets"].items()):
        ax.plot(x, _arr(ds["t"]), style, lw=1.2, label=f"t {name}")
    top = max(1.5 * max(_arr(v).max() for v in result["critical"].values()), 1.0)
    low = min(0.0, min(_arr(v).min() for v in result["critical"].values()) - 1.0)  # t_f can be negative
    ax.set_ylim(low, top)
    ax.set_xlabel(label)
    ax.set_ylabel("t")
    ax.legend(fontsize=8)
    aud = result.get("audit") or {"points": []}
    for k, key in enumerate(result["critical"]):
        pts = aud["points"]
        xs = [p["poi"] for p in pts]
        fr = [p["levels"][key]["fraction"] for p in pts]
        er = [p["levels"][key]["error"] for p in pts]
        ax2.errorbar(xs, fr, yerr=er, fmt="o", color=f"C{k}", label=f"{float(key):.0%}")
        ax2.axhline(float(key), color=f"C{k}", ls="--", lw=1)
    ax2.set_xlabel(label)
    ax2.set_ylabel("audited coverage")
    ax2.legend(fontsize=8)
    return finish(fig, path)
