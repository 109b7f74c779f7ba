"""Result of a minimisation (one fit) and its batched form (many fits, arrays)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["BatchMinimizeResult", "MinimizeResult"]


@dataclass
class MinimizeResult:
    """One minimisation of ``-2 ln L``.

    ``values`` is the full parameter vector (fixed parameters included). ``converged``: the
    convergence rule of :mod:`nsbi.minimize` (projected Newton) or MIGRAD's ``valid`` flag.
    ``method``: ``"newton"``, ``"migrad"``, ``"migrad (newton fallback)"`` or ``"none"`` (every
    parameter fixed). ``n_calls``: likelihood passes of any kind (value, value+gradient or
    value+gradient+Hessian); ``n_grad``: those with a gradient. ``hessian`` (full, or ``None``)
    is the exact Hessian at ``values`` where the minimiser computed it (Newton);
    ``errors``/``covariance`` (full, zero for fixed parameters) are MIGRAD's or HESSE's.
    ``info``: method-specific entries copied into ``nsbi.fit.FitResult.status``.
    """

    values: np.ndarray
    twice_nll: float
    converged: bool
    edm: float
    n_iter: int
    n_calls: int
    n_grad: int
    method: str
    message: str
    at_limit: bool = False
    accurate: bool = False
    hesse_failed: bool = True
    hessian: np.ndarray | None = None
    errors: np.ndarray | None = None
    covariance: np.ndarray | None = None
    minos: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    minuit: Any = field(default=None, repr=False)

    @property
    def finite(self) -> bool:
        return bool(np.isfinite(self.twice_nll))


@dataclass
class BatchMinimizeResult:
    """Many minimisations (leading axis T), e.g. pseudo-experiments: the fields of
    :class:`MinimizeResult` as arrays, plus which entries the batched Newton left to the MIGRAD
    fallback. ``converged``: batched Newton or its fallback converged."""

    twice_nll: np.ndarray  # (T,)
    values: np.ndarray  # (T, npars)
    converged: np.ndarray  # (T,) bool
    n_iter: np.ndarray  # (T,) Newton iterations
    edm: np.ndarray  # (T,) final EDM (MIGRAD's for fallbacks)
    n_calls: np.ndarray  # (T,) likelihood passes of the batched Newton (+ the fallback's)
    method: list[str]  # (T,) "newton" or "migrad (newton fallback)"
    message: list[str]  # (T,) Newton's reason (and the fallback's outcome)
    fallback: np.ndarray  # (T,) bool: not converged by the batched Newton
    n_fallback: int
    n_failed: int
    hessian: np.ndarray | None = None  # (T, npars, npars) exact Hessian at ``values`` (if asked for)

    def __len__(self) -> int:
        return len(self.twice_nll)

    def entry(self, t: int) -> MinimizeResult:
        return MinimizeResult(
            values=self.values[t].copy(),
            twice_nll=float(self.twice_nll[t]),
            converged=bool(self.converged[t]),
            edm=float(self.edm[t]),
            n_iter=int(self.n_iter[t]),
            n_calls=int(self.n_calls[t]),
            n_grad=int(self.n_calls[t]),
            method=self.method[t],
            message=self.message[t],
            hessian=None if self.hessian is None else self.hessian[t].copy(),
        )

    def summary(self) -> dict:
        return {
            "n": len(self.twice_nll),
            "n_fallback": int(self.n_fallback),
            "n_failed": int(self.n_failed),
            "max_iter_used": int(self.n_iter.max()) if len(self.n_iter) else 0,
        }
