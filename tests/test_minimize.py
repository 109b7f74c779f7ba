"""nsbi.minimize: the projected Newton step and convergence rule (shared by numpy and JAX), the
single and the batched (vmapped) path on the same problems, held parameters at a bound, the
MIGRAD fallback, and the batched path against iminuit / nsbi.fit.fit on toys and against the
analytic counting-experiment MLE."""

import math
import time

import numpy as np
import pytest
from scipy import stats

from nsbi import fit as F
from nsbi import minimize as M
from nsbi.jax_setup import jax, jnp
from nsbi.minimize import core as NW
from nsbi.model import Model
from nsbi.toys import ToyGenerator

LAM, M0, SW, HI = 0.3, 5.0, 0.5, 10.0
ZB = 1 - math.exp(-LAM * HI)
ZS = stats.norm.cdf(HI, M0, SW) - stats.norm.cdf(0.0, M0, SW)


def _events(n, seed):
    rng = np.random.default_rng(seed)
    x = -np.log(1 - rng.uniform(size=n) * ZB) / LAM
    lr = np.log(stats.norm.pdf(x, M0, SW) / ZS) - np.log(LAM * np.exp(-LAM * x) / ZB)
    # a normalised per-event shape systematic on B: g_up/down = exp(+-0.05 (x - <x>))
    xm = np.mean(x)
    return {
        "weight": np.ones(n),
        "logr_S": lr,
        "logr_B": np.zeros(n),
        "logr_B__shp_up": 0.05 * (x - xm),
        "logr_B__shp_down": -0.05 * (x - xm),
    }


@pytest.fixture(scope="module")
def mixed():
    return mixed_model()


def mixed_model():
    ev = _events(20000, 1)
    spec = {
        "channels": [
            {
                "name": "u",
                "type": "unbinned",
                "samples": [
                    {
                        "name": "S",
                        "yield": 40.0,
                        "morphing": "mu",
                        "modifiers": [{"name": "a", "type": "normsys", "data": {"hi": 1.1, "lo": 0.92}}],
                    },
                    {"name": "B", "yield": 200.0, "modifiers": [{"name": "shp", "type": "eventsys"}]},
                ],
            },
            {
                "name": "c",
                "type": "binned",
                "samples": [
                    {
                        "name": "b",
                        "data": [30.0, 20.0],
                        "modifiers": [{"name": "sh", "type": "shapesys", "data": [3.0, 4.0]}],
                    },
                    {
                        "name": "s",
                        "data": [5.0, 8.0],
                        "morphing": "mu",
                        "modifiers": [{"name": "a", "type": "normsys", "data": {"hi": 1.1, "lo": 0.92}}],
                    },
                ],
            },
        ]
    }
    meas = {"name": "m", "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [[-2.0, 5.0]]}]}}
    m = Model(spec, {"u": {k: v[:100] for k, v in ev.items()}, "c": [33, 25]}, meas)
    return m, ToyGenerator(m, {"u": ev})


def _migrad_one(gen, toys, i, x0, bounds, free, tolerance=1e-6):
    o = M.entry_objective(gen.twice_nll, M.take(toys.data(), i), (gen.mc_arrays,))
    return M.migrad(o.value_and_grad, x0, bounds, free, tolerance=tolerance)


# --- the step and the convergence rule ------------------------------------------------------


def _quadratic(n=4, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n))
    H = A @ A.T + n * np.eye(n)
    return H, rng.normal(size=n)


