"""Morphing coefficients of samples: ``"morphing": "<expression>"`` of model parameters.

A sample may carry an :mod:`nsbi.expr` expression (e.g. ``mu - sqrt(mu)``) that multiplies its
yield. :class:`MorphingCoefficients` parses each distinct expression once and evaluates it in
JAX with :func:`sqrt_finite` in place of ``sqrt``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nsbi.expr import parse
from nsbi.jax_setup import jax, jnp

__all__ = ["MORPH_XP", "MorphingCoefficients", "sqrt_finite"]


@jax.custom_jvp
def sqrt_finite(x):
    """sqrt with a finite derivative at 0 (0.5/sqrt(1e-200) = 5e99 instead of inf).

    Morphing coefficients such as mu - sqrt(mu) are not differentiable at mu = 0. With the
    exact derivative, forward-mode autodiff (Hessians, Jacobians) multiplies inf by the zero
    tangent of every *other* parameter and the whole Hessian becomes NaN, e.g. in a profile
    scan at the fixed point mu = 0. The large finite slope keeps those products 0 and still
    points the way for a free mu at its bound."""
    return jnp.sqrt(x)


@sqrt_finite.defjvp
def _sqrt_finite_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    safe = jnp.where(x > 1e-200, x, 1e-200)
    # the primal through sqrt_finite again, so that higher derivatives use this rule as well
    return sqrt_finite(x), t * (0.5 / sqrt_finite(safe))


class _MorphNamespace:
    """``jax.numpy`` for morphing expressions, with :func:`sqrt_finite` as ``sqrt``."""

    sqrt = staticmethod(sqrt_finite)

    def __getattr__(self, name):
        return getattr(jnp, name)


#: array namespace the morphing expressions are evaluated with
MORPH_XP = _MorphNamespace()


class MorphingCoefficients:
    """The parsed morphing expressions of a model (one parse per distinct expression)."""

    def __init__(self) -> None:
        self.expressions: dict[str, Any] = {}

    def register(self, expr) -> list[str]:
        """Parse ``expr`` (once) and return the parameter names it uses, sorted."""
        e = self.expressions.get(expr)
        if e is None:
            e = parse(str(expr))
            self.expressions[expr] = e
        return sorted(e.names)

    def value(self, expr: str | None, p, par_slices: Mapping[str, slice]):
        """The coefficient of ``expr`` at the parameter vector ``p`` (1.0 for ``None``)."""
        if expr is None:
            return 1.0
        e = self.expressions[expr]
        ns = {n: p[par_slices[n].start] for n in e.names}
        return e.evaluate(ns, xp=MORPH_XP)
