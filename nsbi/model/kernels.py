"""One-pass kernels over the events of an unbinned channel.

For yields ``y`` (C,) and shape parameters ``alpha`` (K,) the per-event term of an unbinned
channel is ``E = sum_i w_i ln S_i`` with ``S_i = sum_c y_c T_ci``, ``T_ci = r_ci prod_k
g_cki(alpha_k)`` and ``g`` the per-event code-4 factors
(:func:`nsbi.model.interpolation.code4_poly_factor` inside ``|alpha| <= 1``, one exponential
beyond). The event arrays ``d`` (see :class:`nsbi.model.unbinned.UnbinnedChannel`) are laid
out as chunks, (nchunks, ..., chunk), and scanned once:

* :func:`events_kernel` -- E, optionally with its gradient (value and gradient in one pass);
* :func:`events_term` -- E with a custom VJP using that gradient (used by ``jax.grad``);
* :func:`events_hessian` -- E, its gradient and its exact Hessian w.r.t. (y, alpha).

Each picks the polynomial-only variant when all ``|alpha_k| <= 1`` (``lax.cond``). A density
``S_i`` that is not positive is floored (:func:`_density`), so that ``E`` stays finite.
"""

from __future__ import annotations

from nsbi.jax_setup import jax, jnp

from .interpolation import code4_d2weights, code4_dweights, code4_poly_factor, code4_poly_weights

__all__ = [
    "DENSITY_FLOOR_REL",
    "STORE_RHO_MAX_K",
    "density_floor",
    "events_hessian",
    "events_hessian_kernel",
    "events_kernel",
    "events_term",
]

STORE_RHO_MAX_K = 7  # measured (1M events x 4 processes): K = 3, 5, 7 faster stored; K = 10 faster recomputed


#: floor of the per-event density S_i, relative to the sum of |y_c| (see :func:`_density`)
DENSITY_FLOOR_REL = 1e-9


def density_floor(y):
    """The floor of the per-event density of an unbinned channel with yields ``y`` (C,):
    ``DENSITY_FLOOR_REL * sum_c |y_c|`` (numpy or JAX arrays)."""
    return DENSITY_FLOOR_REL * jnp.sum(jnp.abs(y))


def _density(s, w, y):
    """The per-event density for ``ln``, and the weights of the events in the derivatives.

    * Events of weight 0 (toy padding, or Asimov MC events where the model density is not
      positive and the expected weight is 0) get 1 and derivative weight 0, so that they add
      exactly nothing (0 ln s would be NaN where s <= 0).
    * A density below ``DENSITY_FLOOR_REL * sum_c |y_c|`` is raised to that floor. The true
      density is never negative, but a morphing sum of estimated terms (learned ratios, MC
      yields) can be where the interference nearly cancels it: there the model says the event
      is all but impossible, ln S_i is the (very negative) ln of the floor instead of NaN, and
      the event adds nothing to the derivatives (the floor is held constant). With a positive
      density above the floor, nothing changes."""
    floor = jax.lax.stop_gradient(density_floor(y))
    weighted = w != 0
    above = weighted & (s > floor)
    return jnp.where(weighted, jnp.maximum(s, floor), 1.0), jnp.where(above, w, 0.0)


