"""Maximum-likelihood fits, profile-likelihood scans, pulls and impacts.

All objectives are ``-2 ln L`` (:meth:`nsbi.model.Model.twice_nll`) minimised by
:mod:`nsbi.minimize` -- iminuit MIGRAD with the exact JAX gradient (``errordef = 1``, so
HESSE/MINOS intervals are the usual 68.3% ones, bounds as Minuit limits, fixed parameters not
shown to Minuit) or the projected Newton method on the exact Hessian -- and turned into a
:class:`FitResult` in one place (:func:`fit_result`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nsbi import minimize as M

__all__ = [
    "FitResult",
    "ScanResult",
    "fit",
    "fit_result",
    "scan",
    "crossings",
    "pulls",
    "impacts",
    "prefit_sigma",
    "LEVELS",
]

#: Delta(-2 ln L) thresholds for 68.27% and 95% (1 parameter)
LEVELS = {"68": 1.0, "95": 3.841458820694124}


@dataclass
class FitResult:
    names: list[str]
    values: np.ndarray
    errors: np.ndarray
    covariance: np.ndarray
    correlation: np.ndarray
    twice_nll: float
    status: dict
    fixed: np.ndarray
    minos: dict = field(default_factory=dict)
    poi: str | None = None

    def value(self, name: str) -> float:
        return float(self.values[self.names.index(name)])

    def error(self, name: str) -> float:
        return float(self.errors[self.names.index(name)])

    def to_dict(self) -> dict:
        return {
            "poi": self.poi,
            "names": list(self.names),
            "values": [float(v) for v in self.values],
            "errors": [float(v) for v in self.errors],
            "fixed": [bool(v) for v in self.fixed],
            "correlation": np.asarray(self.correlation).tolist(),
            "twice_nll": float(self.twice_nll),
            "status": self.status,
            "minos": {k: [float(a), float(b)] for k, (a, b) in self.minos.items()},
        }


@dataclass
class ScanResult:
    poi: str
    values: np.ndarray
    twice_nll: np.ndarray
    delta: np.ndarray  # Delta(-2 ln L) w.r.t. the global minimum
    best: float
    best_twice_nll: float
    intervals: dict  # level -> (lo, hi) (nan where not crossed inside the scan range)
    mode: str = "profile"
    converged: np.ndarray | None = None

    def to_dict(self) -> dict:
        return {
            "poi": self.poi,
            "mode": self.mode,
            "values": self.values.tolist(),
            "twice_nll": self.twice_nll.tolist(),
            "delta_twice_nll": self.delta.tolist(),
            "best": float(self.best),
            "best_twice_nll": float(self.best_twice_nll),
            "intervals": {k: [float(a), float(b)] for k, (a, b) in self.intervals.items()},
            "converged": None if self.converged is None else [bool(c) for c in self.converged],
        }


def _resolve_fixed(model, fixed) -> dict[int, float | None]:
    out: dict[int, float | None] = {}
    if fixed is None:
        return out
    if isinstance(fixed, Mapping):
        for k, v in fixed.items():
            out[model.index(k)] = None if v is None else float(v)
    else:
        for k in fixed:
            out[model.index(k)] = None
    return out


def _start(model, init, fixed_map) -> tuple[np.ndarray, np.ndarray]:
    """Start vector (fixed values inserted) and the fixed mask (measurement + ``fixed``)."""
    x0 = np.array(model.init if init is None else init, dtype=float)
    fixed = np.array(model.fixed, dtype=bool)
    for i, v in fixed_map.items():
        fixed[i] = True
        if v is not None:
            x0[i] = v
    return x0, fixed


def fit(
    model,
    init: Sequence[float] | None = None,
    fixed: Mapping[str, float | None] | Iterable[str] | None = None,
    minos: bool | Sequence[str] = False,
    strategy: int = 1,
    tolerance: float = 0.001,
    hesse: bool = True,
    use_grad: bool = True,
    errors: str = "hesse",
    use_hessian: bool | str = "auto",
    minimizer: str = "auto",
) -> FitResult:
    """MIGRAD (+HESSE, optional MINOS) or Newton fit of ``model`` (:mod:`nsbi.minimize`).

    ``fixed``: names to fix at their ``init``, or a mapping ``name -> value``. Parameters fixed
    in the measurement stay fixed. ``minos``: True for the POI, or a list of names.
    ``errors``: ``"hesse"`` (Minuit HESSE) or ``"exact"`` (2 x inverse of the exact JAX
    Hessian of -2 ln L over the free parameters). ``use_hessian`` (default) gives Minuit the
    exact JAX Hessian (:meth:`Model.hessian`): MIGRAD starts from it and HESSE uses it
    instead of numerical second derivatives (Minuit still works in internal coordinates for
    parameters with limits). ``"auto"`` uses it for large models (>= 50 000 events or >= 30
    parameters), where it saves far more than its one-off compilation (seconds);
    ``False`` is plain MIGRAD/HESSE with the gradient.

    ``minimizer``: ``"migrad"``; ``"newton"`` (projected Newton on the exact Hessian, see
    :mod:`nsbi.minimize`; the covariance is 2 H^-1 at the minimum, i.e. ``errors="exact"``;
    parameters on a bound with the gradient pointing outwards are held there; MIGRAD + HESSE
    take over from the reached point when it does not converge, and ``status["minimizer"]``
    says which one produced the result);
    ``"auto"`` (default): Newton for unbinned models (>= 50 000 events) with fewer than 30
    parameters when the exact Hessian is used and no MINOS is asked for, else MIGRAD.
    """
    n_events = model.n_unbinned_events
    if use_hessian == "auto":
        use_hessian = n_events >= 50_000 or model.npars >= 30
    elif not isinstance(use_hessian, bool):
        raise ValueError(f"use_hessian must be True, False or 'auto', got {use_hessian!r}")
    if minimizer not in ("auto", "migrad", "newton"):
        raise ValueError(f"minimizer must be 'auto', 'migrad' or 'newton', got {minimizer!r}")
    if errors not in ("hesse", "exact"):
        raise ValueError(f"errors must be 'hesse' or 'exact', got {errors!r}")
    if minimizer == "auto":
        # Newton where one value+gradient+Hessian pass costs about 1.5 value+gradient passes
        # (unbinned events, few parameters); with many parameters the autodiff Hessian costs
        # ~npars passes and MIGRAD seeded with one exact Hessian is faster (benchmarks/README.md)
        newton = use_hessian and use_grad and not minos and n_events >= 50_000 and model.npars < 30
        minimizer = "newton" if newton else "migrad"
    x0, fixed_mask = _start(model, init, _resolve_fixed(model, fixed))
    minos_names = [] if not minos else [model.poi_name] if minos is True else list(minos)
    for nm in minos_names:
        if fixed_mask[model.index(nm)]:
            raise ValueError(f"MINOS: parameter {nm!r} is fixed")
    res = M.minimize(
        M.Objective.from_model(model),
        x0,
        model.bounds,
        ~fixed_mask,
        method=minimizer,
        tolerance=tolerance,
        strategy=strategy,
        use_grad=use_grad,
        use_hessian=use_grad and use_hessian,
        hesse=hesse and errors == "hesse",
        minos=minos_names,
        names=list(model.par_names),
    )
    if "start_hessian" in res.info and hesse and errors == "hesse":
        errors = "exact"  # MIGRAD ran without the exact Hessian: errors from it, not numerical HESSE
    return fit_result(model, res, fixed_mask, errors)


def _errors_and_correlation(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sqrt of the diagonal and the correlation matrix (0 rows/columns for fixed parameters)."""
    d = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(np.outer(d, d) > 0, cov / np.outer(d, d), 0.0)
    np.fill_diagonal(corr, np.where(d > 0, 1.0, 0.0))
    return d, corr


