"""Morphing coefficients from a polynomial basis and sampled parameter points.

When the differential cross section is a known polynomial in functions of the parameters,

    dσ(x|θ) = Σ_k a_k(θ) T_k(x)        (e.g. a = (μ, √μ, 1) for signal–background interference),

samples generated at n = len(a) parameter points θ_j span the same space:
dσ(x|θ_j) = Σ_k A_jk T_k(x) with A_jk = a_k(θ_j). Hence

    dσ(x|θ) = Σ_j f_j(θ) dσ(x|θ_j),   f_j(θ) = Σ_k a_k(θ) (A⁻¹)_kj,

so each sample gets a coefficient that is a fixed linear combination of the basis functions.
:func:`coefficients_from_points` returns it as an expression string (parsed safely like any
other morphing coefficient), so the workspace and the likelihood need nothing new.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .expr import parse

__all__ = ["MorphingError", "basis_matrix", "coefficients_from_points"]


class MorphingError(ValueError):
    pass


def _point(value, params: Sequence[str]) -> dict[str, float]:
    if isinstance(value, Mapping):
        missing = [p for p in params if p not in value]
        if missing:
            raise MorphingError(f"point {dict(value)} lacks parameter(s) {', '.join(missing)}")
        return {p: float(value[p]) for p in params}
    if len(params) != 1:
        raise MorphingError(f"a bare number {value!r} needs exactly one parameter, have {list(params)}")
    return {params[0]: float(value)}


def basis_matrix(functions: Sequence[str], points: Sequence, params: Sequence[str]) -> np.ndarray:
    """A_jk = a_k(θ_j) for basis functions ``functions`` (expressions of ``params``)."""
    exprs = [parse(str(f), allowed_names=set(params)) for f in functions]
    rows = []
    for pt in points:
        ns = _point(pt, params)
        rows.append([float(np.asarray(e.evaluate(ns), dtype=float)) for e in exprs])
    return np.array(rows, dtype=float)


def coefficients_from_points(
    functions: Sequence[str], points: Mapping[str, object], params: Sequence[str] | str, rcond: float = 1e-10
) -> dict[str, str]:
    """Morphing coefficient expression f_j(θ) for every sample of ``points``
    (sample -> parameter value, or {parameter: value} for several parameters).

    Raises :class:`MorphingError` if the number of samples differs from the number of basis
    functions or the points do not determine the basis (singular or ill-conditioned A).
    """
    params = [params] if isinstance(params, str) else list(params)
    names = list(points)
    if len(names) != len(functions):
        raise MorphingError(f"{len(functions)} basis function(s) need as many sampled points, got {len(names)}")
    A = basis_matrix(functions, [points[n] for n in names], params)
    if not np.all(np.isfinite(A)):
        raise MorphingError("a basis function is not finite at a sampled point")
    s = np.linalg.svd(A, compute_uv=False)
    if s[-1] <= rcond * s[0]:
        raise MorphingError(
            f"the sampled points do not determine the basis (condition number {s[0] / max(s[-1], 1e-300):.3g})"
        )
    inv = np.linalg.inv(A)  # (k, j)
    out = {}
    for j, name in enumerate(names):
        terms = []
        for k, f in enumerate(functions):
            c = float(inv[k, j])
            if abs(c) > 1e-12 * np.max(np.abs(inv)):
                terms.append(f"({c!r}) * ({f})")
        out[name] = " + ".join(terms) if terms else "0"
    return out
