"""Fits, scans and impacts against analytic answers.

Unbinned model: Gaussian signal on an exponential background on [0, 10] with exact density
ratios r_c = p_c / p_ref (p_ref = p_B). Intervals are compared with the Fisher information
and the Asimov likelihood, both computed independently by numerical integration (scipy.quad).
"""

import math

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from nsbi import fit as F
from nsbi.model import Model

LO, HI = 0.0, 10.0
LAM, M0, SW = 0.3, 5.0, 0.5
NU_S, NU_B, MU0 = 50.0, 1000.0, 1.2
ZB = 1 - math.exp(-LAM * HI)
ZS = stats.norm.cdf(HI, M0, SW) - stats.norm.cdf(LO, M0, SW)


def p_b(x):
    return LAM * np.exp(-LAM * x) / ZB


def p_s(x):
    return stats.norm.pdf(x, M0, SW) / ZS


def _model(x, w):
    ev = {"weight": w, "logr_S": np.log(p_s(x)) - np.log(p_b(x)), "logr_B": np.zeros_like(x)}
    spec = {
        "channels": [
            {
                "name": "u",
                "type": "unbinned",
                "samples": [
                    {"name": "S", "yield": NU_S, "morphing": "mu", "modifiers": []},
                    {"name": "B", "yield": NU_B, "modifiers": []},
                ],
            }
        ]
    }
    return Model(
        spec, {"u": ev}, {"name": "m", "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [[-2.0, 5.0]]}]}}
    )


def _fisher(mu):
    f = lambda x: (NU_S * p_s(x)) ** 2 / (mu * NU_S * p_s(x) + NU_B * p_b(x))  # noqa: E731
    return integrate.quad(f, LO, HI, points=[M0], limit=200)[0]


def _sample_bkg(rng, n):
    u = rng.uniform(size=n)
    return -np.log(1 - u * ZB) / LAM


def test_unbinned_recovers_injected_mu():
    rng = np.random.default_rng(2024)
    nb, ns = rng.poisson(NU_B), rng.poisson(MU0 * NU_S)
    xs = stats.truncnorm.rvs((LO - M0) / SW, (HI - M0) / SW, loc=M0, scale=SW, size=ns, random_state=rng)
    x = np.concatenate([_sample_bkg(rng, nb), xs])
    r = F.fit(_model(x, np.ones_like(x)))
    assert r.status["valid"]
    sigma = 1 / math.sqrt(_fisher(MU0))
    assert abs(r.value("mu") - MU0) < 3 * sigma
    assert r.error("mu") == pytest.approx(sigma, rel=0.15)


def test_asimov_scan_width_matches_fisher_and_quadrature():
    # Asimov = weighted MC: x ~ q = (p_B + p_S)/2, w = lambda(x; mu0) / q(x) / N
    rng = np.random.default_rng(11)
    N = 200_000
    pick = rng.uniform(size=N) < 0.5
    x = np.where(
        pick,
        _sample_bkg(rng, N),
        stats.truncnorm.rvs((LO - M0) / SW, (HI - M0) / SW, loc=M0, scale=SW, size=N, random_state=rng),
    )
    q = 0.5 * (p_b(x) + p_s(x))
    w = (MU0 * NU_S * p_s(x) + NU_B * p_b(x)) / q / N
    model = _model(x, w)
    r = F.fit(model)
    assert r.value("mu") == pytest.approx(MU0, abs=0.02)
    sigma = 1 / math.sqrt(_fisher(MU0))
    assert r.error("mu") == pytest.approx(sigma, rel=0.02)

    s = F.scan(model, np.linspace(MU0 - 2.5 * sigma, MU0 + 2.5 * sigma, 21), best_fit=r)

    # independent Asimov Delta(-2 ln L) by quadrature
    lam0 = lambda t: MU0 * NU_S * p_s(t) + NU_B * p_b(t)  # noqa: E731

    def q2(mu):
        g = lambda t: lam0(t) * math.log((mu * NU_S * p_s(t) + NU_B * p_b(t)) / lam0(t))  # noqa: E731
        return 2 * ((mu - MU0) * NU_S - integrate.quad(g, LO, HI, points=[M0], limit=200)[0])

    for key, level in (("68", 1.0), ("95", 3.841458820694124)):
        lo = optimize.brentq(lambda m, level=level: q2(m) - level, MU0 - 5 * sigma, MU0)
        hi = optimize.brentq(lambda m, level=level: q2(m) - level, MU0, MU0 + 5 * sigma)
        assert s.intervals[key][0] == pytest.approx(lo, abs=0.02 * sigma * 3)
        assert s.intervals[key][1] == pytest.approx(hi, abs=0.02 * sigma * 3)
    half = 0.5 * (s.intervals["68"][1] - s.intervals["68"][0])
    assert half == pytest.approx(sigma, rel=0.03)


def _one_bin(n=30.0):
    spec = {
        "channels": [
            {
                "name": "c",
                "type": "binned",
                "samples": [
                    {
                        "name": "s",
                        "data": [10.0],
                        "modifiers": [
                            {"name": "mu", "type": "normfactor", "data": None},
                            {"name": "a", "type": "normsys", "data": {"hi": 1.2, "lo": 0.9}},
                        ],
                    },
                    {"name": "b", "data": [15.0], "modifiers": []},
                ],
            }
        ]
    }
    return Model(spec, {"c": [n]}, {"name": "m", "config": {"poi": "mu", "parameters": []}})


def test_fit_crossings_impacts_pulls_analytic():
    m = _one_bin()
    r = F.fit(m, minos=True, tolerance=1e-6, strategy=2, errors="exact")
    # one bin + one constraint: alpha_hat = 0, mu_hat = (n - b) / s
    assert r.value("mu") == pytest.approx(1.5, abs=2e-4)
    assert r.value("a") == pytest.approx(0.0, abs=1e-4)
    imp = F.impacts(m, r)
    assert imp[0]["name"] == "a"
    assert imp[0]["prefit_up"] == pytest.approx(15.0 / (10 * 1.2) - 1.5, abs=1e-4)
    assert imp[0]["prefit_down"] == pytest.approx(15.0 / (10 * 0.9) - 1.5, abs=1e-4)
    pl = F.pulls(m, r)
    assert pl["a"]["pull"] == pytest.approx(0.0, abs=1e-4)
    assert pl["a"]["constraint"] == pytest.approx(1.0, abs=1e-3)
    # stat-only scan: Delta(-2lnL) = 2[(lam - n) - n ln(lam/n)], lam = 10 mu + 15
    s = F.scan(m, np.linspace(0.0, 3.5, 36), mode="stat_only", best_fit=r)
    f = lambda mu: 2 * ((10 * mu + 15 - 30) - 30 * math.log((10 * mu + 15) / 30)) - 1.0  # noqa: E731
    lo, hi = optimize.brentq(f, 0.0, 1.5), optimize.brentq(f, 1.5, 3.5)
    assert s.intervals["68"][0] == pytest.approx(lo, abs=2e-3)
    assert s.intervals["68"][1] == pytest.approx(hi, abs=2e-3)
    # with the systematic profiled the interval is wider; MINOS agrees with the profile scan
    sp = F.scan(m, np.linspace(0.0, 3.5, 36), best_fit=r)
    assert sp.intervals["68"][1] - sp.intervals["68"][0] > hi - lo
    assert r.minos["mu"][1] == pytest.approx(sp.intervals["68"][1] - r.value("mu"), abs=5e-3)


def test_fixed_and_bounds_respected():
    m = _one_bin(n=5.0)  # mu_hat would be negative; bound is 0
    r = F.fit(m, fixed={"a": 0.5})
    assert r.value("a") == 0.5 and r.fixed[m.index("a")] and r.error("a") == 0.0
    assert r.value("mu") >= 0.0 and r.value("mu") < 1e-3
    assert r.status["at_limit"]


def test_crossings_linear_fallback():
    x = np.array([0.0, 1.0, 2.0])
    lo, hi = F.crossings(x, np.array([2.0, 0.0, 4.0]), 1.0)
    assert lo == pytest.approx(0.5) and hi == pytest.approx(1.25)


def test_fit_plots(tmp_path):
    from nsbi.plotting.fit_plots import plot_impacts, plot_pulls, plot_scan

    m = _one_bin()
    r = F.fit(m)
    s = F.scan(m, np.linspace(0.3, 3.0, 7), best_fit=r)
    plot_scan([s], tmp_path / "scan.png")
    plot_pulls(F.pulls(m, r), tmp_path / "pulls.png")
    plot_impacts(F.impacts(m, r), tmp_path / "impacts.png")
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("scan.png", "pulls.png", "impacts.png"))
    # the POI is written with its label: the given one, else the label of its name (mu -> Greek)
    assert plot_scan([s], poi_label="$c_W$").axes[0].get_xlabel() == "$c_W$"
    assert plot_scan([s]).axes[0].get_xlabel() == r"$\mu$"
    assert plot_impacts(F.impacts(m, r), poi="mu", poi_label="$c_W$").axes[0].get_xlabel() == r"$\Delta\hat{c_W}$"
    assert plot_impacts(F.impacts(m, r), poi="cw").axes[0].get_xlabel() == r"$\Delta\hat{\mathrm{cw}}$"


