"""The one iminuit MIGRAD wrapper: the ``minimizer="migrad"`` option of :func:`nsbi.fit.fit`
and the fallback of the Newton minimisers (single and batched)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .result import MinimizeResult

__all__ = ["migrad"]

_DROPPED_HESSIAN = "iminuit failed with the exact Hessian: MIGRAD without it, errors from the exact Hessian"


def _build(value_and_grad, hessian, x0, lo, hi, free, names, tolerance, strategy, use_grad, step_start):
    from iminuit import Minuit

    idx = np.flatnonzero(free)

    def full(xf):
        x = x0.copy()
        x[idx] = xf
        return x

    cache: dict[str, Any] = {"x": None}

    def vg(xf):
        if cache["x"] is None or not np.array_equal(cache["x"], xf):
            v, g = value_and_grad(full(xf))
            cache["v"], cache["g"] = float(v), np.asarray(g)[idx]
            cache["x"] = np.array(xf, copy=True)
        return cache["v"], cache["g"]

    def fcn(xf):
        return vg(xf)[0]

    def grad(xf):
        return vg(xf)[1]

    def hess(xf):
        return np.asarray(hessian(full(xf)))[np.ix_(idx, idx)]

    # Minuit guesses its initial step sizes from the values it is constructed with
    m = Minuit(
        fcn,
        np.asarray(step_start, float)[idx],
        grad=grad if use_grad else None,
        hessian=hess if (use_grad and hessian is not None) else None,
        name=None if names is None else [names[i] for i in idx],
    )
    m.values = x0[idx]
    m.errordef = Minuit.LEAST_SQUARES  # = 1, the objective is -2 ln L
    m.strategy = strategy
    m.tol = tolerance
    m.limits = [(float(lo[i]), float(hi[i])) for i in idx]
    m.print_level = 0
    return m, full


def _run(m, retry: bool) -> None:
    m.migrad()
    if retry and not m.valid:  # one retry from the reached point with a stricter strategy
        m.strategy = 2
        m.migrad()


def migrad(
    value_and_grad: Callable,
    x0,
    bounds,
    free=None,
    *,
    hessian: Callable | None = None,
    names: Sequence[str] | None = None,
    tolerance: float = 0.001,
    strategy: int = 1,
    retry: bool = True,
    use_grad: bool = True,
    hesse: bool = False,
    minos: Sequence[str] = (),
    step_start=None,
) -> MinimizeResult:
    """MIGRAD on ``-2 ln L`` (``errordef = 1``) over the free parameters only.

    ``value_and_grad(x) -> (value, gradient)`` over the full vector (the exact gradient is
    given to Minuit unless ``use_grad=False``, then only the value is used); ``hessian(x)``
    (optional) seeds MIGRAD and replaces HESSE's numerical second derivatives. Fixed
    parameters are not shown to Minuit at all (iminuit 2.33 misreads a user Hessian when
    parameters are fixed), bounds are Minuit limits. ``retry``: when MIGRAD is not valid, one
    more MIGRAD from the reached point with strategy 2. iminuit 2.33 can fail with "'NoneType'
    object is not callable" when the user Hessian is not positive definite far from the
    minimum: MIGRAD is then rerun without it from ``x0``, HESSE is skipped (it would be
    numerical) and ``info["start_hessian"]`` says so -- the caller takes the errors from the
    exact Hessian. ``hesse``: HESSE after MIGRAD (errors and covariance in the result);
    ``minos``: names of parameters for MINOS (needs ``names``). ``step_start``: values Minuit
    guesses its initial step sizes from (default ``x0``; a fallback from a Newton end point
    keeps those of the original start). The ``Minuit`` object is ``result.minuit``.
    """
    x0 = np.array(x0, dtype=float)
    n = x0.shape[0]
    b = np.asarray(bounds, float).reshape(n, 2)
    lo, hi = b[:, 0], b[:, 1]
    free = np.ones(n, bool) if free is None else np.asarray(free, bool)
    step_start = x0 if step_start is None else step_start
    args = (value_and_grad, hessian, x0, lo, hi, free, names, tolerance, strategy, use_grad, step_start)
    m, full = _build(*args)
    info: dict[str, Any] = {}
    try:
        _run(m, retry)
    except TypeError as exc:
        if not (use_grad and hessian is not None and "NoneType" in str(exc)):
            raise
        m, full = _build(value_and_grad, None, *args[2:-1], x0)
        info["start_hessian"] = _DROPPED_HESSIAN
        hesse = False
        _run(m, retry)
    if hesse:
        m.hesse()
    idx = np.flatnonzero(free)
    mres: dict[str, tuple[float, float]] = {}
    for nm in minos:
        m.minos(nm)
        me = m.merrors[nm]
        mres[nm] = (float(me.lower), float(me.upper))
    err = np.zeros(n)
    err[idx] = np.array(m.errors)
    cov = np.zeros((n, n))
    if m.covariance is not None:
        cov[np.ix_(idx, idx)] = np.array(m.covariance)
    fm = m.fmin
    return MinimizeResult(
        values=full(np.array(m.values)),
        twice_nll=float(m.fval),
        converged=bool(fm.is_valid),
        edm=float(fm.edm),
        n_iter=0,
        n_calls=int(fm.nfcn),
        n_grad=int(getattr(fm, "ngrad", 0)),
        method="migrad",
        message="valid" if fm.is_valid else "MIGRAD: not valid",
        at_limit=bool(fm.has_parameters_at_limit),
        accurate=bool(fm.has_accurate_covar),
        hesse_failed=bool(fm.hesse_failed),
        errors=err,
        covariance=cov,
        minos=mres,
        info=info,
        minuit=m,
    )
