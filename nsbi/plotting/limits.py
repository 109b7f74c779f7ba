"""CL_s vs the POI with the expected band ("Brazil" plot) of :mod:`nsbi.limits` results.

Inputs are :class:`nsbi.limits.CLsScanResult` / :class:`nsbi.limits.UpperLimitResult` or their
JSON-able ``to_dict()`` forms, so the plot can be remade from the written JSON. The expected
values are in pyhf's order (-2 sigma, -1 sigma, median, +1 sigma, +2 sigma). The POI is drawn
with ``poi_label`` (default: the label of the POI's name,
:func:`nsbi.plotting.labels.resolve_poi_label`).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .labels import resolve_poi_label  # noqa: E402
from .style import finish, use_style  # noqa: E402

__all__ = ["plot_cls"]

_TEST_STAT_LABELS = {"qtilde": r"$\tilde{q}$", "q": r"$q$"}


def _as_dict(obj) -> dict | None:
    if obj is None or isinstance(obj, dict):
        return obj
    return obj.to_dict()


def plot_cls(
    scan,
    path=None,
    limit=None,
    poi_label: str | None = None,
    xlabel: str | None = None,
    logy: bool = False,
):
    """Observed CL_s and the expected median with its +-1 sigma (green) and +-2 sigma (yellow)
    bands vs the POI, the level 1 - CL, and (``limit`` given) the observed and expected upper
    limits in the legend and as markers on the level line."""
    use_style()
    s = _as_dict(scan)
    lim = _as_dict(limit)
    x = np.asarray(s["poi_values"], float)
    o = np.argsort(x)
    x = x[o]
    obs = np.asarray(s["cls"], float)[o]
    exp = np.asarray(s["cls_expected"], float).reshape(-1, 5)[o]
    level = 1.0 - float(s.get("cl", lim["cl"] if lim else 0.95))
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.fill_between(x, exp[:, 0], exp[:, 4], color="#ffdf00", lw=0, label=r"expected $\pm 2\sigma$")
    ax.fill_between(x, exp[:, 1], exp[:, 3], color="#00c000", lw=0, label=r"expected $\pm 1\sigma$")
    med = "expected"
    obs_lab = "observed"
    if lim is not None:
        e = lim["expected"]
        med = f"expected: {e[2]:.3g} [{e[1]:.3g}, {e[3]:.3g}]"
        obs_lab = f"observed: {lim['observed']:.3g}"
    ax.plot(x, exp[:, 2], "k--", lw=1.5, label=med)
    ax.plot(x, obs, "k-", marker="o", ms=3, lw=1.5, label=obs_lab)
    ax.axhline(level, color="red", lw=1, label=f"CL$_s$ = {level:g}")
    if lim is not None:
        ax.plot([lim["observed"]], [level], "k*", ms=10)
        ax.plot([lim["expected"][2]], [level], "kx", ms=8)
    ax.set_xlabel(xlabel or resolve_poi_label(poi_label, s.get("poi")))
    ts = _TEST_STAT_LABELS.get(s.get("test_stat"), "")
    how = "asymptotic" if s.get("calctype", "asymptotics") == "asymptotics" else "toys"
    ax.set_ylabel(rf"CL$_s$ ({ts}, {how})" if ts else "CL$_s$")
    if logy:
        ax.set_yscale("log")
        vals = np.concatenate([obs, exp[:, 0]])
        vals = vals[np.isfinite(vals) & (vals > 0)]
        ax.set_ylim(max(1e-4, 0.5 * float(vals.min())) if vals.size else 1e-4, 1.2)
    else:
        ax.set_ylim(0, 1.05)
    ax.set_xlim(x[0], x[-1])
    ax.legend(fontsize=9, loc="upper right")
    return finish(fig, path)
