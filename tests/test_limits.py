"""Hypothesis tests, CLs and upper limits (nsbi.limits) against pyhf and closed forms.

Workspaces are built here (pyhf JSON, converted with nsbi.workspace.from_pyhf). pyhf fits with
scipy at tolerance 1e-12 (nsbi to EDM < 2e-12), so CLs agree to ~1e-8; the backend is restored
after each test.
"""

import json
import math

import numpy as np
import pytest
from scipy import special

pyhf = pytest.importorskip("pyhf")

from nsbi import limits as L  # noqa: E402
from nsbi import workspace as W  # noqa: E402
from nsbi.cli import main  # noqa: E402
from nsbi.pyhf_check import MODIFIER_SETTINGS  # noqa: E402

TOL = 1e-9  # nsbi fits: EDM < 2e-12

# two channels: normsys, histosys (shared by the channels), staterror; a mild excess
WS_EXCESS = {
    "channels": [
        {
            "name": "SR",
            "samples": [
                {
                    "name": "sig",
                    "data": [4.0, 6.0, 2.0],
                    "modifiers": [
                        {"name": "mu", "type": "normfactor", "data": None},
                        {"name": "sig_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.92}},
                    ],
                },
                {
                    "name": "bkg",
                    "data": [20.0, 15.0, 8.0],
                    "modifiers": [
                        {
                            "name": "bkg_shape",
                            "type": "histosys",
                            "data": {"hi_data": [22.0, 15.5, 9.0], "lo_data": [18.5, 14.0, 7.5]},
                        },
                        {"name": "staterror_SR", "type": "staterror", "data": [1.5, 1.2, 1.0]},
                    ],
                },
            ],
        },
        {
            "name": "CR",
            "samples": [
                {
                    "name": "bkg",
                    "data": [100.0, 80.0],
                    "modifiers": [
                        {
                            "name": "bkg_shape",
                            "type": "histosys",
                            "data": {"hi_data": [104.0, 83.0], "lo_data": [97.0, 78.0]},
                        },
                        {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}},
                    ],
                }
            ],
        },
    ],
    "observations": [{"name": "SR", "data": [25.0, 18.0, 9.0]}, {"name": "CR", "data": [103.0, 79.0]}],
    "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
    "version": "1.0.0",
}

# one channel with a deficit (mu_hat < 0 without the bound): normsys, staterror, shapesys, lumi
WS_DEFICIT = {
    "channels": [
        {
            "name": "SR",
            "samples": [
                {
                    "name": "sig",
                    "data": [5.0, 8.0],
                    "modifiers": [
                        {"name": "mu", "type": "normfactor", "data": None},
                        {"name": "lumi", "type": "lumi", "data": None},
                        {"name": "sig_norm", "type": "normsys", "data": {"hi": 1.15, "lo": 0.9}},
                    ],
                },
                {
                    "name": "bkg",
                    "data": [50.0, 40.0],
                    "modifiers": [
                        {"name": "lumi", "type": "lumi", "data": None},
                        {"name": "staterror_SR", "type": "staterror", "data": [3.0, 2.5]},
                        {"name": "bkg_unc", "type": "shapesys", "data": [4.0, 5.0]},
                    ],
                },
            ],
        }
    ],
    "observations": [{"name": "SR", "data": [46.0, 39.0]}],
    "measurements": [
        {
            "name": "meas",
            "config": {
                "poi": "mu",
                "parameters": [
                    {"name": "lumi", "auxdata": [1.0], "sigmas": [0.03], "bounds": [[0.8, 1.2]], "inits": [1.0]}
                ],
            },
        }
    ],
    "version": "1.0.0",
}


def _with_poi_bounds(spec, bounds):
    spec = json.loads(json.dumps(spec))
    spec["measurements"][0]["config"]["parameters"].append({"name": "mu", "bounds": [list(bounds)]})
    return spec


def _counting(s, b, n, mods=()):
    """One bin: signal s x mu, background b (optionally with modifiers), n observed."""
    return {
        "channels": [
            {
                "name": "SR",
                "samples": [
                    {"name": "sig", "data": [s], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
                    {"name": "bkg", "data": [b], "modifiers": list(mods)},
                ],
            }
        ],
        "observations": [{"name": "SR", "data": [n]}],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }


@pytest.fixture
def tight_pyhf():
    """pyhf with numpy + scipy at a tight tolerance; the previous backend restored after."""
    old = pyhf.get_backend()
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-12))
    yield
    pyhf.set_backend(*old)


def _pyhf(spec):
    ws = pyhf.Workspace(spec)
    pm = ws.model(modifier_settings=MODIFIER_SETTINGS)
    return pm, ws.data(pm)


def _nsbi(spec):
    return W.from_pyhf(spec).model()


