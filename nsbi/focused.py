"""The focused test statistic: the likelihood at the tested POI value against its average over
a focus density, instead of its maximum (arXiv:2507.17831).

For one POI ``mu`` (nuisance parameters ``nu`` profiled everywhere)::

    t_f(mu) = -2 ln [ L(mu, nu_hat(mu)) / integral L(m, nu_hat(m)) f(m) dm ]

The denominator does not depend on the tested ``mu``: it is one number per dataset, the
profile likelihood averaged over the focus density ``f`` (:class:`FocusDensity`: a Gaussian
around the values the analysis cares most about, or uniform over a range). Tests built on
``t_f`` have the most power against alternatives where ``f`` puts its weight; the Neyman
construction (:mod:`nsbi.neyman`, :mod:`nsbi.learned_critical`) is the same as for the
likelihood ratio, but there is no asymptotic (Wilks) distribution, and ``t_f`` can be negative.

The integral is a Gauss-Legendre sum over ``nodes`` points (:meth:`FocusDensity.quadrature`)
of the part of ``f``'s support where the integrand is not negligible (found from the free
fit's Hessian, :meth:`FocusDensity.window`): one conditional fit per node and
dataset, so a toy costs ``nodes + 1`` fits instead of the likelihood ratio's 2.

For a Gaussian measurement ``x ~ N(mu, 1)`` and ``f = N(mu0, tau^2)`` the statistic is
``k (x - mu - d / tau^2)^2 - d^2 / tau^2 - ln(1 + tau^2)`` with ``d = mu - mu0`` and
``k = tau^2 / (1 + tau^2)``: the acceptance region at ``mu`` is an interval in ``x`` centred at
``mu + d / tau^2``, shifted away from the focus, with a noncentral chi2 half-width (the tests
check the construction against it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
from scipy import special, stats

__all__ = ["DEFAULT_NODES", "WINDOW", "FocusDensity", "focused_t", "log_marginal"]

#: Gauss-Legendre nodes of the focused statistic's integral (each a conditional fit per toy):
#: over the window below, -2 ln of a Gaussian likelihood's integral is exact to about 1e-7
DEFAULT_NODES = 24
#: :meth:`FocusDensity.quadrature` integrates over the POI values where the integrand is
#: within exp(-WINDOW**2 / 2) of its maximum (WINDOW standard deviations of a Gaussian likelihood)
WINDOW = 6.0
#: a Gaussian focus density is cut at its mean +- this many standard deviations (and at the
#: POI's bounds); what lies beyond is 2e-9 of its mass
GAUSS_CUT = 6.0


@dataclass(frozen=True)
class FocusDensity:
    """The focus density of :func:`focused_t` over the POI, normalised on ``[low, high]``:
    ``kind="gaussian"`` (``mean``, ``sigma``; cut at :data:`GAUSS_CUT` sigma and at the POI's
    bounds) or ``"uniform"`` (on ``[low, high]``); ``nodes`` Gauss-Legendre points."""

    kind: str
    low: float
    high: float
    mean: float | None = None
    sigma: float | None = None
    nodes: int = DEFAULT_NODES

    def __post_init__(self):
        if self.kind not in ("gaussian", "uniform"):
            raise ValueError(f"focus density: kind must be 'gaussian' or 'uniform', got {self.kind!r}")
        if self.kind == "gaussian" and not (self.sigma is not None and self.sigma > 0 and self.mean is not None):
            raise ValueError("focus density: a Gaussian needs a mean and a positive sigma")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"focus density: the support [{self.low}, {self.high}] is empty or not finite")
        if int(self.nodes) < 2:
            raise ValueError(f"focus density: need at least 2 nodes, got {self.nodes}")

    @classmethod
    def from_config(cls, spec: Mapping, bounds) -> FocusDensity:
        """From the config's ``validation.focus`` (``density``, ``mean``/``sigma`` or ``low``/
        ``high``, ``nodes``) and the POI's ``bounds``; errors name the key."""
        lo_b, hi_b = (float(b) for b in bounds)
        kind = spec.get("density", "gaussian")
        nodes = int(spec.get("nodes", DEFAULT_NODES))
        try:
            if kind == "gaussian":
                missing = [k for k in ("mean", "sigma") if k not in spec]
                if missing:
                    raise ValueError(f"a Gaussian focus density needs {missing} (a mean and a positive sigma)")
                mean, sigma = float(spec["mean"]), float(spec["sigma"])
                lo, hi = max(lo_b, mean - GAUSS_CUT * sigma), min(hi_b, mean + GAUSS_CUT * sigma)
                return cls("gaussian", lo, hi, mean, sigma, nodes)
            lo, hi = float(spec.get("low", lo_b)), float(spec.get("high", hi_b))
            if lo < lo_b or hi > hi_b:
                raise ValueError(f"the range [{lo}, {hi}] leaves the POI's bounds [{lo_b}, {hi_b}]")
            return cls(kind, lo, hi, None, None, nodes)
        except ValueError as err:
            raise ValueError(f"validation.focus: {err}") from err

    def to_dict(self) -> dict:
        return asdict(self)

    def log_pdf(self, mu) -> np.ndarray:
        """ln f(mu), normalised on ``[low, high]`` (``-inf`` outside)."""
        mu = np.asarray(mu, float)
        inside = (mu >= self.low) & (mu <= self.high)
        if self.kind == "uniform":
            val = np.full(mu.shape, -math.log(self.high - self.low))
        else:
            norm = stats.norm.cdf(self.high, self.mean, self.sigma) - stats.norm.cdf(self.low, self.mean, self.sigma)
            val = stats.norm.logpdf(mu, self.mean, self.sigma) - math.log(norm)
        return np.where(inside, val, -np.inf)

    def window(self, log_like: Callable[[np.ndarray], np.ndarray], points: int = 513) -> tuple[np.ndarray, np.ndarray]:
        """Where the integrand ``L f`` lives, per dataset: the part of ``[low, high]`` where
        ``ln L + ln f`` is within ``WINDOW**2 / 2`` of its maximum, from an approximation of
        ``ln L``: ``log_like(mu)`` maps POI values (T, G) to (T, G) (e.g. the quadratic form
        of the free fit's Hessian; NaN rows are taken as flat). Found on a grid of ``points``
        values, refined once on a grid over the first window; returns ``(lo, hi)``, (T,)."""
        lo = np.full(1, float(self.low))
        hi = np.full(1, float(self.high))
        u = np.linspace(0.0, 1.0, int(points))
        for _ in range(2):
            grid = lo[:, None] + (hi - lo)[:, None] * u
            ll = np.asarray(log_like(grid), float)
            grid = np.broadcast_to(grid, ll.shape)
            ll = np.where(np.all(np.isfinite(ll), axis=-1, keepdims=True), ll, 0.0)
            g = ll + self.log_pdf(grid)
            keep = g >= np.max(g, axis=-1, keepdims=True) - 0.5 * WINDOW**2
            first = np.argmax(keep, axis=-1)
            last = keep.shape[-1] - 1 - np.argmax(keep[:, ::-1], axis=-1)
            rows = np.arange(len(grid))
            lo = grid[rows, np.maximum(first - 1, 0)]
            hi = grid[rows, np.minimum(last + 1, keep.shape[-1] - 1)]
        return lo, hi

    def quadrature(self, log_like: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Nodes ``mu_k`` and log weights ``ln(w_k f(mu_k))`` with ``sum_k w_k f(mu_k) g(mu_k)``
        approximating ``integral f(m) g(m) dm`` (Gauss-Legendre).

        Without ``log_like``: on ``[low, high]``, shape (K,); accurate only where the likelihood
        ``g`` is wide against the node spacing. With ``log_like`` (an approximation of ``ln g``
        per dataset, see :meth:`window`): on each dataset's :meth:`window`, shape (T, K), so
        that a likelihood much narrower than the focus, or one whose maximum lies outside
        ``[low, high]``, is still resolved."""
        x, w = np.polynomial.legendre.leggauss(int(self.nodes))
        if log_like is None:
            a, b = np.float64(self.low), np.float64(self.high)
        else:
            a, b = self.window(log_like)
            a, b = a[:, None], b[:, None]
        half = 0.5 * (b - a)
        mu = a + half * (x + 1.0)
        return mu, np.log(w * half) + self.log_pdf(mu)


def log_marginal(twice_nll_nodes, log_weights) -> np.ndarray:
    """``-2 ln sum_k w_k f(mu_k) L_k`` from the profiled ``-2 ln L_k`` at the nodes (last axis)
    and :meth:`FocusDensity.quadrature`'s log weights: the denominator of :func:`focused_t`."""
    a = -0.5 * np.asarray(twice_nll_nodes, float) + np.asarray(log_weights, float)
    return -2.0 * special.logsumexp(a, axis=-1)


def focused_t(twice_nll_at_mu, twice_nll_nodes, log_weights) -> np.ndarray:
    """``t_f(mu)`` from the profiled ``-2 ln L`` at the tested ``mu`` and at the nodes."""
    return np.asarray(twice_nll_at_mu, float) - log_marginal(twice_nll_nodes, log_weights)