@pytest.mark.parametrize("xp", [np, jnp], ids=["numpy", "jax"])
def test_edm_rule_and_held_parameters(xp):
    """EDM = g^T H^-1 g / 2 over the free, non-held parameters; converged iff H is positive
    definite there and EDM < edm_max; a parameter on its bound with the gradient pointing
    outwards is held (no step, not in the EDM); an indefinite H is never converged."""
    H, g = _quadratic()
    lo, hi = -np.ones(4), np.ones(4)
    x = np.array([0.1, -0.2, 0.3, -1.0])  # parameter 3 on its lower bound
    free = np.array([True, True, False, True])  # parameter 2 fixed
    for g3, held in ((0.5, True), (-0.5, False)):  # outward (held) / inward gradient
        gg = g.copy()
        gg[3] = g3
        act = free & ~np.array([False, False, False, held])
        ref_step = np.zeros(4)
        ref_step[act] = -np.linalg.solve(H[np.ix_(act, act)], gg[act])
        edm = 0.5 * gg[act] @ np.linalg.solve(H[np.ix_(act, act)], gg[act])
        args = [xp.asarray(a) for a in (x, gg, H, lo, hi, free)]
        s = NW.newton_step(xp, *args, edm_max=edm * 1.001, max_step_sigma=1e9)
        assert float(s.edm) == pytest.approx(edm, rel=1e-12) and bool(s.converged)
        assert int(s.n_held) == int(held)
        np.testing.assert_allclose(np.asarray(s.step), ref_step, rtol=1e-12, atol=1e-15)
        assert not bool(NW.newton_step(xp, *args, edm_max=edm * 0.999).converged)
        # the trust region: no parameter moves by more than MAX_STEP_SIGMA local errors
        sig = np.zeros(4)
        sig[act] = np.sqrt(2 * np.diag(np.linalg.inv(H[np.ix_(act, act)])))
        s1 = NW.newton_step(xp, *args, edm_max=0.0, max_step_sigma=1e-3)
        r = np.abs(np.asarray(s1.step))[act] / sig[act]
        assert r.max() == pytest.approx(1e-3, rel=1e-12)
        np.testing.assert_allclose(np.asarray(s1.step), ref_step * 1e-3 / (np.abs(ref_step[act]) / sig[act]).max())
    Hi = H.copy()
    Hi[0, 0] = -5.0
    s = NW.newton_step(xp, *[xp.asarray(a) for a in (x, g, Hi, lo, hi, np.ones(4, bool))], edm_max=1e300)
    assert not bool(s.converged) and math.isinf(float(s.edm))
    assert float(xp.asarray(g) @ s.step) < 0  # |eigenvalue| step: a descent direction


def test_numpy_and_jax_steps_identical():
    """The step logic is written once: numpy and jax.numpy give the same step on random
    (also indefinite) problems, with held and fixed parameters."""
    rng = np.random.default_rng(5)
    for k in range(20):
        n = 5
        A = rng.normal(size=(n, n))
        H = A @ A.T + (0.5 * n if k % 2 else -1.0) * np.eye(n)
        g, x = rng.normal(size=n), rng.uniform(-1, 1, n)
        x[k % n] = -1.0
        lo, hi = -np.ones(n), np.ones(n)
        free = rng.uniform(size=n) > 0.2
        a = NW.newton_step(np, x, g, H, lo, hi, free, 1e-3)
        b = NW.newton_step(jnp, *[jnp.asarray(v) for v in (x, g, H, lo, hi, free)], 1e-3)
        np.testing.assert_allclose(np.asarray(b.step), a.step, rtol=1e-9, atol=1e-12)
        assert bool(b.converged) == bool(a.converged) and int(b.n_held) == int(a.n_held)
        assert (math.isinf(a.edm) and math.isinf(float(b.edm))) or float(b.edm) == pytest.approx(a.edm, rel=1e-9)