# ---------------------------------------------------------------------------- vs pyhf
@pytest.mark.parametrize(
    "spec, mus, test_stat",
    [
        (WS_EXCESS, (0.3, 1.0, 2.0, 3.5), "qtilde"),
        (WS_DEFICIT, (0.2, 0.7, 1.5, 3.0), "qtilde"),
        (_with_poi_bounds(WS_DEFICIT, (-3.0, 10.0)), (0.2, 0.7, 1.5), "q"),
    ],
    ids=["excess-qtilde", "deficit-qtilde", "deficit-q"],
)
def test_asymptotic_cls_matches_pyhf(tight_pyhf, spec, mus, test_stat):
    pm, pdata = _pyhf(spec)
    calc = L.HypoTestCalculator(_nsbi(spec), test_stat=test_stat, tolerance=TOL)
    for mu in mus:
        r = calc.hypotest(mu)
        assert r.converged
        obs, tails, exp = pyhf.infer.hypotest(
            mu, pdata, pm, test_stat=test_stat, return_tail_probs=True, return_expected_set=True
        )
        assert r.cls == pytest.approx(float(obs), abs=1e-6, rel=0)
        assert [r.clsb, r.clb] == pytest.approx([float(t) for t in tails], abs=1e-6, rel=0)
        np.testing.assert_allclose(r.cls_expected, np.array(exp, float), atol=1e-6, rtol=0)
        # same via the function, and the expected band ordered from -2 sigma to +2 sigma limits
        assert L.hypotest(_nsbi(spec), mu, test_stat=test_stat, calculator=calc).cls == r.cls
        assert np.all(np.diff(r.cls_expected) > 0)
    if test_stat == "q":  # the deficit: mu_hat < 0 inside the bounds [-3, 10]
        assert r.poi_hat < 0


@pytest.mark.parametrize("spec", [WS_EXCESS, WS_DEFICIT], ids=["excess", "deficit"])
def test_upper_limit_matches_pyhf(tight_pyhf, spec):
    pm, pdata = _pyhf(spec)
    calc = L.HypoTestCalculator(_nsbi(spec), tolerance=TOL)
    ul = L.upper_limit(None, cl=0.95, calculator=calc)
    # pyhf's toms748 root finding at a tight relative tolerance (its default is 1e-4), in the
    # bracket [0.1, 10]: pyhf's upper_limit starts at the POI bound 0, where q~ = 0 up to the fit
    # noise and q~_A = 0, which gives CLs = 0/0 = nan in pyhf when mu_hat = 0 (the deficit)
    obs, exp = pyhf.infer.intervals.upper_limits.toms748_scan(pdata, pm, 0.1, 10.0, test_stat="qtilde", rtol=1e-10)
    assert ul.observed == pytest.approx(float(obs), abs=1e-4)
    np.testing.assert_allclose(ul.expected, np.array(exp, float), atol=1e-4, rtol=0)
    assert np.all(np.diff(ul.expected) > 0) and not ul.notes
    # CLs at the limits is 1 - CL
    assert calc.hypotest(ul.observed).cls == pytest.approx(0.05, abs=1e-8)
    assert calc.hypotest(ul.expected[1]).cls_expected[1] == pytest.approx(0.05, abs=1e-8)
    d = ul.to_dict()
    assert d["expected_order"][0] == "-2sigma" and len(d["scan"]["cls_expected"][0]) == 5


def test_q0_significance_matches_pyhf(tight_pyhf):
    for spec in (WS_EXCESS, WS_DEFICIT):
        pm, pdata = _pyhf(spec)
        s = L.significance(_nsbi(spec), tolerance=TOL)
        p0, exp = pyhf.infer.hypotest(0.0, pdata, pm, test_stat="q0", return_expected_set=True)
        assert s.p0 == pytest.approx(float(p0), abs=1e-6, rel=0)
        np.testing.assert_allclose(s.p0_expected, np.array(exp, float), atol=1e-6, rtol=0)
        assert s.z == pytest.approx(math.sqrt(s.q0), abs=1e-9)
        assert s.z_expected[2] == pytest.approx(math.sqrt(s.q0_asimov), abs=1e-9)
    assert s.q0 == 0.0 and s.p0 == 0.5  # the deficit: mu_hat = 0 on its bound


# ---------------------------------------------------------------------------- closed forms
def _q_counting(n, s, b, mu):
    """q~_mu of n ~ Poisson(mu s + b), b known (mu_hat clipped at 0; 0 for mu_hat > mu)."""
    mu_hat = max((n - b) / s, 0.0)
    if mu_hat > mu:
        return 0.0
    nu, nu_hat = mu * s + b, mu_hat * s + b
    return 2.0 * (nu - nu_hat - n * math.log(nu / nu_hat))