def test_exact_hessian_in_minuit_matches_plain_migrad_hesse():
    """Giving Minuit the exact JAX Hessian (fewer likelihood calls) gives the same minimum and
    errors as plain MIGRAD + numerical HESSE, also with a fixed parameter (Minuit then sees
    only the free parameters)."""
    rng = np.random.default_rng(11)
    x = np.concatenate([_sample_bkg(rng, 1000), rng.normal(M0, SW, 60)])
    x = x[(x > LO) & (x < HI)]
    ev = {"weight": np.ones_like(x), "logr_S": np.log(p_s(x)) - np.log(p_b(x)), "logr_B": np.zeros_like(x)}
    spec = {
        "channels": [
            {
                "name": "u",
                "type": "unbinned",
                "samples": [
                    {"name": "S", "yield": NU_S, "morphing": "mu", "modifiers": []},
                    {"name": "B", "yield": NU_B, "modifiers": [{"name": "nb", "type": "normfactor", "data": None}]},
                ],
            }
        ]
    }
    meas = {
        "name": "m",
        "config": {
            "poi": "mu",
            "parameters": [{"name": "mu", "bounds": [[-2.0, 5.0]]}, {"name": "nb", "bounds": [[0.5, 1.5]]}],
        },
    }
    m = Model(spec, {"u": ev}, meas)
    for fixed in (None, {"nb": 1.0}):
        a = F.fit(m, fixed=fixed, use_hessian=True, minimizer="migrad")
        b = F.fit(m, fixed=fixed, use_hessian=False, strategy=2, tolerance=1e-6)
        assert a.status["valid"] and a.twice_nll == pytest.approx(b.twice_nll, abs=1e-6)
        np.testing.assert_allclose(a.values, b.values, atol=2e-4)
        np.testing.assert_allclose(a.errors, b.errors, rtol=2e-3)
        exact = F.fit(m, fixed=fixed, errors="exact")
        # HESSE uses the exact Hessian, transformed to the internal (bounded) coordinates
        np.testing.assert_allclose(a.errors, exact.errors, rtol=3e-3)
        assert a.status["nfcn"] < b.status["nfcn"]
    assert F.fit(m, fixed={"mu": 1.0, "nb": 1.0}).twice_nll == pytest.approx(m.twice_nll(np.array([1.0, 1.0])))