def _binned(mu_lo=0.0):
    spec = {
        "channels": [
            {
                "name": "c",
                "type": "binned",
                "samples": [
                    {
                        "name": "s",
                        "data": [6.0, 10.0, 4.0],
                        "modifiers": [
                            {"name": "mu", "type": "normfactor", "data": None},
                            {"name": "a", "type": "normsys", "data": {"hi": 1.1, "lo": 0.92}},
                        ],
                    },
                    {
                        "name": "b",
                        "data": [30.0, 20.0, 25.0],
                        "modifiers": [{"name": "sh", "type": "shapesys", "data": [3.0, 4.0, 2.0]}],
                    },
                ],
            }
        ]
    }
    meas = {"name": "m", "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [[mu_lo, 4.0]]}]}}
    return Model(spec, {"c": [33, 25, 30]}, meas)


def test_single_and_batched_agree():
    """The numpy driver and the vmapped JAX loop run the same iteration: on the same toy
    objective (autodiff value, gradient, Hessian) they reach the same point to ~1e-8 with the
    same number of iterations and the same outcome (held at the bound where mu_hat < 0), free
    and with the POI fixed; nsbi.fit.fit(minimizer="newton") on the Model of the toy agrees too."""
    m = _binned()
    gen = ToyGenerator(m)
    toys = gen.generate({"mu": 0.3, "a": 0.5}, 12, seed=3)
    x0 = toys.theta + np.array([1.5, -1.0, 0.1, -0.1, 0.05])  # a few iterations, trust region at work
    tol = 2e-6  # = 0.002 x the default fit tolerance 1e-3
    f = jax.jit(lambda p, d: gen.twice_nll(p, d, gen.mc_arrays))
    vg, hs = jax.jit(jax.value_and_grad(f)), jax.jit(jax.hessian(f))
    n_held = 0
    for free in (~m.fixed, ~m.fixed & (np.arange(m.npars) != m.poi_index)):
        rb = M.minimize_batch(gen.twice_nll, toys.data(), x0, m.bounds, free, (gen.mc_arrays,), tol=tol, polish=False)
        assert rb.converged.all() and rb.n_fallback == 0
        for i in range(len(toys)):
            d = M.take(toys.data(), i)

            def vgh(x, d=d):
                v, g = vg(jnp.asarray(x), d)
                return float(v), np.asarray(g), np.asarray(hs(jnp.asarray(x), d))

            rs = M.newton(vgh, lambda x, d=d: float(f(jnp.asarray(x), d)), x0, m.bounds, free, tol)
            assert rs.converged and rs.n_iter == rb.n_iter[i] and rs.message == rb.message[i]
            np.testing.assert_allclose(rs.values, rb.values[i], rtol=0, atol=1e-8)
            assert rs.twice_nll == pytest.approx(rb.twice_nll[i], rel=0, abs=1e-8)
            assert rs.edm == pytest.approx(rb.edm[i], rel=1e-6, abs=1e-12)
            n_held += rs.message == "converged (1 held at a bound)"
            if i < 2:
                fixed = None if free[m.poi_index] else {"mu": float(x0[m.poi_index])}
                r = F.fit(gen.model_for(toys, i), init=x0, fixed=fixed, minimizer="newton")
                assert r.status["minimizer"] == "newton" and r.status["iterations"] == rs.n_iter
                np.testing.assert_allclose(r.values, rb.values[i], rtol=0, atol=1e-8)
                assert r.twice_nll == pytest.approx(rb.twice_nll[i], rel=0, abs=1e-8)
        assert rb.n_iter.max() > 2
    assert n_held > 0


# --- the batched path on toys ---------------------------------------------------------------


@pytest.mark.parametrize("one_pass", [True, False], ids=["one-pass", "autodiff"])
def test_batched_agrees_with_iminuit_on_toys(mixed, one_pass):
    """Batched Newton (value, gradient and Hessian from the one-pass kernels, as the Neyman
    chunks use, or from plain autodiff) vs MIGRAD on the same toys."""
    m, gen = mixed
    toys = gen.generate({"mu": 1.2, "a": 0.3, "shp": -0.5, "sh[0]": 1.05}, 64, seed=9, pad_to=[384])
    free = ~m.fixed
    ip = m.poi_index
    kw = {"shared": (gen.mc_arrays,), "vgh": gen.twice_nll_vgh if one_pass else None}
    r = M.minimize_batch(gen.twice_nll, toys.data(), toys.theta, m.bounds, free, **kw)
    xc = toys.theta.copy()
    xc[ip] = 0.7
    fc = free.copy()
    fc[ip] = False
    rc = M.minimize_batch(gen.twice_nll, toys.data(), xc, m.bounds, fc, **kw)
    assert r.converged.all() and rc.converged.all() and r.n_fallback == 0
    assert set(r.method) == {"newton"} and r.summary()["n_failed"] == 0
    # a sample of toys with iminuit on the same (jitted) objective ...
    for i in range(4, 16):
        mi = _migrad_one(gen, toys, i, toys.theta, m.bounds, free, tolerance=1e-7)
        assert mi.converged and r.twice_nll[i] == pytest.approx(mi.twice_nll, abs=1e-6)
        np.testing.assert_allclose(r.values[i], mi.values, atol=1e-4)
    # ... and a few with nsbi.fit.fit on an ordinary Model built from the toy (independent path)
    for i in range(2):
        mi = gen.model_for(toys, i)
        ref = F.fit(mi, init=toys.theta, tolerance=1e-7, strategy=2, hesse=False)
        assert r.twice_nll[i] == pytest.approx(ref.twice_nll, abs=1e-6)
        np.testing.assert_allclose(r.values[i], ref.values, atol=1e-4)
        refc = F.fit(mi, init=xc, fixed={"mu": 0.7}, tolerance=1e-7, strategy=2, hesse=False)
        assert rc.twice_nll[i] == pytest.approx(refc.twice_nll, abs=1e-6)
        np.testing.assert_allclose(rc.values[i], refc.values, atol=1e-4)
        assert rc.values[i][ip] == 0.7
        assert r.twice_nll[i] <= ref.twice_nll + 1e-6  # never worse than MIGRAD


def _counting(s=10.0, b=20.0, lo=0.0, hi=3.0):
    spec = {
        "channels": [
            {
                "name": "c",
                "type": "binned",
                "samples": [
                    {"name": "s", "data": [s], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
                    {"name": "b", "data": [b], "modifiers": []},
                ],
            }
        ]
    }
    meas = {"name": "m", "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [[lo, hi]]}]}}
    return Model(spec, {"c": [25]}, meas)


def _analytic_min(n, s=10.0, b=20.0, lo=0.0, hi=3.0):
    mu = np.clip((n - b) / s, lo, hi)
    return mu, -2 * stats.poisson.logpmf(n, s * mu + b)


@pytest.mark.parametrize("max_iter", [50, 1])
def test_bounds_against_analytic_and_fallback(max_iter):
    m = _counting()
    gen = ToyGenerator(m)
    toys = gen.generate({"mu": 0.3}, 300, seed=4)
    n = toys.binned[:, 0]
    assert np.any((n - 20) / 10 < 0) and np.any((n - 20) / 10 > 0)  # bound active for some toys
    r = M.minimize_batch(
        gen.twice_nll,
        toys.data(),
        toys.theta,
        m.bounds,
        ~m.fixed,
        shared=(gen.mc_arrays,),
        max_iter=max_iter,
        hessian=True,
    )
    mu_hat, nll = _analytic_min(n)
    # the exact Hessian at each end point (Newton's own, recomputed after a fallback):
    # d2(-2 ln L)/dmu2 = 2 n s^2 / (s mu + b)^2
    lam = 10.0 * r.values[:, 0] + 20.0
    np.testing.assert_allclose(r.hessian[:, 0, 0], 2 * n * 100.0 / lam**2, rtol=1e-10)
    assert r.entry(3).hessian[0, 0] == r.hessian[3, 0, 0]
    ok = n > 0  # n = 0: mu_hat = 0 and -2 ln L = 2 b (the formula covers it, kept for clarity)
    # batched Newton: ~1e-7; iminuit fallback (max_iter=1): MIGRAD precision (EDM ~ 2e-9)
    tol_mu, tol_nll = (1e-6, 1e-8) if max_iter > 1 else (1e-4, 1e-7)
    np.testing.assert_allclose(r.values[ok, 0], mu_hat[ok], atol=tol_mu)
    np.testing.assert_allclose(r.twice_nll[ok], nll[ok], atol=tol_nll)
    assert np.all(r.values[:, 0] >= 0.0)
    below = (n - 20) / 10 < 0
    if max_iter == 1:
        assert r.n_fallback > 0 and r.n_failed == 0
        assert r.fallback.sum() == r.n_fallback
        # the fallback is reported per entry, with Newton's reason
        for t in np.flatnonzero(r.fallback):
            assert r.method[t] == "migrad (newton fallback)"
            assert r.message[t].startswith("no convergence in 1 iterations")
    else:
        assert r.n_fallback == 0
        # held at the bound, with the gradient pointing outwards, where mu_hat < 0
        assert np.all(r.values[below, 0] == 0.0)
        assert all(r.message[t] == "converged (1 held at a bound)" for t in np.flatnonzero(below))
        assert all(r.message[t] == "converged" for t in np.flatnonzero(n > 21))


def test_single_path_fallback_and_nonfinite_start():
    """The single path with too few iterations falls back to MIGRAD and says so; a start
    where -2 ln L is not finite gives NaN after one evaluation, in the batched path too."""
    m = _counting()
    o = M.Objective.from_model(m)
    r = M.minimize(o, [2.9], m.bounds, max_iter=1)
    assert r.method == "migrad (newton fallback)" and r.converged
    assert r.info["newton_reason"] == "no convergence in 1 iterations" and r.info["iterations"] == 1
    assert r.values[0] == pytest.approx(0.5, abs=1e-3)
    r0 = M.minimize(o, [2.9], m.bounds)
    assert r0.method == "newton" and r0.converged and r0.n_iter > 1
    assert r0.values[0] == pytest.approx(0.5, abs=1e-4)
    # -2 ln L = NaN at the start: no iteration, no MIGRAD
    bad = M.Objective(
        value=lambda x: float("nan"),
        value_and_grad=lambda x: (float("nan"), np.full(1, np.nan)),
        value_grad_hessian=lambda x: (float("nan"), np.full(1, np.nan), np.full((1, 1), np.nan)),
    )
    for method in ("newton", "migrad"):
        rb = M.minimize(bad, [1.0], [(0.0, 3.0)], method=method)
        assert not rb.converged and math.isnan(rb.twice_nll) and rb.n_calls == 1 and "not finite" in rb.message
    gen = ToyGenerator(m)
    toys = gen.generate({"mu": 0.3}, 4, seed=1)

    def nan_nll(p, d, *sh):
        return jnp.where(p[0] > 2.5, jnp.nan, 1.0) * gen.twice_nll(p, d, *sh)

    rn = M.minimize_batch(nan_nll, toys.data(), [2.8], m.bounds, ~m.fixed, (gen.mc_arrays,))
    assert rn.n_fallback == 4 and rn.n_failed == 4 and np.all(np.isnan(rn.twice_nll))
    assert all("non-finite" in msg for msg in rn.message)


def test_toys_per_second_batched_vs_sequential(mixed, capsys):
    m, gen = mixed
    toys = gen.generate({"mu": 1.0}, 256, seed=2, pad_to=[384])
    args = (gen.twice_nll, toys.data(), toys.theta, m.bounds, ~m.fixed)
    M.minimize_batch(*args, shared=(gen.mc_arrays,), batch_size=64)  # compile (if not done yet)
    t0 = time.perf_counter()
    r = M.minimize_batch(*args, shared=(gen.mc_arrays,), batch_size=64)
    tb = time.perf_counter() - t0
    # sequential: iminuit per toy on the same (jitted) objective, i.e. the fallback path
    nseq = 10
    _migrad_one(gen, toys, 0, toys.theta, m.bounds, ~m.fixed)
    t0 = time.perf_counter()
    seq = [_migrad_one(gen, toys, i, toys.theta, m.bounds, ~m.fixed) for i in range(nseq)]
    ts = time.perf_counter() - t0
    # sequential with nsbi.fit.fit on a Model per toy (includes building/compiling each Model)
    t0 = time.perf_counter()
    for i in range(3):
        F.fit(gen.model_for(toys, i), hesse=False)
    tf = time.perf_counter() - t0
    for i in range(nseq):
        assert seq[i].twice_nll == pytest.approx(r.twice_nll[i], abs=1e-5)
    with capsys.disabled():
        print(
            f"\n[toys/s] batched Newton: {len(toys) / tb:.0f}; sequential iminuit (jitted objective): "
            f"{nseq / ts:.1f}; nsbi.fit.fit on a Model per toy: {3 / tf:.2f}"
        )