def fit_result(model, res: M.MinimizeResult, fixed_mask: np.ndarray, errors: str = "exact") -> FitResult:
    """The one place a :class:`FitResult` is made (from any :class:`nsbi.minimize.MinimizeResult`
    of ``model``'s likelihood, e.g. an entry of a batched minimisation).

    Errors and covariance: 2 H^-1 of the exact Hessian of the free parameters for Newton (its
    Hessian at the minimum, ``res.hessian``) and for ``errors="exact"`` (``res.hessian``, else
    :meth:`Model.hessian` of ``model`` at the minimum); MIGRAD's/HESSE's otherwise; NaN where
    -2 ln L is not finite, 0 where every parameter is fixed."""
    n = model.npars
    free = ~fixed_mask
    status = {
        "valid": bool(res.converged),
        "accurate": bool(res.accurate),
        "edm": float(res.edm),
        "nfcn": int(res.n_calls),
        "ngrad": int(res.n_grad),
        "hesse_failed": bool(res.hesse_failed),
        "at_limit": bool(res.at_limit),
        "minimizer": res.method,
        **res.info,
    }
    if not res.finite:
        cov = np.full((n, n), np.nan)
        err, corr = np.full(n, np.nan), cov.copy()
    elif res.method == "none":
        cov = np.zeros((n, n))
        err, corr = np.zeros(n), np.zeros((n, n))
    else:
        if res.method == "newton" or errors == "exact":
            H = res.hessian if res.hessian is not None else model.hessian(res.values)
            cov = np.zeros((n, n))
            cov[np.ix_(free, free)] = 2.0 * np.linalg.inv(np.asarray(H)[np.ix_(free, free)])
            err = None
        else:
            cov, err = res.covariance, res.errors
        d, corr = _errors_and_correlation(cov)
        err = d if err is None else err
    return FitResult(
        names=list(model.par_names),
        values=np.asarray(res.values, float),
        errors=err,
        covariance=cov,
        correlation=corr,
        twice_nll=float(res.twice_nll),
        status=status,
        fixed=fixed_mask,
        minos=dict(res.minos),
        poi=model.poi_name,
    )