def _two_param_model(seed=11, n_sig=60, mu_bounds=(-2.0, 5.0), morphing="mu"):
    rng = np.random.default_rng(seed)
    x = np.concatenate([_sample_bkg(rng, 1000), rng.normal(M0, SW, n_sig)])
    x = x[(x > LO) & (x < HI)]
    ev = {"weight": np.ones_like(x), "logr_S": np.log(p_s(x)) - np.log(p_b(x)), "logr_B": np.zeros_like(x)}
    spec = {
        "channels": [
            {
                "name": "u",
                "type": "unbinned",
                "samples": [
                    {"name": "S", "yield": NU_S, "morphing": morphing, "modifiers": []},
                    {"name": "B", "yield": NU_B, "modifiers": [{"name": "nb", "type": "normfactor", "data": None}]},
                ],
            }
        ]
    }
    meas = {
        "name": "m",
        "config": {
            "poi": "mu",
            "parameters": [{"name": "mu", "bounds": [list(mu_bounds)]}, {"name": "nb", "bounds": [[0.5, 1.5]]}],
        },
    }
    return Model(spec, {"u": ev}, meas)


def test_newton_minimizer_matches_strict_migrad():
    """The Newton minimiser on the exact Hessian reaches the same minimum as a strict MIGRAD
    (tolerance 1e-6, strategy 2) in a few passes, with errors 2 H^-1 equal to
    ``errors="exact"``; with a fixed parameter too."""
    m = _two_param_model()
    for fixed, init in ((None, None), ({"nb": 1.02}, None), (None, [3.0, 0.8])):
        a = F.fit(m, fixed=fixed, init=init, minimizer="newton")
        b = F.fit(m, fixed=fixed, init=init, minimizer="migrad", use_hessian=False, strategy=2, tolerance=1e-6)
        exact = F.fit(m, fixed=fixed, init=init, minimizer="migrad", errors="exact", strategy=2, tolerance=1e-6)
        assert a.status["minimizer"] == "newton" and a.status["valid"] and a.status["edm"] < 2e-6
        # converged means EDM < 0.002 x tolerance (2e-6 at the default 1e-3), as in MIGRAD
        assert a.twice_nll == pytest.approx(b.twice_nll, abs=a.status["edm"] + 1e-7)
        free = ~a.fixed
        assert np.all(np.abs(a.values[free] - b.values[free]) < 1e-3 * b.errors[free])
        np.testing.assert_allclose(a.errors, exact.errors, rtol=5e-4)
        np.testing.assert_allclose(a.covariance, exact.covariance, rtol=1e-3, atol=1e-12)
        assert a.status["nvgh"] <= 8
        if fixed:
            assert a.value("nb") == 1.02 and a.error("nb") == 0.0


