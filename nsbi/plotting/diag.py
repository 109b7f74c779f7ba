"""Training diagnostics: loss curves, calibration, reweighting closure, normalisation,
ensemble spread, comparison with the simulator's exact log-ratio, summary JSON.

The numerical parts (:func:`calibration_curve`, :func:`closure_histograms`,
:func:`normalisation_check`, :func:`oracle_rms`) are plain functions returning numbers;
the ``plot_*`` functions draw them with matplotlib + mplhep and write files.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..histogram import histogram
from ..io import read_json, write_json

__all__ = [
    "calibration_curve",
    "closure_histograms",
    "normalisation_check",
    "oracle_rms",
    "plot_calibration",
    "plot_closure",
    "plot_loss_curves",
    "plot_oracle",
    "plot_spread",
    "ratio_diagnostics",
    "read_metrics_csv",
    "write_summary",
]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import mplhep as hep

    return plt, hep


def _save(fig, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


# --------------------------------------------------------------------------- numbers
def calibration_curve(logit, labels, weights, bins: int = 20):
    """Reliability curve of ``s = sigmoid(logit)`` for a two-class problem with
    class-normalised weights: per bin of ``s`` the weighted mean ``s`` and the weighted
    fraction of class 1 (with a binomial-like error).  Perfect calibration: equal."""
    s = 1.0 / (1.0 + np.exp(-np.asarray(logit, np.float64)))
    y = np.asarray(labels).astype(int)
    w = np.asarray(weights, np.float64).copy()
    for c in (0, 1):
        tot = w[y == c].sum()
        if not tot > 0:
            raise ValueError(f"class {c} has non-positive total weight")
        w[y == c] /= tot
    edges = np.linspace(0, 1, bins + 1)
    sw, sw2 = histogram(s, edges, w)
    sw1 = histogram(s, edges, w * (y == 1))[0]
    sws = histogram(s, edges, w * s)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_s = sws / sw
        frac = sw1 / sw
        err = np.sqrt(np.clip(frac * (1 - frac), 0, None) * sw2) / np.abs(sw)
    ok = sw > 0
    return {"edges": edges, "mean_s": mean_s[ok], "fraction": frac[ok], "error": err[ok]}


def closure_histograms(x_ref, w_ref, logr, x_c, w_c, bins=20, range_=None):
    """Reweighting closure for one feature: histogram of the reference weighted by
    ``w * r`` and scaled to the target's total, vs the target ``p_c``.

    Returns edges, both histograms, their variances, the ratio and
    ``chi2 = sum (h_ref - h_c)^2 / (var_ref + var_c)`` over bins with non-zero variance
    (``ndf`` = their number; the normalisation is fixed, not fitted)."""
    x_ref, x_c = np.asarray(x_ref, np.float64), np.asarray(x_c, np.float64)
    w_ref, w_c = np.asarray(w_ref, np.float64), np.asarray(w_c, np.float64)
    r = np.exp(np.asarray(logr, np.float64))
    if np.ndim(bins) == 0:
        lo, hi = range_ if range_ is not None else np.quantile(x_c, [0.005, 0.995])
        if not hi > lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, int(bins) + 1)
    else:
        edges = np.asarray(bins, np.float64)
    scale = w_c.sum() / w_ref.sum()
    # events outside the edges are left out (flow="drop", as numpy.histogram)
    h_ref, v_ref = histogram(x_ref, edges, w_ref * r * scale, flow="drop")
    h_c, v_c = histogram(x_c, edges, w_c, flow="drop")
    var = v_ref + v_c
    ok = var > 0
    chi2 = float(np.sum((h_ref[ok] - h_c[ok]) ** 2 / var[ok]))
    ndf = int(ok.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = h_ref / h_c
    return {
        "edges": edges,
        "h_ref": h_ref,
        "var_ref": v_ref,
        "h_c": h_c,
        "var_c": v_c,
        "ratio": ratio,
        "chi2": chi2,
        "ndf": ndf,
        "chi2_ndf": chi2 / ndf if ndf else math.nan,
    }


def normalisation_check(w_ref, logr, w_c=None) -> dict[str, float]:
    """``r`` is the ratio of *normalised* densities, so ``sum_ref w r / sum_ref w`` must be 1
    (equivalently ``sum_ref w r * (sum_c w / sum_ref w) = sum_c w``).  Returns the sums and
    ``residual = sum_ref w r / sum_ref w - 1`` with its statistical error."""
    w = np.asarray(w_ref, np.float64)
    wr = w * np.exp(np.asarray(logr, np.float64))
    out = {
        "sum_ref_w": float(w.sum()),
        "sum_ref_w_r": float(wr.sum()),
        "residual": float(wr.sum() / w.sum() - 1.0),
        "residual_error": float(np.sqrt(np.sum((wr - w * wr.sum() / w.sum()) ** 2)) / abs(w.sum())),
    }
    if w_c is not None:
        sc = float(np.sum(w_c))
        out["sum_c_w"] = sc
        out["predicted_sum_c_w"] = float(wr.sum() * sc / w.sum())
    return out


def oracle_rms(logr_pred, logr_exact, weights=None) -> dict[str, float]:
    """RMS and mean of ``pred - exact`` (optionally |w|-weighted)."""
    d = np.asarray(logr_pred, np.float64) - np.asarray(logr_exact, np.float64)
    w = np.ones_like(d) if weights is None else np.abs(np.asarray(weights, np.float64))
    ok = np.isfinite(d)
    d, w = d[ok], w[ok]
    return {
        "rms": float(np.sqrt(np.sum(w * d**2) / np.sum(w))),
        "bias": float(np.sum(w * d) / np.sum(w)),
        "n": int(ok.sum()),
    }


def read_metrics_csv(path) -> dict[str, list[float]]:
    """Per-epoch ``train_loss``/``val_loss`` from a Lightning CSVLogger ``metrics.csv``."""
    train, val = {}, {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            ep = int(row["epoch"])
            if row.get("train_loss"):
                train[ep] = float(row["train_loss"])
            if row.get("val_loss"):
                val[ep] = float(row["val_loss"])
    epochs = sorted(set(train) | set(val))
    return {
        "epoch": epochs,
        "train_loss": [train.get(e, math.nan) for e in epochs],
        "val_loss": [val.get(e, math.nan) for e in epochs],
    }


# --------------------------------------------------------------------------- plots
def plot_loss_curves(histories: Mapping[str, Any], path, title: str = ""):
    """``histories``: label -> history dict (``epoch``, ``train_loss``, ``val_loss``) or a
    path to a ``metrics.csv``/``history.json``."""
    plt, _ = _plt()
    fig, ax = plt.subplots(figsize=(7, 5))
    for i, (label, h) in enumerate(histories.items()):
        if isinstance(h, (str, Path)):
            # history.json stores non-finite losses as null
            h = read_metrics_csv(h) if str(h).endswith(".csv") else read_json(h, nan_keys=("train_loss", "val_loss"))
        color = f"C{i % 10}"
        ax.plot(h["epoch"], h["train_loss"], color=color, ls="--", lw=1)
        ax.plot(h["epoch"], h["val_loss"], color=color, ls="-", lw=1.5, label=str(label))
    ax.set_xlabel("epoch")
    ax.set_ylabel("weighted BCE (solid: validation, dashed: training)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_calibration(curve: Mapping[str, np.ndarray], path, title: str = ""):
    plt, _ = _plt()
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot([0, 1], [0, 1], "k:", label="perfect")
    ax.errorbar(curve["mean_s"], curve["fraction"], yerr=curve["error"], fmt="o", ms=3, label="classifier")
    ax.set_xlabel("mean predicted $s$")
    ax.set_ylabel("weighted fraction of numerator events")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def plot_closure(
    h: Mapping[str, Any], path, xlabel: str, label_c: str = "$p_c$", label_ref: str = r"$p_\mathrm{ref}\cdot\hat r_c$"
):
    plt, hep = _plt()
    fig, (ax, rax) = plt.subplots(2, 1, figsize=(7, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    hep.histplot(h["h_c"], h["edges"], yerr=np.sqrt(h["var_c"]), ax=ax, histtype="errorbar", color="k", label=label_c)
    hep.histplot(
        h["h_ref"], h["edges"], yerr=np.sqrt(h["var_ref"]), ax=ax, histtype="step", color="C0", label=label_ref
    )
    ax.set_ylabel("weighted events")
    ax.legend(title=f"$\\chi^2$/ndf = {h['chi2']:.1f}/{h['ndf']}")
    centres = 0.5 * (h["edges"][1:] + h["edges"][:-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.abs(h["ratio"]) * np.sqrt(h["var_ref"] / h["h_ref"] ** 2 + h["var_c"] / h["h_c"] ** 2)
    rax.errorbar(centres, h["ratio"], yerr=err, fmt="o", ms=3, color="C0")
    rax.axhline(1.0, color="k", ls=":")
    rax.set_ylim(0.8, 1.2)
    rax.set_ylabel("ratio")
    rax.set_xlabel(xlabel)
    return _save(fig, path)


def plot_spread(logr, spread, path, title: str = ""):
    """Distribution of the relative ensemble spread ``std(r) / r_agg``."""
    plt, _ = _plt()
    rel = np.asarray(spread) / np.exp(np.asarray(logr))
    fig, ax = plt.subplots(figsize=(7, 5))
    hi = np.quantile(rel, 0.999) if len(rel) else 1.0
    ax.hist(rel, bins=50, range=(0, max(hi, 1e-6)), histtype="step")
    ax.set_xlabel(r"ensemble spread $\sigma(r)/\bar r$")
    ax.set_ylabel("events")
    ax.set_yscale("log")
    ax.set_title(title)
    return _save(fig, path)


def plot_oracle(logr_pred, logr_exact, path, title: str = "", max_points: int = 20000, seed: int = 0):
    plt, _ = _plt()
    p, e = np.asarray(logr_pred), np.asarray(logr_exact)
    if len(p) > max_points:
        sel = np.random.default_rng(seed).choice(len(p), max_points, replace=False)
        p, e = p[sel], e[sel]
    stats = oracle_rms(p, e)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(e, p, s=2, alpha=0.3)
    lo, hi = float(np.nanmin([e.min(), p.min()])), float(np.nanmax([e.max(), p.max()]))
    ax.plot([lo, hi], [lo, hi], "k:")
    ax.set_xlabel(r"exact $\log r$")
    ax.set_ylabel(r"predicted $\log \hat r$")
    ax.set_title(f"{title} RMS = {stats['rms']:.3f}")
    return _save(fig, path)


# --------------------------------------------------------------------------- driver
def ratio_diagnostics(
    out_dir,
    target: str,
    features: Sequence[str],
    ref: Mapping[str, np.ndarray],
    logr_ref,
    c: Mapping[str, np.ndarray],
    logr_c,
    spread_ref=None,
    histories: Mapping[str, Any] | None = None,
    feature_labels: Mapping[str, str] | None = None,
    exact_log_ratio: Callable[[Mapping[str, np.ndarray]], np.ndarray] | None = None,
    bins: int = 20,
) -> dict[str, Any]:
    """All diagnostics of one ratio target (numerator ``c`` vs denominator ``ref``), on
    out-of-fold predictions ``logr_ref`` (for the denominator events) and ``logr_c`` (for
    the numerator events).  Writes plots into ``out_dir`` and returns the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = dict(feature_labels or {})
    summary: dict[str, Any] = {"target": target}
    if histories:
        plot_loss_curves(histories, out / "loss.png", title=target)
    logit = np.concatenate([np.asarray(logr_ref), np.asarray(logr_c)])
    y = np.concatenate([np.zeros(len(logr_ref), int), np.ones(len(logr_c), int)])
    w = np.concatenate([ref["weight"], c["weight"]])
    plot_calibration(calibration_curve(logit, y, w), out / "calibration.png", title=target)
    closure = {}
    for f in features:
        h = closure_histograms(ref[f], ref["weight"], logr_ref, c[f], c["weight"], bins=bins)
        plot_closure(h, out / f"closure_{f}.png", labels.get(f, f))
        closure[f] = {"chi2": h["chi2"], "ndf": h["ndf"], "chi2_ndf": h["chi2_ndf"]}
    summary["closure"] = closure
    summary["normalisation"] = normalisation_check(ref["weight"], logr_ref, c["weight"])
    if spread_ref is not None:
        # (log r, spread) of the members' ratios; a bare spread refers to logr_ref
        lr_sp, spread = spread_ref if isinstance(spread_ref, tuple) else (logr_ref, spread_ref)
        plot_spread(lr_sp, spread, out / "spread.png", title=target)
        rel = np.asarray(spread) / np.exp(np.asarray(lr_sp))
        summary["spread"] = {"median_relative": float(np.median(rel)), "q90_relative": float(np.quantile(rel, 0.9))}
    if exact_log_ratio is not None:
        exact = np.asarray(exact_log_ratio(ref), np.float64)
        plot_oracle(logr_ref, exact, out / "oracle.png", title=target)
        summary["oracle"] = oracle_rms(logr_ref, exact, ref["weight"])
    write_summary(out / "summary.json", summary)
    return summary


