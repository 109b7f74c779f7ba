"""Toy-based (Neyman) confidence intervals, coverage and bias/linearity checks.

Test statistic (profile likelihood ratio, POI ``mu``)::

    t_mu = -2 ln lambda(mu) = [-2 ln L(mu, theta_hat_hat)] - [-2 ln L(mu_hat, theta_hat)]

with ``mu_hat`` bounded by the POI bounds of the model (so ``t_mu >= 0``). ``kind="q"`` is the
one-sided variant used for upper limits (``q~_mu``: ``t_mu`` if ``mu_hat <= mu`` else 0; the
``mu_hat >= 0`` condition of q~ comes from a POI lower bound of 0).

Neyman construction on a grid of ``mu``: at each grid point, pseudo-experiments are generated at
``theta_mu`` (the POI at ``mu``; nuisance parameters nominal, or profiled on the observed data
— the LHC "profile construction" — via :func:`theta_at`), ``t_mu`` is computed for each toy, and
the critical value ``c_CL(mu)`` is the CL quantile of its distribution. The interval at CL is
``{mu : t_mu(observed) <= c_CL(mu)}`` (end points by linear interpolation of
``t_obs - c`` between grid points). It is compared with the asymptotic (Wilks) interval, with
``c = chi2_1 quantile`` (``kind="t"``) or the half-chi2 quantile (``kind="q"``).
``kind="focused"`` replaces the maximum in the denominator by the average over a focus density
(:mod:`nsbi.focused`); it has no asymptotic form, so its intervals come from the toys only.

Splitting: :func:`compute_chunk` does one (mu grid point, toy batch) job and returns a small
JSON-able dict (written with :func:`write_chunk`, JSON or npz, no pickle); :func:`gather`
merges any set of chunks (+ the observed and Asimov ``t_mu`` from :func:`observed_t`) into the
belt and the intervals. Seeds: chunk ``(seed, mu_index, batch)`` uses
``SeedSequence([seed, mu_index, batch])`` — independent streams; use another base seed for
coverage toys than for the belt.

``mu`` above is the POI, whatever its name. The outputs carry the POI's name (``"poi"``) and
POI-neutral keys: ``poi_value``, ``poi_index`` and ``poi_hat`` in a chunk, ``poi_values`` (the
grid) and ``poi_hat`` in :func:`observed_t` and :func:`gather` outputs, ``poi_true`` in the
coverage points; outputs written with the former keys (``mu``, ``mu_index``, ``mu_hat``,
``mu_true``) are still read for one version, with a DeprecationWarning
(:func:`nsbi.io.upgrade_poi_keys`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from nsbi import io as nio
from nsbi.focused import FocusDensity, focused_t, log_marginal
from nsbi.minimize import entry_hessian, minimize_batch, take
from nsbi.toys import ToyGenerator, ToySet, param_vector

__all__ = [
    "acceptance_interval",
    "asymptotic_critical",
    "binomial_coverage",
    "check_kind",
    "cl_key",
    "quantile_with_error",
    "compute_chunk",
    "coverage",
    "coverage_from_chunks",
    "gather",
    "interval_lengths",
    "linearity",
    "observed_t",
    "read_belt",
    "read_chunk",
    "theta_at",
    "toy_profiles",
    "toy_t",
    "tested_point",
    "write_chunk",
    "write_json",
]

#: format of the chunks written (2: POI-neutral keys ``poi_value``, ``poi_index``, ``poi_hat``)
CHUNK_FORMAT = "nsbi-neyman-chunk-2"
#: formats read: 1 has the former keys ``mu``, ``mu_index``, ``mu_hat`` (read for one more version)
CHUNK_FORMATS = ("nsbi-neyman-chunk-1", CHUNK_FORMAT)
#: chunk entries stored as arrays in an ``.npz`` chunk
CHUNK_ARRAYS = ("t", "poi_hat", "converged", "theta")
DEFAULT_CLS = (0.68, 0.95)
#: the test statistics: two-sided t_mu, one-sided q~_mu, focused (:mod:`nsbi.focused`)
KINDS = ("t", "q", "focused")


def _f(v) -> float:
    return float("nan") if v is None else float(v)


def write_json(obj, path) -> Path:
    """:func:`nsbi.io.write_json` with ``indent=1`` (strict JSON: NaN/inf -> null)."""
    return nio.write_json(obj, path, indent=1)


def cl_key(cl: float) -> str:
    return f"{cl:g}"


def asymptotic_critical(cl: float, kind: str = "t") -> float:
    """Wilks: chi2_1 quantile (two-sided t_mu); half-chi2 mixture for q~_mu (one-sided); NaN for
    the focused statistic, which has no asymptotic distribution (its intervals come from toys)."""
    if kind == "t":
        return float(stats.chi2.ppf(cl, 1))
    if kind == "q":
        return float(stats.chi2.ppf(2 * cl - 1, 1)) if cl > 0.5 else 0.0
    if kind == "focused":
        return float("nan")
    raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")


def _poi(model) -> int:
    if model.poi_index is None:
        raise ValueError("the measurement defines no POI")
    return int(model.poi_index)


def tested_point(model, mu) -> dict[str, float]:
    """The tested point ``{parameter: value}``: ``{POI: mu}`` for a number, else the mapping
    (several POIs, e.g. a point of a 2-D construction); every name must be a free parameter."""
    if not isinstance(mu, Mapping):
        return {model.par_names[_poi(model)]: float(mu)}
    if not mu:
        raise ValueError("the tested point names no parameter")
    out = {}
    for name, v in mu.items():
        if model.fixed[model.index(name)]:
            raise ValueError(f"tested point: parameter {name!r} is fixed in the measurement")
        out[str(name)] = float(v)
    return out


@dataclass(frozen=True)
class _FitSpace:
    """The coordinates the toys are fitted in: the POI's square root where the model allows
    it (:meth:`ToyGenerator.sqrt_poi_nll`: interference morphing is polynomial in sqrt(mu), so
    the batched Newton sees exact, finite derivatives at mu = 0 instead of stopping on the bound
    and leaving the fit to MIGRAD), else the POI itself. The minima and -2 ln L values are the
    same in both; only the coordinates of the POI differ (``to_fit`` / ``from_fit``)."""

    fun: Callable
    vgh: Callable
    bounds: list
    ip: int
    sqrt: bool

    def poi_to_fit(self, v):
        """POI value(s) ``v`` in the fit coordinate."""
        return np.sqrt(np.maximum(v, 0.0)) if self.sqrt else np.asarray(v, float)

    def to_fit(self, x) -> np.ndarray:
        """Parameter vector(s) ``x`` (the POI at index ``ip`` of the last axis) in the fit
        coordinates."""
        x = np.array(x, float)
        x[..., self.ip] = self.poi_to_fit(x[..., self.ip])
        return x

    def from_fit(self, x) -> np.ndarray:
        """Parameter vector(s) in the fit coordinates back to the POI itself."""
        x = np.array(x, float)
        if self.sqrt:
            x[..., self.ip] = np.square(x[..., self.ip])
        return x


def _fit_space(gen: ToyGenerator) -> _FitSpace:
    model, ip = gen.model, _poi(gen.model)
    if model.sqrt_poi_possible:
        mk, fun, vgh = gen.sqrt_poi_nll()
        return _FitSpace(fun, vgh, list(mk.bounds), ip, True)
    return _FitSpace(gen.twice_nll, gen.twice_nll_vgh, list(model.bounds), ip, False)


def theta_at(
    gen: ToyGenerator,
    mu: float,
    nuisances: str | Mapping[str, float] | None = "nominal",
    observed_model=None,
    tolerance: float = 1e-6,
) -> np.ndarray:
    """Generation point for POI = ``mu`` (or the point ``{parameter: value}`` of several POIs,
    :func:`tested_point`): the other parameters ``"nominal"`` (model inits), from a mapping of
    values, or ``"profiled"`` (conditional MLE on ``observed_model``, default ``gen.model``)."""
    model = gen.model
    point = tested_point(model, mu)
    if nuisances in (None, "nominal"):
        x = param_vector(model)
    elif nuisances == "profiled":
        from nsbi import fit as F

        om = observed_model or model
        x = np.array(F.fit(om, fixed=point, tolerance=tolerance, hesse=False).values)
    elif isinstance(nuisances, Mapping):
        x = param_vector(model, nuisances)
    else:
        raise ValueError(f"unknown nuisances {nuisances!r}")
    for name, v in point.items():
        x[model.index(name)] = v
    return x


def toy_t(
    gen: ToyGenerator,
    toys: ToySet,
    mu: float,
    kind: str = "t",
    batch_size: int | None = None,
    progress: bool = False,
    tol: float = 1e-10,
    focus: FocusDensity | None = None,
    pois: Sequence[str] | None = None,
) -> dict[str, Any]:
    """t_mu of every toy: batched free fit (POI within its bounds) and conditional fit (POI = mu),
    both started at the generation point, in the coordinates of :func:`_fit_space` (sqrt(mu)
    for interference morphing). ``mu`` may be a point ``{parameter: value}`` of several POIs
    (:func:`tested_point`; ``kind="t"`` only): all of them are fixed in the conditional fit,
    and ``"hat"`` gives each one's free-fit values. ``mu=None``: every toy is tested at its own
    POI value, its row of ``toys.theta`` (toys made at several points, :meth:`ToySet.concatenate`);
    with ``pois`` (names of several POIs), every one of them is fixed at the toy's own values.
    ``kind="focused"`` (one POI; needs ``focus``): the focused statistic of :mod:`nsbi.focused`,
    with one more conditional fit per node of the focus density, each started at the free fit."""
    model = gen.model
    ip = _poi(model)
    # mu None: every toy at its own POI value(s) (toys.theta has a row per toy)
    if mu is not None:
        point = tested_point(model, mu)
    else:
        point = {name: np.nan for name in (pois or [model.par_names[ip]])}
    check_kind(kind, focus)
    if len(point) > 1 and kind != "t":
        raise ValueError(f"the statistic {kind!r} is defined for one POI; a point of several POIs takes kind='t'")
    fs = _fit_space(gen)
    free = ~np.asarray(model.fixed, bool)
    data = toys.data()
    x0 = fs.to_fit(toys.theta)
    kw = {
        "shared": (gen.mc_arrays,),
        "vgh": fs.vgh,
        "batch_size": batch_size,
        "progress": progress,
        "tol": tol,
    }
    rf = minimize_batch(fs.fun, data, x0, fs.bounds, free, hessian=kind == "focused", **kw)
    xc = x0.copy()
    fc = free.copy()
    for name, v in point.items():
        i = model.index(name)
        if mu is not None:
            xc[..., i] = fs.poi_to_fit(v) if i == ip else v
        fc[i] = False
    rc = minimize_batch(fs.fun, data, xc, fs.bounds, fc, **kw)
    t = rc.twice_nll - rf.twice_nll
    n_neg = int(np.sum(t < -1e-6))  # free fit worse than the conditional one: free fit failed
    t = np.maximum(t, 0.0)
    hat = fs.from_fit(rf.values)
    poi_hat = hat[:, ip]
    extra = {}
    if kind == "focused":
        extra = _marginal_fits(fs, data, rf, free, focus, kw)
        t = rc.twice_nll - extra["log_marginal"]
    elif kind == "q":
        tested = (
            np.broadcast_to(np.asarray(toys.theta, float)[..., ip], t.shape)
            if mu is None
            else point[model.par_names[ip]]
        )
        t = np.where(poi_hat > tested, 0.0, t)
    return {
        "t": t,
        "poi_hat": poi_hat,
        "hat": {name: hat[:, model.index(name)] for name in point},
        "twice_nll_free": rf.twice_nll,
        "twice_nll_cond": rc.twice_nll,
        "converged": rf.converged & rc.converged & extra.get("converged", True),
        "n_fallback": rf.n_fallback + rc.n_fallback + extra.get("n_fallback", 0),
        "n_failed": rf.n_failed + rc.n_failed + extra.get("n_failed", 0),
        "n_negative_t": n_neg,
    }


def _marginal_fits(fs: _FitSpace, data, free_fit, free, focus: FocusDensity, kw: Mapping) -> dict[str, Any]:
    """The focused statistic's denominator for every toy (:func:`nsbi.focused.log_marginal`):
    one batched conditional fit per node of ``focus`` over each toy's likelihood window
    (:func:`_approx_log_like`), started at the toy's free fit (with its Hessian); plus the fits' counts."""
    ip = fs.ip
    nodes, log_w = focus.quadrature(_approx_log_like(fs, free_fit, free))
    fk = np.array(free, bool)
    fk[ip] = False
    at_nodes = np.empty(nodes.shape)
    out: dict[str, Any] = {"n_fallback": 0, "n_failed": 0, "converged": True}
    for k in range(nodes.shape[1]):
        xk = np.array(free_fit.values, float)
        xk[..., ip] = fs.poi_to_fit(nodes[:, k])
        rk = minimize_batch(fs.fun, data, xk, fs.bounds, fk, **kw)
        at_nodes[:, k] = rk.twice_nll
        out["n_fallback"] += rk.n_fallback
        out["n_failed"] += rk.n_failed
        out["converged"] = out["converged"] & rk.converged
    out["log_marginal"] = log_marginal(at_nodes, log_w)
    return out


def toy_profiles(
    gen: ToyGenerator,
    toys: ToySet,
    mu_values: Sequence[float],
    focus: FocusDensity | None = None,
    batch_size: int | None = None,
    tol: float = 1e-10,
) -> dict[str, Any]:
    """Every toy's profile likelihood on the POI values ``mu_values``, for intervals toy by toy
    (e.g. interval lengths, :func:`interval_lengths`): the free fit, one batched conditional
    fit per value (started at the free fit) and, with ``focus``, the focused statistic's
    denominator. Returns ``twice_nll_free`` (T,), ``twice_nll_cond`` (T, M), ``t`` (T, M; the
    two-sided t_mu), ``t_focused`` (T, M; with ``focus``) and the fits' counts."""
    model = gen.model
    ip = _poi(model)
    fs = _fit_space(gen)
    free = ~np.asarray(model.fixed, bool)
    data = toys.data()
    kw = {"shared": (gen.mc_arrays,), "vgh": fs.vgh, "batch_size": batch_size, "tol": tol}
    rf = minimize_batch(fs.fun, data, fs.to_fit(toys.theta), fs.bounds, free, hessian=focus is not None, **kw)
    fc = free.copy()
    fc[ip] = False
    mu_values = np.asarray(mu_values, float)
    cond = np.empty((len(rf.twice_nll), len(mu_values)))
    n_fallback, n_failed, converged = rf.n_fallback, rf.n_failed, rf.converged.copy()
    for j, v in enumerate(mu_values):
        xc = np.array(rf.values, float)
        xc[..., ip] = fs.poi_to_fit(v)
        rc = minimize_batch(fs.fun, data, xc, fs.bounds, fc, **kw)
        cond[:, j] = rc.twice_nll
        n_fallback, n_failed, converged = n_fallback + rc.n_fallback, n_failed + rc.n_failed, converged & rc.converged
    # the free fit's minimum, or a conditional one where that is lower (a free fit that stopped early)
    best = np.minimum(rf.twice_nll, cond.min(axis=1))
    out: dict[str, Any] = {
        "poi_values": mu_values,
        "twice_nll_free": rf.twice_nll,
        "twice_nll_cond": cond,
        "t": cond - best[:, None],
        "poi_hat": fs.from_fit(rf.values)[:, ip],
    }
    if focus is not None:
        m = _marginal_fits(fs, data, rf, free, focus, kw)
        out["t_focused"] = cond - m["log_marginal"][:, None]
        n_fallback, n_failed, converged = (
            n_fallback + m["n_fallback"],
            n_failed + m["n_failed"],
            converged & m["converged"],
        )
    out.update(n_fallback=int(n_fallback), n_failed=int(n_failed), converged=converged)
    return out