def test_newton_holds_a_parameter_at_its_bound():
    """No signal in the data and mu >= 0: the unconstrained minimum lies outside the bounds.
    The projected Newton holds mu at 0 (gradient pointing outwards) and minimises the rest,
    reaching the minimum of a strict MIGRAD; a start on the bound works too."""
    m = _two_param_model(n_sig=0, mu_bounds=(0.0, 5.0), seed=3)
    free_fit = F.fit(_two_param_model(n_sig=0, mu_bounds=(-5.0, 5.0), seed=3), minimizer="newton")
    assert free_fit.value("mu") < 0  # so that the bound is active
    b = F.fit(m, minimizer="migrad", use_hessian=False, strategy=2, tolerance=1e-6)
    for init in (None, [0.0, 1.3]):
        a = F.fit(m, init=init, minimizer="newton")
        assert a.status["minimizer"] == "newton" and a.status["valid"] and a.status["at_limit"]
        assert a.status["newton_reason"] == "converged (1 held at a bound)"
        assert a.value("mu") == 0.0
        assert a.twice_nll == pytest.approx(b.twice_nll, abs=1e-6)
        assert a.value("nb") == pytest.approx(b.value("nb"), abs=1e-3 * b.error("nb"))
        # the gradient along the held parameter points outwards, the other one vanishes
        g = np.asarray(m.twice_nll_and_grad(a.values)[1])
        assert g[0] > 0 and abs(g[1]) < 1e-3
    with pytest.raises(ValueError, match="minimizer"):
        F.fit(m, minimizer="bfgs")


def test_newton_does_not_stop_on_a_bound_the_gradient_leaves():
    """sqrt(mu) morphing started at mu = 0 (its bound): the slope there is huge (finite by
    construction, nsbi.model.morphing.sqrt_finite) and points inwards, the Newton step is ~0 and so is the
    EDM. That is not a minimum: the fit must not stop there but reach MIGRAD's minimum."""
    m = _two_param_model(mu_bounds=(0.0, 5.0), morphing="sqrt(mu)")
    b = F.fit(m, minimizer="migrad", use_hessian=False, strategy=2, tolerance=1e-6)
    assert b.value("mu") > 0.5
    a = F.fit(m, init=[0.0, 1.0], minimizer="newton")
    assert a.status["newton_reason"] == "on a bound with the gradient pointing inwards"
    assert a.status["minimizer"] == "migrad (newton fallback)"
    assert a.status["valid"] and a.value("mu") == pytest.approx(b.value("mu"), abs=1e-2 * b.error("mu"))
    assert a.twice_nll == pytest.approx(b.twice_nll, abs=1e-5)


