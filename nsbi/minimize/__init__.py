"""Minimisation of ``-2 ln L``: one projected Newton method for single fits and batched toys,
one iminuit MIGRAD wrapper, one result type.

* :mod:`nsbi.minimize.core` -- the step and the convergence rule, written once over an array
  namespace (numpy or ``jax.numpy``): parameters on a bound with the gradient pointing outwards
  are held there, the others take the Newton step on the exact Hessian (with |eigenvalues|
  where it is not positive definite), limited to ``MAX_STEP_SIGMA`` = 5 local errors per
  iteration and projected onto the bounds, with a backtracking (Armijo) line search.
  **Converged** when the Hessian of the free, non-held parameters is positive definite and
  EDM = g^T H^-1 g / 2 (in ``-2 ln L`` units) is below the threshold -- unless a parameter sits
  on a bound the gradient points away from (then it is a failure). :func:`newton` is the numpy
  driver (one value+gradient+Hessian pass per iteration, value-only passes in the line search).
* :func:`minimize_batch` -- the same iteration for many entries (pseudo-experiments) under
  ``jax.vmap`` + ``lax.while_loop``, over autodiff of a pure JAX objective or any ``vgh``.
* :func:`migrad` -- MIGRAD (limits, fixed parameters, exact gradient, optional exact Hessian,
  strategy retry, HESSE, MINOS); :func:`fallback` runs it where Newton did not converge, in
  both paths.
* :func:`minimize` -- a single fit (Newton with the fallback, or MIGRAD) on an
  :class:`Objective` (e.g. ``Objective.from_model(model)``).
* :class:`MinimizeResult` / :class:`BatchMinimizeResult` -- the results;
  ``nsbi.fit.FitResult`` is built from a :class:`MinimizeResult`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .core import MAX_STEP_SIGMA, newton, newton_step
from .migrad import migrad
from .result import BatchMinimizeResult, MinimizeResult
from .single import Objective, edm_max_of, fallback, minimize, nonfinite_result

if TYPE_CHECKING:
    from .batched import batch_size_of, entry_hessian, entry_objective, minimize_batch, take

#: the batched driver needs JAX: imported when one of its names is first used, so that a
#: single fit of a numpy-evaluated model (nsbi.model.Model.backend) never imports JAX
_BATCHED = ("batch_size_of", "entry_hessian", "entry_objective", "minimize_batch", "take")


def __getattr__(name: str):
    if name in _BATCHED:
        from . import batched

        value = getattr(batched, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MAX_STEP_SIGMA",
    "BatchMinimizeResult",
    "MinimizeResult",
    "Objective",
    "batch_size_of",
    "edm_max_of",
    "entry_hessian",
    "entry_objective",
    "fallback",
    "migrad",
    "minimize",
    "minimize_batch",
    "newton",
    "newton_step",
    "nonfinite_result",
    "take",
]