def _approx_log_like(fs: _FitSpace, free_fit, free) -> Callable[[np.ndarray], np.ndarray]:
    """Each toy's profile ln L in the POI, approximated by the quadratic form of its free fit's
    Hessian in the fit coordinate (sqrt(mu) where the toys are fitted in it): the input of
    :meth:`nsbi.focused.FocusDensity.window`; NaN where the Hessian is not positive."""
    free = np.asarray(free, bool)
    j = int(np.sum(free[: fs.ip]))  # the POI's index among the free parameters
    h = np.asarray(free_fit.hessian, float)[:, free][:, :, free]
    with np.errstate(all="ignore"):
        try:
            var = 2.0 * np.linalg.inv(h)[:, j, j]  # -2 ln L: covariance = 2 H^-1
        except np.linalg.LinAlgError:
            var = np.array([2.0 * np.linalg.pinv(x)[j, j] for x in h])
    var = np.where(var > 0, var, np.nan)[:, None]
    u_hat = np.asarray(free_fit.values, float)[:, fs.ip][:, None]

    def log_like(mu):
        return -0.5 * (fs.poi_to_fit(mu) - u_hat) ** 2 / var

    return log_like


def check_kind(kind: str, focus=None) -> None:
    """``kind`` is a test statistic of this module: ``"t"`` (two-sided -2 ln lambda), ``"q"``
    (one-sided q~_mu) or ``"focused"`` (:mod:`nsbi.focused`, which needs a ``focus`` density)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    if kind == "focused" and focus is None:
        raise ValueError("the focused statistic needs a focus density (validation.focus)")


def observed_t(
    model, mu_values: Sequence[float], kind: str = "t", tolerance: float = 1e-6, focus: FocusDensity | None = None
) -> dict[str, Any]:
    """t_mu of one dataset (the model's own data, e.g. observed or an Asimov
    :meth:`ToyGenerator.model_for`) on a grid, with iminuit (:func:`nsbi.fit.fit`);
    ``kind="focused"`` with the ``focus`` density (:mod:`nsbi.focused`)."""
    from nsbi import fit as F

    check_kind(kind, focus)
    ip = _poi(model)
    best = F.fit(model, tolerance=tolerance, strategy=2, hesse=kind == "focused")

    def profile(values) -> np.ndarray:
        out = np.empty(len(values))
        for j, mu in enumerate(values):
            x0 = best.values.copy()
            x0[ip] = mu
            fixed = {model.poi_name: float(mu)}
            out[j] = F.fit(model, init=x0, fixed=fixed, tolerance=tolerance, strategy=2, hesse=False).twice_nll
        return out

    mu_values = np.asarray(mu_values, float)
    cond = profile(mu_values)
    ref = min(best.twice_nll, float(np.min(cond)))
    t = np.maximum(cond - ref, 0.0)
    poi_hat = float(best.values[ip])
    extra: dict[str, Any] = {}
    if kind == "q":
        t = np.where(poi_hat > mu_values, 0.0, t)
    elif kind == "focused":
        var = float(best.errors[ip]) ** 2
        nodes, log_w = focus.quadrature(lambda m: -0.5 * (m - poi_hat) ** 2 / var)
        at_nodes = profile(nodes[0])
        log_w = log_w[0]
        t = focused_t(cond, at_nodes, log_w)
        extra = {"focus": focus.to_dict(), "twice_nll_nodes": at_nodes.tolist()}
    return {
        "poi": model.poi_name,
        "kind": kind,
        "poi_values": mu_values.tolist(),
        "t": t.tolist(),
        "poi_hat": poi_hat,
        "twice_nll_free": float(best.twice_nll),
        "twice_nll_cond": cond.tolist(),
        **extra,
    }


# ---------------------------------------------------------------------------- chunks
def compute_chunk(
    gen: ToyGenerator,
    mu: float,
    n_toys: int,
    seed: int,
    *,
    mu_index: int = 0,
    batch: int = 0,
    kind: str = "t",
    theta=None,
    batch_size: int | None = None,
    progress: bool = False,
    focus: FocusDensity | None = None,
) -> dict:
    """One (mu grid point, toy batch) job: ``n_toys`` toys at ``theta`` (default
    :func:`theta_at` nominal) with seed ``(seed, mu_index, batch)``; returns a JSON-able dict.
    ``mu`` may be a point ``{parameter: value}`` of several POIs (``mu_index``: its index in
    the flattened grid); the chunk then also holds ``point`` and ``point_hat``. ``focus``: the
    focus density of ``kind="focused"`` (recorded in the chunk)."""
    t0 = time.perf_counter()
    model = gen.model
    point = tested_point(model, mu)
    theta = theta_at(gen, mu) if theta is None else param_vector(model, theta)
    for name, v in point.items():
        if not np.isclose(theta[model.index(name)], v):
            raise ValueError(f"theta has {name} = {theta[model.index(name)]} but the tested point {v}")
    ip = _poi(model)
    toys = gen.generate(theta, n_toys, seed=(int(seed), int(mu_index), int(batch)))
    t1 = time.perf_counter()
    res = toy_t(gen, toys, mu, kind=kind, batch_size=batch_size, progress=progress, focus=focus)
    t2 = time.perf_counter()
    return {
        "format": CHUNK_FORMAT,
        "poi": gen.model.poi_name,
        "kind": kind,
        "poi_value": float(theta[ip]) if isinstance(mu, Mapping) else float(mu),
        "poi_index": int(mu_index),
        "batch": int(batch),
        "seed": [int(seed), int(mu_index), int(batch)],
        "n_toys": int(n_toys),
        "par_names": list(gen.model.par_names),
        "theta": np.asarray(theta, float).tolist(),
        "t": res["t"].tolist(),
        "poi_hat": res["poi_hat"].tolist(),
        "converged": res["converged"].tolist(),
        "n_fallback": int(res["n_fallback"]),
        "n_failed": int(res["n_failed"]),
        "n_negative_t": int(res["n_negative_t"]),
        "repeat_fraction": toys.meta.get("repeat_fraction", []),
        # MC events where the model density is not positive at theta (expected weight 0)
        "nonpositive_events": toys.meta.get("nonpositive_events", []),
        "nonpositive_weight_fraction": toys.meta.get("nonpositive_weight_fraction", []),
        "seconds": {"generate": t1 - t0, "fit": t2 - t1},
        **({"focus": focus.to_dict()} if kind == "focused" else {}),
        **(
            {"point": point, "point_hat": {k: v.tolist() for k, v in res["hat"].items()}}
            if isinstance(mu, Mapping)
            else {}
        ),
    }


def write_chunk(chunk: Mapping, path) -> Path:
    """``.json`` (default) or ``.npz`` (arrays + a JSON header; no pickle)."""
    path = Path(path)
    if path.suffix == ".npz":
        arrays = {k: np.asarray(chunk[k]) for k in CHUNK_ARRAYS}
        header = {k: v for k, v in chunk.items() if k not in arrays}
        with nio.atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, header=np.array(nio.json_text(header, indent=None)), **arrays)
        return path
    return write_json(chunk, path)


def read_chunk(path) -> dict:
    """A chunk written by :func:`write_chunk` (``.json`` or ``.npz``); one written with the
    former keys (``mu``, ``mu_index``, ``mu_hat``; format ``nsbi-neyman-chunk-1``) is read with
    a DeprecationWarning (:func:`nsbi.io.upgrade_poi_keys`)."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            out = json.loads(str(z["header"]))
            for k in CHUNK_ARRAYS + ("mu_hat",):
                if k in z.files:
                    out[k] = z[k].tolist()
    else:
        out = json.loads(path.read_text())
    if out.get("format") not in CHUNK_FORMATS:
        raise ValueError(f"{path}: not a {CHUNK_FORMAT} file")
    out = nio.upgrade_poi_keys(out, "chunk", path)
    out["format"] = CHUNK_FORMAT
    return out