def test_migrad_restarts_without_the_hessian_when_iminuit_fails(monkeypatch):
    """iminuit 2.33 can raise "'NoneType' object is not callable" inside MIGRAD when a user
    Hessian is indefinite far from the minimum (seen with 7 parameters started at +-0.5 in
    benchmarks/bench_fit.py). fit() then reruns MIGRAD without the Hessian from the same start
    and takes the errors from the exact Hessian; other TypeErrors propagate."""
    m = _two_param_model()
    ref = F.fit(m, minimizer="migrad", use_hessian=False, strategy=2, tolerance=1e-6)
    exact = F.fit(m, minimizer="migrad", errors="exact")
    from iminuit import Minuit

    orig = Minuit.migrad

    def failing(self, *a, **k):
        if self.hessian is not None:
            raise TypeError("'NoneType' object is not callable")
        return orig(self, *a, **k)

    monkeypatch.setattr(Minuit, "migrad", failing)
    r = F.fit(m, minimizer="migrad", use_hessian=True)
    assert "iminuit failed" in r.status["start_hessian"] and r.status["valid"]
    assert r.twice_nll == pytest.approx(ref.twice_nll, abs=1e-5)
    np.testing.assert_allclose(r.errors, exact.errors, rtol=1e-3)

    def other(self, *a, **k):
        raise TypeError("something else")

    monkeypatch.setattr(Minuit, "migrad", other)
    with pytest.raises(TypeError, match="something else"):
        F.fit(m, minimizer="migrad", use_hessian=True)