def write_summary(path, summary: Mapping[str, Any]):
    """The diagnostics summary JSON (:func:`nsbi.io.write_json`: non-finite numbers -> null)."""
    return write_json(summary, path)


# --------------------------------------------------------------------------- file-level driver
def renormalise_log_ratio(logr_unnorm, w_den) -> np.ndarray:
    """Shift an un-normalised exact log-ratio so that ``sum_den w r / sum_den w = 1`` (the
    normalisation inside the selected region, which a total cross section would miss)."""
    lr = np.asarray(logr_unnorm, np.float64)
    w = np.asarray(w_den, np.float64)
    ok = np.isfinite(lr)
    shift = np.max(lr[ok])
    return lr - (shift + np.log(np.sum(w[ok] * np.exp(lr[ok] - shift)) / np.sum(w[ok])))


def run_ratio_diagnostics(
    out_dir,
    target: str,
    num_path,
    den_paths: Mapping[str, Any],
    model_paths: Sequence,
    features: Sequence[str],
    n_folds: int,
    coefficients: Mapping[str, float] | None = None,
    history_paths: Sequence | None = None,
    feature_labels: Mapping[str, str] | None = None,
    oracle_spec: Mapping[str, Any] | None = None,
    aggregation: str = "mean",
    max_events: int = 200_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate the ensemble out-of-fold on the numerator and denominator samples of a
    target and write all diagnostics.  ``oracle_spec`` (optional, built-in simulator):
    ``{"kind": "ratio", "process": c}`` or ``{"kind": "syst", "process": c,
    "systematic": k, "direction": "up"}``; the exact log-ratio is renormalised on the
    denominator sample (:func:`renormalise_log_ratio`)."""
    from ..evaluate import aggregate, evaluate_ensemble, member_mask
    from ..train.data import mixture, read_sample

    cols = list(features) + ["weight", "event_key"]
    rng = np.random.default_rng(seed)

    def sub(s):
        n = len(s["weight"])
        if n <= max_events:
            return s
        idx = np.sort(rng.choice(n, max_events, replace=False))
        return {k: v[idx] for k, v in s.items()}

    num = read_sample(num_path, cols)
    comps = {k: read_sample(p, cols) for k, p in den_paths.items()}
    coefficients = dict(coefficients or {k: 1.0 for k in comps})
    den = mixture(comps, coefficients) if len(comps) > 1 else next(iter(comps.values()))
    num, den = sub(num), sub(den)
    lr_num, _, _ = aggregate(evaluate_ensemble(model_paths, num, n_folds, True, list(features)), aggregation)
    # every member on every reference event once: the spread between members uses all of
    # them (out of fold, an MC event is seen by the members of one fold only, so its own
    # spread can vanish); the out-of-fold ratio masks the members that trained on the event
    all_den = evaluate_ensemble(model_paths, den, n_folds, False, list(features))
    lr_all, sp_den, _ = aggregate(all_den, aggregation)
    oof_den = all_den.copy()
    for m in range(len(oof_den)):
        oof_den[m, ~member_mask(den["event_key"], m, n_folds, True)] = np.nan
    lr_den, _, _ = aggregate(oof_den, aggregation)
    histories = {f"member {i}": p for i, p in enumerate(history_paths or [])}
    exact_fn = None
    if oracle_spec:
        from ..simulate.oracle import Oracle

        oracle = Oracle()
        if oracle_spec.get("kind") == "syst":

            def exact_fn(ev):
                lr = oracle.log_syst_ratio(
                    oracle_spec["process"], oracle_spec["systematic"], oracle_spec["direction"], ev, norm=False
                )
                return renormalise_log_ratio(lr, ev["weight"])
        else:
            sumw = {k: float(np.sum(comps[k]["weight"])) for k in comps}
            den_mix = {k: float(coefficients.get(k, 1.0)) / sumw[k] for k in comps}

            def exact_fn(ev):
                lr = oracle.log_ratio(oracle_spec["process"], den_mix, ev, norm=False)
                return renormalise_log_ratio(lr, ev["weight"])

    return ratio_diagnostics(
        out_dir,
        target,
        features,
        den,
        lr_den,
        num,
        lr_num,
        spread_ref=(lr_all, sp_den),
        histories=histories,
        feature_labels=feature_labels,
        exact_log_ratio=exact_fn,
    )