def read_belt(belt: Mapping | str | Path) -> dict:
    """A gathered belt (:func:`gather` output) from its JSON file or in memory; one written with
    the former keys (``mu``, ``mu_hat``) is read with a DeprecationWarning."""
    if isinstance(belt, (str, Path)):
        return nio.read_validation_json(belt, "belt")
    return nio.upgrade_poi_keys(belt, "belt")


def _chunk(c: Mapping | str | Path) -> Mapping:
    """A chunk from a file (:func:`read_chunk`) or one in memory (old keys upgraded)."""
    return read_chunk(c) if isinstance(c, (str, Path)) else nio.upgrade_poi_keys(c, "chunk")


# ---------------------------------------------------------------------------- belt
def acceptance_interval(mu: Sequence[float], d: Sequence[float]) -> dict[str, Any]:
    """Interval where ``d(mu) <= 0`` (d = t_obs - critical value), end points by linear
    interpolation between grid points; ``open_lo``/``open_hi`` when accepted at a grid edge
    (the end point is then the edge), ``connected`` False when the accepted set has holes."""
    mu = np.asarray(mu, float)
    d = np.asarray(d, float)
    o = np.argsort(mu)
    mu, d = mu[o], d[o]
    acc = np.isfinite(d) & (d <= 0)
    if not acc.any():
        return {"lo": None, "hi": None, "open_lo": False, "open_hi": False, "connected": True, "empty": True}
    i0, i1 = int(np.flatnonzero(acc)[0]), int(np.flatnonzero(acc)[-1])

    def cross(a, b):
        return float(mu[a] + (mu[b] - mu[a]) * d[a] / (d[a] - d[b]))

    lo = float(mu[0]) if i0 == 0 else cross(i0 - 1, i0)
    hi = float(mu[-1]) if i1 == len(mu) - 1 else cross(i1, i1 + 1)
    return {
        "lo": lo,
        "hi": hi,
        "open_lo": i0 == 0,
        "open_hi": i1 == len(mu) - 1,
        "connected": bool(acc[i0 : i1 + 1].all()),
        "empty": False,
    }


