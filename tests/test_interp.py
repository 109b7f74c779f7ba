"""HistFactory code 4 / code 4p interpolation against independent computations."""

import math

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

from nsbi.model.interpolation import code4, code4_coefficients, code4_poly_factor, code4_poly_weights, code4p  # noqa: E402

KAPPAS = [(1.3, 0.8), (1.05, 0.97), (0.9, 1.2), (2.0, 0.3)]


def _independent_poly(ku, kd):
    """Solve the 6 boundary conditions directly with numpy (independent of the module)."""
    A, b = [], []
    lu, ld = math.log(ku), math.log(kd)
    for x, val, d1, d2 in ((1.0, ku - 1, ku * lu, ku * lu**2), (-1.0, kd - 1, -kd * ld, kd * ld**2)):
        A.append([x**i for i in range(1, 7)])
        b.append(val)
        A.append([i * x ** (i - 1) for i in range(1, 7)])
        b.append(d1)
        A.append([i * (i - 1) * x ** (i - 2) for i in range(1, 7)])
        b.append(d2)
    return np.linalg.solve(np.array(A), np.array(b))


@pytest.mark.parametrize("ku,kd", KAPPAS)
def test_code4_values(ku, kd):
    a = _independent_poly(ku, kd)
    np.testing.assert_allclose(code4_coefficients(ku, kd), a, rtol=1e-12, atol=1e-14)
    for alpha in np.linspace(-0.99, 0.99, 11):
        expected = 1 + sum(a[i] * alpha ** (i + 1) for i in range(6))
        assert code4(alpha, ku, kd) == pytest.approx(expected, rel=1e-13)
    for alpha in (1.0, 1.5, 3.0):
        assert code4(alpha, ku, kd) == pytest.approx(ku**alpha, rel=1e-13)
    for alpha in (-1.0, -1.5, -3.0):
        assert code4(alpha, ku, kd) == pytest.approx(kd ** (-alpha), rel=1e-13)
    assert code4(0.0, ku, kd) == 1.0


@pytest.mark.parametrize("ku,kd", KAPPAS)
def test_code4_smooth_at_boundaries(ku, kd):
    """Value, first and second derivative (jax.grad) agree between the branches at +-1."""
    lu, ld = math.log(ku), math.log(kd)

    def poly(a):
        return code4_poly_factor(code4_poly_weights(a, jnp), lu, ld, ku, kd)

    def hi(a):
        return jnp.exp(a * lu)

    def lo(a):
        return jnp.exp(-a * ld)

    for x, ext in ((1.0, hi), (-1.0, lo)):
        for f1, f2 in (
            (poly, ext),
            (jax.grad(poly), jax.grad(ext)),
            (jax.grad(jax.grad(poly)), jax.grad(jax.grad(ext))),
        ):
            assert float(f1(x)) == pytest.approx(float(f2(x)), rel=1e-10, abs=1e-12)
    # the full (branch-selecting) function: one-sided derivatives just inside/outside
    f = jax.grad(lambda a: code4(a, jnp.asarray(ku), jnp.asarray(kd)))
    eps = 1e-7
    for x in (1.0, -1.0):
        assert float(f(x - eps)) == pytest.approx(float(f(x + eps)), rel=1e-5)


@pytest.mark.parametrize("ku,kd", KAPPAS)
@pytest.mark.parametrize("alpha", [-1.0, -0.7, 0.0, 0.3, 0.95])
def test_code4_derivative_weights_match_autodiff(ku, kd, alpha):
    """The polynomial with the derivative weights (as the per-event kernels use it) is the
    first and second derivative of the code-4 factor inside |alpha| <= 1."""
    from nsbi.model.interpolation import code4_d2weights, code4_dweights

    lu, ld = math.log(ku), math.log(kd)

    def poly(a):
        return code4_poly_factor(code4_poly_weights(a, jnp), lu, ld, ku, kd)

    a = jnp.asarray(alpha)
    d1 = code4_poly_factor(code4_dweights(a), lu, ld, ku, kd, derivative=True)
    d2 = code4_poly_factor(code4_d2weights(a), lu, ld, ku, kd, derivative=True)
    assert float(d1) == pytest.approx(float(jax.grad(poly)(a)), rel=1e-12, abs=1e-14)
    assert float(d2) == pytest.approx(float(jax.grad(jax.grad(poly))(a)), rel=1e-12, abs=1e-14)
    assert float(poly(a)) == pytest.approx(float(code4(a, jnp.asarray(ku), jnp.asarray(kd))), rel=1e-15)


def test_code4p_formula():
    nom, up, dn = np.array([10.0, 5.0]), np.array([13.0, 5.5]), np.array([8.5, 4.0])
    dp, dm = up - nom, nom - dn
    S, A = (dp + dm) / 2, (dp - dm) / 16
    for alpha in (-2.5, -1.0, -0.4, 0.0, 0.3, 1.0, 1.7):
        if alpha > 1:
            exp = nom + alpha * dp
        elif alpha < -1:
            exp = nom + alpha * dm
        else:
            exp = nom + alpha * S + A * (15 * alpha**2 - 10 * alpha**4 + 3 * alpha**6)
        np.testing.assert_allclose(code4p(alpha, nom, up, dn), exp, rtol=1e-14)
    np.testing.assert_allclose(code4p(1.0, nom, up, dn), up, rtol=1e-14)
    np.testing.assert_allclose(code4p(-1.0, nom, up, dn), dn, rtol=1e-14)


