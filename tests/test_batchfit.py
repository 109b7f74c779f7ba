"""Batched (vmapped) Newton minimiser: agreement with iminuit (nsbi.fit.fit) on toys, bounds and
fixed parameters against the analytic counting-experiment MLE, the iminuit fallback, speed."""

import math
import time

import numpy as np
import pytest
from scipy import stats

from nsbi import batchfit
from nsbi import fit as F
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


def test_batched_agrees_with_iminuit_on_toys(mixed):
    m, gen = mixed
    toys = gen.generate({"mu": 1.2, "a": 0.3, "shp": -0.5, "sh[0]": 1.05}, 64, seed=9, pad_to=[384])
    free = ~m.fixed
    ip = m.poi_index
    r = batchfit.minimize(gen.twice_nll, toys.data(), toys.theta, m.bounds, free, shared=(gen.mc_arrays,))
    xc = toys.theta.copy()
    xc[ip] = 0.7
    fc = free.copy()
    fc[ip] = False
    rc = batchfit.minimize(gen.twice_nll, toys.data(), xc, m.bounds, fc, shared=(gen.mc_arrays,))
    assert r.converged.all() and rc.converged.all() and r.n_fallback == 0
    # a sample of toys with iminuit on the same (jitted) objective ...
    for i in range(4, 16):
        v, x, ok = batchfit._iminuit_one(
            gen.twice_nll, batchfit.take(toys.data(), i), (gen.mc_arrays,), toys.theta, m.bounds, free, tolerance=1e-7
        )
        assert ok and r.twice_nll[i] == pytest.approx(v, abs=1e-6)
        np.testing.assert_allclose(r.values[i], x, atol=1e-4)
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
    r = batchfit.minimize(
        gen.twice_nll, toys.data(), toys.theta, m.bounds, ~m.fixed, shared=(gen.mc_arrays,), max_iter=max_iter
    )
    mu_hat, nll = _analytic_min(n)
    ok = n > 0  # n = 0: mu_hat = 0 and -2 ln L = 2 b (the formula covers it, kept for clarity)
    # batched Newton: ~1e-7; iminuit fallback (max_iter=1): MIGRAD precision (EDM ~ 2e-9)
    tol_mu, tol_nll = (1e-6, 1e-8) if max_iter > 1 else (1e-4, 1e-7)
    np.testing.assert_allclose(r.values[ok, 0], mu_hat[ok], atol=tol_mu)
    np.testing.assert_allclose(r.twice_nll[ok], nll[ok], atol=tol_nll)
    assert np.all(r.values[:, 0] >= 0.0)
    if max_iter == 1:
        assert r.n_fallback > 0 and r.n_failed == 0
        assert r.fallback.sum() == r.n_fallback
    else:
        assert r.n_fallback == 0


def test_toys_per_second_batched_vs_sequential(mixed, capsys):
    m, gen = mixed
    toys = gen.generate({"mu": 1.0}, 256, seed=2, pad_to=[384])
    args = (gen.twice_nll, toys.data(), toys.theta, m.bounds, ~m.fixed)
    batchfit.minimize(*args, shared=(gen.mc_arrays,), batch_size=64)  # compile (if not done yet)
    t0 = time.perf_counter()
    r = batchfit.minimize(*args, shared=(gen.mc_arrays,), batch_size=64)
    tb = time.perf_counter() - t0
    # sequential: iminuit per toy on the same (jitted) objective, i.e. the fallback path
    nseq = 10
    batchfit._iminuit_one(
        gen.twice_nll, batchfit.take(toys.data(), 0), (gen.mc_arrays,), toys.theta, m.bounds, ~m.fixed
    )
    t0 = time.perf_counter()
    seq = [
        batchfit._iminuit_one(
            gen.twice_nll, batchfit.take(toys.data(), i), (gen.mc_arrays,), toys.theta, m.bounds, ~m.fixed
        )
        for i in range(nseq)
    ]
    ts = time.perf_counter() - t0
    # sequential with nsbi.fit.fit on a Model per toy (includes building/compiling each Model)
    t0 = time.perf_counter()
    for i in range(3):
        F.fit(gen.model_for(toys, i), hesse=False)
    tf = time.perf_counter() - t0
    for i in range(nseq):
        assert seq[i][0] == pytest.approx(r.twice_nll[i], abs=1e-5)
    with capsys.disabled():
        print(
            f"\n[toys/s] batched Newton: {len(toys) / tb:.0f}; sequential iminuit (jitted objective): "
            f"{nseq / ts:.1f}; nsbi.fit.fit on a Model per toy: {3 / tf:.2f}"
        )
