"""Data vs MC plots of prepared samples: stacked MC with its statistical band, data, ratio.

The MC prediction is drawn at the nominal POI (``morphing.poi_init``): each basis sample is
scaled by its morphing coefficient f_c(POI) and samples whose coefficient is zero are left
out (at μ = 1 the interference demo shows SBI and qqZZ). Samples with a negative
coefficient cannot be stacked; they are drawn as a line and included in the total.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mplhep  # noqa: E402
import numpy as np  # noqa: E402

from ..histogram import fill  # noqa: E402

__all__ = ["auto_edges", "datamc_figure"]


def auto_edges(values: Sequence[np.ndarray], weights: Sequence[np.ndarray], bins: int = 25) -> np.ndarray:
    """Bin edges covering the central 99.8 % of the weighted MC (robust to long tails)."""
    v = np.concatenate(values)
    w = np.abs(np.concatenate(weights))
    order = np.argsort(v)
    cdf = np.cumsum(w[order]) / w.sum()
    lo = v[order][np.searchsorted(cdf, 0.001)]
    hi = v[order][min(np.searchsorted(cdf, 0.999), len(v) - 1)]
    if hi <= lo:
        lo, hi = v.min(), v.max() + 1.0
    return np.linspace(lo, hi, bins + 1)


def datamc_figure(
    mc: Mapping[str, tuple[np.ndarray, np.ndarray]],
    coefficients: Mapping[str, float],
    data: np.ndarray | None,
    edges: np.ndarray,
    xlabel: str,
    labels: Mapping[str, str] | None = None,
    title: str = "",
    data_label: str = "Data",
):
    """Return a matplotlib figure. ``mc``: sample -> (values, weights); ``data``: values,
    drawn with the legend entry ``data_label`` (the workflow passes the data sample's
    ``label``, else its name)."""
    labels = dict(labels or {})
    # under/overflow in the edge bins (flow="clip", as in the histogram workspace)
    total = fill([], edges, [], labels=[xlabel])
    stacked, lines = [], []
    for name, (values, weights) in mc.items():
        c = float(coefficients.get(name, 1.0))
        if c == 0.0:
            continue
        h = fill(values, edges, c * np.asarray(weights, np.float64), labels=[xlabel])
        total += h
        (stacked if c > 0 else lines).append((labels.get(name, name), h))

    fig, (ax, rax) = plt.subplots(
        2, 1, figsize=(7, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05}
    )
    if stacked:
        mplhep.histplot([h for _, h in stacked], ax=ax, stack=True, histtype="fill", label=[n for n, _ in stacked])
    for name, h in lines:
        mplhep.histplot(h, ax=ax, histtype="step", label=f"{name} (negative coefficient)")
    tot = total.values()
    err = np.sqrt(total.variances())
    ax.stairs(
        tot + err, edges, baseline=tot - err, fill=True, alpha=0.3, color="grey", hatch="///", label="MC stat. unc."
    )
    if data is not None:
        hd = fill(data, edges, labels=[xlabel])
        mplhep.histplot(hd, ax=ax, histtype="errorbar", color="black", label=data_label, yerr=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = hd.values() / tot
            rerr = np.sqrt(hd.values()) / tot
        centers = 0.5 * (edges[1:] + edges[:-1])
        rax.errorbar(centers, ratio, yerr=rerr, fmt="o", color="black", markersize=3)
    with np.errstate(divide="ignore", invalid="ignore"):
        rax.stairs(1 + err / tot, edges, baseline=1 - err / tot, fill=True, alpha=0.3, color="grey", hatch="///")
    rax.axhline(1.0, color="black", lw=0.8)
    rax.set_ylim(0.5, 1.5)
    rax.set_ylabel("Data / MC")
    rax.set_xlabel(xlabel)
    ax.set_xlabel("")
    ax.set_ylabel("Events / bin")
    ax.set_title(title, fontsize=10, loc="right")
    ax.legend(fontsize=8)
    return fig
