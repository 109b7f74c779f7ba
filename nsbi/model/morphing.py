"""Morphing coefficients of samples: ``"morphing": "<expression>"`` of model parameters.

A sample may carry an :mod:`nsbi.expr` expression (e.g. ``mu - sqrt(mu)``) that multiplies its
yield. :class:`MorphingCoefficients` parses each distinct expression once and evaluates it in
JAX with :func:`sqrt_finite` in place of ``sqrt``.

Square-root coordinates: the interference morphing ``mu - sqrt(mu)``, ``sqrt(mu)``,
``1 - sqrt(mu)`` has an infinite slope in ``mu`` at ``mu = 0``, so a Newton fit near the bound
takes steps from a derivative that does not exist. In ``kappa = sqrt(mu)`` the same
coefficients are the polynomials ``kappa**2 - kappa``, ``kappa``, ``1 - kappa``. With
``MorphingCoefficients(sqrt_params={"mu"})`` the parameter vector holds ``kappa`` for ``mu``:
the expressions see ``mu`` as ``kappa**2`` and ``sqrt(mu)`` as ``kappa`` itself, so their
derivatives are exact at ``kappa = 0`` (:class:`_Squared`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from nsbi.expr import parse

from .arrays import jax, jnp

__all__ = ["MORPH_XP", "MorphingCoefficients", "sqrt_finite"]


@functools.cache
def _sqrt_with_finite_slope():
    """The JAX function behind :func:`sqrt_finite`, made on first use (JAX imported then)."""

    @jax.custom_jvp
    def f(x):
        return jnp.sqrt(x)

    @f.defjvp
    def _jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        safe = jnp.where(x > 1e-200, x, 1e-200)
        # the primal through f again, so that higher derivatives use this rule as well
        return f(x), t * (0.5 / f(safe))

    return f


def sqrt_finite(x):
    """sqrt with a finite derivative at 0 (0.5/sqrt(1e-200) = 5e99 instead of inf), JAX.

    Morphing coefficients such as mu - sqrt(mu) are not differentiable at mu = 0. With the
    exact derivative, forward-mode autodiff (Hessians, Jacobians) multiplies inf by the zero
    tangent of every *other* parameter and the whole Hessian becomes NaN, e.g. in a profile
    scan at the fixed point mu = 0. The large finite slope keeps those products 0 and still
    points the way for a free mu at its bound."""
    return _sqrt_with_finite_slope()(x)


class _Squared:
    """A parameter ``x`` held as its square root ``root`` (``x = root**2``, ``root >= 0``):
    ``sqrt(x)`` is ``root`` itself (exact derivative at 0), every other use sees ``root**2``."""

    __slots__ = ("root",)

    def __init__(self, root):
        self.root = root

    @property
    def value(self):
        return self.root * self.root


def _plain(v):
    return v.value if isinstance(v, _Squared) else v


def _binary(op):
    return lambda a, b: op(_plain(a), _plain(b))


for _name, _op in {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "truediv": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}.items():
    setattr(_Squared, f"__{_name}__", _binary(_op))
    if _name in ("add", "sub", "mul", "truediv", "pow"):
        setattr(_Squared, f"__r{_name}__", _binary(lambda a, b, _op=_op: _op(b, a)))
_Squared.__neg__ = lambda self: -self.value
_Squared.__pos__ = lambda self: self.value


def _sqrt(x):
    return x.root if isinstance(x, _Squared) else sqrt_finite(x)


class _MorphNamespace:
    """``jax.numpy`` for morphing expressions, with :func:`sqrt_finite` as ``sqrt`` (and the
    root itself for a parameter held as its square root)."""

    sqrt = staticmethod(_sqrt)

    def __getattr__(self, name):
        f = getattr(jnp, name)
        return lambda *args, **kw: f(*(_plain(a) for a in args), **kw)


#: array namespace the morphing expressions are evaluated with
MORPH_XP = _MorphNamespace()


class MorphingCoefficients:
    """The parsed morphing expressions of a model (one parse per distinct expression).

    ``sqrt_params``: parameters whose entry of the parameter vector is their square root (see
    the module docstring)."""

    def __init__(self, sqrt_params=()) -> None:
        self.expressions: dict[str, Any] = {}
        self.sqrt_params = frozenset(sqrt_params)

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
        ns.update({n: _Squared(ns[n]) for n in self.sqrt_params & e.names})
        return _plain(e.evaluate(ns, xp=MORPH_XP))

    def uses_sqrt_of(self, name: str) -> bool:
        """Whether some expression takes ``sqrt(name)`` of the bare parameter ``name``."""
        return any(name in e.call_arguments("sqrt") for e in self.expressions.values())
