"""Statistical model: binned (HistFactory/pyhf semantics) + extended unbinned NSBI channels.

The objective is ``-2 ln L`` (``twice_nll``), as in pyhf, so Minuit uses ``errordef = 1``.

Binned channels reproduce ``pyhf.Model.logpdf`` (continuous Poisson via ``lgamma``, Gaussian
and Poisson constraint terms with their constants) for the modifiers ``normfactor``,
``normsys`` (code 4), ``histosys`` (code 4p), ``staterror``, ``shapesys``, ``lumi`` and
``shapefactor``; a sample may additionally carry a morphing coefficient ``"morphing":
"<expression>"`` (an :mod:`nsbi.expr` expression of model parameters) that multiplies it.

Unbinned channels implement

    -ln L = nu_tot(theta) - sum_i w_i ln( sum_c f_c(mu) nu_c G_c(alpha) r_c(x_i) prod_k g_ck(x_i, alpha_k) )

where ``r_c = p_c / p_ref`` and ``g_ck`` are the per-event shape ratios at +-1 sigma
(interpolated per event with code 4), ``G_c`` the code-4 yield factors (``normsys``),
``normfactor``/``lumi`` multiply ``nu_c`` as in the binned case. The term
``-sum_i w_i ln p_ref(x_i)`` is theta-independent and dropped, so unbinned ``-2 ln L``
values are defined up to a constant (differences are exact).

The shape ratios ``g`` are assumed to describe *normalised* shape changes: the yield effect
of a systematic belongs to its ``normsys`` (same name => same nuisance parameter).

Shape normalisation: E_c[g_ck(alpha)] = 1 holds at the knots alpha = 0, +-1 only; the
interpolated per-event factor changes the integral of the density elsewhere (for large
per-event variations by percents within |alpha| <= 1 and by factors beyond), so the Poisson
term and the per-event term would disagree about the yield and the fit would pull alpha
to trade one against the other. An ``eventsys`` modifier may therefore carry
``data.norm`` (weighted nodes of the distributions of ln g_up / ln g_down under p_c, written
by the workspace builder, see :func:`nsbi.model.interpolation.code4_mean_nodes`); the per-event
term then uses y_c / prod_k N_ck(alpha_k) with N_ck(alpha) = E_c[g_ck(alpha)], which keeps
each factor normalised for every alpha, while the Poisson term keeps nu_c G_c(alpha). The
product over k is normalised up to the correlations of different systematics' factors.

The package, one concept per module:

* :mod:`~nsbi.model.likelihood` -- :class:`Model`, the compiled -2 ln L (value, gradient,
  exact Hessian) and its public views (constraints, binned rows, unbinned channels, data);
* :mod:`~nsbi.model.parameters` -- :class:`ParameterSet`, the registry, :class:`ConstraintTerms`;
* :mod:`~nsbi.model.modifiers` -- modifier types, their parameters, the ``normsys`` factors;
* :mod:`~nsbi.model.binned` -- binned HistFactory channels (rates, Poisson term);
* :mod:`~nsbi.model.unbinned` -- :class:`UnbinnedChannel` (event arrays, yields, shape
  normalisation) and :func:`event_columns`;
* :mod:`~nsbi.model.kernels` -- the one-pass event kernels (value+gradient with a custom VJP,
  exact Hessian);
* :mod:`~nsbi.model.interpolation` -- code 4 / code 4p, their derivatives in closed form and
  the mean of a per-event code-4 factor (numpy or JAX; importing it loads no JAX);
* :mod:`~nsbi.model.arrays` -- the array namespaces (numpy, or JAX imported on first use) and
  the scatter operations written for both;
* :mod:`~nsbi.model.morphing` -- morphing coefficients and the sqrt with a finite derivative.

Backends: the binned terms and the constraints are written once over an array namespace. A
pure HistFactory model (binned channels without morphing coefficients: every pyhf workspace)
is evaluated with numpy (:attr:`Model.backend`), so that a one-off fit of a published
likelihood imports, traces and compiles no JAX; everything else, and every vmapped
pseudo-experiment, runs compiled JAX programs built from the same functions.

Public API: :class:`Model` -- numpy entry points ``twice_nll``, ``twice_nll_and_grad``,
``hessian`` (exact, one pass over the events), ``hessian_autodiff`` (reference),
``twice_nll_grad_hessian``, ``expected_binned``, ``index``; pure JAX ``twice_nll_jax(p, data)``
and ``twice_nll_with`` / ``value_grad_hessian_with`` (replaceable observations, for vmapped
toys: value, or value, gradient and exact Hessian in one pass) with the event arrays
``model.data``; read-only views ``constraints`` (:class:`ConstraintTerms`), ``binned_samples``,
``binned_observations``, ``binned_offsets``, ``nbins``, ``unbinned_terms``
(:class:`UnbinnedChannel`), ``n_unbinned_events``; the parameter layout ``parsets``,
``par_slices``, ``par_names``, ``init``, ``bounds``, ``fixed``, ``constrained``, ``auxdata``,
``poi_index``, ``backend``. Names with a leading underscore are internal: ``tests/test_model_api.py`` fails
when code outside ``nsbi/model/`` uses them.

The names below are imported on first use, so ``nsbi.model.interpolation`` (used by the
workspace builder) can be imported without JAX.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .errors import ModelError
    from .likelihood import Model
    from .modifiers import BINNED_MODIFIERS, UNBINNED_MODIFIERS
    from .parameters import ConstraintTerms, ParameterSet
    from .unbinned import UnbinnedChannel, event_columns

_EXPORTS = {
    "Model": "likelihood",
    "ModelError": "errors",
    "ParameterSet": "parameters",
    "ConstraintTerms": "parameters",
    "UnbinnedChannel": "unbinned",
    "event_columns": "unbinned",
    "BINNED_MODIFIERS": "modifiers",
    "UNBINNED_MODIFIERS": "modifiers",
}

__all__ = [
    "BINNED_MODIFIERS",
    "UNBINNED_MODIFIERS",
    "ConstraintTerms",
    "Model",
    "ModelError",
    "ParameterSet",
    "UnbinnedChannel",
    "event_columns",
]


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