def interval_lengths(mu: Sequence[float], t, critical) -> dict[str, Any]:
    """Toy by toy (rows of ``t``, the test statistic on the POI values ``mu``), the length of the
    interval ``{mu : t(mu) <= critical(mu)}`` (:func:`acceptance_interval`; the hull where it
    has holes, 0 where it is empty); with the median and the counts of empty, open and
    disconnected intervals."""
    mu, t = np.asarray(mu, float), np.atleast_2d(np.asarray(t, float))
    c = np.broadcast_to(np.asarray(critical, float), mu.shape)
    ivs = [acceptance_interval(mu, row - c) for row in t]
    lengths = np.array([0.0 if iv["empty"] else iv["hi"] - iv["lo"] for iv in ivs])
    return {
        "lengths": lengths,
        "median": float(np.median(lengths)),
        "n_empty": sum(iv["empty"] for iv in ivs),
        "n_open": sum(iv["open_lo"] or iv["open_hi"] for iv in ivs),
        "n_disconnected": sum(not iv["connected"] for iv in ivs),
    }


def quantile_with_error(t: np.ndarray, cl: float) -> tuple[float, float, float]:
    """CL quantile and a +-1 sigma band from binomial order statistics."""
    t = np.sort(np.asarray(t, float))
    n = len(t)
    q = float(np.quantile(t, cl))
    s = math.sqrt(n * cl * (1 - cl))
    lo = t[int(np.clip(math.floor(n * cl - s), 0, n - 1))]
    hi = t[int(np.clip(math.ceil(n * cl + s), 0, n - 1))]
    return q, float(lo), float(hi)


