"""The one iminuit MIGRAD wrapper: the ``minimizer="migrad"`` option of :func:`nsbi.fit.fit`
and the fallback of the Newton minimisers (single and batched)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .result import MinimizeResult

__all__ = ["migrad"]

_DROPPED_HESSIAN = "iminuit failed with the exact Hessian: MIGRAD without it, errors from the exact Hessian"
_SEED_MADE_POSITIVE = "indefinite at the start: MIGRAD seeded with its absolute eigenvalues"


def positive_definite_seed(h: np.ndarray) -> np.ndarray:
    """``h`` itself if it is positive definite, else the matrix with the same eigenvectors and
    the absolute values of its eigenvalues (zeros raised to 1e-10 of the largest).

    MIGRAD only needs a positive-definite metric to start from; far from the minimum the
    exact Hessian of -2 ln L often has negative eigenvalues (products of
    normalisation factors), iminuit 2.33 can then fail, and MIGRAD without a Hessian needs
    numerical second derivatives (thousands of calls for 60 parameters)."""
    w, v = np.linalg.eigh(0.5 * (h + h.T))
    if w.size == 0 or w.min() > 0:
        return h
    w = np.maximum(np.abs(w), 1e-10 * max(float(np.abs(w).max()), 1e-300))
    return (v * w) @ v.T


def _build(value_and_grad, hessian, x0, lo, hi, free, names, tolerance, strategy, use_grad, step_start, project=False):
    from iminuit import Minuit

    idx = np.flatnonzero(free)

    def full(xf):
        x = x0.copy()
        x[idx] = xf
        return x

    cache: dict[str, Any] = {"x": None}
    # with ``project``, the Hessian at the start of a MIGRAD run (its seed, ``seed["at"]``, set
    # by _run) is made positive definite; elsewhere (MIGRAD's own HESSE, m.hesse()) it is exact
    seed: dict[str, Any] = {"at": None}

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
        h = np.asarray(hessian(full(xf)))[np.ix_(idx, idx)]
        # (Minuit passes the start back through its limit transformation: equal to ~1e-15)
        if project and seed["at"] is not None and np.allclose(xf, seed["at"], rtol=1e-10, atol=1e-12):
            h = positive_definite_seed(h)
        return h

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
    return m, full, seed


def _run(m, seed: dict, retry: bool) -> None:
    seed["at"] = np.array(m.values)
    m.migrad()
    if retry and not m.valid:  # one retry from the reached point with a stricter strategy
        m.strategy = 2
        seed["at"] = np.array(m.values)
        m.migrad()
    seed["at"] = None


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
    minimum: MIGRAD is then rerun from ``x0`` with :func:`positive_definite_seed` as its seed
    (``info["seed_hessian"]`` says so; HESSE still gets the exact Hessian), and if that fails
    or is not valid, without the Hessian: HESSE is then skipped (it would be numerical) and
    ``info["start_hessian"]`` says so -- the caller takes the errors from the exact Hessian.
    ``hesse``: HESSE after MIGRAD (errors and covariance in the result); ``minos``: names of
    parameters for MINOS (needs ``names``). ``step_start``: values Minuit guesses its initial
    step sizes from (default ``x0``; a fallback from a Newton end point keeps those of the
    original start). The ``Minuit`` object is ``result.minuit``.
    """
    x0 = np.array(x0, dtype=float)
    n = x0.shape[0]
    b = np.asarray(bounds, float).reshape(n, 2)
    lo, hi = b[:, 0], b[:, 1]
    free = np.ones(n, bool) if free is None else np.asarray(free, bool)
    step_start = x0 if step_start is None else step_start
    args = (value_and_grad, hessian, x0, lo, hi, free, names, tolerance, strategy, use_grad, step_start)
    m, full, seed = _build(*args)
    info: dict[str, Any] = {}
    try:
        _run(m, seed, retry)
    except TypeError as exc:
        if not (use_grad and hessian is not None and "NoneType" in str(exc)):
            raise
        valid = False
        try:  # iminuit's failure on an indefinite user Hessian: seed with a positive-definite one
            m, full, seed = _build(*args, project=True)
            _run(m, seed, retry)
            valid = m.valid
        except TypeError as exc2:
            if "NoneType" not in str(exc2):
                raise
        if valid:
            info["seed_hessian"] = _SEED_MADE_POSITIVE
        else:  # as before that seed: no Hessian at all
            m, full, seed = _build(value_and_grad, None, *args[2:-1], x0)
            info["start_hessian"] = _DROPPED_HESSIAN
            hesse = False
            _run(m, seed, retry)
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
