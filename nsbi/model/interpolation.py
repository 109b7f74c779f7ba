"""HistFactory interpolation schemes (code 4 and code 4p), numpy/JAX agnostic.

Code 4 (multiplicative, ``normsys``-like; alpha0 = 1)::

    I(alpha) = kappa_up ** alpha                      alpha >  1
             = 1 + sum_{i=1..6} a_i alpha**i          |alpha| <= 1
             = kappa_down ** (-alpha)                 alpha < -1

with the a_i fixed by continuity of value, first and second derivative at alpha = +-1.
The a_i are linear in the boundary vector

    b = (k_u - 1, k_d - 1, k_u ln k_u, -k_d ln k_d, k_u ln^2 k_u, k_d ln^2 k_d),

``a = M^-1 b``, so inside the polynomial region the factor is
``1 + c(alpha) . b`` with ``c_j(alpha) = sum_i alpha**i (M^-1)_{ij}`` depending on alpha only.
Rearranged, ``I = (1 - c0 - c1) + k_u (c0 + c2 u + c4 u^2) + k_d (c1 - c3 d + c5 d^2)``
with ``u = ln k_u``, ``d = ln k_d``: for per-event factors (one alpha for millions of
events) only a handful of multiply-adds per event are needed, and no transcendental
function inside |alpha| <= 1. :func:`code4_poly_factor` is the one place this polynomial
branch is written: the binned and yield factors (:func:`code4_from_logs`) and the per-event
kernels of :mod:`nsbi.model.kernels` all evaluate it, the kernels also with the derivative
weights :func:`code4_dweights` / :func:`code4_d2weights` in place of ``c`` (which gives
``dI/dalpha`` and ``d2I/dalpha2``, the constant term becoming ``-c0' - c1'``).

Code 4p (additive, ``histosys``-like): ``delta(alpha) = alpha * delta_up`` for alpha > 1,
``alpha * delta_down`` for alpha < -1 and ``alpha S + A (15 alpha^2 - 10 alpha^4 + 3 alpha^6)``
inside, with ``S = (delta_up + delta_down)/2``, ``A = (delta_up - delta_down)/16``,
``delta_up = up - nominal``, ``delta_down = nominal - down``.

Mean of a per-event code-4 factor (shape normalisation). For per-event factors g(x) with
E[g_up] = E[g_down] = 1 the interpolated factor does *not* keep unit mean between or beyond
the knots (e.g. E[g_up^alpha] grows like exp(alpha^2 Var(ln g_up)/2)); a density built from it
is then not normalised and its integral moves with alpha. :func:`code4_mean` gives
N(alpha) = E[I(alpha)] from a compressed description of the two marginal distributions of
ln g (:func:`code4_mean_nodes`): the expectation is linear in the per-event factor, and each
branch depends on one marginal only, so weighted nodes of each marginal suffice. N(alpha) is
itself code-4 continuous (value, first and second derivative at +-1), so dividing by it keeps
the likelihood smooth.

Importing this module loads neither JAX nor the rest of :mod:`nsbi.model` (the workspace
builder uses :func:`code4_mean_nodes` without JAX); JAX arrays passed in select ``jax.numpy``.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

__all__ = [
    "CODE4_MATRIX_INV",
    "code4",
    "code4_from_logs",
    "code4_from_logs_derivatives",
    "code4_mean",
    "code4_mean_nodes",
    "code4_coefficients",
    "code4_d2weights",
    "code4_dweights",
    "code4_poly_factor",
    "code4_poly_weights",
    "code4p",
    "code4p_delta",
    "code4p_delta_derivatives",
]


def _exact_inverse() -> np.ndarray:
    """Inverse of the 6x6 boundary-condition matrix, solved exactly with fractions."""
    rows = []
    for sign in (1, -1):  # value at +1, -1
        rows.append([Fraction(sign) ** i for i in range(1, 7)])
    for sign in (1, -1):  # first derivative
        rows.append([i * Fraction(sign) ** (i - 1) for i in range(1, 7)])
    for sign in (1, -1):  # second derivative
        rows.append([i * (i - 1) * Fraction(sign) ** (i - 2) for i in range(1, 7)])
    # order conditions as (v+, v-, d+, d-, dd+, dd-)
    m = [rows[0], rows[1], rows[2], rows[3], rows[4], rows[5]]
    n = 6
    aug = [list(r) + [Fraction(int(i == j)) for j in range(n)] for i, r in enumerate(m)]
    for col in range(n):
        piv = next(r for r in range(col, n) if aug[r][col] != 0)
        aug[col], aug[piv] = aug[piv], aug[col]
        p = aug[col][col]
        aug[col] = [v / p for v in aug[col]]
        for r in range(n):
            if r != col and aug[r][col] != 0:
                f = aug[r][col]
                aug[r] = [a - f * b for a, b in zip(aug[r], aug[col])]
    return np.array([[float(v) for v in row[n:]] for row in aug])


#: (M^-1)[i, j]: coefficient of boundary value b_j in polynomial coefficient a_{i+1}
CODE4_MATRIX_INV = _exact_inverse()


def _xp_of(*arrays):
    for a in arrays:
        if type(a).__module__.startswith("jax"):
            import jax.numpy as jnp

            return jnp
    return np


def code4_poly_weights(alpha, xp=np):
    """c_j(alpha) = sum_i alpha^(i+1) (M^-1)_{ij}; returns a list of 6 arrays shaped like alpha."""
    powers = [alpha ** (i + 1) for i in range(6)]
    minv = CODE4_MATRIX_INV
    return [sum(powers[i] * minv[i, j] for i in range(6)) for j in range(6)]


def code4_dweights(alpha):
    """d c_j / d alpha of :func:`code4_poly_weights` (list of 6)."""
    powers = [(i + 1) * alpha**i for i in range(6)]
    return [sum(powers[i] * CODE4_MATRIX_INV[i, j] for i in range(6)) for j in range(6)]


def code4_d2weights(alpha):
    """d^2 c_j / d alpha^2 of :func:`code4_poly_weights` (list of 6)."""
    powers = {i: (i + 1) * i * alpha ** (i - 1) for i in range(1, 6)}  # d2/da2 of alpha^(i+1)
    return [sum(powers[i] * CODE4_MATRIX_INV[i, j] for i in powers) for j in range(6)]


def code4_poly_factor(c, log_up, log_down, up, down, derivative: bool = False):
    """Polynomial branch (``|alpha| <= 1``) of the code-4 factor from the weights ``c``.

    ``(1 - c0 - c1) + up (c0 + u (c2 + c4 u)) + down (c1 + d (c5 d - c3))`` with
    ``u = log_up``, ``d = log_down``, ``up = exp(u)``, ``down = exp(d)`` (passed precomputed;
    the per-event kernels store them). ``c`` is :func:`code4_poly_weights` for the factor;
    with ``derivative=True`` and :func:`code4_dweights` / :func:`code4_d2weights` it is the
    first / second derivative in alpha (constant term ``-c0 - c1``). Elementwise, numpy or
    JAX. This is the only place the polynomial is written.
    """
    const = (-c[0] - c[1]) if derivative else (1.0 - c[0] - c[1])
    return const + up * (c[0] + log_up * (c[2] + c[4] * log_up)) + down * (c[1] + log_down * (c[5] * log_down - c[3]))


def code4_coefficients(kappa_up, kappa_down):
    """Polynomial coefficients a_1..a_6 (last axis) for given kappas (numpy)."""
    ku = np.asarray(kappa_up, dtype=float)
    kd = np.asarray(kappa_down, dtype=float)
    u, d = np.log(ku), np.log(kd)
    b = np.stack([ku - 1, kd - 1, ku * u, -kd * d, ku * u * u, kd * d * d], axis=-1)
    return b @ CODE4_MATRIX_INV.T


def _by_branch(alpha, parts, xp):
    """Select, for each (polynomial, above, below) triple of ``parts``, the branch of ``alpha``:
    above for alpha > 1, below for alpha < -1, the polynomial inside (the knots included)."""
    return tuple(xp.where(alpha > 1.0, hi, xp.where(alpha < -1.0, lo, poly)) for poly, hi, lo in parts)


def _code4_orders(alpha, log_up, log_down, up, down, xp, order: int):
    """The code-4 factor and its derivatives in alpha up to ``order`` (0-2): the polynomial
    from :func:`code4_poly_factor`, the exponential branches ``kappa^alpha`` in closed form."""
    hi = xp.exp(alpha * log_up)
    lo = xp.exp(-alpha * log_down)
    parts = [(code4_poly_factor(code4_poly_weights(alpha, xp), log_up, log_down, up, down), hi, lo)]
    if order >= 1:
        d1 = code4_poly_factor(code4_dweights(alpha), log_up, log_down, up, down, derivative=True)
        parts.append((d1, log_up * hi, -log_down * lo))
    if order >= 2:
        d2 = code4_poly_factor(code4_d2weights(alpha), log_up, log_down, up, down, derivative=True)
        parts.append((d2, log_up * log_up * hi, log_down * log_down * lo))
    return _by_branch(alpha, parts, xp)


def code4_from_logs(alpha, log_up, log_down, up=None, down=None, xp=None):
    """Code-4 factor given ln(kappa_up), ln(kappa_down) (elementwise, broadcasting).

    ``up``/``down`` may be passed as precomputed ``exp(log_up)``/``exp(log_down)``.
    All three branches are evaluated and selected with ``where`` (use
    :mod:`nsbi.model.kernels` for the per-event, branch-selected version).
    """
    xp = xp or _xp_of(alpha, log_up, log_down)
    up = xp.exp(log_up) if up is None else up
    down = xp.exp(log_down) if down is None else down
    return _code4_orders(alpha, log_up, log_down, up, down, xp, 0)[0]


def code4_from_logs_derivatives(alpha, log_up, log_down, xp=None):
    """:func:`code4_from_logs` and its first and second derivatives in ``alpha`` (elementwise):
    the polynomial branch from :func:`code4_dweights` / :func:`code4_d2weights`, the
    exponential branches ``kappa^alpha`` differentiated in closed form. Returns (f, f', f'')."""
    xp = xp or _xp_of(alpha, log_up, log_down)
    return _code4_orders(alpha, log_up, log_down, xp.exp(log_up), xp.exp(log_down), xp, 2)


def code4(alpha, kappa_up, kappa_down, xp=None):
    """Code-4 multiplicative factor for kappa_up = hi/nom, kappa_down = lo/nom (> 0)."""
    xp = xp or _xp_of(alpha, kappa_up, kappa_down)
    return code4_from_logs(alpha, xp.log(kappa_up), xp.log(kappa_down), kappa_up, kappa_down, xp=xp)


def _code4p_orders(alpha, delta_up, delta_down, xp, order: int):
    """The code-4p shift and its derivatives in alpha up to ``order`` (0-2): the polynomial
    ``alpha s + a alpha^2 (15 - 10 alpha^2 + 3 alpha^4)`` inside, linear outside."""
    s = 0.5 * (delta_up + delta_down)
    a = 0.0625 * (delta_up - delta_down)
    a2 = alpha * alpha
    parts = [(alpha * s + a * a2 * (15.0 + a2 * (-10.0 + 3.0 * a2)), alpha * delta_up, alpha * delta_down)]
    if order >= 1:
        parts.append((s + a * alpha * (30.0 + a2 * (-40.0 + 18.0 * a2)), delta_up, delta_down))
    if order >= 2:
        parts.append((a * (30.0 + a2 * (-120.0 + 90.0 * a2)), 0.0, 0.0))
    return _by_branch(alpha, parts, xp)


def code4p_delta(alpha, delta_up, delta_down, xp=None):
    """Code-4p additive shift; delta_up = up - nom, delta_down = nom - down."""
    xp = xp or _xp_of(alpha, delta_up, delta_down)
    return _code4p_orders(alpha, delta_up, delta_down, xp, 0)[0]


def code4p_delta_derivatives(alpha, delta_up, delta_down, xp=None):
    """:func:`code4p_delta` and its first and second derivatives in ``alpha`` (elementwise, in
    closed form: the polynomial inside ``|alpha| <= 1``, linear outside). Returns (delta,
    d delta / d alpha, d2 delta / d alpha2)."""
    xp = xp or _xp_of(alpha, delta_up, delta_down)
    return _code4p_orders(alpha, delta_up, delta_down, xp, 2)


def code4p(alpha, nominal, up, down, xp=None):
    """Interpolated histogram nominal + code-4p shift."""
    xp = xp or _xp_of(alpha, nominal, up, down)
    return nominal + code4p_delta(alpha, up - nominal, nominal - down, xp=xp)


def code4_mean_nodes(log_g, weights, nodes: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Compress the weighted distribution of ln g into at most ``nodes`` weighted points.

    Events are sorted by ln g and cut into bins: half of the edges at quantiles of equal
    |weight|, half evenly spaced in ln g (so the sparse tails, which dominate E[g^alpha] for
    large |alpha|, are resolved too); each bin becomes one node with probability p_b = (sum of its weights) / (total weight) and value
    ln(sum_bin w g / sum_bin w), so that sum_b p_b e^{node_b} = E[g] *exactly* (the mean of
    the factor at the knot). Bins whose weight or weighted g is not positive (negative event
    weights) are merged into the next one. Returns (node values, probabilities).
    """
    lg = np.asarray(log_g, dtype=float).ravel()
    w = np.asarray(weights, dtype=float).ravel()
    if lg.shape != w.shape:
        raise ValueError("log_g and weights must have the same length")
    if not np.all(np.isfinite(lg)):
        raise ValueError("non-finite ln g values")
    total = float(w.sum())
    if not total > 0:
        raise ValueError("the weights must have a positive sum")
    order = np.argsort(lg, kind="stable")
    lg, w = lg[order], w[order]
    cum = np.cumsum(np.abs(w))
    mid = (cum - 0.5 * np.abs(w)) / cum[-1]
    nq = max(1, nodes // 2)
    q_edges = lg[np.searchsorted(mid, np.arange(1, nq) / nq)] if len(lg) > 1 else np.zeros(0)
    u_edges = np.linspace(lg[0], lg[-1], nodes - nq + 1)[1:-1]
    edges = np.unique(np.concatenate([q_edges, u_edges]))
    b = np.searchsorted(edges, lg, side="right")
    nb = len(edges) + 1
    P = np.bincount(b, weights=w, minlength=nb)
    G = np.bincount(b, weights=w * np.exp(lg), minlength=nb)
    used = np.bincount(b, minlength=nb) > 0
    vals, probs = [], []
    accP = accG = 0.0
    for j in np.flatnonzero(used):
        accP += P[j]
        accG += G[j]
        if accP > 0 and accG > 0:
            vals.append(np.log(accG / accP))
            probs.append(accP / total)
            accP = accG = 0.0
    if accP != 0.0 or accG != 0.0:  # leftover (negative) weight: fold it into the last node
        if not probs:
            raise ValueError("no positive weighted bin of ln g")
        P_last = probs[-1] * total + accP
        G_last = np.exp(vals[-1]) * probs[-1] * total + accG
        if not (P_last > 0 and G_last > 0):
            raise ValueError("negative weights dominate the distribution of ln g")
        vals[-1], probs[-1] = np.log(G_last / P_last), P_last / total
    return np.asarray(vals), np.asarray(probs)


def code4_mean(alpha, up_log, up_p, down_log, down_p, xp=None):
    """N(alpha) = E[I(alpha)] of a per-event code-4 factor, from weighted nodes of the
    marginals of ln g_up and ln g_down (see :func:`code4_mean_nodes`; the last axis runs
    over the nodes, the probabilities of each marginal sum to one; padding nodes have p = 0).

    Inside |alpha| <= 1 it is ``(1 - c0 - c1) + sum p_u g_u (c0 + c2 u + c4 u^2)
    + sum p_d g_d (c1 - c3 d + c5 d^2)``, outside ``sum p_u g_u^alpha`` or
    ``sum p_d g_d^(-alpha)``. ``alpha`` broadcasts against the leading axes.
    """
    xp = xp or _xp_of(alpha, up_log, down_log)
    a = alpha[..., None] if hasattr(alpha, "ndim") and alpha.ndim else alpha
    gu, gd = xp.exp(up_log), xp.exp(down_log)
    c = code4_poly_weights(alpha, xp)
    mu = [xp.sum(up_p * gu * up_log**j, axis=-1) for j in range(3)]
    md = [xp.sum(down_p * gd * down_log**j, axis=-1) for j in range(3)]
    poly = (1.0 - c[0] - c[1]) + c[0] * mu[0] + c[2] * mu[1] + c[4] * mu[2] + c[1] * md[0] - c[3] * md[1] + c[5] * md[2]
    # exponential branches, with alpha clipped into them so that autodiff of the unused
    # branch stays finite
    hi = xp.sum(up_p * xp.exp(xp.maximum(a, 1.0) * up_log), axis=-1)
    lo = xp.sum(down_p * xp.exp(-xp.minimum(a, -1.0) * down_log), axis=-1)
    return _by_branch(alpha, [(poly, hi, lo)], xp)[0]