def gather(
    chunks: Iterable[Mapping | str | Path],
    observed: Mapping | None = None,
    asimov: Mapping | None = None,
    cls: Sequence[float] = DEFAULT_CLS,
) -> dict[str, Any]:
    """Merge chunks into the belt: per mu, the toy critical values (with +-1 sigma bands)
    and the asymptotic ones; intervals for the ``observed`` / ``asimov`` t_mu curves
    (:func:`observed_t` outputs; interpolated onto the belt grid if needed)."""
    chunks = [_chunk(c) for c in chunks]
    if not chunks:
        raise ValueError("no chunks to gather")
    kinds = {c["kind"] for c in chunks}
    if len(kinds) != 1:
        raise ValueError(f"chunks mix test statistics {sorted(kinds)}")
    kind = kinds.pop()
    foci = {tuple(sorted((c.get("focus") or {}).items())) for c in chunks}
    if len(foci) != 1:
        raise ValueError("chunks mix focus densities of the focused statistic")
    seen = set()
    by_mu: dict[float, list] = {}
    for c in chunks:
        key = tuple(c["seed"])
        if key in seen:
            raise ValueError(f"duplicate chunk seed {key} (same toys counted twice)")
        seen.add(key)
        by_mu.setdefault(float(c["poi_value"]), []).append(c)
    mus = np.array(sorted(by_mu))
    crit: dict[str, dict[str, list]] = {cl_key(cl): {"value": [], "lo": [], "hi": []} for cl in cls}
    n_toys, n_fb, n_fail, n_neg, tmean, n_nonpos = [], [], [], [], [], []
    for mu in mus:
        t = np.concatenate([np.asarray(c["t"], float) for c in by_mu[mu]])
        n_toys.append(len(t))
        n_nonpos.append(max([sum(c.get("nonpositive_events", [])) for c in by_mu[mu]] + [0]))
        n_fb.append(sum(int(c["n_fallback"]) for c in by_mu[mu]))
        n_fail.append(sum(int(c["n_failed"]) for c in by_mu[mu]))
        n_neg.append(sum(int(c.get("n_negative_t", 0)) for c in by_mu[mu]))
        tmean.append(float(np.mean(t)))
        for cl in cls:
            q, lo, hi = quantile_with_error(t, cl)
            crit[cl_key(cl)]["value"].append(q)
            crit[cl_key(cl)]["lo"].append(lo)
            crit[cl_key(cl)]["hi"].append(hi)
    asym = {cl_key(cl): asymptotic_critical(cl, kind) for cl in cls}
    out: dict[str, Any] = {
        "poi": chunks[0]["poi"],
        "kind": kind,
        "poi_values": mus.tolist(),
        "n_toys": n_toys,
        "n_fallback": n_fb,
        "n_failed": n_fail,
        "n_negative_t": n_neg,
        "nonpositive_mc_events": n_nonpos,
        "mean_t": tmean,
        "cls": [float(c) for c in cls],
        "critical": crit,
        "critical_asymptotic": asym,
        "datasets": {},
    }
    for name, obs in (("observed", observed), ("asimov", asimov)):
        if obs is None:
            continue
        obs = nio.upgrade_poi_keys(obs, "t_curve", f"{name} t curve")
        t_obs = np.interp(mus, np.asarray(obs["poi_values"], float), np.asarray(obs["t"], float))
        ds = {"t": t_obs.tolist(), "poi_hat": obs.get("poi_hat"), "intervals": {}}
        for cl in cls:
            k = cl_key(cl)
            ds["intervals"][k] = {"toys": acceptance_interval(mus, t_obs - np.asarray(crit[k]["value"]))}
            if not math.isfinite(asym[k]):  # no asymptotic form (focused): intervals from the toys only
                ds["intervals"][k].update(asymptotic=None, asymptotic_fine=None)
                continue
            ds["intervals"][k]["asymptotic"] = acceptance_interval(mus, t_obs - asym[k])
            # asymptotic interval on the (possibly finer) grid of the t_mu curve itself
            ds["intervals"][k]["asymptotic_fine"] = acceptance_interval(
                obs["poi_values"], np.asarray(obs["t"], float) - asym[k]
            )
        out["datasets"][name] = ds
    return out


