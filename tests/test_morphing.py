"""Polynomial-basis morphing: derived coefficients against the simulator's exact density and
a two-parameter quadratic basis."""

import numpy as np
import pytest

from nsbi.expr import parse
from nsbi.morphing import MorphingError, coefficients_from_points
from nsbi.simulate.generate import generate
from nsbi.simulate.oracle import Oracle


def _values(coeffs, ns):
    return {k: float(np.asarray(parse(v).evaluate(ns))) for k, v in coeffs.items()}


def test_interference_morphing_reproduces_the_exact_density():
    """gg -> ZZ: dsigma(x|mu) = mu S + sqrt(mu) I + B. Samples at mu = 0, 1, 4 morph to any mu,
    event by event, to the simulator's exact density."""
    events = generate("SBI", 2000, seed=11)
    points = {"mu0": 0.0, "mu1": 1.0, "mu4": 4.0}
    coeffs = coefficients_from_points(["mu", "sqrt(mu)", "1"], points, "mu")
    at = {name: Oracle.dsigma("SBI", events, mu=value) for name, value in points.items()}
    for mu in (0.0, 0.25, 1.0, 1.7, 3.0):
        f = _values(coeffs, {"mu": mu})
        morphed = sum(f[n] * at[n] for n in points)
        np.testing.assert_allclose(morphed, Oracle.dsigma("SBI", events, mu=mu), rtol=1e-10)
    # at a sampled point the coefficients are the unit vector
    f = _values(coeffs, {"mu": 4.0})
    assert f == pytest.approx({"mu0": 0.0, "mu1": 0.0, "mu4": 1.0}, abs=1e-12)


def test_two_parameter_quadratic_basis():
    """|k1 A1 + k2 A2|^2 = k1^2 T1 + k1 k2 T12 + k2^2 T2: three points (k1, k2) determine it."""
    pts = {"a": {"k1": 1.0, "k2": 0.0}, "b": {"k1": 0.0, "k2": 1.0}, "c": {"k1": 1.0, "k2": 1.0}}
    coeffs = coefficients_from_points(["k1**2", "k1*k2", "k2**2"], pts, ["k1", "k2"])
    T1, T12, T2 = 3.0, -1.2, 0.7
    sigma = lambda k1, k2: k1**2 * T1 + k1 * k2 * T12 + k2**2 * T2  # noqa: E731
    for k1, k2 in ((0.5, 2.0), (-1.0, 0.3), (1.5, 1.5)):
        f = _values(coeffs, {"k1": k1, "k2": k2})
        assert sum(f[n] * sigma(**p) for n, p in pts.items()) == pytest.approx(sigma(k1, k2), rel=1e-12)
    with pytest.raises(MorphingError, match="lacks parameter"):
        coefficients_from_points(["k1", "k2"], {"a": {"k1": 1.0}, "b": {"k1": 0.0, "k2": 1.0}}, ["k1", "k2"])
    with pytest.raises(MorphingError, match="do not determine"):  # (1,1) and (2,2) are collinear for k1, k2
        coefficients_from_points(["k1", "k2"], {"a": {"k1": 1.0, "k2": 1.0}, "b": {"k1": 2.0, "k2": 2.0}}, ["k1", "k2"])
