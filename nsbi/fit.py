"""Maximum-likelihood fits, profile-likelihood scans, pulls and impacts with iminuit.

All objectives are ``-2 ln L`` (:meth:`nsbi.model.Model.twice_nll`) minimised with MIGRAD
using the exact JAX gradient, ``errordef = 1`` (so HESSE/MINOS intervals are the usual
68.3% ones), parameter bounds passed as Minuit limits and fixed parameters fixed in Minuit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from iminuit import Minuit

__all__ = [
    "FitResult",
    "ScanResult",
    "fit",
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


def _minuit(model, init, fixed_map, strategy, tolerance, use_grad=True, use_hessian=True):
    """Minuit over the free parameters only (fixed ones are inserted by the wrappers), so
    that gradient and Hessian callbacks never depend on how Minuit handles fixed parameters.
    Returns ``(minuit, fixed_mask, full_vector)`` with ``full_vector(x_free) -> x``."""
    x0 = np.array(model.init if init is None else init, dtype=float)
    fixed = model.fixed.copy()
    for i, v in fixed_map.items():
        fixed[i] = True
        if v is not None:
            x0[i] = v
    free = np.flatnonzero(~fixed)
    if len(free) == 0:
        return None, fixed, lambda xf: x0.copy()

    def full(xf):
        x = x0.copy()
        x[free] = xf
        return x

    cache: dict[str, Any] = {"x": None}

    def vg(xf):
        if cache["x"] is None or not np.array_equal(cache["x"], xf):
            v, g = model.twice_nll_and_grad(full(xf))
            cache["v"], cache["g"] = v, g[free]
            cache["x"] = np.array(xf, copy=True)
        return cache["v"], cache["g"]

    def fcn(xf):
        return vg(xf)[0]

    def grad(xf):
        return vg(xf)[1]

    def hessian(xf):
        return model.hessian(full(xf))[np.ix_(free, free)]

    # the exact JAX Hessian seeds MIGRAD and replaces HESSE's numerical second derivatives
    # (about 190 -> 15 likelihood passes for an unbinned fit, see benchmarks/README.md)
    m = Minuit(
        fcn,
        x0[free],
        grad=grad if use_grad else None,
        hessian=hessian if (use_grad and use_hessian) else None,
        name=[model.par_names[i] for i in free],
    )
    m.errordef = Minuit.LEAST_SQUARES  # = 1, objective is -2 ln L
    m.strategy = strategy
    m.tol = tolerance
    m.limits = [tuple(model.bounds[i]) for i in free]
    m.print_level = 0
    return m, fixed, full


@dataclass
class _NewtonResult:
    x: np.ndarray  # free parameters at the minimum
    fval: float
    hess: np.ndarray  # exact Hessian of -2 ln L over the free parameters at x
    edm: float
    iterations: int
    nvgh: int  # value+gradient+Hessian passes
    nval: int  # value-only passes (line search)
    converged: bool
    reason: str


_MAX_STEP_SIGMA = 5.0


def _newton(model, x0, free, tolerance, max_iter: int = 30) -> _NewtonResult:
    """Projected damped Newton minimisation of -2 ln L over the free parameters on the exact
    Hessian.

    Each iteration costs one value+gradient+Hessian pass (``Model.twice_nll_grad_hessian``,
    about two value+gradient passes for an unbinned channel). Parameters on a bound whose
    gradient points outwards are held there (active set); the Newton step of the others is
    projected onto the bounds, and a step that does not decrease the objective enough
    (Armijo, c = 1e-4) is halved with value-only passes. Converged when the estimated
    distance to the minimum over the parameters not held, EDM = g^T H^-1 g / 2, is below
    Minuit's criterion 0.002 x tolerance (errordef 1), so the Hessian and errors are those
    at the final point. Where the Hessian is not positive definite (far from the minimum)
    the step uses the absolute values of its eigenvalues. No parameter moves by more than
    five of its local errors per iteration. Gives up (``converged=False``, the
    caller falls back to MIGRAD) when the line search fails or after ``max_iter`` iterations.
    """
    lo = np.array([model.bounds[i][0] for i in free], float)
    hi = np.array([model.bounds[i][1] for i in free], float)
    base = np.array(x0, float)

    def full(xf):
        x = base.copy()
        x[free] = xf
        return x

    def vgh(xf):
        v, g, H = model.twice_nll_grad_hessian(full(xf))
        return v, g[free], H[np.ix_(free, free)]

    x = np.clip(base[free], lo, hi)
    v, g, H = vgh(x)
    nvgh, nval = 1, 0
    edm_max = 0.002 * tolerance
    edm = math.inf
    for it in range(max_iter + 1):
        if not (np.isfinite(v) and np.all(np.isfinite(g)) and np.all(np.isfinite(H))):
            return _NewtonResult(x, v, H, edm, it, nvgh, nval, False, "non-finite likelihood")
        held = ((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0))
        act = ~held
        ga, Ha = g[act], H[np.ix_(act, act)]
        try:
            L = np.linalg.cholesky(Ha)
        except np.linalg.LinAlgError:
            L = None
        step = np.zeros_like(x)
        if L is not None:
            step[act] = -np.linalg.solve(L.T, np.linalg.solve(L, ga))
            edm = -0.5 * float(ga @ step[act])
            if edm < edm_max:
                near = np.where(np.isfinite(hi - lo), 1e-6 * (hi - lo), 0.0)
                if np.any(((x <= lo + near) & (g < 0)) | ((x >= hi - near) & (g > 0))):
                    # a tiny step at a bound the gradient leaves is not a minimum: sqrt(mu)
                    # morphing near mu = 0 has a huge slope *and* a far larger curvature, so the
                    # Newton step and the EDM vanish there (MIGRAD copes)
                    return _NewtonResult(
                        x, v, H, edm, it, nvgh, nval, False, "on a bound with the gradient pointing inwards"
                    )
                reason = "converged" if not held.any() else f"converged ({int(held.sum())} held at a bound)"
                return _NewtonResult(x, v, H, edm, it, nvgh, nval, True, reason)
            Li = np.linalg.inv(L)
            sig = np.sqrt(2.0 * np.sum(Li * Li, axis=0))  # local errors sqrt(diag 2 H^-1)
        else:  # far from the minimum: Newton step with |eigenvalues| (a descent direction)
            lam, V = np.linalg.eigh(Ha)
            lam = np.maximum(np.abs(lam), 1e-8 * max(1.0, float(np.max(np.abs(lam)))))
            step[act] = -V @ ((V.T @ ga) / lam)
            sig = np.sqrt(2.0 * np.sum(V * V / lam, axis=1))
            edm = math.inf
        if it == max_iter:
            break
        # trust region: no parameter moves by more than _MAX_STEP_SIGMA local errors per
        # iteration, so a quadratic model taken far from the minimum cannot throw the fit
        # across the likelihood (e.g. onto a bound) in one step
        ratio = float(np.max(np.abs(step[act]) / sig)) if act.any() else 0.0
        if ratio > _MAX_STEP_SIGMA:
            step = step * (_MAX_STEP_SIGMA / ratio)
        t = 1.0
        xn = np.clip(x + step, lo, hi)  # projected onto the bounds
        dec = float(g @ (xn - x))
        vn, gn, Hn = vgh(xn)
        nvgh += 1
        while not (np.isfinite(vn) and dec < 0 and vn <= v + 1e-4 * dec):
            t *= 0.5
            if t < 1e-6 or not dec < 0:
                return _NewtonResult(x, v, H, edm, it, nvgh, nval, False, "line search failed")
            xn = np.clip(x + t * step, lo, hi)
            dec = float(g @ (xn - x))
            vn = model.twice_nll(full(xn))
            nval += 1
            if np.isfinite(vn) and dec < 0 and vn <= v + 1e-4 * dec:
                vn, gn, Hn = vgh(xn)
                nvgh += 1
        x, v, g, H = xn, vn, gn, Hn
    return _NewtonResult(x, v, H, edm, max_iter, nvgh, nval, False, f"no convergence in {max_iter} iterations")


def _status(m: Minuit) -> dict:
    fm = m.fmin
    return {
        "valid": bool(fm.is_valid),
        "accurate": bool(fm.has_accurate_covar),
        "edm": float(fm.edm),
        "nfcn": int(fm.nfcn),
        "ngrad": int(getattr(fm, "ngrad", 0)),
        "hesse_failed": bool(fm.hesse_failed),
        "at_limit": bool(fm.has_parameters_at_limit),
    }


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
    """MIGRAD (+HESSE, optional MINOS) fit of ``model``.

    ``fixed``: names to fix at their ``init``, or a mapping ``name -> value``. Parameters fixed
    in the measurement stay fixed. ``minos``: True for the POI, or a list of names.
    ``errors``: ``"hesse"`` (Minuit HESSE) or ``"exact"`` (2 x inverse of the exact JAX
    Hessian of -2 ln L over the free parameters). ``use_hessian`` (default) gives Minuit the
    exact JAX Hessian (:meth:`Model.hessian`): MIGRAD starts from it and HESSE uses it
    instead of numerical second derivatives (Minuit still works in internal coordinates for
    parameters with limits). ``"auto"`` uses it for large models (>= 50 000 events or >= 30
    parameters), where it saves far more than its one-off compilation (seconds);
    ``False`` is plain MIGRAD/HESSE with the gradient.

    ``minimizer``: ``"migrad"``; ``"newton"`` (damped Newton on the exact Hessian, see
    :func:`_newton`; the covariance is 2 H^-1 at the minimum, i.e. ``errors="exact"``;
    parameters on a bound with the gradient pointing outwards are held there; MIGRAD + HESSE
    take over from the reached point when it does not converge, and ``status["minimizer"]``
    says which one produced the result);
    ``"auto"`` (default): Newton for unbinned models (>= 50 000 events) with fewer than 30
    parameters when the exact Hessian is used and no MINOS is asked for, else MIGRAD.
    """
    n_events = sum(u.n_events for u in getattr(model, "_unb", []))
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
    m, fixed_mask, full = _minuit(model, init, _resolve_fixed(model, fixed), strategy, tolerance, use_grad, use_hessian)
    free = ~fixed_mask
    if m is None:  # every parameter fixed: the likelihood at that point
        n = model.npars
        x = full(None)
        return FitResult(
            names=list(model.par_names),
            values=x,
            errors=np.zeros(n),
            covariance=np.zeros((n, n)),
            correlation=np.zeros((n, n)),
            twice_nll=model.twice_nll(x),
            status={
                "valid": True,
                "accurate": False,
                "edm": 0.0,
                "nfcn": 1,
                "ngrad": 0,
                "hesse_failed": False,
                "at_limit": False,
            },
            fixed=fixed_mask,
            minos={},
            poi=model.poi_name,
        )
    newton_info: dict[str, Any] = {}
    if minimizer == "newton":
        x_start = full(np.array(m.values))
        nr = _newton(model, x_start, np.flatnonzero(free), tolerance)
        newton_info = {"minimizer": "newton", "iterations": nr.iterations, "nvgh": nr.nvgh, "newton_reason": nr.reason}
        if nr.converged:
            return _newton_result(model, full(nr.x), nr, fixed_mask, newton_info)
        if nr.iterations == 0 and not np.isfinite(nr.fval):
            return _nonfinite_result(model, x_start, fixed_mask, newton_info)
        # fall back to MIGRAD from the best point reached
        m.values = nr.x
        newton_info["minimizer"] = "migrad (newton fallback)"
    x_migrad = full(np.array(m.values))
    if minimizer == "migrad" and not np.isfinite(model.twice_nll(x_migrad)):
        return _nonfinite_result(model, x_migrad, fixed_mask, {"minimizer": "migrad"})

    def run_migrad(m):
        m.migrad()
        if not m.valid:  # one retry from the reached point with a stricter strategy
            m.strategy = 2
            m.migrad()

    try:
        run_migrad(m)
    except TypeError as exc:
        # iminuit 2.33 can fail with "'NoneType' object is not callable" when the user Hessian
        # is not positive definite far from the minimum (it then asks for a g2 callback that
        # does not exist): restart without it; the errors come from the exact Hessian
        if not (use_grad and use_hessian and "NoneType" in str(exc)):
            raise
        m, _, _ = _minuit(model, x_migrad, _resolve_fixed(model, fixed), strategy, tolerance, use_grad, False)
        newton_info["start_hessian"] = (
            "iminuit failed with the exact Hessian: MIGRAD without it, errors from the exact Hessian"
        )
        if hesse and errors == "hesse":
            errors = "exact"
        run_migrad(m)
    if hesse and errors == "hesse":
        m.hesse()
    values = full(np.array(m.values))
    n = model.npars
    err = np.zeros(n)
    err[free] = np.array(m.errors)
    cov = np.zeros((n, n))
    if m.covariance is not None:
        cov[np.ix_(free, free)] = np.array(m.covariance)
    if errors == "exact":
        H = model.hessian(values)[np.ix_(free, free)]
        cov = np.zeros((n, n))
        cov[np.ix_(free, free)] = 2.0 * np.linalg.inv(H)
        errors_ = np.zeros(n)
        errors_[free] = np.sqrt(np.clip(np.diag(cov)[free], 0, None))
        err = errors_
    d, corr = _errors_and_correlation(cov)
    mres: dict[str, tuple[float, float]] = {}
    if minos:
        names = [model.poi_name] if minos is True else list(minos)
        for nm in names:
            if fixed_mask[model.index(nm)]:
                raise ValueError(f"MINOS: parameter {nm!r} is fixed")
            m.minos(nm)
            me = m.merrors[nm]
            mres[nm] = (float(me.lower), float(me.upper))
    return FitResult(
        names=list(model.par_names),
        values=values,
        errors=err,
        covariance=cov,
        correlation=corr,
        twice_nll=float(m.fval),
        status={**_status(m), "minimizer": "migrad", **newton_info},
        fixed=fixed_mask,
        minos=mres,
        poi=model.poi_name,
    )


def _errors_and_correlation(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sqrt of the diagonal and the correlation matrix (0 rows/columns for fixed parameters)."""
    d = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(np.outer(d, d) > 0, cov / np.outer(d, d), 0.0)
    np.fill_diagonal(corr, np.where(d > 0, 1.0, 0.0))
    return d, corr