@pytest.mark.parametrize("n", [27.0, 15.0], ids=["excess", "deficit"])
def test_counting_experiment_closed_form(n):
    s, b = 10.0, 20.0
    calc = L.HypoTestCalculator(_nsbi(_counting(s, b, n)), tolerance=TOL)
    for mu in (0.5, 1.0, 2.0, 3.0):
        r = calc.hypotest(mu)
        q, qa = _q_counting(n, s, b, mu), _q_counting(b, s, b, mu)  # Asimov at mu = 0: n_A = b
        assert r.q == pytest.approx(q, abs=1e-8) and r.q_asimov == pytest.approx(qa, abs=1e-8)
        # arXiv:1007.1727 eq. 65 (mu' = mu: CL_{s+b}) and mu' = 0 (CL_b), with mu^2/sigma^2 = q_A
        if q <= qa:
            clsb, clb = special.ndtr(-math.sqrt(q)), special.ndtr(math.sqrt(qa) - math.sqrt(q))
        else:
            clsb = special.ndtr(-(q + qa) / (2 * math.sqrt(qa)))
            clb = special.ndtr(-(q - qa) / (2 * math.sqrt(qa)))
        assert (r.clsb, r.clb, r.cls) == pytest.approx((clsb, clb, clsb / clb), abs=1e-7)
        med = special.ndtr(-math.sqrt(qa)) / 0.5  # median expected: q at the median of b-only = 0
        assert r.cls_expected[2] == pytest.approx(med, abs=1e-7)
    r_migrad = L.HypoTestCalculator(_nsbi(_counting(s, b, n)), tolerance=TOL, minimizer="migrad").hypotest(2.0)
    assert r_migrad.cls == pytest.approx(calc.hypotest(2.0).cls, abs=1e-7)
    # discovery: q0 = 2 (n ln(n/b) - (n - b)); expected Z_A = sqrt(2 ((s+b) ln(1+s/b) - s)) (eq. 97)
    sig = L.significance(_nsbi(_counting(s, b, n)), tolerance=TOL)
    q0 = 2 * (n * math.log(n / b) - (n - b)) if n > b else 0.0
    assert sig.q0 == pytest.approx(q0, abs=1e-8)
    assert sig.z_expected[2] == pytest.approx(math.sqrt(2 * ((s + b) * math.log(1 + s / b) - s)), abs=1e-6)
    # the limit: CLs(mu_up) = 0.05 and the median expected limit from the closed form
    ul = L.upper_limit(_nsbi(_counting(s, b, n)), tolerance=TOL)
    from scipy.optimize import brentq

    def med_cls(mu):
        return 2 * special.ndtr(-math.sqrt(_q_counting(b, s, b, mu))) - 0.05

    assert ul.expected[2] == pytest.approx(brentq(med_cls, 0.1, 10, xtol=1e-12), abs=1e-6)
    # a bracket below the limits is extended (doubled); other observations via ``data``
    ul2 = L.upper_limit(_nsbi(_counting(s, b, 50.0)), {"SR": [n]}, bracket=(0.1, 0.4), tolerance=TOL)
    np.testing.assert_allclose([ul2.observed, *ul2.expected], [ul.observed, *ul.expected], atol=1e-7)
    assert max(p.poi_value for p in ul2.points) >= 3.2


# ---------------------------------------------------------------------------- unbinned
def _unbinned_counting_ws(n_obs):
    """Unbinned channel where signal and background have the same shape (log r = 0): the
    likelihood is the Poisson count of the events, the same as a one-bin binned model."""

    def events(n, w):
        return {"weight": np.full(n, w), "logr_S": np.zeros(n), "logr_B": np.zeros(n)}

    return W.build_workspace(
        unbinned={
            "SR": {
                "processes": {
                    "S": {"yield": 10.0, "morphing": "mu"},
                    "B": {"yield": 20.0, "normsys": {"bn": (1.1, 0.9)}},
                }
            }
        },
        datasets={"asimov": {"SR": events(500, 30.0 / 500)}, "observed": {"SR": events(n_obs, 1.0)}},
        poi="mu",
    )


def test_unbinned_asimov_from_workspace_matches_binned(tight_pyhf):
    ws = _unbinned_counting_ws(26)
    model = ws.model("observed")
    with pytest.raises(ValueError, match="ToyGenerator"):
        L.hypotest(model, 1.0)
    gen = L.generator_for(ws, model)
    calc = L.HypoTestCalculator(model, generator=gen, tolerance=TOL)
    spec = _counting(10.0, 20.0, 26.0, [{"name": "bn", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}])
    pm, pdata = _pyhf(spec)
    for mu in (0.8, 2.0):
        r = calc.hypotest(mu)
        obs, exp = pyhf.infer.hypotest(mu, pdata, pm, test_stat="qtilde", return_expected_set=True)
        assert r.cls == pytest.approx(float(obs), abs=1e-6)
        np.testing.assert_allclose(r.cls_expected, np.array(exp, float), atol=1e-6)


