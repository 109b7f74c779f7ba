"""Likelihood values against hand computations; unbinned value/gradient consistency."""

import math

import numpy as np
import pytest

from nsbi.model import Model, ModelError
from nsbi.model.interpolation import code4


def _pois(n, lam):
    return n * math.log(lam) - lam - math.lgamma(n + 1)


def _gaus(x, mu, s):
    return -0.5 * ((x - mu) / s) ** 2 - math.log(s * math.sqrt(2 * math.pi))


def test_binned_hand_computed():
    spec = {
        "channels": [
            {
                "name": "c",
                "type": "binned",
                "samples": [
                    {
                        "name": "s",
                        "data": [4.0, 2.0],
                        "morphing": "mu - sqrt(mu)",
                        "modifiers": [{"name": "a", "type": "normsys", "data": {"hi": 1.2, "lo": 0.9}}],
                    },
                    {
                        "name": "b",
                        "data": [10.0, 20.0],
                        "modifiers": [
                            {"name": "h", "type": "histosys", "data": {"hi_data": [12.0, 21.0], "lo_data": [9.0, 18.0]}}
                        ],
                    },
                ],
            }
        ]
    }
    meas = {"name": "m", "config": {"poi": "mu", "parameters": []}}
    m = Model(spec, {"c": [13, 19]}, meas)
    mu, a, h = 2.25, 1.5, -0.5  # a outside the polynomial region, h inside
    p = np.zeros(m.npars)
    p[m.index("mu")], p[m.index("a")], p[m.index("h")] = mu, a, h
    f = mu - math.sqrt(mu)
    ka = 1.2**1.5
    dp, dm = np.array([2.0, 1.0]), np.array([1.0, 2.0])
    S, A = (dp + dm) / 2, (dp - dm) / 16
    bkg = np.array([10.0, 20.0]) + h * S + A * (15 * h**2 - 10 * h**4 + 3 * h**6)
    lam = f * ka * np.array([4.0, 2.0]) + bkg
    expected = -2 * (_pois(13, lam[0]) + _pois(19, lam[1]) + _gaus(0, a, 1) + _gaus(0, h, 1))
    assert m.twice_nll(p) == pytest.approx(expected, rel=1e-12)


def _unbinned_model(n=3, K=True, norm=False):
    from nsbi.model.interpolation import code4_mean_nodes

    rng = np.random.default_rng(7)
    ev = {"weight": rng.uniform(0.5, 1.5, n)}
    for c in ("A", "B"):
        ev[f"logr_{c}"] = rng.normal(0, 0.3, n)
        ev[f"logr_{c}__s1_up"] = rng.normal(0, 0.1, n)
        ev[f"logr_{c}__s1_down"] = rng.normal(0, 0.1, n)

    def s1(c):
        if not norm:
            return {"name": "s1", "type": "eventsys"}
        nodes = {
            d: code4_mean_nodes(ev[f"logr_{c}__s1_{d}"], ev["weight"] * np.exp(ev[f"logr_{c}"]), 32)
            for d in ("up", "down")
        }
        return {
            "name": "s1",
            "type": "eventsys",
            "data": {"norm": {d: {"log": v.tolist(), "p": q.tolist()} for d, (v, q) in nodes.items()}},
        }

    spec = {
        "channels": [
            {
                "name": "u",
                "type": "unbinned",
                "samples": [
                    {"name": "A", "yield": 20.0, "morphing": "mu", "modifiers": [s1("A")]},
                    {
                        "name": "B",
                        "yield": 50.0,
                        "modifiers": [s1("B"), {"name": "n1", "type": "normsys", "data": {"hi": 1.1, "lo": 0.95}}],
                    },
                ],
            }
        ]
    }
    meas = {"name": "m", "config": {"poi": "mu", "parameters": []}}
    return Model(spec, {"u": ev}, meas), ev


def test_unbinned_hand_computed():
    m, ev = _unbinned_model()
    mu, s1, n1 = 1.3, 1.4, 0.0
    p = np.zeros(m.npars)
    p[m.index("mu")], p[m.index("s1")], p[m.index("n1")] = mu, s1, n1
    yA, yB = 20.0 * mu, 50.0
    lp = -(yA + yB)
    for i in range(3):
        gA = math.exp(s1 * ev["logr_A__s1_up"][i])
        gB = math.exp(s1 * ev["logr_B__s1_up"][i])
        S = yA * math.exp(ev["logr_A"][i]) * gA + yB * math.exp(ev["logr_B"][i]) * gB
        lp += ev["weight"][i] * math.log(S)
    lp += _gaus(0, s1, 1) + _gaus(0, n1, 1)
    assert m.twice_nll(p) == pytest.approx(-2 * lp, rel=1e-12)