def crossings(x: np.ndarray, delta: np.ndarray, level: float) -> tuple[float, float]:
    """Points where ``delta(x)`` crosses ``level`` left and right of its minimum.

    A cubic spline through the scan points is used when there are at least four points
    (root found with Brent's method inside the bracketing grid interval), otherwise linear
    interpolation. Returns ``nan`` for a side that does not cross inside the scan range.
    """
    x = np.asarray(x, float)
    y = np.asarray(delta, float)
    order = np.argsort(x)
    x, y = x[order], y[order]
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    imin = int(np.argmin(y))
    spline = None
    if len(x) >= 4:
        from scipy.interpolate import CubicSpline

        spline = CubicSpline(x, y)

    def root(i0, i1):
        a, b = x[i0], x[i1]
        ya, yb = y[i0] - level, y[i1] - level
        lin = a + (b - a) * ya / (ya - yb)
        if spline is None:
            return float(lin)
        from scipy.optimize import brentq

        fa, fb = float(spline(a)) - level, float(spline(b)) - level
        if fa * fb > 0:
            return float(lin)
        return float(brentq(lambda t: float(spline(t)) - level, a, b, xtol=1e-12))

    lo = hi = math.nan
    for i in range(imin, 0, -1):
        if y[i - 1] >= level > y[i] or (y[i - 1] > level >= y[i]):
            lo = root(i - 1, i)
            break
    for i in range(imin, len(x) - 1):
        if y[i + 1] >= level > y[i] or (y[i + 1] > level >= y[i]):
            hi = root(i, i + 1)
            break
    return lo, hi


def scan(
    model,
    values: Sequence[float] | None = None,
    poi: str | None = None,
    mode: str = "profile",
    best_fit: FitResult | None = None,
    npoints: int = 21,
    span: float = 4.0,
    tolerance: float = 0.001,
    strategy: int = 1,
) -> ScanResult:
    """Profile-likelihood scan of ``poi`` (default: the measurement POI).

    ``mode``:
      * ``"profile"`` (stat+syst): all other free parameters profiled at each point;
      * ``"stat_only"``: all *constrained* nuisance parameters fixed at their global best-fit
        values, free unconstrained parameters (normfactors, shapefactors) still profiled;
      * ``"stat_only_nominal"``: constrained nuisance parameters fixed at their nominal
        (initial) values, also for the reference minimum.

    ``values``: scan points; default ``npoints`` points in best-fit +- ``span`` * error,
    clipped to the parameter bounds. Delta(-2 ln L) is taken w.r.t. the minimum of the
    (conditional) global fit or the smallest scan value if that is lower.
    """
    poi = poi or model.poi_name
    if poi is None:
        raise ValueError("no POI given and the measurement defines none")
    ip = model.index(poi)
    if mode not in ("profile", "stat_only", "stat_only_nominal"):
        raise ValueError(f"unknown scan mode {mode!r}")
    nuis_fixed: dict[str, float] = {}
    if mode == "stat_only_nominal":
        nuis_fixed = {
            n: float(model.init[i]) for i, n in enumerate(model.par_names) if model.constrained[i] and i != ip
        }
        best = fit(model, fixed=nuis_fixed, tolerance=tolerance, strategy=strategy)
    else:
        best = best_fit or fit(model, tolerance=tolerance, strategy=strategy)
        if mode == "stat_only":
            nuis_fixed = {
                n: float(best.values[i]) for i, n in enumerate(model.par_names) if model.constrained[i] and i != ip
            }
    if values is None:
        c, e = best.values[ip], best.errors[ip] if best.errors[ip] > 0 else 1.0
        lo, hi = model.bounds[ip]
        values = np.linspace(max(lo, c - span * e), min(hi, c + span * e), npoints)
    values = np.asarray(values, float)
    out = np.empty(len(values))
    conv = np.zeros(len(values), dtype=bool)
    start = best.values.copy()
    # scan outward from the best fit so each point starts from a neighbouring solution
    order = np.argsort(np.abs(values - best.values[ip]))
    starts: dict[int, np.ndarray] = {}
    for j in order:
        nearest = [k for k in starts if abs(values[k] - values[j]) > 0]
        x0 = start if not nearest else starts[min(nearest, key=lambda k: abs(values[k] - values[j]))]
        fx = dict(nuis_fixed)
        fx[poi] = float(values[j])
        r = fit(model, init=x0, fixed=fx, tolerance=tolerance, strategy=strategy, hesse=False)
        out[j] = r.twice_nll
        conv[j] = r.status["valid"]
        starts[j] = r.values
    ref = min(best.twice_nll, float(np.nanmin(out)))
    delta = out - ref
    intervals = {k: crossings(values, delta, lv) for k, lv in LEVELS.items()}
    return ScanResult(
        poi=poi,
        values=values,
        twice_nll=out,
        delta=delta,
        best=float(best.values[ip]),
        best_twice_nll=float(best.twice_nll),
        intervals=intervals,
        mode=mode,
        converged=conv,
    )