# ---------------------------------------------------------------------------- toys
def test_toy_cls_consistent():
    s, b, n = 30.0, 100.0, 105.0
    model = _nsbi(_counting(s, b, n))
    calc = L.HypoTestCalculator(model, calctype="toybased", n_toys=3000, seed=11, tolerance=TOL)
    mu = 1.2
    r = calc.hypotest(mu)
    assert r.n_toys == 3000 and r.toys["converged_sb"].all() and r.toys["converged_b"].all()
    # the p-values are the fractions of toys with q >= q_obs
    assert r.clsb == pytest.approx(np.mean(r.toys["q_sb"] >= r.q))
    assert r.clb == pytest.approx(np.mean(r.toys["q_b"] >= r.q))
    # each toy's q is the closed form of its count (toys of a one-bin model without NPs)
    gen = calc.generator
    toys = gen.generate(calc.conditional_fit(mu).values, 3000, seed=calc.toy_seed(mu, mu))
    q_hand = [_q_counting(k, s, b, mu) for k in toys.binned[:50, 0]]
    np.testing.assert_allclose(r.toys["q_sb"][:50], q_hand, atol=1e-7)
    # large counts: close to the asymptotic values (binomial errors of 3000 toys + discreteness)
    ra = L.hypotest(model, mu, tolerance=TOL)
    for a, t in ((ra.clsb, r.clsb), (ra.clb, r.clb), (ra.cls, r.cls)):
        assert abs(a - t) < 4 * math.sqrt(a * (1 - a) / 3000) + 0.01
    # expected band ordered like pyhf's and reproducible with the seed
    assert np.all(np.diff(r.cls_expected) >= 0)
    r2 = L.HypoTestCalculator(model, calctype="toybased", n_toys=3000, seed=11, tolerance=TOL).hypotest(mu)
    assert r2.cls == r.cls and np.array_equal(r2.cls_expected, r.cls_expected)


def test_toys_with_nuisance_parameters_match_single_fits():
    """The batched toy fits give the q~ of ordinary fits of the same toys."""
    model = _nsbi(WS_EXCESS)
    calc = L.HypoTestCalculator(model, calctype="toybased", n_toys=4, seed=5, tolerance=TOL)
    mu = 1.5
    q_b = calc.toy_teststats(mu, 0.0)["q"]
    gen = calc.generator
    theta = calc.conditional_fit(0.0).values
    toys = gen.generate(theta, 4, seed=calc.toy_seed(mu, 0.0))
    for i in range(2):
        q_single = L.teststatistic(gen.model_for(toys, i), mu, tolerance=TOL)
        assert q_b[i] == pytest.approx(q_single, abs=1e-6)


# ---------------------------------------------------------------------------- CLI
def test_cli_limit_and_significance(tmp_path, capsys, tight_pyhf):
    path = tmp_path / "pyhf.json"
    path.write_text(json.dumps(WS_EXCESS))
    out = tmp_path / "limit.json"
    plot = tmp_path / "cls.png"
    assert main(["limit", str(path), "-o", str(out), "--plot", str(plot), "--points", "9", "--tolerance", "1e-9"]) == 0
    text = capsys.readouterr().out
    assert "observed" in text and "expected" in text
    d = json.loads(out.read_text())
    pm, pdata = _pyhf(WS_EXCESS)
    cls, exp = pyhf.infer.hypotest(d["observed"], pdata, pm, test_stat="qtilde", return_expected_set=True)
    assert float(cls) == pytest.approx(0.05, abs=1e-6) and len(d["expected"]) == 5
    _, exp = pyhf.infer.hypotest(d["expected"][2], pdata, pm, test_stat="qtilde", return_expected_set=True)
    assert float(exp[2]) == pytest.approx(0.05, abs=1e-6)
    assert plot.stat().st_size > 0 and len(d["plot_scan"]["poi_values"]) == 9
    assert main(["significance", str(path), "--output", "json"]) == 0
    sig = json.loads(capsys.readouterr().out)
    p0 = pyhf.infer.hypotest(0.0, pdata, pm, test_stat="q0")
    assert sig["p0"] == pytest.approx(float(p0), abs=1e-5) and sig["z"] > 0
    assert main(["limit", str(path), "--cl", "1.5"]) == 1  # bad CL: an error message, not a traceback


def test_cli_limit_unbinned_workspace(tmp_path, capsys):
    ws = _unbinned_counting_ws(26)
    W.save(ws, tmp_path / "ws.json")
    assert main(["limit", str(tmp_path / "ws.json"), "--output", "json", "--dataset", "observed"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["poi"] == "mu" and d["dataset"] == "observed" and 0 < d["observed"] < 10