@pytest.mark.parametrize("norm", [False, True])
@pytest.mark.parametrize("point", [(1.2, 0.3, -0.4), (0.7, -1.6, 0.2), (1.5, 2.2, 1.3)])
def test_unbinned_custom_gradient_matches_autodiff(point, norm):
    import jax
    import jax.numpy as jnp

    m, _ = _unbinned_model(n=5000, norm=norm)
    p = np.zeros(m.npars)
    for name, v in zip(("mu", "s1", "n1"), point):
        p[m.index(name)] = v
    v, g = m.twice_nll_and_grad(p)
    ref = jax.grad(lambda q: m.twice_nll_jax(q, m.data, False))(jnp.asarray(p))
    assert v == pytest.approx(float(m.twice_nll_jax(jnp.asarray(p), m.data, False)), rel=1e-12)
    np.testing.assert_allclose(g, np.asarray(ref), rtol=1e-9, atol=1e-9)
    # and against central finite differences
    h = 1e-6
    fd = [(m.twice_nll(p + h * e) - m.twice_nll(p - h * e)) / (2 * h) for e in np.eye(m.npars)]
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("K", [2, 9])
@pytest.mark.parametrize("outside", [False, True])
def test_unbinned_gradient_and_hessian_many_systematics(K, outside):
    """Both layouts of the value+gradient kernel (g'/g materialised per chunk for K <= 7 or
    any |alpha| > 1; recomputed for larger K inside |alpha| <= 1) and the one-pass Hessian
    against autodiff, with several shape systematics at once, some beyond +-1."""
    import jax
    import jax.numpy as jnp

    from nsbi.model.kernels import STORE_RHO_MAX_K

    assert (K <= STORE_RHO_MAX_K) == (K == 2)
    rng = np.random.default_rng(11)
    n = 3000
    ev = {"weight": rng.uniform(0.5, 1.5, n)}
    samples = []
    for c in ("A", "B", "C"):
        ev[f"logr_{c}"] = rng.normal(0, 0.3, n)
        for k in range(K):
            for d in ("up", "down"):
                ev[f"logr_{c}__s{k}_{d}"] = rng.normal(0, 0.05 + 0.01 * k, n)
        samples.append(
            {"name": c, "yield": 30.0, "modifiers": [{"name": f"s{k}", "type": "eventsys"} for k in range(K)]}
        )
    samples[0]["morphing"] = "mu"
    m = Model(
        {"channels": [{"name": "u", "type": "unbinned", "samples": samples}]},
        {"u": ev},
        {"name": "m", "config": {"poi": "mu", "parameters": []}},
    )
    p = np.zeros(m.npars)
    p[m.index("mu")] = 1.3
    for k in range(K):
        p[m.index(f"s{k}")] = (0.9 - 0.2 * k) * (-1) ** k
    if outside:
        p[m.index("s1")] = -1.7
    v, g = m.twice_nll_and_grad(p)
    ref = jax.grad(lambda q: m.twice_nll_jax(q, m.data, False))(jnp.asarray(p))
    assert v == pytest.approx(float(m.twice_nll_jax(jnp.asarray(p), m.data, False)), rel=1e-12)
    np.testing.assert_allclose(g, np.asarray(ref), rtol=1e-9, atol=1e-9)
    href = m.hessian_autodiff(p)
    np.testing.assert_allclose(m.hessian(p), href, rtol=1e-10, atol=1e-10 * np.max(np.abs(href)))


def test_missing_column_is_reported():
    m, ev = _unbinned_model()
    ev = dict(ev)
    del ev["logr_B__s1_down"]
    with pytest.raises(ModelError, match="logr_B__s1_down"):
        Model(m.spec, {"u": ev}, {"name": "m", "config": {"poi": "mu", "parameters": []}})


def test_lumi_requires_config():
    spec = {
        "channels": [
            {
                "name": "c",
                "type": "binned",
                "samples": [
                    {"name": "s", "data": [1.0], "modifiers": [{"name": "lumi", "type": "lumi", "data": None}]}
                ],
            }
        ]
    }
    with pytest.raises(ModelError, match="lumi"):
        Model(spec, {"c": [1]}, {"name": "m", "config": {"poi": None, "parameters": []}})


@pytest.mark.parametrize("norm", [False, True])
@pytest.mark.parametrize("point", [(1.2, 0.3, -0.4), (0.7, -1.6, 0.2), (1.5, 2.2, 1.3)])
def test_one_pass_hessian_matches_autodiff(point, norm):
    """Model.hessian (one pass over the events for the unbinned sums) equals forward-over-
    reverse autodiff of the whole -2 ln L, inside and outside |alpha| <= 1, with morphing,
    normsys, shape normalisation (norm=True) and a binned channel sharing the parameters."""
    m0, ev = _unbinned_model(n=3000, norm=norm)
    spec = {
        "channels": m0.spec["channels"]
        + [
            {
                "name": "b",
                "type": "binned",
                "samples": [
                    {
                        "name": "s",
                        "data": [4.0, 2.0],
                        "morphing": "mu - sqrt(mu)",
                        "modifiers": [{"name": "n1", "type": "normsys", "data": {"hi": 1.2, "lo": 0.9}}],
                    },
                    {
                        "name": "bk",
                        "data": [10.0, 20.0],
                        "modifiers": [
                            {
                                "name": "s1",
                                "type": "histosys",
                                "data": {"hi_data": [12.0, 21.0], "lo_data": [9.0, 18.0]},
                            }
                        ],
                    },
                ],
            }
        ]
    }
    m = Model(spec, {"u": ev, "b": [13, 19]}, {"name": "m", "config": {"poi": "mu", "parameters": []}})
    p = np.zeros(m.npars)
    for name, v in zip(("mu", "s1", "n1"), point):
        p[m.index(name)] = v
    ref = m.hessian_autodiff(p)
    np.testing.assert_allclose(m.hessian(p), ref, rtol=1e-10, atol=1e-10 * np.max(np.abs(ref)))