def prefit_sigma(model) -> np.ndarray:
    """Pre-fit uncertainty of each parameter from its constraint (nan if unconstrained).

    Normal: sigma; Poisson (shapesys): 1/sqrt(tau).
    """
    out = np.full(model.npars, np.nan)
    for ps in model.parsets:
        sl = model.par_slices[ps.name]
        if ps.constraint == "normal":
            out[sl] = ps.sigmas
        elif ps.constraint == "poisson":
            out[sl] = 1.0 / np.sqrt(np.asarray(ps.factors, float))
    return out


def _central(model) -> np.ndarray:
    out = np.full(model.npars, np.nan)
    for ps in model.parsets:
        if ps.constraint == "normal":
            out[model.par_slices[ps.name]] = ps.auxdata
        elif ps.constraint == "poisson":
            out[model.par_slices[ps.name]] = 1.0
    return out


def pulls(model, result: FitResult) -> dict[str, dict]:
    """Pulls of constrained, non-fixed parameters: (hat - nominal)/sigma_prefit and
    post-fit error / sigma_prefit."""
    sig = prefit_sigma(model)
    cen = _central(model)
    out = {}
    for i, n in enumerate(model.par_names):
        if not model.constrained[i] or result.fixed[i]:
            continue
        out[n] = {
            "value": float(result.values[i]),
            "error": float(result.errors[i]),
            "pull": float((result.values[i] - cen[i]) / sig[i]),
            "constraint": float(result.errors[i] / sig[i]),
        }
    return out


def impacts(
    model,
    result: FitResult,
    parameters: Sequence[str] | None = None,
    poi: str | None = None,
    tolerance: float = 0.001,
) -> list[dict]:
    """Impact of each nuisance parameter on the POI, sorted by |post-fit impact|.

    For each NP: fix it at hat +- sigma_prefit and at hat +- sigma_postfit, refit all others,
    record Delta POI = POI' - POI_hat. Default parameters: all constrained, non-fixed ones.
    """
    poi = poi or model.poi_name
    ip = model.index(poi)
    sig = prefit_sigma(model)
    if parameters is None:
        parameters = [
            n for i, n in enumerate(model.par_names) if model.constrained[i] and not result.fixed[i] and i != ip
        ]
    rows = []
    for n in parameters:
        i = model.index(n)
        lo_b, hi_b = model.bounds[i]
        row: dict[str, Any] = {"name": n, "value": float(result.values[i]), "error": float(result.errors[i])}
        for tag, s in (("prefit", sig[i]), ("postfit", result.errors[i])):
            for sgn, key in ((+1, "up"), (-1, "down")):
                v = float(np.clip(result.values[i] + sgn * s, lo_b, hi_b))
                r = fit(model, init=result.values, fixed={n: v}, tolerance=tolerance, hesse=False)
                row[f"{tag}_{key}"] = float(r.values[ip] - result.values[ip])
        rows.append(row)
    rows.sort(key=lambda r: -max(abs(r["postfit_up"]), abs(r["postfit_down"])))
    return rows