# ---------------------------------------------------------------------------- coverage
def binomial_coverage(k: int, n: int, cl: float) -> dict[str, float]:
    p = k / n if n else float("nan")
    err = math.sqrt(max(p * (1 - p), 1.0 / n) / n) if n else float("nan")
    a = 1 - 0.6827
    lo = stats.beta.ppf(a / 2, k, n - k + 1) if k > 0 else 0.0
    hi = stats.beta.ppf(1 - a / 2, k + 1, n - k) if k < n else 1.0
    nominal_err = math.sqrt(cl * (1 - cl) / n)
    return {
        "nominal": cl,
        "covered": int(k),
        "n": int(n),
        "fraction": p,
        "error": err,
        "clopper_pearson_68": [float(lo), float(hi)],
        "pull": (p - cl) / nominal_err,
    }


def coverage_from_chunks(
    chunks: Iterable[Mapping | str | Path], belt: Mapping | str | Path | None = None, cls: Sequence[float] = DEFAULT_CLS
) -> dict[str, Any]:
    """Coverage at each true mu of the chunks (toys generated at mu_true, t evaluated at
    mu_true): fraction with t_mu_true <= critical value, i.e. the interval contains the truth.
    Asymptotic critical values always; toy-based ones from ``belt`` (:func:`gather` output,
    linearly interpolated in mu) when given. Binomial errors and Clopper-Pearson intervals;
    ``pull`` = (fraction - CL) / sqrt(CL (1 - CL) / n)."""
    chunks = [_chunk(c) for c in chunks]
    if belt is not None:
        belt = read_belt(belt)
    by_mu: dict[float, list] = {}
    for c in chunks:
        by_mu.setdefault(float(c["poi_value"]), []).append(c)
    kind = chunks[0]["kind"]
    rows = []
    for mu in sorted(by_mu):
        t = np.concatenate([np.asarray(c["t"], float) for c in by_mu[mu]])
        row: dict[str, Any] = {
            "poi_true": mu,
            "n_toys": len(t),
            "asymptotic": {},
            "toys": {},
            "n_fallback": sum(int(c["n_fallback"]) for c in by_mu[mu]),
            "n_failed": sum(int(c["n_failed"]) for c in by_mu[mu]),
        }
        for cl in cls:
            k = cl_key(cl)
            w = asymptotic_critical(cl, kind)
            if math.isfinite(w):  # the focused statistic has no asymptotic critical value
                row["asymptotic"][k] = binomial_coverage(int(np.sum(t <= w)), len(t), cl)
            if belt is not None:
                bm = np.asarray(belt["poi_values"], float)
                if not bm.min() <= mu <= bm.max():
                    raise ValueError(f"true {chunks[0]['poi']} = {mu} outside the belt grid [{bm.min()}, {bm.max()}]")
                c_mu = float(np.interp(mu, bm, np.asarray(belt["critical"][k]["value"], float)))
                row["toys"][k] = {**binomial_coverage(int(np.sum(t <= c_mu)), len(t), cl), "critical": c_mu}
        rows.append(row)
    return {"poi": chunks[0]["poi"], "kind": kind, "cls": [float(c) for c in cls], "points": rows}