def _events(n=20000, seed=3):
    """Correlated per-event ln g_up / ln g_down with large spread and weights of both signs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    lu = 0.35 * x + 0.05 * rng.normal(size=n)
    ld = -0.3 * x + 0.05 * rng.normal(size=n)
    w = rng.uniform(0.2, 1.0, n) * np.where(rng.uniform(size=n) < 0.03, -0.5, 1.0)
    return lu, ld, w


@pytest.mark.parametrize("alpha", [-3.0, -1.2, -1.0, -0.4, 0.0, 0.3, 1.0, 1.7, 4.0])
def test_code4_mean_equals_event_average(alpha):
    """N(alpha) from all events as nodes equals the weighted mean of the per-event code-4
    factor (brute force); compressed to 256 nodes it stays within 1e-5 for |alpha| <= 2 (1e-4
    beyond, where the sparse tails dominate) and is exact at +-1."""
    from nsbi.model.interpolation import code4_from_logs, code4_mean, code4_mean_nodes

    lu, ld, w = _events()
    brute = np.sum(w * code4_from_logs(np.float64(alpha), lu, ld)) / w.sum()
    exact = code4_mean(np.float64(alpha), lu, w / w.sum(), ld, w / w.sum())
    assert exact == pytest.approx(brute, rel=1e-12)
    nu, pu = code4_mean_nodes(lu, w, 256)
    nd, pd = code4_mean_nodes(ld, w, 256)
    assert len(nu) <= 256 and pu.sum() == pytest.approx(1.0, abs=1e-12)
    comp = code4_mean(np.float64(alpha), nu, pu, nd, pd)
    assert comp == pytest.approx(brute, rel=1e-5 if abs(alpha) <= 2 else 3e-4)
    if abs(alpha) == 1.0:
        assert comp == pytest.approx(brute, rel=1e-12)
    # the factor is far from normalised away from the knots: the test has something to see
    if alpha in (1.7, 4.0, -3.0):
        assert abs(brute / code4_from_logs(np.float64(np.sign(alpha)), lu, ld).dot(w) * w.sum() - 1) > 0.02


def test_code4_mean_is_smooth_at_the_knots():
    """Value, first and second derivative of N(alpha) are continuous at alpha = +-1 (autodiff
    on both sides), so dividing a likelihood by it keeps Newton and MIGRAD happy."""
    from nsbi.model.interpolation import code4_mean, code4_mean_nodes

    lu, ld, w = _events(4000)
    nu, pu = code4_mean_nodes(lu, np.abs(w), 64)
    nd, pd = code4_mean_nodes(ld, np.abs(w), 64)
    f = lambda a: code4_mean(a, jnp.asarray(nu), jnp.asarray(pu), jnp.asarray(nd), jnp.asarray(pd), xp=jnp)  # noqa: E731
    d1, d2 = jax.grad(f), jax.grad(jax.grad(f))
    for knot in (1.0, -1.0):
        lo, hi = knot - 1e-9, knot + 1e-9
        for fun in (f, d1, d2):
            assert float(fun(hi)) == pytest.approx(float(fun(lo)), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("kind", ["code4p", "code4"])
def test_closed_form_derivatives_equal_autodiff(kind):
    """code4p_delta_derivatives / code4_from_logs_derivatives: the value and the first two
    derivatives in alpha equal JAX autodiff of code4p_delta / code4_from_logs, in both
    exponential (linear) branches, inside, and at the knots, with numpy and with JAX."""
    import jax
    import jax.numpy as jnp

    from nsbi.model.interpolation import (
        code4_from_logs,
        code4_from_logs_derivatives,
        code4p_delta,
        code4p_delta_derivatives,
    )

    alpha = np.array([-3.2, -1.0, -0.999, -0.45, 0.0, 0.2, 0.999, 1.0, 1.0001, 2.7])
    # (up, down) pairs: symmetric, asymmetric, one-sided
    pairs = [(0.3, 0.3), (1.7, -0.4), (0.0, 0.9)] if kind == "code4p" else [(0.1, -0.1), (0.4, -0.05), (-0.2, -0.3)]
    for up, dn in pairs:
        if kind == "code4p":

            def f(a, up=up, dn=dn):
                return code4p_delta(a, up, dn, xp=jnp)

            got = code4p_delta_derivatives(alpha, up, dn, xp=np)
            got_jax = code4p_delta_derivatives(jnp.asarray(alpha), up, dn, xp=jnp)
        else:

            def f(a, up=up, dn=dn):
                return code4_from_logs(a, up, dn, xp=jnp)

            got = code4_from_logs_derivatives(alpha, up, dn, xp=np)
            got_jax = code4_from_logs_derivatives(jnp.asarray(alpha), up, dn, xp=jnp)
        ref = [jax.vmap(g)(jnp.asarray(alpha)) for g in (f, jax.grad(f), jax.grad(jax.grad(f)))]
        for k in range(3):
            np.testing.assert_allclose(got[k], np.asarray(ref[k]), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(np.asarray(got_jax[k]), np.asarray(ref[k]), rtol=1e-12, atol=1e-12)