def test_start_where_the_hessian_is_not_positive_definite():
    """Far from the minimum the exact Hessian can be indefinite (here: a strong per-event
    shape systematic at alpha = -2). Newton then steps along |eigenvalues| and still
    converges, and so does MIGRAD seeded with the exact Hessian. Both reach the minimum of
    plain MIGRAD."""
    rng = np.random.default_rng(11)
    x = np.concatenate([_sample_bkg(rng, 1000), rng.normal(M0, SW, 60)])
    x = x[(x > LO) & (x < HI)]
    t = (x - 5.0) / 5.0
    ev = {
        "weight": np.ones_like(x),
        "logr_S": np.log(p_s(x)) - np.log(p_b(x)),
        "logr_B": np.zeros_like(x),
        "logr_B__shp_up": 0.3 * t - np.log(np.mean(np.exp(0.3 * t))),
        "logr_B__shp_down": -0.3 * t - np.log(np.mean(np.exp(-0.3 * t))),
    }
    spec = {
        "channels": [
            {
                "name": "u",
                "type": "unbinned",
                "samples": [
                    {"name": "S", "yield": NU_S, "morphing": "mu", "modifiers": []},
                    {"name": "B", "yield": NU_B, "modifiers": [{"name": "shp", "type": "eventsys"}]},
                ],
            }
        ]
    }
    m = Model(
        spec, {"u": ev}, {"name": "m", "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [[-2.0, 5.0]]}]}}
    )
    start = [1.0, -2.0]
    assert np.linalg.eigvalsh(m.hessian(np.array(start))).min() < 0
    ref = F.fit(m, init=start, use_hessian=False, strategy=2, tolerance=1e-6)
    newton = F.fit(m, init=start, minimizer="newton")
    migrad = F.fit(m, init=start, minimizer="migrad", use_hessian=True)
    assert newton.status["minimizer"] == "newton"
    for r in (newton, migrad):
        assert r.status["valid"]
        assert r.twice_nll == pytest.approx(ref.twice_nll, abs=1e-5)
        assert np.all(np.abs(r.values - ref.values) < 2e-3 * ref.errors)
        np.testing.assert_allclose(r.errors, ref.errors, rtol=5e-3)


def test_indefinite_start_hessian_seeds_migrad_with_absolute_eigenvalues(monkeypatch):
    """When iminuit fails on an indefinite user Hessian (as it does for published-style binned
    workspaces at their nominal point, see benchmarks/bench_cli.py), MIGRAD is rerun with the
    Hessian's absolute eigenvalues as its seed instead of without any Hessian (thousands of
    calls for numerical second derivatives). It reaches plain MIGRAD's minimum, and HESSE gets
    the exact Hessian at the minimum."""
    from iminuit import Minuit

    from nsbi.minimize.migrad import positive_definite_seed

    h = np.array([[2.0, 3.0], [3.0, 1.0]])  # eigenvalues 1.5 +- sqrt(9.25)
    w, v = np.linalg.eigh(h)
    np.testing.assert_allclose(positive_definite_seed(h), (v * np.abs(w)) @ v.T, rtol=1e-12)
    np.testing.assert_array_equal(positive_definite_seed(np.diag([1.0, 2.0])), np.diag([1.0, 2.0]))

    m = _two_param_model()
    start = [0.2, 0.9]
    ref = F.fit(m, init=start, minimizer="migrad", use_hessian=False, strategy=2, tolerance=1e-6)
    plain = F.fit(m, init=start, minimizer="migrad")  # seeded with the exact, definite Hessian
    orig, seeds = Minuit.migrad, []

    def failing_on_indefinite(self, *a, **k):  # iminuit's failure, on every indefinite seed
        if self.hessian is not None:
            seed = self.hessian(np.array(self.values))
            seeds.append(np.linalg.eigvalsh(seed).min())
            if seeds[-1] <= 0:
                raise TypeError("'NoneType' object is not callable")
        return orig(self, *a, **k)

    monkeypatch.setattr(Minuit, "migrad", failing_on_indefinite)
    # the seed Hessian is taken at the start: make it indefinite there
    hess = m.hessian

    def indefinite_at_start(p):
        h = hess(p)
        return h - np.diag([0.0, 2.0 * h[1, 1]]) if np.allclose(p, start) else h

    monkeypatch.setattr(m, "hessian", indefinite_at_start)
    assert np.linalg.eigvalsh(m.hessian(np.array(start))).min() < 0
    r = F.fit(m, init=start, minimizer="migrad", use_hessian=True)
    assert seeds[0] < 0 < seeds[1]  # the first seed failed, the second was made positive definite
    assert r.status["seed_hessian"].startswith("indefinite at the start") and "start_hessian" not in r.status
    assert r.status["valid"]
    assert r.twice_nll == pytest.approx(ref.twice_nll, abs=1e-5)
    # HESSE used the exact Hessian at the minimum reached, not the modified seed: the errors are
    # those of the ordinary fit (not exactly 2 H^-1: Minuit's limits transform them)
    np.testing.assert_allclose(r.errors, plain.errors, rtol=1e-4)


def test_fit_where_the_model_density_is_negative_sees_the_floor():
    """At mu = -2 the density mu nu_S r_S + nu_B is negative for events at the signal peak (as
    learned ratios with negative morphing coefficients can give): their ln S is the model's
    density floor, so -2 ln L is finite and far above its minimum; every minimiser converges
    there, and a scan through such points keeps its intervals from the others."""
    from nsbi.model.kernels import DENSITY_FLOOR_REL

    m = _two_param_model(mu_bounds=(-3.0, 5.0))
    v = m.twice_nll(np.array([-2.0, 1.0]))
    ev = m.data[0]  # the chunked event arrays of the unbinned channel
    w, r = np.asarray(ev["w"]).ravel(), np.asarray(ev["r"]).transpose(1, 0, 2).reshape(2, -1)
    s = -2.0 * NU_S * r[0] + NU_B * r[1]
    floor = DENSITY_FLOOR_REL * (2.0 * NU_S + NU_B)
    neg = (w != 0) & (s <= floor)
    assert neg.sum() > 10
    expect = -2.0 * (np.sum(w * np.log(np.where(w != 0, np.maximum(s, floor), 1.0))) - (-2.0 * NU_S + NU_B))
    assert v == pytest.approx(expect, rel=1e-10)
    best = F.fit(m)
    for kw in ({"minimizer": "newton"}, {"minimizer": "migrad"}, {"minimizer": "migrad", "use_hessian": False}):
        r_ = F.fit(m, fixed={"mu": -2.0}, **kw)
        assert r_.status["valid"] and np.isfinite(r_.twice_nll) and r_.twice_nll - best.twice_nll > 100
    s_ = F.scan(m, values=[-2.0, 0.0, 0.5, 1.0, 1.5, 2.0])
    assert np.all(np.isfinite(s_.twice_nll)) and s_.delta[0] > 100
    lo, hi = s_.intervals["68"]
    assert 0.0 < lo < s_.best < hi < 2.0
