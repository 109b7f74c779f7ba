"""Batched minimisation of many likelihoods at once (``jax.vmap`` + ``lax.while_loop``) with
the projected Newton step and convergence rule of :mod:`nsbi.minimize.core` and the MIGRAD
fallback of the single path (:func:`nsbi.minimize.single.fallback`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nsbi.jax_setup import jax, jnp

from . import core as N
from .result import BatchMinimizeResult, MinimizeResult
from .single import Objective
from .single import fallback as _fallback

__all__ = ["batch_size_of", "entry_hessian", "minimize_batch", "take"]


def batch_size_of(data) -> int:
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise ValueError("data has no array leaves")
    return int(np.shape(leaves[0])[0])


def take(data, index):
    """Entries ``index`` (int, slice or index array) of a batched pytree."""
    return jax.tree_util.tree_map(lambda a: a[index], data)


def _make_solver(fun: Callable, vgh: Callable | None, edm_max: float, max_iter: int, polish: bool) -> Callable:
    def solve_one(x0, data, lo, hi, free, shared):
        if vgh is None:

            def f(x):
                return fun(x, data, *shared)

            vg, hess = jax.value_and_grad(f), jax.hessian(f)

            def evaluate(x):
                v, g = vg(x)
                return v, g, hess(x)

        else:

            def evaluate(x):
                return vgh(x, data, *shared)

        x = jnp.where(free, jnp.clip(x0, lo, hi), x0)
        n = x.shape[0]
        eye = jnp.eye(n, dtype=x.dtype)
        zero, inf = jnp.zeros((), x.dtype), jnp.full((), jnp.inf, x.dtype)
        i0 = jnp.zeros((), jnp.int32)
        # the objective appears once in the loop body (halves the compilation time): the first
        # pass evaluates the start point, every later one a trial point of the line search
        state = {
            "x": x,
            "v": inf,
            "g": jnp.zeros_like(x),
            "H": eye,
            "step": jnp.zeros_like(x),
            "t": zero + 1.0,
            "edm": inf,
            "it": i0,
            "reason": i0 + N.RUNNING,
            "n_held": i0,
            "n_calls": i0,
            "first": jnp.ones((), bool),
            "polishing": jnp.zeros((), bool),
        }

        def body(s):
            first, pol = s["first"], s["polishing"]
            xe = jnp.where(first, s["x"], N.trial_point(jnp, s["x"], s["step"], s["t"], lo, hi, free))
            ve, ge, He = evaluate(xe)
            dec = jnp.dot(s["g"], xe - s["x"])
            all_finite = jnp.isfinite(ve) & jnp.all(jnp.isfinite(ge)) & jnp.all(jnp.isfinite(He))
            polished = all_finite & (ve <= s["v"])
            accept = first | jnp.where(pol, polished, N.armijo_ok(jnp, s["v"], ve, dec))
            x2, v2 = jnp.where(accept, xe, s["x"]), jnp.where(accept, ve, s["v"])
            g2, H2 = jnp.where(accept, ge, s["g"]), jnp.where(accept, He, s["H"])
            it2 = s["it"] + (accept & ~first & ~pol).astype(jnp.int32)
            finite = jnp.isfinite(v2) & jnp.all(jnp.isfinite(g2)) & jnp.all(jnp.isfinite(H2))
            st = N.newton_step(jnp, x2, jnp.where(finite, g2, 0.0), jnp.where(finite, H2, eye), lo, hi, free, edm_max)
            converged = st.converged & ~st.inward
            r_acc = jnp.where(
                ~finite,
                N.NONFINITE,
                jnp.where(
                    converged,
                    N.RUNNING if polish else N.CONVERGED,  # polish: one more step first
                    jnp.where(st.converged, N.INWARD, jnp.where(it2 >= max_iter, N.MAX_ITER, N.RUNNING)),
                ),
            )
            t_rej = s["t"] * 0.5
            r_rej = jnp.where((t_rej < N.MIN_STEP_FRACTION) | ~(dec < 0), N.LINE_SEARCH, N.RUNNING)
            reason = jnp.where(pol, N.CONVERGED, jnp.where(accept, r_acc, r_rej))
            return {
                "x": x2,
                "v": v2,
                "g": g2,
                "H": H2,
                "step": jnp.where(accept, st.step, s["step"]),
                "t": jnp.where(accept, 1.0, t_rej),
                "edm": jnp.where(accept & finite, st.edm, s["edm"]),
                "it": it2,
                "reason": reason.astype(jnp.int32),
                "n_held": jnp.where(accept & ~pol, st.n_held, s["n_held"]).astype(jnp.int32),
                "n_calls": s["n_calls"] + 1,
                "first": jnp.zeros((), bool),
                "polishing": ~pol & accept & finite & converged,
            }

        s = jax.lax.while_loop(lambda s: s["reason"] == N.RUNNING, body, state)
        return s["x"], s["v"], s["reason"], s["it"], s["edm"], s["n_held"], s["n_calls"], s["H"]

    batched = jax.vmap(solve_one, in_axes=(0, 0, None, None, None, None))
    return jax.jit(batched)


_SOLVERS: dict[Any, Callable] = {}
_VG: dict[Any, Callable] = {}
_HESS: dict[Any, Callable] = {}


def _solver(fun, vgh, edm_max, max_iter, polish):
    key = (fun, vgh, float(edm_max), int(max_iter), bool(polish))
    s = _SOLVERS.get(key)
    if s is None:
        s = _SOLVERS[key] = _make_solver(fun, vgh, float(edm_max), int(max_iter), bool(polish))
    return s


def entry_objective(fun: Callable, data_t, shared: Sequence[Any] = ()) -> Objective:
    """:class:`Objective` of one entry ``data_t`` (value and exact gradient, jit-compiled once
    per ``fun``), e.g. for the MIGRAD fallback."""
    vg = _VG.get(fun)
    if vg is None:
        vg = _VG[fun] = jax.jit(jax.value_and_grad(lambda p, d, sh: fun(p, d, *sh)))
    shared = tuple(shared)

    def value_and_grad(x):
        v, g = vg(jnp.asarray(x, dtype=float), data_t, shared)
        return float(v), np.asarray(g)

    return Objective(value=lambda x: value_and_grad(x)[0], value_and_grad=value_and_grad)


def entry_hessian(fun: Callable, vgh: Callable | None, x, data_t, shared: Sequence[Any] = ()) -> np.ndarray:
    """Exact Hessian of ``fun(x, data_t, *shared)`` (from ``vgh`` when given, else autodiff),
    jit-compiled once per function."""
    key = (fun, vgh)
    h = _HESS.get(key)
    if h is None:
        if vgh is not None:
            h = jax.jit(lambda p, d, sh: vgh(p, d, *sh)[2])
        else:
            h = jax.jit(jax.hessian(lambda p, d, sh: fun(p, d, *sh)))
        _HESS[key] = h
    return np.asarray(h(jnp.asarray(x, dtype=float), data_t, tuple(shared)))


def minimize_batch(
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
    vgh: Callable | None = None,
    polish: bool = True,
    hessian: bool = False,
) -> BatchMinimizeResult:
    """Minimise ``fun(p, data[t], *shared)`` (``-2 ln L``, a pure JAX scalar function) for every
    entry ``t`` of the batched pytree ``data`` (leaves with a leading batch axis).

    Every entry runs the projected Newton iteration of :func:`nsbi.minimize.core.newton`
    (same step, trust region, line search and convergence rule; ``tol`` is the EDM threshold in
    ``-2 ln L`` units, i.e. MIGRAD's ``tolerance`` = ``tol`` / 0.002), all entries in lock step
    under ``vmap``; the value, gradient and Hessian come from ``vgh(p, data_t, *shared)`` or,
    by default, plain autodiff of ``fun`` (forward-over-reverse Hessian). ``polish``: once an
    entry has converged, one more Newton step is taken (kept if ``-2 ln L`` does not increase),
    so that its values lie well inside the tolerance (toys need no errors; the single path
    returns the converged point, where its Hessian is the one of the errors). Entries that do not
    converge in ``max_iter`` iterations are passed one by one to the fallback of the single
    path (:func:`nsbi.minimize.single.fallback`: MIGRAD with the exact gradient, tolerance
    ``fallback_tolerance``, strategy 1 then 2, from the Newton end point; NaN without MIGRAD
    where ``-2 ln L`` is not finite at the start).

    ``x0``: start point (npars,) or per entry (T, npars) (fixed parameters take their value
    from it); ``bounds``: (npars, 2); ``free``: bool (npars,) (False = fixed). ``batch_size``:
    entries per vmapped call (the last chunk is padded by repeating an entry, so only one shape
    is compiled). ``fun`` (and ``vgh``) should be the same objects across calls (compiled
    solvers are cached per function). ``hessian=True``: the result carries the exact Hessian at
    every entry's end point (the Newton iteration's own; recomputed for fallback entries), e.g.
    for errors (:func:`nsbi.fit.fit_result` of :meth:`BatchMinimizeResult.entry`).
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
    solver = _solver(fun, vgh, tol, max_iter, polish)
    bs = T if not batch_size else min(int(batch_size), T)
    out = {
        "x": np.empty((T, npars)),
        "v": np.empty(T),
        "reason": np.zeros(T, int),
        "it": np.zeros(T, int),
        "edm": np.empty(T),
        "n_held": np.zeros(T, int),
        "n_calls": np.zeros(T, int),
        "H": np.empty((T, npars, npars)),
    }
    starts = range(0, T, bs)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="batched fits", unit="batch", leave=False)
    for s in starts:
        idx = np.arange(s, min(s + bs, T))
        pad = np.concatenate([idx, np.full(bs - len(idx), idx[-1])])
        res = solver(jnp.asarray(X0[pad]), take(data, pad), lo, hi, free_j, shared)
        for key, a in zip(out, res):
            out[key][idx] = np.asarray(a)[: len(idx)]
    converged = out["reason"] == N.CONVERGED
    messages = [N.message(r, h, max_iter) for r, h in zip(out["reason"], out["n_held"])]
    methods = ["newton"] * T
    fb = ~converged
    if fallback:
        for t in np.flatnonzero(fb):
            nr = MinimizeResult(
                values=out["x"][t],
                twice_nll=float(out["v"][t]),
                converged=False,
                edm=float(out["edm"][t]),
                n_iter=int(out["it"][t]),
                n_calls=int(out["n_calls"][t]),
                n_grad=int(out["n_calls"][t]),
                method="newton",
                message=messages[t],
            )
            r = _fallback(
                entry_objective(fun, take(data, int(t)), shared),
                nr,
                X0[t],
                b,
                free_np,
                tolerance=fallback_tolerance,
                strategy=1,
            )
            out["x"][t], out["v"][t], out["edm"][t] = r.values, r.twice_nll, r.edm
            out["n_calls"][t] += r.n_calls
            converged[t] = r.converged
            methods[t] = r.method
            messages[t] = f"{messages[t]}; {r.message}"
            if hessian:
                out["H"][t] = entry_hessian(fun, vgh, out["x"][t], take(data, int(t)), shared)
    return BatchMinimizeResult(
        twice_nll=out["v"],
        values=out["x"],
        converged=converged,
        n_iter=out["it"],
        edm=out["edm"],
        n_calls=out["n_calls"],
        method=methods,
        message=messages,
        fallback=fb if fallback else np.zeros(T, bool),
        n_fallback=int(fb.sum()) if fallback else 0,
        n_failed=int((~converged).sum()),
        hessian=out["H"] if hessian else None,
    )
