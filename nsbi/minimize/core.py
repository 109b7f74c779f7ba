"""Projected Newton step, convergence rule and line search, written once over an array
namespace ``xp`` (numpy for single fits, ``jax.numpy`` under ``vmap`` + ``lax.while_loop`` for
batches), and the numpy driver :func:`newton`.

All vectors are full parameter vectors; ``free`` (bool) marks the parameters the minimiser may
move. Parameters fixed by the caller and parameters *held* on a bound (at the bound with the
gradient pointing outwards) are masked out: their Hessian rows/columns are replaced by the
identity and their gradient by 0, so shapes do not depend on the active set (as ``vmap`` needs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .result import MinimizeResult

__all__ = [
    "ARMIJO",
    "MAX_STEP_SIGMA",
    "MIN_STEP_FRACTION",
    "Step",
    "armijo_ok",
    "held_at_bound",
    "message",
    "newton",
    "newton_step",
    "trial_point",
]

#: no parameter moves by more than this many local errors sqrt(diag 2 H^-1) per iteration
MAX_STEP_SIGMA = 5.0
#: sufficient decrease (Armijo) constant of the backtracking line search
ARMIJO = 1e-4
#: the line search gives up when the step has been halved below this fraction
MIN_STEP_FRACTION = 1e-6

# reason codes (also used inside the batched jax loop)
RUNNING, CONVERGED, NONFINITE, LINE_SEARCH, MAX_ITER, INWARD = 0, 1, 2, 3, 4, 5


def message(reason: int, n_held: int = 0, max_iter: int = 0) -> str:
    """Human-readable reason (``FitResult.status["newton_reason"]``)."""
    if reason == CONVERGED:
        return "converged" if not n_held else f"converged ({int(n_held)} held at a bound)"
    return {
        RUNNING: "not finished",
        NONFINITE: "non-finite likelihood",
        LINE_SEARCH: "line search failed",
        MAX_ITER: f"no convergence in {max_iter} iterations",
        INWARD: "on a bound with the gradient pointing inwards",
    }[int(reason)]


def _is_numpy(xp) -> bool:
    return xp is np


def _branch(xp, pred, f_true: Callable, f_false: Callable):
    """``f_true() if pred else f_false()``; with jax both are evaluated and selected
    elementwise (``pred`` is traced under ``vmap``)."""
    if _is_numpy(xp):
        return f_true() if pred else f_false()
    import jax

    return jax.tree_util.tree_map(lambda a, b: xp.where(pred, a, b), f_true(), f_false())


def _cholesky(xp, A):
    """(L, positive definite?) -- numpy raises on failure, jax returns NaN."""
    if _is_numpy(xp):
        try:
            return np.linalg.cholesky(A), True
        except np.linalg.LinAlgError:
            return None, False
    L = xp.linalg.cholesky(A)
    return L, xp.all(xp.isfinite(L))


def _newton_on_cholesky(xp, L, g):
    """(-H^-1 g, sqrt(diag 2 H^-1)) with H = L L^T."""
    if _is_numpy(xp):
        step = -np.linalg.solve(L.T, np.linalg.solve(L, g))
        Li = np.linalg.inv(L)
    else:
        from jax.scipy.linalg import cho_solve, solve_triangular

        step = -cho_solve((L, True), g)
        Li = solve_triangular(L, xp.eye(L.shape[0], dtype=L.dtype), lower=True)
    return step, xp.sqrt(2.0 * xp.sum(Li * Li, axis=0))


def _newton_on_abs_eigenvalues(xp, H, g):
    """Far from the minimum (H not positive definite): the Newton step with |eigenvalues|
    (a descent direction) and the corresponding local errors."""
    lam, V = xp.linalg.eigh(H)
    lam = xp.maximum(xp.abs(lam), 1e-8 * xp.maximum(1.0, xp.max(xp.abs(lam))))
    step = -V @ ((V.T @ g) / lam)
    return step, xp.sqrt(2.0 * xp.sum(V * V / lam, axis=1))


def held_at_bound(xp, x, g, lo, hi, free):
    """Free parameters on a bound whose gradient points outwards: held there."""
    return free & (((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0)))


class Step(NamedTuple):
    step: Any  # proposed step (trust region applied); 0 for fixed and held parameters
    edm: Any  # g^T H^-1 g / 2 over the active parameters (inf if H is not positive definite)
    converged: Any  # the convergence rule: H positive definite and edm < edm_max
    inward: Any  # a parameter on a bound the gradient points away from (steeply): not a minimum
    n_held: Any


def newton_step(xp, x, g, H, lo, hi, free, edm_max, max_step_sigma=MAX_STEP_SIGMA) -> Step:
    """The projected Newton step at ``x`` (gradient ``g``, Hessian ``H`` of ``-2 ln L``) and the
    convergence rule.

    Active parameters: free and not held at a bound. On the active block: Newton step
    ``-H^-1 g`` where H is positive definite, else the step with |eigenvalues|; scaled down so
    that no parameter moves by more than ``max_step_sigma`` local errors (a quadratic model
    taken far from the minimum cannot throw the fit across the likelihood in one step).
    Converged when H (active block) is positive definite and EDM = g^T H^-1 g / 2 (``-2 ln L``
    units) < ``edm_max``. ``inward``: a converged point is *not* a minimum when a parameter
    sits (within 1e-6 of its range) on a bound the gradient points away from, steeply enough
    that moving it inwards by 1e-6 of its range would gain more than ``edm_max`` -- sqrt(mu)
    morphing at mu = 0 has a huge slope and a far larger curvature there, so step and EDM
    vanish; the caller treats that as a failure (MIGRAD copes). (A minimum that lies on the
    bound itself has a vanishing gradient there and is not flagged.)
    """
    held = held_at_bound(xp, x, g, lo, hi, free)
    act = free & ~held
    af = act.astype(H.dtype)
    Hm = H * af[:, None] * af[None, :] + xp.diag(1.0 - af)
    gm = g * af
    L, pd = _cholesky(xp, Hm)

    def on_pd():
        step, sig = _newton_on_cholesky(xp, L, gm)
        return step, sig, -0.5 * (gm @ step)

    def on_indefinite():
        step, sig = _newton_on_abs_eigenvalues(xp, Hm, gm)
        return step, sig, xp.asarray(math.inf, dtype=H.dtype) if not _is_numpy(xp) else math.inf

    step, sig, edm = _branch(xp, pd, on_pd, on_indefinite)
    step = xp.where(act, step, 0.0)
    ratio = xp.max(xp.where(act, xp.abs(step) / sig, 0.0))
    step = step * xp.where(ratio > max_step_sigma, max_step_sigma / xp.maximum(ratio, max_step_sigma), 1.0)
    converged = pd & (edm < edm_max)
    finite_range = xp.isfinite(hi - lo)
    move = xp.where(finite_range, 1e-6 * (hi - lo), 1e-6)
    near = xp.where(finite_range, move, 0.0)
    on_bound_inward = ((x <= lo + near) & (g < 0)) | ((x >= hi - near) & (g > 0))
    inward = xp.any(free & on_bound_inward & (xp.abs(g) * move > edm_max))
    return Step(step, edm, converged, inward, xp.sum(held))


def trial_point(xp, x, step, t, lo, hi, free):
    """``x + t step`` projected onto the bounds (fixed parameters unchanged)."""
    return xp.where(free, xp.clip(x + t * step, lo, hi), x)


def armijo_ok(xp, v, v_new, dec):
    """Sufficient decrease along a descent direction (``dec = g . (x_new - x) < 0``)."""
    return xp.isfinite(v_new) & (dec < 0) & (v_new <= v + ARMIJO * dec)


def newton(
    vgh: Callable,
    value: Callable,
    x0,
    bounds,
    free,
    edm_max: float,
    max_iter: int = 30,
    max_step_sigma: float = MAX_STEP_SIGMA,
) -> MinimizeResult:
    """Projected damped Newton minimisation of ``-2 ln L`` (numpy driver).

    ``vgh(x) -> (value, gradient, Hessian)`` (e.g. ``Model.twice_nll_grad_hessian``, one pass
    over the events), ``value(x)`` for the line search. Each iteration: :func:`newton_step`;
    the projected trial point is evaluated with ``vgh`` and, if it does not decrease the
    objective enough (Armijo), the step is halved with value-only passes (down to
    ``MIN_STEP_FRACTION``). Gives up (``converged=False``, ``message`` says why) when the
    likelihood is not finite, the line search fails, at a bound the gradient leaves, or after
    ``max_iter`` iterations. ``hessian`` of the result is the exact Hessian at ``values``.
    """
    b = np.asarray(bounds, float).reshape(-1, 2)
    lo, hi = b[:, 0], b[:, 1]
    free = np.asarray(free, bool)
    x0 = np.asarray(x0, float)
    x = np.where(free, np.clip(x0, lo, hi), x0)
    v, g, H = vgh(x)
    nvgh, nval = 1, 0
    edm = math.inf

    def result(it, reason, n_held=0):
        return MinimizeResult(
            values=x,
            twice_nll=float(v),
            converged=reason == CONVERGED,
            edm=float(edm),
            n_iter=it,
            n_calls=nvgh + nval,
            n_grad=nvgh,
            method="newton",
            message=message(reason, n_held, max_iter),
            hessian=np.asarray(H),
            info={"iterations": it, "nvgh": nvgh},
        )

    for it in range(max_iter + 1):
        if not (np.isfinite(v) and np.all(np.isfinite(g)) and np.all(np.isfinite(H))):
            return result(it, NONFINITE)
        s = newton_step(np, x, g, H, lo, hi, free, edm_max, max_step_sigma)
        edm = s.edm
        if s.converged:
            return result(it, INWARD if s.inward else CONVERGED, int(s.n_held))
        if it == max_iter:
            break
        t = 1.0
        xn = trial_point(np, x, s.step, t, lo, hi, free)
        dec = float(g @ (xn - x))
        vn, gn, Hn = vgh(xn)
        nvgh += 1
        while not armijo_ok(np, v, vn, dec):
            t *= 0.5
            if t < MIN_STEP_FRACTION or not dec < 0:
                return result(it, LINE_SEARCH)
            xn = trial_point(np, x, s.step, t, lo, hi, free)
            dec = float(g @ (xn - x))
            vn = value(xn)
            nval += 1
            if armijo_ok(np, v, vn, dec):
                vn, gn, Hn = vgh(xn)
                nvgh += 1
        x, v, g, H = xn, vn, gn, Hn
    return result(max_iter, MAX_ITER)