def _sqrt_morphing_model(sqrt_poi=False, poi_modifier=False, lower=0.0):
    """Interference morphing (S, SBI, B) in an unbinned channel with a per-event and a normsys
    systematic, plus a binned channel with the same morphing (and, with ``poi_modifier``, the
    POI also as a normfactor)."""
    rng = np.random.default_rng(3)
    n = 400
    ev = {"weight": rng.uniform(0.5, 1.5, n)}
    for c in ("S", "SBI", "B"):
        ev[f"logr_{c}"] = rng.normal(0, 0.3, n)
    ev["logr_S"] = ev["logr_S"] - 1.0  # keep S(x|mu) > 0 for mu in [0, 1]
    ev["logr_B__s1_up"] = rng.normal(0.05, 0.1, n)
    ev["logr_B__s1_down"] = rng.normal(-0.05, 0.1, n)
    spec = {
        "channels": [
            {
                "name": "u",
                "type": "unbinned",
                "samples": [
                    {"name": "S", "yield": 5.0, "morphing": "mu - sqrt(mu)", "modifiers": []},
                    {"name": "SBI", "yield": 30.0, "morphing": "sqrt(mu)", "modifiers": []},
                    {
                        "name": "B",
                        "yield": 60.0,
                        "morphing": "1 - sqrt(mu)",
                        "modifiers": [
                            {"name": "s1", "type": "eventsys"},
                            {"name": "n1", "type": "normsys", "data": {"hi": 1.1, "lo": 0.92}},
                        ],
                    },
                ],
            }
        ]
    }
    b_mods = [{"name": "mu", "type": "normfactor", "data": None}] if poi_modifier else []
    spec["channels"].append(
        {
            "name": "b",
            "type": "binned",
            "samples": [
                {"name": "S", "data": [2.0, 3.0], "morphing": "mu - sqrt(mu)", "modifiers": b_mods},
                {"name": "SBI", "data": [10.0, 12.0], "morphing": "sqrt(mu)", "modifiers": []},
                {"name": "B", "data": [9.0, 11.0], "morphing": "1 - sqrt(mu)", "modifiers": []},
            ],
        }
    )
    meas = {"name": "m", "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [[lower, 5.0]]}]}}
    return Model(spec, {"u": ev, "b": [12, 13]}, meas, sqrt_poi=sqrt_poi)


def test_sqrt_morphing_derivatives_finite_at_mu_zero():
    """mu - sqrt(mu), sqrt(mu), 1 - sqrt(mu) are not differentiable at mu = 0. Derivatives with
    respect to the *other* parameters must stay finite there (forward-mode autodiff would
    otherwise give 0 x inf = NaN for the whole Hessian, e.g. at the mu = 0 point of a scan):
    gradient and Hessian of the other parameters equal central finite differences, and a fit
    with mu fixed at 0 converges with every minimiser to the same minimum."""
    from nsbi import fit as F

    m = _sqrt_morphing_model()
    p = np.array([0.0, 0.3, -0.2])
    assert m.par_names == ["mu", "s1", "n1"]
    v, g = m.twice_nll_and_grad(p)
    v2, g2, H = m.twice_nll_grad_hessian(p)
    assert np.isfinite(v) and v2 == pytest.approx(v, rel=1e-12)
    h = 1e-5
    for i in (1, 2):
        e = np.zeros(3)
        e[i] = h
        assert g[i] == pytest.approx((m.twice_nll(p + e) - m.twice_nll(p - e)) / (2 * h), rel=1e-6)
        assert g2[i] == pytest.approx(g[i], rel=1e-10)
        for j in (1, 2):
            hh = 1e-3
            a, b = np.zeros(3), np.zeros(3)
            a[i], b[j] = hh, hh
            num = (
                m.twice_nll(p + a + b) - m.twice_nll(p + a - b) - m.twice_nll(p - a + b) + m.twice_nll(p - a - b)
            ) / (4 * hh * hh)
            assert H[i, j] == pytest.approx(num, rel=1e-4, abs=1e-4)
    assert np.all(np.isfinite(m.hessian(p)[1:, 1:]))
    ref = F.fit(m, fixed={"mu": 0.0}, minimizer="migrad", use_hessian=False, strategy=2, tolerance=1e-6)
    for kw in ({"minimizer": "newton"}, {"minimizer": "migrad", "use_hessian": True}):
        r = F.fit(m, fixed={"mu": 0.0}, **kw)
        assert r.status["valid"], kw
        assert r.twice_nll == pytest.approx(ref.twice_nll, abs=1e-5)
        np.testing.assert_allclose(r.values, ref.values, atol=2e-3)


def test_sqrt_poi_model_is_the_same_likelihood_in_sqrt_mu():
    """``Model(..., sqrt_poi=True)`` holds kappa = sqrt(mu): -2 ln L at kappa equals the model
    in mu at kappa^2; its init and bounds are the square roots; its gradient and Hessian from
    the one-pass kernels equal plain autodiff, and are finite and exact at kappa = 0: the
    gradient equals the one-sided finite difference there (the coefficients are polynomials in
    kappa). It is refused where the POI is also a modifier or may be negative."""
    m, mk = _sqrt_morphing_model(), _sqrt_morphing_model(sqrt_poi=True)
    assert m.sqrt_poi_possible and mk.sqrt_poi and not m.sqrt_poi
    ip = mk.poi_index
    assert mk.bounds[ip] == (0.0, pytest.approx(math.sqrt(5.0))) and mk.init[ip] == pytest.approx(1.0)
    rng = np.random.default_rng(5)
    for kappa in (0.0, 0.2, 0.6, 0.95):  # the density is positive for mu in [0, 1]
        p = np.concatenate([[kappa], rng.normal(0.0, 0.3, mk.npars - 1)])
        q = p.copy()
        q[ip] = kappa**2
        assert mk.twice_nll(p) == pytest.approx(m.twice_nll(q), rel=1e-13)
        v, g, H = mk.twice_nll_grad_hessian(p)
        assert np.all(np.isfinite(g)) and np.all(np.isfinite(H))
        ref = mk.hessian_autodiff(p)
        np.testing.assert_allclose(H, ref, rtol=1e-10, atol=1e-10 * np.max(np.abs(ref)))
        if kappa == 0.0:
            h = 1e-6
            e = np.zeros(mk.npars)
            e[ip] = h
            fd = (-mk.twice_nll(p + 2 * e) + 4 * mk.twice_nll(p + e) - 3 * mk.twice_nll(p)) / (2 * h)
            assert g[ip] == pytest.approx(fd, rel=1e-5)
        else:  # chain rule away from 0: d/dkappa = 2 kappa d/dmu
            assert g[ip] == pytest.approx(2 * kappa * m.twice_nll_and_grad(q)[1][ip], rel=1e-9)
    assert not _sqrt_morphing_model(poi_modifier=True).sqrt_poi_possible
    assert not _sqrt_morphing_model(lower=-1.0).sqrt_poi_possible
    with pytest.raises(ModelError, match="sqrt"):
        _sqrt_morphing_model(sqrt_poi=True, poi_modifier=True)


# --- shape normalisation of per-event systematics (eventsys data.norm) -----------------------
# p_ref = p_B = truncated exponential on [0, HI] with slope LAM; the shape systematic "sh"
# changes the slope to LAM (1 -+ D) at alpha = +-1 (exact, normalised ratios g = p_B^+-/p_B);
# S is a Gaussian bump. The per-event ratios are large (RMS ln g ~ 0.4), as for a narrow peak
# under an energy-scale shift.
_HI, _LAM, _D, _M0, _SW = 10.0, 0.4, 0.35, 4.0, 0.6


def _texp(x, lam):
    return lam * np.exp(-lam * x) / (1 - math.exp(-lam * _HI))


def _norm_events(n=40000, seed=11):
    from scipy import stats

    rng = np.random.default_rng(seed)
    x = -np.log(1 - rng.uniform(size=n) * (1 - math.exp(-_LAM * _HI))) / _LAM
    zs = stats.norm.cdf(_HI, _M0, _SW) - stats.norm.cdf(0, _M0, _SW)
    pb = _texp(x, _LAM)
    ev = {
        "weight": np.full(n, 1.0 / n),
        "logr_S": np.log(stats.norm.pdf(x, _M0, _SW) / zs / pb),
        "logr_B": np.zeros(n),
        "logr_B__sh_up": np.log(_texp(x, _LAM * (1 - _D)) / pb),
        "logr_B__sh_down": np.log(_texp(x, _LAM * (1 + _D)) / pb),
    }
    for k in ("logr_S", "logr_B__sh_up", "logr_B__sh_down"):  # normalised on the MC, as nsbi.build does
        ev[k] = ev[k] - np.log(np.sum(ev["weight"] * np.exp(ev[k])))
    return ev


def _norm_model(ev, obs, norm: bool):
    from nsbi.model.interpolation import code4_mean_nodes

    mods = [{"name": "sh", "type": "eventsys", "data": None}]
    if norm:
        w = ev["weight"]
        (lu, pu), (ld, pd) = (code4_mean_nodes(ev[f"logr_B__sh_{d}"], w) for d in ("up", "down"))
        mods[0]["data"] = {
            "norm": {"up": {"log": lu.tolist(), "p": pu.tolist()}, "down": {"log": ld.tolist(), "p": pd.tolist()}}
        }
    spec = {
        "channels": [
            {
                "name": "u",
                "type": "unbinned",
                "samples": [
                    {"name": "S", "yield": 300.0, "morphing": "mu", "modifiers": []},
                    {"name": "B", "yield": 3000.0, "modifiers": mods},
                ],
            }
        ]
    }
    meas = {
        "name": "m",
        "config": {
            "poi": "mu",
            "parameters": [{"name": "mu", "bounds": [[0.0, 5.0]]}, {"name": "sh", "bounds": [[-5.0, 5.0]]}],
        },
    }
    return Model(spec, {"u": obs}, meas)


def test_shape_normalisation_keeps_the_density_normalised():
    """With data.norm the per-event density integrates to the Poisson yield for every alpha
    (sum over the reference MC of u_i S_i = sum_c y_c), inside and beyond the knots; without it
    the integral moves by percents (the defect the normalisation removes)."""
    import jax.numpy as jnp

    ev = _norm_events()
    for norm, tol in ((True, 2e-5), (False, None)):
        m = _norm_model(ev, ev, norm)
        (u,) = m.unbinned_terms
        r = np.exp(np.stack([ev["logr_S"], ev["logr_B"]]))
        dev = []
        for a in (-2.5, -0.6, 0.5, 1.0, 1.4, 3.0):
            p = np.zeros(m.npars)
            p[m.index("mu")], p[m.index("sh")] = 1.0, a
            p = jnp.asarray(p)
            ye = np.asarray(u.event_yields(p))
            g = np.asarray(code4(np.float64(a), np.exp(ev["logr_B__sh_up"]), np.exp(ev["logr_B__sh_down"])))
            integral = np.sum(ev["weight"] * (ye[0] * r[0] + ye[1] * r[1] * g))
            dev.append(integral / float(np.sum(u.yields(p))) - 1)
        if norm:
            np.testing.assert_allclose(dev, 0.0, atol=tol)
        else:
            assert max(abs(d) for d in dev) > 0.01


@pytest.mark.parametrize("truth", [(1.0, 1.0), (0.5, -1.0), (1.5, 0.5), (1.0, 2.0)])
def test_asimov_fit_returns_the_injected_point_with_shape_normalisation(truth):
    """The Asimov dataset of the model at (mu, sh) is fitted back to (mu, sh) when the shape
    factors are normalised; without normalisation the same fit is pulled off by many of its
    own errors (the demo's LES linearity failure)."""
    from nsbi.fit import fit
    from nsbi.toys import ToyGenerator

    ev = _norm_events()
    out = {}
    for norm in (True, False):
        gen = ToyGenerator(_norm_model(ev, {k: v[:10] for k, v in ev.items()}, norm), {"u": ev})
        asimov = gen.model_for(gen.asimov({"mu": truth[0], "sh": truth[1]}))
        res = fit(asimov, errors="exact", hesse=False, tolerance=1e-6)
        out[norm] = res
    good, bad = out[True], out[False]
    i_mu, i_sh = good.names.index("mu"), good.names.index("sh")
    assert good.values[i_mu] == pytest.approx(truth[0], abs=0.02 * good.errors[i_mu])
    assert good.values[i_sh] == pytest.approx(truth[1], abs=0.02 * good.errors[i_sh])
    if truth[1] != 0.0:
        pull = max(abs(bad.values[i] - t) / good.errors[i] for i, t in ((i_mu, truth[0]), (i_sh, truth[1])))
        print(
            truth,
            "normalised:",
            good.values[[i_mu, i_sh]],
            good.errors[[i_mu, i_sh]],
            "not normalised:",
            bad.values[[i_mu, i_sh]],
            "largest pull",
            pull,
        )
        assert pull > 0.2


def test_bad_shape_normalisation_nodes_are_reported():
    m, ev = _unbinned_model(n=50, norm=True)
    import copy

    spec = copy.deepcopy(m.spec)
    nrm = spec["channels"][0]["samples"][1]["modifiers"][0]["data"]["norm"]
    nrm["down"]["p"] = [2 * x for x in nrm["down"]["p"]]
    with pytest.raises(ModelError, match=r"sample 'B': eventsys 's1' data.norm.down .*summing to 1"):
        Model(spec, {"u": ev}, {"name": "m", "config": {"poi": "mu", "parameters": []}})
    del nrm["down"]
    with pytest.raises(ModelError, match="data.norm needs up/down"):
        Model(spec, {"u": ev}, {"name": "m", "config": {"poi": "mu", "parameters": []}})


def _rich_binned_spec():
    """Two binned channels with every binned modifier type: a normfactor used twice on one
    sample, lumi, a normsys and a histosys of the same name on one sample, a one-sided
    histosys, staterror, shapesys, shapefactor and a morphing coefficient."""

    def hs(name, up, dn):
        return {"name": name, "type": "histosys", "data": {"hi_data": up, "lo_data": dn}}

    sr = {
        "name": "SR",
        "type": "binned",
        "samples": [
            {
                "name": "sig",
                "data": [3.0, 5.0, 2.0],
                "morphing": "mu - sqrt(mu)",
                "modifiers": [
                    {"name": "lumi", "type": "lumi"},
                    {"name": "jes", "type": "normsys", "data": {"hi": 1.1, "lo": 0.85}},
                    hs("jes", [3.3, 5.2, 2.0], [2.8, 4.7, 1.9]),
                    {"name": "sf", "type": "shapefactor"},
                ],
            },
            {
                "name": "bkg",
                "data": [20.0, 12.0, 6.0],
                "modifiers": [
                    {"name": "k", "type": "normfactor"},
                    {"name": "k", "type": "normfactor"},
                    hs("jer", [21.0, 12.5, 6.6], [20.0, 12.0, 6.0]),
                    {"name": "stat_SR", "type": "staterror", "data": [1.5, 1.0, 0.8]},
                    {"name": "shape_SR", "type": "shapesys", "data": [2.0, 1.5, 1.0]},
                ],
            },
        ],
    }
    cr = {
        "name": "CR",
        "type": "binned",
        "samples": [
            {
                "name": "bkg",
                "data": [100.0, 80.0],
                "modifiers": [
                    {"name": "k", "type": "normfactor"},
                    hs("jes", [104.0, 83.0], [97.0, 78.0]),
                    {"name": "stat_CR", "type": "staterror", "data": [3.0, 2.5]},
                ],
            },
            {
                "name": "sig",
                "data": [0.5, 0.2],
                "morphing": "sqrt(mu)",
                "modifiers": [{"name": "jer", "type": "normsys", "data": {"hi": 1.05, "lo": 0.97}}],
            },
        ],
    }
    return {"channels": [sr, cr]}


@pytest.mark.parametrize("point", [0.3, 1.4])
def test_binned_structured_hessian_matches_autodiff(point):
    """The binned kernel (BinnedChannels.logpdf_grad_hessian) gives value, gradient and
    Hessian equal to plain autodiff of -2 ln L on a model with every binned modifier type,
    inside (0.3) and outside (1.4) |alpha| <= 1, with an empty bin, and for replaced (toy)
    observations under vmap."""
    import jax

    spec = _rich_binned_spec()
    m = Model(
        spec,
        {"SR": [25, 0, 9], "CR": [97, 85]},
        {"name": "m", "config": {"poi": "mu", "parameters": [{"name": "lumi", "auxdata": [1.0], "sigmas": [0.02]}]}},
    )
    rng = np.random.default_rng(3)
    p = np.array(m.init, dtype=float)
    for i, name in enumerate(m.par_names):
        p[i] = {"mu": 1.7, "jes": point, "jer": -1.3 * point}.get(name, p[i] * (1.0 + 0.1 * rng.normal()))
    v, g, H = m.twice_nll_grad_hessian(p)
    v0, g0 = m.twice_nll_and_grad(p)
    ref = m.hessian_autodiff(p)
    assert v == pytest.approx(v0, rel=1e-13)
    np.testing.assert_allclose(g, g0, rtol=1e-10, atol=1e-12 * np.max(np.abs(g0)))
    np.testing.assert_allclose(H, ref, rtol=1e-10, atol=1e-12 * np.max(np.abs(ref)))
    # pseudo-experiments: replaced binned counts, vmapped
    obs = rng.poisson(np.tile(m.binned_observations + 1.0, (4, 1))).astype(float)
    jp = jax.numpy.asarray(p)
    vgh = jax.vmap(lambda o: m.value_grad_hessian_with(jp, m.data, binned_obs=o))(obs)

    def f(q, o):
        return m.twice_nll_with(q, m.data, binned_obs=o, custom_grad=False)

    ref = jax.vmap(lambda o: (f(jp, o), jax.grad(f)(jp, o), jax.hessian(f)(jp, o)))(obs)  # one compilation
    for t in range(len(obs)):
        assert float(vgh[0][t]) == pytest.approx(float(ref[0][t]), rel=1e-13)
        np.testing.assert_allclose(vgh[1][t], ref[1][t], rtol=1e-10, atol=1e-10)
        href = np.asarray(ref[2][t])
        np.testing.assert_allclose(vgh[2][t], href, rtol=1e-10, atol=1e-12 * np.max(np.abs(href)))


def test_events_of_zero_weight_add_nothing_where_the_density_is_not_positive():
    """An event of weight 0 (toy padding; an Asimov MC event where the model density is not
    positive, which gets expected weight 0) adds exactly nothing to -2 ln L, its gradient and
    Hessian, even at a point where its density is negative (0 log s would be NaN there); with
    a weight its ln S is the ln of the density floor (the model calls it all but impossible)."""

    def model(events):
        spec = {
            "channels": [
                {
                    "name": "u",
                    "type": "unbinned",
                    "samples": [
                        {"name": "S", "yield": 10.0, "morphing": "mu", "modifiers": []},
                        {"name": "B", "yield": 50.0, "morphing": "1 - mu", "modifiers": []},
                        {"name": "C", "yield": 40.0, "modifiers": []},
                    ],
                }
            ]
        }
        meas = {"name": "m", "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [[0.0, 5.0]]}]}}
        return Model(spec, {"u": events}, meas)

    rng = np.random.default_rng(2)
    ev = {"weight": np.ones(30), **{f"logr_{c}": rng.normal(0.0, 0.05, 30) for c in "SBC"}}
    # at mu = 1.5: 15 r_S - 25 r_B + 40 r_C < 0 for this event (> 0 for the others)
    bad = {"logr_S": -3.0, "logr_B": 1.0, "logr_C": -3.0}
    with_zero = {k: np.append(v, bad.get(k, 0.0)) for k, v in ev.items()}
    with_one = {k: np.append(v, bad.get(k, 1.0)) for k, v in ev.items()}
    p = np.array([1.5])
    m, m0, m1 = model(ev), model(with_zero), model(with_one)
    v, g, H = m.twice_nll_grad_hessian(p)
    v0, g0, H0 = m0.twice_nll_grad_hessian(p)
    assert np.isfinite(v) and v0 == pytest.approx(v, rel=1e-14)
    np.testing.assert_allclose(g0, g, rtol=1e-12)
    np.testing.assert_allclose(H0, H, rtol=1e-12)
    assert m0.twice_nll(p) == pytest.approx(v, rel=1e-14)
    np.testing.assert_allclose(m0.hessian_autodiff(p), H, rtol=1e-10)
    from nsbi.model.kernels import DENSITY_FLOOR_REL

    floor = DENSITY_FLOOR_REL * (15.0 + 25.0 + 40.0)  # sum of |yields| at mu = 1.5
    assert m1.twice_nll(p) == pytest.approx(v - 2.0 * np.log(floor), rel=1e-12)


def test_a_density_that_is_not_positive_is_floored_with_consistent_derivatives():
    """Where a morphing sum of estimated terms is not positive (strong interference, learned
    ratios), ln S_i is the ln of the floor (DENSITY_FLOOR_REL * sum |y_c|) instead of NaN, and
    the event leaves the derivatives: the custom gradient and the structured Hessian equal
    plain autodiff of the floored likelihood."""
    from nsbi.jax_setup import jax, jnp
    from nsbi.model.kernels import DENSITY_FLOOR_REL

    rng = np.random.default_rng(3)
    n = 400
    x = rng.uniform(0, 1, n)
    ev = {"weight": rng.uniform(0.5, 1.5, n)}
    ev["logr_A"] = np.log(0.2 + 1.6 * x)  # rises
    ev["logr_B"] = np.log(1.8 - 1.6 * x)  # falls: A - B < 0 at small x when mu > 1
    ev["logr_B__s_up"] = 0.1 * (x - 0.5)
    ev["logr_B__s_down"] = -0.1 * (x - 0.5)
    spec = {
        "channels": [
            {
                "name": "u",
                "type": "unbinned",
                "samples": [
                    {"name": "A", "yield": 300.0, "morphing": "mu", "modifiers": []},
                    {
                        "name": "B",
                        "yield": 200.0,
                        "morphing": "2 - mu",
                        "modifiers": [{"name": "s", "type": "eventsys"}],
                    },
                ],
            }
        ]
    }
    meas = {"name": "m", "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [[0.0, 5.0]]}]}}
    model = Model(spec, {"u": ev}, meas)
    ia, isys = model.index("mu"), model.index("s")

    def numpy_twice_nll(mu):
        ya, yb = 300.0 * mu, 200.0 * (2 - mu)
        s = ya * np.exp(ev["logr_A"]) + yb * np.exp(ev["logr_B"])
        floor = DENSITY_FLOOR_REL * (abs(ya) + abs(yb))
        return -2.0 * (np.sum(ev["weight"] * np.log(np.maximum(s, floor))) - (ya + yb)), int(np.sum(s <= floor))

    p = np.zeros(model.npars)
    values = {}
    for mu in (0.5, 1.0, 3.0):
        p[ia] = mu
        values[mu] = model.twice_nll(p)
        assert np.isfinite(values[mu])
    (ref, n0), (high, n_floored) = numpy_twice_nll(0.5), numpy_twice_nll(3.0)
    assert n0 == 0 and n_floored > 20  # the floor acts at mu = 3 only
    assert values[3.0] - values[0.5] == pytest.approx(high - ref, rel=1e-10)

    # derivatives of the floored likelihood: custom VJP and structured Hessian vs autodiff
    u = model.unbinned_terms[0]
    for mu, alpha in ((3.0, 0.4), (3.0, 1.7), (0.5, 0.4)):
        q = np.zeros(model.npars)
        q[ia], q[isys] = mu, alpha
        qj = jnp.asarray(q)
        g_custom = np.asarray(jax.grad(lambda t: u.logl(t))(qj))
        g_auto = np.asarray(jax.grad(lambda t: u.logl(t, custom_grad=False))(qj))
        np.testing.assert_allclose(g_custom, g_auto, rtol=1e-10, atol=1e-9)
        np.testing.assert_allclose(model.hessian(q), model.hessian_autodiff(q), rtol=1e-8, atol=1e-7)


def _histfactory_spec():
    """:func:`_rich_binned_spec` without its morphing coefficients (a pure HistFactory model,
    evaluated with numpy), with three normsys on one sample (their cross terms)."""
    spec = _rich_binned_spec()
    for ch in spec["channels"]:
        for s in ch["samples"]:
            s.pop("morphing", None)
    spec["channels"][0]["samples"][1]["modifiers"] += [
        {"name": "theory", "type": "normsys", "data": {"hi": 1.2, "lo": 0.9}},
        {"name": "jes", "type": "normsys", "data": {"hi": 0.95, "lo": 1.08}},
        {"name": "pdf", "type": "normsys", "data": {"hi": 1.03, "lo": 0.96}},
    ]
    spec["channels"][0]["samples"][0]["modifiers"].append({"name": "mu", "type": "normfactor"})
    return spec


@pytest.mark.parametrize("point", [0.3, 1.4, -2.1])
def test_histfactory_model_evaluated_with_numpy_equals_jax(point):
    """A binned model without morphing is evaluated with numpy (Model.backend, no JAX needed):
    value, gradient and Hessian equal the JAX program's and plain autodiff's, inside and
    outside |alpha| <= 1 (code 4 / 4p branches, three normsys on one sample, an empty bin),
    and so do the expected counts."""
    import jax
    import jax.numpy as jnp

    m = Model(
        _histfactory_spec(),
        {"SR": [25, 0, 9], "CR": [97, 85]},
        {"name": "m", "config": {"poi": "mu", "parameters": [{"name": "lumi", "auxdata": [1.0], "sigmas": [0.02]}]}},
    )
    assert m.backend == "numpy"
    rng = np.random.default_rng(5)
    p = np.array(m.init, dtype=float)
    for i, name in enumerate(m.par_names):
        shifts = {"mu": 1.7, "jes": point, "jer": -1.3 * point, "theory": 0.7 * point, "pdf": -0.4 * point}
        p[i] = shifts.get(name, p[i] * (1.0 + 0.1 * rng.normal()))
    v, g, H = m.twice_nll_grad_hessian(p)
    jv, jg, jH = jax.jit(m.value_grad_hessian_with)(jnp.asarray(p), m.data)
    ref = m.hessian_autodiff(p)
    assert v == pytest.approx(float(jv), rel=1e-13) and m.twice_nll(p) == pytest.approx(v, rel=1e-13)
    assert float(jax.jit(m.twice_nll_jax)(jnp.asarray(p), m.data)) == pytest.approx(v, rel=1e-13)
    gref = np.asarray(jax.grad(m.twice_nll_jax)(jnp.asarray(p), m.data))
    for got in (g, m.twice_nll_and_grad(p)[1], np.asarray(jg)):
        np.testing.assert_allclose(got, gref, rtol=1e-10, atol=1e-12 * np.max(np.abs(gref)))
    for got in (H, m.hessian(p), np.asarray(jH)):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12 * np.max(np.abs(ref)))
    # expected counts (numpy): the rates the JAX likelihood uses. Between two observations
    # n1, n2, -2 ln L changes by -2 sum_b [(n1 - n2) ln lam_b - lnG(n1 + 1) + lnG(n2 + 1)]
    exp = m.expected_binned(p)
    lam = np.zeros(m.nbins)
    for ch, s in m.binned_samples:
        first, nb = m.binned_offsets[ch]
        lam[first : first + nb] += exp[ch][s]
    n1, n2 = m.binned_observations, m.binned_observations + np.arange(1.0, m.nbins + 1)
    f = jax.jit(lambda o: m.twice_nll_with(jnp.asarray(p), m.data, binned_obs=o))
    lg = np.vectorize(math.lgamma)
    want = -2.0 * np.sum((n1 - n2) * np.log(lam) - lg(n1 + 1) + lg(n2 + 1))
    assert float(f(n1) - f(n2)) == pytest.approx(want, rel=1e-12)


def test_morphing_or_unbinned_models_use_jax():
    m = Model(
        _rich_binned_spec(),
        {"SR": [25, 0, 9], "CR": [97, 85]},
        {"name": "m", "config": {"poi": "mu", "parameters": [{"name": "lumi", "auxdata": [1.0], "sigmas": [0.02]}]}},
    )
    assert m.backend == "jax"
    assert _unbinned_model()[0].backend == "jax"
    meas = {"name": "m", "config": {"poi": "mu", "parameters": [{"name": "lumi", "auxdata": [1.0], "sigmas": [0.02]}]}}
    with pytest.raises(ModelError, match="backend 'numpy' needs a binned model without morphing"):
        Model(_rich_binned_spec(), {"SR": [25, 0, 9], "CR": [97, 85]}, meas, backend="numpy")
    with pytest.raises(ModelError, match="backend must be"):
        Model(_histfactory_spec(), {"SR": [25, 0, 9], "CR": [97, 85]}, meas, backend="torch")


def test_histfactory_model_on_either_backend_fits_the_same():
    """backend="jax" compiles the same closed forms the numpy backend evaluates: the fits agree."""
    from nsbi import fit as F

    obs = {"SR": [25, 0, 9], "CR": [97, 85]}
    meas = {"name": "m", "config": {"poi": "mu", "parameters": [{"name": "lumi", "auxdata": [1.0], "sigmas": [0.02]}]}}
    a, b = (Model(_histfactory_spec(), obs, meas, backend=k) for k in ("auto", "jax"))
    assert (a.backend, b.backend) == ("numpy", "jax")
    ra, rb = F.fit(a), F.fit(b)
    assert ra.status["valid"] and rb.status["valid"]
    assert ra.twice_nll == pytest.approx(rb.twice_nll, rel=1e-12)
    np.testing.assert_allclose(ra.values, rb.values, atol=1e-5)
    np.testing.assert_allclose(ra.errors, rb.errors, rtol=1e-4)
