"""Batched minimisation of many likelihoods at once (``jax.vmap``), with an iminuit fallback.

The objective is a pure JAX function ``fun(p, data, *shared) -> -2 ln L`` (scalar) that is
twice differentiable with plain autodiff (forward-over-reverse Hessian); ``data`` is a pytree
whose leaves carry a leading batch axis (one entry per pseudo-experiment), ``shared`` are
arguments common to all entries (e.g. the MC event arrays).

Algorithm (per entry, all entries in lock step under ``vmap`` + ``lax.while_loop``): a
projected Newton / Levenberg-Marquardt iteration with the exact Hessian,

* box bounds by projection: parameters at a bound whose gradient points outward are held
  (their Hessian rows/columns replaced by the identity), the trial point is clipped to the box;
* fixed parameters (``free == False``) never move;
* step ``d = -(H + lambda D)^-1 g`` with ``D = diag(|H_jj|)``; accepted if ``-2 ln L`` does not
  increase (Armijo), then ``lambda /= 10``, otherwise ``lambda *= 10`` (from 1e-4);
* converged when the Hessian of the free, non-held parameters is positive definite and the
  estimated distance to the minimum ``EDM = g^T H^-1 g / 2`` (in ``-2 ln L`` units) is below
  ``tol`` (default 1e-10); one final undamped Newton step is then taken (kept if ``-2 ln L``
  does not increase), so parameters end up well inside ~1e-6 sigma of the minimum.

Entries that do not converge within ``max_iter`` iterations (or hit non-finite values) are
re-minimised one by one with iminuit MIGRAD (limits, fixed parameters, exact JAX gradient,
strategy 1 then 2), starting from the better of the batched end point and the start point;
the number of such fallbacks and of failures (fallback also invalid) is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nsbi.jax_setup import jax, jnp

__all__ = ["BatchFitResult", "batch_size_of", "minimize", "take"]


@dataclass
class BatchFitResult:
    twice_nll: np.ndarray  # (T,)
    values: np.ndarray  # (T, npars)
    converged: np.ndarray  # (T,) bool: batched Newton or fallback converged
    n_iter: np.ndarray  # (T,) Newton iterations
    edm: np.ndarray  # (T,) final EDM of the batched minimiser (nan for fallbacks)
    fallback: np.ndarray  # (T,) bool: re-minimised with iminuit
    n_fallback: int
    n_failed: int

    def summary(self) -> dict:
        return {
            "n": len(self.twice_nll),
            "n_fallback": int(self.n_fallback),
            "n_failed": int(self.n_failed),
            "max_iter_used": int(self.n_iter.max()) if len(self.n_iter) else 0,
        }


def batch_size_of(data) -> int:
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise ValueError("data has no array leaves")
    return int(np.shape(leaves[0])[0])


def take(data, index):
    """Entries ``index`` (int, slice or index array) of a batched pytree."""
    return jax.tree_util.tree_map(lambda a: a[index], data)


_SOLVERS: dict[Any, Callable] = {}


def _make_solver(fun: Callable, tol: float, max_iter: int) -> Callable:
    def solve_one(x0, data, lo, hi, free, shared):
        def f(x):
            return fun(x, data, *shared)

        vg = jax.value_and_grad(f)
        hess = jax.hessian(f)
        n = x0.shape[0]
        eye = jnp.eye(n, dtype=x0.dtype)

        def evaluate(x):
            v, g = vg(x)
            return v, g, hess(x)

        def reduced(x, g, H):
            held = ((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0))
            m = free & ~held
            mf = m.astype(x.dtype)
            Hm = H * jnp.outer(mf, mf) + jnp.diag(1.0 - mf)
            return m, mf, Hm, g * mf

        def edm_of(x, g, H):
            _, _, Hm, gm = reduced(x, g, H)
            L = jnp.linalg.cholesky(Hm)
            y = jax.scipy.linalg.cho_solve((L, True), gm)
            e = 0.5 * jnp.dot(gm, y)
            return jnp.where(jnp.all(jnp.isfinite(L)) & jnp.isfinite(e), e, jnp.inf)

        x = jnp.where(free, jnp.clip(x0, lo, hi), x0)
        # the objective (value, gradient, Hessian) appears once in the loop body only (halves the
        # compilation time): the first iteration just evaluates the start point.
        v, g, H = jnp.full((), jnp.inf, x.dtype), jnp.zeros_like(x), eye
        # status: 0 running, 1 converged, 2 failed
        state = (
            x,
            v,
            g,
            H,
            jnp.zeros((), x.dtype),
            jnp.zeros((), jnp.int32),
            jnp.zeros((), jnp.int32),
            jnp.ones((), bool),
        )

        def cond(s):
            return s[6] == 0

        def body(s):
            x, v, g, H, lam, it, _status, first = s
            e = edm_of(x, g, H)
            done = jnp.isfinite(v) & (e < tol) & ~first
            m, _, Hm, gm = reduced(x, g, H)
            scale = jnp.where(m, jnp.maximum(jnp.abs(jnp.diag(H)), 1e-12), 0.0)
            # once converged, one final undamped Newton step polishes the point (kept if not worse)
            A = Hm + jnp.where(done, 0.0, lam) * jnp.diag(scale)
            L = jnp.linalg.cholesky(A)
            d = -jax.scipy.linalg.cho_solve((L, True), gm)
            ok = jnp.all(jnp.isfinite(d))
            d = jnp.where(ok & ~first, d, 0.0)
            xn = jnp.where(free, jnp.clip(x + d, lo, hi), x)
            vn, gn, Hn = evaluate(xn)
            dec = jnp.dot(g, xn - x)
            accept = first | (ok & jnp.isfinite(vn) & jnp.where(done, vn <= v, vn <= v + 1e-4 * jnp.minimum(dec, 0.0)))
            x2 = jnp.where(accept, xn, x)
            v2 = jnp.where(accept, vn, v)
            g2 = jnp.where(accept, gn, g)
            H2 = jnp.where(accept, Hn, H)
            lam2 = jnp.where(accept, lam * 0.1, jnp.maximum(lam * 10.0, 1e-4))
            lam2 = jnp.where(lam2 < 1e-12, 0.0, lam2)
            it2 = it + jnp.where(first, 0, 1).astype(jnp.int32)
            failed = (~done) & ((it2 >= max_iter) | (lam2 > 1e12) | ~jnp.isfinite(v2))
            status2 = jnp.where(done, 1, jnp.where(failed, 2, 0)).astype(jnp.int32)
            return (x2, v2, g2, H2, lam2, jnp.where(done, it, it2), status2, jnp.zeros((), bool))

        x, v, g, H, _, it, status, _ = jax.lax.while_loop(cond, body, state)
        return x, v, status == 1, it, edm_of(x, g, H)

    batched = jax.vmap(solve_one, in_axes=(0, 0, None, None, None, None))
    return jax.jit(batched)


def _solver(fun, tol, max_iter):
    key = (fun, float(tol), int(max_iter))
    s = _SOLVERS.get(key)
    if s is None:
        s = _make_solver(fun, float(tol), int(max_iter))
        _SOLVERS[key] = s
    return s


_VG: dict[Any, Callable] = {}


def _iminuit_one(fun, data_i, shared, x0, bounds, free, tolerance=1e-6):
    """Per-entry iminuit MIGRAD on the same objective (exact JAX gradient)."""
    from iminuit import Minuit

    vg = _VG.get(fun)
    if vg is None:
        vg = jax.jit(jax.value_and_grad(lambda p, d, sh: fun(p, d, *sh)))
        _VG[fun] = vg
    cache: dict[str, Any] = {"x": None}

    def both(x):
        if cache["x"] is None or not np.array_equal(cache["x"], x):
            v, g = vg(jnp.asarray(x, dtype=float), data_i, tuple(shared))
            cache["v"], cache["g"], cache["x"] = float(v), np.asarray(g), np.array(x, copy=True)
        return cache["v"], cache["g"]

    m = Minuit(lambda x: both(x)[0], np.asarray(x0, float), grad=lambda x: both(x)[1])
    m.errordef = 1.0
    m.limits = [tuple(map(float, b)) for b in bounds]
    m.fixed = [not bool(f) for f in free]
    m.print_level = 0
    m.tol = tolerance
    m.strategy = 1
    m.migrad()
    if not m.valid:
        m.strategy = 2
        m.migrad()
    return float(m.fval), np.array(m.values), bool(m.valid)


def minimize(
    fun: Callable,
    data,
    x0,
    bounds: Sequence[tuple[float, float]],
    free,
    shared: Sequence[Any] = (),
    *,
    tol: float = 1e-10,
    max_iter: int = 50,
    batch_size: int | None = None,
    fallback: bool = True,
    fallback_tolerance: float = 1e-6,
    progress: bool = False,
) -> BatchFitResult:
    """Minimise ``fun(p, data[t], *shared)`` for every entry ``t`` of the batched ``data``.

    ``x0``: start point (npars,) or per entry (T, npars) (fixed parameters take their value
    from it); ``bounds``: (npars, 2); ``free``: bool (npars,) (False = fixed). ``batch_size``:
    entries per vmapped call (the last chunk is padded by repeating an entry, so only one
    shape is compiled). ``fun`` should be the same object across calls (compiled solvers are
    cached per function).
    """
    T = batch_size_of(data)
    x0 = np.asarray(x0, float)
    npars = x0.shape[-1]
    X0 = np.broadcast_to(x0, (T, npars)).copy()
    b = np.asarray(bounds, float).reshape(npars, 2)
    lo, hi = jnp.asarray(b[:, 0]), jnp.asarray(b[:, 1])
    free_np = np.asarray(free, bool).reshape(npars)
    free_j = jnp.asarray(free_np)
    shared = tuple(shared)
    solver = _solver(fun, tol, max_iter)
    bs = T if not batch_size else min(int(batch_size), T)
    out_x = np.empty((T, npars))
    out_v = np.empty(T)
    out_c = np.zeros(T, bool)
    out_it = np.zeros(T, int)
    out_e = np.empty(T)
    starts = range(0, T, bs)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="batched fits", unit="batch", leave=False)
    for s in starts:
        idx = np.arange(s, min(s + bs, T))
        pad = np.concatenate([idx, np.full(bs - len(idx), idx[-1])])
        d = take(data, pad)
        xs, vs, cs, its, es = solver(jnp.asarray(X0[pad]), d, lo, hi, free_j, shared)
        k = len(idx)
        out_x[idx], out_v[idx] = np.asarray(xs)[:k], np.asarray(vs)[:k]
        out_c[idx], out_it[idx], out_e[idx] = np.asarray(cs)[:k], np.asarray(its)[:k], np.asarray(es)[:k]
    fb = ~out_c
    n_failed = 0
    if fallback and fb.any():
        for t in np.flatnonzero(fb):
            start = out_x[t] if np.isfinite(out_v[t]) else X0[t]
            d = take(data, t)
            v, xv, ok = _iminuit_one(fun, d, shared, start, b, free_np, fallback_tolerance)
            out_v[t], out_x[t], out_c[t], out_e[t] = v, xv, ok, np.nan
            n_failed += int(not ok)
    elif fb.any():
        n_failed = int(fb.sum())
    return BatchFitResult(
        twice_nll=out_v,
        values=out_x,
        converged=out_c,
        n_iter=out_it,
        edm=out_e,
        fallback=fb if fallback else np.zeros(T, bool),
        n_fallback=int(fb.sum()) if fallback else 0,
        n_failed=n_failed,
    )
