"""Single minimisation: projected Newton with the MIGRAD fallback, or MIGRAD alone."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .core import newton
from .migrad import migrad
from .result import MinimizeResult

__all__ = ["Objective", "edm_max_of", "fallback", "minimize", "nonfinite_result"]

NONFINITE_REASON = "-2lnL not finite at the start point (model density <= 0 for some events?)"


def edm_max_of(tolerance: float) -> float:
    """MIGRAD's convergence criterion for ``errordef = 1``: EDM < 0.002 x tolerance."""
    return 0.002 * float(tolerance)


@dataclass
class Objective:
    """``-2 ln L`` over the full parameter vector: value, value+gradient, and optionally the
    Hessian and the one-pass value+gradient+Hessian (needed by Newton)."""

    value: Callable
    value_and_grad: Callable
    hessian: Callable | None = None
    value_grad_hessian: Callable | None = None

    @classmethod
    def from_model(cls, model) -> Objective:
        def vgh(x):
            v, g, H = model.twice_nll_grad_hessian(x)
            return float(v), np.asarray(g), np.asarray(H)

        return cls(model.twice_nll, model.twice_nll_and_grad, model.hessian, vgh)


def nonfinite_result(x, method: str, info: dict | None = None) -> MinimizeResult:
    """-2 ln L is not finite at the start point (typically: the model density S(x|theta) <= 0
    for some events, e.g. learned ratios with a negative morphing coefficient at large mu).
    No minimiser can start there: NaN, not converged, after one likelihood evaluation."""
    return MinimizeResult(
        values=np.asarray(x, float),
        twice_nll=float("nan"),
        converged=False,
        edm=float("nan"),
        n_iter=0,
        n_calls=1,
        n_grad=0,
        method=method,
        message=NONFINITE_REASON,
        info={**(info or {}), "reason": NONFINITE_REASON},
    )


def _newton_info(nr: MinimizeResult) -> dict:
    return {"iterations": nr.n_iter, "nvgh": nr.info.get("nvgh", nr.n_grad), "newton_reason": nr.message}


def fallback(objective: Objective, nr: MinimizeResult, x0, bounds, free, **migrad_kw) -> MinimizeResult:
    """What follows a Newton minimisation that did not converge: NaN where the likelihood is
    not finite at the start, else MIGRAD from the point Newton reached (with the initial step
    sizes of ``x0``). ``result.info`` keeps Newton's iterations, passes and reason."""
    info = _newton_info(nr)
    if nr.n_iter == 0 and not np.isfinite(nr.twice_nll):
        return nonfinite_result(x0, "newton", info)
    r = migrad(objective.value_and_grad, nr.values, bounds, free, step_start=x0, **migrad_kw)
    r.method = "migrad (newton fallback)"
    r.info = {**info, **r.info}
    return r


def minimize(
    objective: Objective,
    x0,
    bounds,
    free=None,
    *,
    method: str = "newton",
    tolerance: float = 0.001,
    strategy: int = 1,
    max_iter: int = 30,
    use_grad: bool = True,
    use_hessian: bool = False,
    hesse: bool = False,
    minos: Sequence[str] = (),
    names: Sequence[str] | None = None,
) -> MinimizeResult:
    """Minimise ``-2 ln L`` from ``x0`` within ``bounds`` over the ``free`` parameters.

    ``method="newton"``: :func:`nsbi.minimize.core.newton` with the convergence rule
    EDM < 0.002 x ``tolerance`` (MIGRAD's) on a positive-definite Hessian of the active
    parameters; when it does not converge, :func:`fallback` (MIGRAD + optional HESSE and
    MINOS; a converged Newton result has no MINOS errors). ``method="migrad"``: :func:`nsbi.minimize.migrad.migrad` (``use_hessian``: seed it
    with the exact Hessian; ``hesse``, ``minos``). Both return NaN without iterating when
    ``-2 ln L`` is not finite at the start. All parameters fixed: the value at ``x0``.
    """
    x0 = np.array(x0, dtype=float)
    free = np.ones(x0.shape[0], bool) if free is None else np.asarray(free, bool)
    if not free.any():
        return MinimizeResult(
            values=x0,
            twice_nll=float(objective.value(x0)),
            converged=True,
            edm=0.0,
            n_iter=0,
            n_calls=1,
            n_grad=0,
            method="none",
            message="every parameter fixed",
            hesse_failed=False,
        )
    kw = {
        "hessian": objective.hessian if use_hessian else None,
        "names": names,
        "tolerance": tolerance,
        "strategy": strategy,
        "use_grad": use_grad,
        "hesse": hesse,
        "minos": minos,
    }
    if method == "newton":
        nr = newton(objective.value_grad_hessian, objective.value, x0, bounds, free, edm_max_of(tolerance), max_iter)
        if nr.converged:
            lo, hi = np.asarray(bounds, float).reshape(-1, 2).T
            v = nr.values
            nr.at_limit = bool(np.any(free & ((v - lo < 1e-8 * (1 + np.abs(lo))) | (hi - v < 1e-8 * (1 + np.abs(hi))))))
            nr.accurate, nr.hesse_failed = True, False
            nr.info = _newton_info(nr)
            return nr
        return fallback(objective, nr, x0, bounds, free, **kw)
    if method != "migrad":
        raise ValueError(f"method must be 'newton' or 'migrad', got {method!r}")
    # the start check with the value+gradient MIGRAD compiles anyway (a value-only function
    # would be one more compilation, ~0.2 s of a cold command-line fit)
    if not np.isfinite(objective.value_and_grad(x0)[0]):
        return nonfinite_result(x0, "migrad")
    return migrad(objective.value_and_grad, x0, bounds, free, **kw)