def events_kernel(y, alpha, d, want_grad: bool, general: bool):
    """sum_i w_i ln S_i and (optionally) its gradient w.r.t. the yields y (C,) and the
    shape parameters alpha (K,), in one pass over event chunks (``lax.scan``).

    ``general=False`` assumes all |alpha_k| <= 1 (polynomial branch only: no transcendental
    functions per event); ``general=True`` also handles the exponential branches.
    """
    C = d["r"].shape[1]
    K = d["lu"].shape[1]
    cw = [code4_poly_weights(alpha[k], jnp) for k in range(K)]
    dw = [code4_dweights(alpha[k]) for k in range(K)] if want_grad else None

    def factor(k, lu, ld, gu, gd):
        """g_ck and (with want_grad) rho_ck = g'_ck / g_ck."""
        g = code4_poly_factor(cw[k], lu, ld, gu, gd)
        rho = None
        if want_grad:
            gp = code4_poly_factor(dw[k], lu, ld, gu, gd, derivative=True)
        if general:
            # one exponential per factor: g = g_up^a (a > 1) or g_down^-a (a < -1), and then
            # g'/g = ln g_up or -ln g_down
            a = alpha[k]
            out = jnp.abs(a) > 1.0
            log_g = jnp.where(a > 0.0, lu, ld)
            g = jnp.where(out, jnp.exp(jnp.abs(a) * log_g), g)
            if want_grad:
                gp = jnp.where(out, jnp.sign(a) * log_g * g, gp)
        if want_grad:
            rho = gp / g
        return g, rho

    def body(carry, x):
        if not want_grad:
            s = 0.0
            for c in range(C):
                t = x["r"][c]
                for k in range(K):
                    t = t * factor(k, x["lu"][k, c], x["ld"][k, c], x["gu"][k, c], x["gd"][k, c])[0]
                s = s + y[c] * t
            s, _ = _density(s, x["w"], y)
            return carry + jnp.sum(x["w"] * jnp.log(s)), None
        # Value and gradient in three stages per chunk (the chunk stays cache resident):
        #   1. T_c = r_c prod_k g_ck and rho_ck = g'_ck / g_ck  (C + CK rows, materialised)
        #   2. Q_k = sum_c y_c T_c rho_ck                      (K rows, reads T and rho)
        #   3. s = sum_c y_c T_c; sum w ln s; [T; Q] @ (w / s)
        # The barriers stop XLA from re-deriving T and the factors inside every consumer
        # (measured: a fused chain is recomputed per output row; materialising rho instead of
        # recomputing the factors in stage 2 is 1.3x faster for |alpha| <= 1 and 3.4x faster
        # outside; see benchmarks/README.md).
        store = general or K <= STORE_RHO_MAX_K
        T, RHO = [], []  # RHO: rows c * K + k
        for c in range(C):
            t = x["r"][c]
            for k in range(K):
                g, rho = factor(k, x["lu"][k, c], x["ld"][k, c], x["gu"][k, c], x["gd"][k, c])
                t = t * g
                RHO.append(rho)
            T.append(t)
        if K and store:
            T, RHO = jax.lax.optimization_barrier((jnp.stack(T), jnp.stack(RHO)))
        else:
            T = jax.lax.optimization_barrier(jnp.stack(T))
            RHO = [
                factor(k, x["lu"][k, c], x["ld"][k, c], x["gu"][k, c], x["gd"][k, c])[1]
                for c in range(C)
                for k in range(K)
            ]
        Qk = [sum((y[c] * T[c]) * RHO[c * K + k] for c in range(C)) for k in range(K)]
        M = jax.lax.optimization_barrier(jnp.concatenate([T, jnp.stack(Qk)]) if K else T)
        s = 0.0
        for c in range(C):
            s = s + y[c] * M[c]
        s, wd = _density(s, x["w"], y)
        val = jnp.sum(x["w"] * jnp.log(s))
        g = M @ (wd / s)
        v0, g0 = carry
        return (v0 + val, g0 + g), None

    if not want_grad:
        v, _ = jax.lax.scan(body, jnp.zeros((), y.dtype), d)
        return v
    (v, g), _ = jax.lax.scan(body, (jnp.zeros((), y.dtype), jnp.zeros(C + K, y.dtype)), d)
    return v, g[:C], g[C:]