def _nonfinite_result(model, x, fixed_mask, info: dict) -> FitResult:
    """-2 ln L is not finite at the start point (typically: the model density S(x|theta) <= 0
    for some events, e.g. learned ratios with a negative morphing coefficient at large mu).
    No minimiser can start there: the result is NaN, not valid, with the reason in the status
    (instead of thousands of MIGRAD calls wandering through NaN)."""
    n = model.npars
    nan = np.full(n, np.nan)
    status = {
        "valid": False,
        "accurate": False,
        "edm": float("nan"),
        "nfcn": 1,
        "ngrad": 0,
        "hesse_failed": True,
        "at_limit": False,
        **info,
        "reason": "-2lnL not finite at the start point (model density <= 0 for some events?)",
    }
    return FitResult(
        names=list(model.par_names),
        values=np.asarray(x, float),
        errors=nan,
        covariance=np.full((n, n), np.nan),
        correlation=np.full((n, n), np.nan),
        twice_nll=float("nan"),
        status=status,
        fixed=fixed_mask,
        minos={},
        poi=model.poi_name,
    )


def _newton_result(model, values, nr: _NewtonResult, fixed_mask, info: dict) -> FitResult:
    free = ~fixed_mask
    n = model.npars
    cov = np.zeros((n, n))  # the exact Hessian is at hand: errors whether or not HESSE was asked for
    cov[np.ix_(free, free)] = 2.0 * np.linalg.inv(nr.hess)
    d, corr = _errors_and_correlation(cov)
    lo = np.array([b[0] for b in model.bounds], float)
    hi = np.array([b[1] for b in model.bounds], float)
    at_limit = bool(np.any(free & ((values - lo < 1e-8 * (1 + np.abs(lo))) | (hi - values < 1e-8 * (1 + np.abs(hi))))))
    status = {
        "valid": True,
        "accurate": True,
        "edm": float(nr.edm),
        "nfcn": nr.nvgh + nr.nval,
        "ngrad": nr.nvgh,
        "hesse_failed": False,
        "at_limit": at_limit,
        **info,
    }
    return FitResult(
        names=list(model.par_names),
        values=values,
        errors=d,
        covariance=cov,
        correlation=corr,
        twice_nll=float(nr.fval),
        status=status,
        fixed=fixed_mask,
        minos={},
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