def coverage(
    gen: ToyGenerator,
    mu_true: Sequence[float],
    n_toys: int,
    seed: int,
    *,
    kind: str = "t",
    belt: Mapping | None = None,
    cls: Sequence[float] = DEFAULT_CLS,
    nuisances="nominal",
    batch_size: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Coverage check (locally, one chunk per true mu; see :func:`coverage_from_chunks`)."""
    it = list(enumerate(mu_true))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="coverage", unit="mu")
    chunks = [
        compute_chunk(
            gen,
            float(mu),
            n_toys,
            seed,
            mu_index=i,
            kind=kind,
            batch_size=batch_size,
            theta=theta_at(gen, float(mu), nuisances),
        )
        for i, mu in it
    ]
    return coverage_from_chunks(chunks, belt=belt, cls=cls)


# ---------------------------------------------------------------------------- bias / linearity
def linearity(gen: ToyGenerator, injected: Sequence[Mapping[str, float]], start=None) -> dict[str, Any]:
    """Asimov datasets at each injected point (mapping label -> value on top of the model
    inits; MC reweighted by the model itself, :meth:`ToyGenerator.asimov`), fitted from
    ``start`` (default model inits) and from the injected point by the batched Newton of
    :func:`nsbi.minimize.minimize_batch` on the toy likelihood (value, gradient and exact Hessian
    from one pass over the events, :meth:`ToyGenerator.twice_nll_vgh`, in the coordinates of
    :func:`_fit_space`; MIGRAD where Newton does not converge). The lower minimum is kept; a
    higher one reached from ``start`` is flagged (``local_minimum_from_start``). Errors from the
    exact Hessian in the POI itself at the minimum (cov = 2 H^-1 over the free parameters,
    :func:`nsbi.fit.fit_result`). Returns fitted vs injected for every parameter,
    the POI bias and a weighted straight-line fit of fitted vs injected POI (over the points
    that shift no parameter but the POI and are not on a POI bound; the others are listed
    with ``shifted`` / ``at_bound``). Every point also lists the parameters that the fit left on
    a bound they were not injected on (``fitted_at_bound``: the Asimov dataset is not the
    minimum of the model that made it, e.g. a nuisance parameter running away), and the summary
    gives the largest nuisance-parameter bias in units of its error.

    One point at a time (``batch_size=1``: an Asimov dataset carries every MC event; the
    one-pass kernels need memory linear in the events), one compilation for all points."""
    from nsbi import fit as F

    model = gen.model
    ip = _poi(model)
    thetas = [param_vector(model, p) for p in injected]
    x0 = param_vector(model, start)
    free = ~np.asarray(model.fixed, bool)
    asimov = ToySet.concatenate([gen.asimov(th) for th in thetas])
    fs = _fit_space(gen)
    T = len(thetas)
    # every point from two starts, ``start`` and the injected point: the lower minimum is kept,
    # and a higher one from ``start`` is reported (interference morphing can have a second,
    # local minimum in the POI)
    data = take(asimov.data(), np.tile(np.arange(T), 2))
    batch = minimize_batch(
        fs.fun,
        data,
        fs.to_fit(np.concatenate([np.broadcast_to(x0, (T, len(x0))), np.asarray(thetas, float)])),
        fs.bounds,
        free,
        shared=(gen.mc_arrays,),
        vgh=fs.vgh,
        batch_size=1,
        hessian=not fs.sqrt,
        # MIGRAD (where Newton does not converge) to the tolerance of the ordinary fits: these
        # are fitted values with errors, not t values (the toys' 1e-6 took > 15 min for the
        # demo's mu = 0 point when it was fitted in mu rather than sqrt(mu))
        fallback_tolerance=1e-3,
    )
    entries, local = [], []
    for t in range(T):
        vs, vi = batch.twice_nll[t], batch.twice_nll[T + t]
        local.append(bool(vi < vs - 1e-3))
        e = batch.entry(T + t if vi < vs or not np.isfinite(vs) else t)
        if fs.sqrt:  # errors from the Hessian in the POI itself, at the same minimum
            values = fs.from_fit(e.values)
            H = entry_hessian(gen.twice_nll, gen.twice_nll_vgh, values, take(data, t), (gen.mc_arrays,))
            e = replace(e, values=values, hessian=H)
        entries.append(e)
    results = [F.fit_result(model, e, ~free) for e in entries]
    points = []
    lo, hi = (np.array([b[j] for b in model.bounds], float) for j in (0, 1))

    def on_bound(v):
        return (v - lo <= 1e-8 * (1 + np.abs(lo))) | (hi - v <= 1e-8 * (1 + np.abs(hi)))

    nuis_pull = []
    for i, (th, r) in enumerate(zip(thetas, results)):
        values, err = np.asarray(r.values, float), np.asarray(r.errors, float)
        stuck = free & on_bound(values) & ~on_bound(th)
        nuis = free & (np.arange(len(th)) != ip) & (err > 0)
        nuis_pull.append(np.max(np.abs(values - th)[nuis] / err[nuis], initial=0.0))
        points.append(
            {
                "injected": dict(zip(model.par_names, th.tolist())),
                "fitted": dict(zip(model.par_names, values.tolist())),
                "errors": dict(zip(model.par_names, err.tolist())),
                "poi_injected": float(th[ip]),
                "poi_fitted": float(values[ip]),
                "poi_error": float(err[ip]),
                "poi_bias": float(values[ip] - th[ip]),
                "shifted": sorted(k for k in injected[i] if k != model.poi_name),
                # injected at a POI bound: the fit sits on the bound and its Hessian error is not a
                # Gaussian error (e.g. mu = 0 with sqrt(mu) morphing: infinite curvature)
                "at_bound": bool(th[ip] <= model.bounds[ip][0] or th[ip] >= model.bounds[ip][1]),
                "fitted_at_bound": [n for n, b in zip(model.par_names, stuck) if b],
                # the fit from ``start`` ended in a higher, local minimum than the one from the
                # injected point (the lower one is reported)
                "local_minimum_from_start": local[i],
                "converged": bool(r.status.get("valid", False)),
                "minimizer": r.status.get("minimizer"),
            }
        )
    x = np.array([p["poi_injected"] for p in points])
    y = np.array([p["poi_fitted"] for p in points])
    e = np.array([p["poi_error"] for p in points])
    line = None
    # the straight line through the points at nominal nuisance parameters, off the POI bounds
    nominal = np.array([not p["shifted"] and not p["at_bound"] for p in points])
    xl, yl, el = x[nominal], y[nominal], e[nominal]
    if len(np.unique(xl)) >= 2 and np.all(el > 0):
        A = np.stack([np.ones_like(xl), xl], axis=1) / el[:, None]
        coef, *_ = np.linalg.lstsq(A, yl / el, rcond=None)
        line = {"intercept": float(coef[0]), "slope": float(coef[1])}
    return {
        "poi": model.poi_name,
        "points": points,
        "max_abs_poi_bias": float(np.max(np.abs(y - x))),
        "max_abs_poi_bias_over_error": float(np.nanmax(np.abs(y - x) / np.where(e > 0, e, np.nan), initial=0.0)),
        "max_abs_nuisance_bias_over_error": float(max(nuis_pull, default=0.0)),
        "n_fitted_at_bound": int(sum(bool(p["fitted_at_bound"]) for p in points)),
        "n_local_minima_from_start": int(sum(local)),
        "linear_fit": line,
        "n_failed": int(sum(not p["converged"] for p in points)),
    }
