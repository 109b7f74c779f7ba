"""Plots of fit results: likelihood scans, pulls and impact rankings (matplotlib + mplhep).

The POI is drawn with ``poi_label`` (LaTeX / mathtext; the workflow passes
``morphing.poi_label``), by default the label of its name
(:func:`nsbi.plotting.labels.resolve_poi_label`: ``mu`` -> ``$\\mu$``).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .labels import poi_math, resolve_poi_label  # noqa: E402
from .style import finish, use_style  # noqa: E402

__all__ = ["plot_scan", "plot_scan2d", "plot_pulls", "plot_impacts"]


def plot_scan(
    scans, path=None, labels: Sequence[str] | None = None, xlabel: str | None = None, poi_label: str | None = None
):
    """Delta(-2 ln L) vs POI for one or several :class:`nsbi.fit.ScanResult` (e.g. NSBI vs
    histogram, profile vs stat-only), with the 68%/95% levels and crossings. The x axis is
    ``xlabel``, else ``poi_label``, else the label of the scanned POI's name."""
    use_style()
    scans = scans if isinstance(scans, (list, tuple)) else [scans]
    labels = labels or [f"{s.mode}" for s in scans]
    fig, ax = plt.subplots(figsize=(7, 5))
    for s, lab in zip(scans, labels):
        ok = np.isfinite(s.delta)
        lo, hi = s.intervals.get("68", (np.nan, np.nan))
        ax.plot(s.values[ok], s.delta[ok], "-o", ms=3, label=f"{lab}: {s.best:.3g} [{lo:.3g}, {hi:.3g}]")
    for lv, txt in ((1.0, "68%"), (3.841458820694124, "95%")):
        ax.axhline(lv, color="grey", ls="--", lw=1)
        ax.text(ax.get_xlim()[1], lv, f" {txt}", va="center", fontsize=9)
    ax.set_xlabel(xlabel or resolve_poi_label(poi_label, scans[0].poi))
    ax.set_ylabel(r"$-2\Delta\ln L$")
    ax.set_ylim(0, max(5.0, min(12.0, float(np.nanmax([np.nanmax(s.delta[np.isfinite(s.delta)]) for s in scans])))))
    ax.legend(fontsize=9)
    return finish(fig, path)


def plot_scan2d(scans, path=None, labels: Sequence[str] | None = None, axis_labels: Sequence[str] | None = None):
    """68 % and 95 % contours (solid, dashed) and best-fit points of one or several
    :class:`nsbi.scan2d.Scan2DResult` of the same pair of parameters; the first one's
    Delta(-2 ln L) is drawn as a colour map below them. ``axis_labels``: the two parameters
    (default: the labels of their names)."""
    use_style()
    scans = scans if isinstance(scans, (list, tuple)) else [scans]
    labels = labels or [""] * len(scans)
    first = scans[0]
    fig, ax = plt.subplots(figsize=(7, 5.5))
    z = np.where(np.isfinite(first.delta), first.delta, np.nan)
    mesh = ax.pcolormesh(first.x, first.y, np.clip(z, 0, 12).T, shading="nearest", cmap="Blues_r", alpha=0.6)
    fig.colorbar(mesh, ax=ax, label=r"$-2\Delta\ln L$")
    for k, s in enumerate(scans):
        color = f"C{k}"
        for level, style in (("68", "-"), ("95", "--")):
            for j, line in enumerate(s.contours.get(level, [])):
                tag = f"{labels[k]} {level}%".strip() if j == 0 else None
                ax.plot(line[:, 0], line[:, 1], style, color=color, lw=1.5, label=tag)
        ax.plot(*s.best, marker="+", ms=12, mew=2, color=color, ls="none")
    names = axis_labels or [resolve_poi_label(None, p) for p in first.pois]
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.legend(fontsize=9)
    return finish(fig, path)


def plot_pulls(pulls: dict, path=None, max_params: int = 40):
    """Pull plot from :func:`nsbi.fit.pulls`: (hat - nominal)/sigma with post-fit constraint."""
    use_style()
    names = list(pulls)[:max_params]
    y = np.arange(len(names))[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(names) + 1.5))
    ax.fill_betweenx([-1, len(names)], -2, 2, color="yellow", alpha=0.5)
    ax.fill_betweenx([-1, len(names)], -1, 1, color="limegreen", alpha=0.5)
    ax.errorbar([pulls[n]["pull"] for n in names], y, xerr=[pulls[n]["constraint"] for n in names], fmt="ko", ms=4)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlim(-3, 3)
    ax.set_ylim(-1, len(names))
    ax.set_xlabel(r"$(\hat\theta - \theta_0)/\Delta\theta$")
    return finish(fig, path)


def plot_impacts(rows: list[dict], path=None, poi: str = "mu", max_params: int = 20, poi_label: str | None = None):
    """Impact ranking from :func:`nsbi.fit.impacts` (pre-fit hatched, post-fit filled); the
    x axis is the shift of the fitted POI, written with ``poi_label`` (default: the label of
    the name ``poi``)."""
    use_style()
    rows = rows[:max_params]
    names = [r["name"] for r in rows]
    y = np.arange(len(rows))[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.5))
    for key, kw in (("prefit", dict(fill=False, hatch="///", lw=0.8)), ("postfit", dict(alpha=0.7))):
        ax.barh(
            y,
            [r[f"{key}_up"] for r in rows],
            height=0.7,
            color="tab:blue",
            edgecolor="tab:blue",
            label=f"{key} +1σ",
            **kw,
        )
        ax.barh(
            y,
            [r[f"{key}_down"] for r in rows],
            height=0.7,
            color="tab:orange",
            edgecolor="tab:orange",
            label=f"{key} -1σ",
            **kw,
        )
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlabel(rf"$\Delta\hat{{{poi_math(resolve_poi_label(poi_label, poi))}}}$")
    ax.legend(fontsize=8, loc="lower right")
    return finish(fig, path)