def events_hessian_kernel(y, alpha, d, general: bool):
    """sum_i w_i ln S_i, its gradient and its exact Hessian w.r.t. u = (y, alpha) in one pass.

    With s = sum_c y_c T_c, T_c = r_c prod_k g_ck(alpha_k), rho_ck = g'_ck/g_ck and
    sigma_ck = g''_ck/g_ck per event: d s/d y_c = T_c, d s/d alpha_k = Q_k = sum_c y_c T_c rho_ck,
    d2 s/d y_c d alpha_k = T_c rho_ck, d2 s/d alpha_k d alpha_l = sum_c y_c T_c rho_ck rho_cl
    (k != l) or sum_c y_c T_c sigma_ck (k = l), and
    H = sum_i w_i [s_uv / s - s_u s_v / s^2].

    Per chunk: (1) T, rho, sigma materialised once; (2) the rows
    Z = [T (C); Q (K); T rho (C K); d2 s/d alpha d alpha (K(K+1)/2)]; (3) Z @ (w/s) gives the
    gradient and the s_uv/s terms, D diag(w/s^2) D^T with D = [T; Q] the outer-product term
    (two small matmuls; 1.7x faster than einsums over (C, K, chunk) arrays, measured).
    """
    C = d["r"].shape[1]
    K = d["lu"].shape[1]
    n = C + K
    cw = [code4_poly_weights(alpha[k], jnp) for k in range(K)]
    dw = [code4_dweights(alpha[k]) for k in range(K)]
    d2w = [code4_d2weights(alpha[k]) for k in range(K)]
    pairs = [(k, m) for k in range(K) for m in range(k, K)]

    def factor(k, lu, ld, gu, gd):
        g = code4_poly_factor(cw[k], lu, ld, gu, gd)
        gp = code4_poly_factor(dw[k], lu, ld, gu, gd, derivative=True)
        gpp = code4_poly_factor(d2w[k], lu, ld, gu, gd, derivative=True)
        ig = 1.0 / g
        rho, sig = gp * ig, gpp * ig
        if general:
            # one exponential per factor; outside |a| <= 1, g'/g = ln g_up (a > 1) or -ln g_down
            # (a < -1) and g''/g = its square
            a = alpha[k]
            out = jnp.abs(a) > 1.0
            log_g = jnp.where(a > 0.0, lu, ld)
            g = jnp.where(out, jnp.exp(jnp.abs(a) * log_g), g)
            rho = jnp.where(out, jnp.sign(a) * log_g, rho)
            sig = jnp.where(out, log_g * log_g, sig)
        return g, rho, sig

    def body(carry, x):
        T, R, S = [], [], []  # R, S: rows c * K + k
        for c in range(C):
            t = x["r"][c]
            for k in range(K):
                g, r_, s_ = factor(k, x["lu"][k, c], x["ld"][k, c], x["gu"][k, c], x["gd"][k, c])
                t = t * g
                R.append(r_)
                S.append(s_)
            T.append(t)
        if K:
            T, R, S = jax.lax.optimization_barrier((jnp.stack(T), jnp.stack(R), jnp.stack(S)))
        else:
            T = jnp.stack(T)
        YT = [y[c] * T[c] for c in range(C)]
        s, wd = _density(sum(YT), x["w"], y)
        rows = [T[c] for c in range(C)]
        rows += [sum(YT[c] * R[c * K + k] for c in range(C)) for k in range(K)]  # Q_k
        rows += [T[c] * R[c * K + k] for c in range(C) for k in range(K)]
        rows += [
            sum(YT[c] * (S[c * K + k] if k == m else R[c * K + k] * R[c * K + m]) for c in range(C)) for k, m in pairs
        ]
        Z = jax.lax.optimization_barrier(jnp.stack(rows))
        ws = wd / s
        lin = Z @ ws
        D = Z[:n]
        DD = (D * (ws / s)) @ D.T
        val = jnp.sum(x["w"] * jnp.log(s))
        v0, l0, dd0 = carry
        return (v0 + val, l0 + lin, dd0 + DD), None

    nz = n + C * K + len(pairs)
    init = (jnp.zeros((), y.dtype), jnp.zeros(nz, y.dtype), jnp.zeros((n, n), y.dtype))
    (v, lin, DD), _ = jax.lax.scan(body, init, d)
    Hs = jnp.zeros((n, n), y.dtype)
    if K:
        h_ya = lin[n : n + C * K].reshape(C, K)
        h_aa = jnp.zeros((K, K), y.dtype)
        off = n + C * K
        for i, (k, m) in enumerate(pairs):
            h_aa = h_aa.at[k, m].set(lin[off + i]).at[m, k].set(lin[off + i])
        Hs = Hs.at[:C, C:].set(h_ya).at[C:, :C].set(h_ya.T).at[C:, C:].set(h_aa)
    return v, lin[:n], Hs - DD


def events_hessian(y, alpha, d):
    """(E, dE/du, d2E/du2) for u = (y, alpha), see :func:`events_hessian_kernel`."""
    if d["lu"].shape[1] == 0:
        return events_hessian_kernel(y, alpha, d, False)
    inside = jnp.all(jnp.abs(alpha) <= 1.0)
    return jax.lax.cond(
        inside,
        lambda: events_hessian_kernel(y, alpha, d, False),
        lambda: events_hessian_kernel(y, alpha, d, True),
    )


def _events_term_impl(y, alpha, d, want_grad):
    if d["lu"].shape[1] == 0:
        return events_kernel(y, alpha, d, want_grad, False)
    inside = jnp.all(jnp.abs(alpha) <= 1.0)
    return jax.lax.cond(
        inside,
        lambda: events_kernel(y, alpha, d, want_grad, False),
        lambda: events_kernel(y, alpha, d, want_grad, True),
    )


@jax.custom_vjp
def events_term(y, alpha, d):
    """E = sum_i w_i ln S_i; its VJP reuses the gradient of the one-pass value+gradient kernel
    (no cotangent for the event arrays ``d``: use :func:`events_kernel` under plain autodiff)."""
    return _events_term_impl(y, alpha, d, False)


def _events_term_fwd(y, alpha, d):
    v, gy, ga = _events_term_impl(y, alpha, d, True)
    return v, (gy, ga, d)


def _events_term_bwd(res, ct):
    gy, ga, d = res
    return ct * gy, ct * ga, jax.tree_util.tree_map(jnp.zeros_like, d)


events_term.defvjp(_events_term_fwd, _events_term_bwd)
