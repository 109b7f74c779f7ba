"""Pseudo-experiments: expected yields, constraint (auxdata) distributions, unbinned resampling,
toy likelihood vs an ordinary Model of the same toy, seeding, serialisation."""

import math

import numpy as np
import pytest
from scipy import stats

from nsbi.model import Model
from nsbi.toys import ToyGenerator, ToySet

# ------------------------------------------------------------------ binned model with every constraint type
S_NOM, B_NOM = np.array([10.0, 20.0]), np.array([50.0, 40.0])
B_HI, B_LO = np.array([55.0, 44.0]), np.array([45.0, 36.0])
ST_UNC, SH_UNC = np.array([5.0, 2.0]), np.array([5.0, 8.0])


def binned_model():
    spec = {
        "channels": [
            {
                "name": "c",
                "type": "binned",
                "samples": [
                    {
                        "name": "s",
                        "data": S_NOM.tolist(),
                        "modifiers": [
                            {"name": "mu", "type": "normfactor", "data": None},
                            {"name": "a", "type": "normsys", "data": {"hi": 1.2, "lo": 0.8}},
                            {"name": "lumi", "type": "lumi", "data": None},
                        ],
                    },
                    {
                        "name": "b",
                        "data": B_NOM.tolist(),
                        "modifiers": [
                            {
                                "name": "h",
                                "type": "histosys",
                                "data": {"hi_data": B_HI.tolist(), "lo_data": B_LO.tolist()},
                            },
                            {"name": "st", "type": "staterror", "data": ST_UNC.tolist()},
                            {"name": "sh", "type": "shapesys", "data": SH_UNC.tolist()},
                        ],
                    },
                ],
            }
        ]
    }
    meas = {
        "name": "m",
        "config": {
            "poi": "mu",
            "parameters": [{"name": "lumi", "auxdata": [1.0], "sigmas": [0.05], "bounds": [[0.5, 1.5]]}],
        },
    }
    return Model(spec, {"c": [60, 60]}, meas)


THETA_B = {"mu": 1.5, "a": 1.5, "h": 1.0, "lumi": 1.02, "st[0]": 1.05, "st[1]": 0.97, "sh[0]": 0.9, "sh[1]": 1.1}


def test_binned_counts_and_auxdata_distributions():
    m = binned_model()
    gen = ToyGenerator(m)
    T = 4000
    toys = gen.generate(THETA_B, T, seed=12)
    # hand-computed expected counts: a = 1.5 and h = 1 are outside the interpolation polynomials
    lam = S_NOM * 1.5 * 1.2**1.5 * 1.02 + B_HI * np.array([1.05, 0.97]) * np.array([0.9, 1.1])
    mean, var = toys.binned.mean(0), toys.binned.var(0, ddof=1)
    assert np.all(np.abs(mean - lam) < 4 * np.sqrt(lam / T))
    assert np.all(np.abs(var / lam - 1) < 4 * math.sqrt(2 / T))
    # Gaussian auxdata: centred on theta, widths 1 (normsys/histosys), 0.05 (lumi), delta/nominal (staterror)
    sig = {"a": 1.0, "h": 1.0, "lumi": 0.05, "st[0]": 5 / 50, "st[1]": 2 / 40}
    names = [m.par_names[i] for i in m.constraints.normal_index]
    assert sorted(names) == sorted(sig)
    for j, n in enumerate(names):
        x = toys.aux_normal[:, j]
        assert abs(x.mean() - THETA_B[n]) < 4 * sig[n] / math.sqrt(T), n
        assert abs(x.std(ddof=1) / sig[n] - 1) < 4 / math.sqrt(2 * T), n
    # Poisson auxdata of shapesys: tau = (nominal / uncertainty)^2, mean = var = gamma * tau
    tau = (B_NOM / SH_UNC) ** 2
    lam_p = np.array([0.9, 1.1]) * tau
    assert [m.par_names[i] for i in m.constraints.poisson_index] == ["sh[0]", "sh[1]"]
    assert np.all(np.abs(toys.aux_poisson.mean(0) - lam_p) < 4 * np.sqrt(lam_p / T))
    assert np.all(np.abs(toys.aux_poisson.var(0, ddof=1) / lam_p - 1) < 4 * math.sqrt(2 / T))
    assert np.all(toys.aux_poisson == np.round(toys.aux_poisson))


def test_binned_toy_likelihood_uses_drawn_data_and_auxdata():
    m = binned_model()
    gen = ToyGenerator(m)
    toys = gen.generate(THETA_B, 3, seed=5)
    p = np.array([1.2, 0.3, -0.2, 1.01, 1.02, 0.99, 0.95, 1.05])
    vals = gen.twice_nll_values(toys, p)
    tau = (B_NOM / SH_UNC) ** 2
    for i in range(3):
        n = toys.binned[i]
        mi = gen.model_for(toys, i)
        assert vals[i] == pytest.approx(mi.twice_nll(p), rel=1e-12, abs=1e-9)
        # constraint part by hand with the drawn auxdata (the Poisson part of the bins is shared)
        aux = dict(zip([m.par_names[j] for j in m.constraints.normal_index], toys.aux_normal[i]))
        sig = {"a": 1.0, "h": 1.0, "lumi": 0.05, "st[0]": 0.1, "st[1]": 0.05}
        pv = dict(zip(m.par_names, p))
        lc = sum(stats.norm.logpdf(aux[k], pv[k], s) for k, s in sig.items())
        lc += sum(stats.poisson.logpmf(toys.aux_poisson[i][b], pv[f"sh[{b}]"] * tau[b]) for b in range(2))
        lam = np.sum([v for v in m.expected_binned(p)["c"].values()], axis=0)
        lb = np.sum(stats.poisson.logpmf(n, lam))
        assert vals[i] == pytest.approx(-2 * (lb + lc), rel=1e-10)


# ------------------------------------------------------------------ unbinned: Gaussian on exponential, exact ratios
LO, HI, LAM, M0, SW = 0.0, 10.0, 0.3, 5.0, 0.5
NU_S, NU_B = 50.0, 200.0
ZB = 1 - math.exp(-LAM * HI)
ZS = stats.norm.cdf(HI, M0, SW) - stats.norm.cdf(LO, M0, SW)


def p_b(x):
    return LAM * np.exp(-LAM * x) / ZB


def p_s(x):
    return stats.norm.pdf(x, M0, SW) / ZS


def ref_events(n, seed):
    rng = np.random.default_rng(seed)
    x = -np.log(1 - rng.uniform(size=n) * ZB) / LAM
    return x, {"weight": np.ones(n), "logr_S": np.log(p_s(x)) - np.log(p_b(x)), "logr_B": np.zeros(n)}


def unbinned_model(ev):
    spec = {
        "channels": [
            {
                "name": "u",
                "type": "unbinned",
                "samples": [
                    {"name": "S", "yield": NU_S, "morphing": "mu", "modifiers": []},
                    {
                        "name": "B",
                        "yield": NU_B,
                        "modifiers": [{"name": "n1", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}],
                    },
                ],
            }
        ]
    }
    meas = {"name": "m", "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [[-1.0, 5.0]]}]}}
    return Model(spec, {"u": ev}, meas)


def test_unbinned_resampling_yields_and_shape():
    x, ev = ref_events(40000, 1)
    m = unbinned_model({k: v[:100] for k, v in ev.items()})  # "observed" data: any events
    gen = ToyGenerator(m, {"u": ev})
    theta = {"mu": 1.3, "n1": -1.5}
    nu = 1.3 * NU_S + NU_B * 0.9**1.5
    # expected weights: the model density reweighting of the reference sample, by hand
    dens = 1.3 * NU_S * p_s(x) + NU_B * 0.9**1.5 * p_b(x)
    w_hand = dens / p_b(x)
    w_hand *= nu / w_hand.sum()
    np.testing.assert_allclose(gen.expected_weights(theta)[0], w_hand, rtol=1e-10)
    T = 1000
    toys = gen.generate(theta, T, seed=7)
    n = toys.n_events()[:, 0]
    assert abs(n.mean() - nu) < 4 * math.sqrt(nu / T)
    assert abs(n.var(ddof=1) / nu - 1) < 4 * math.sqrt(2 / T)
    assert np.all(toys.k[0] == np.round(toys.k[0]))
    assert toys.meta["repeat_fraction"][0] < 0.02
    # fraction of toy events in the signal window vs the reweighted-MC and the analytic values
    win = (x > 4) & (x < 6)
    f_mc = w_hand[win].sum() / w_hand.sum()
    k_win = sum(toys.k[0][t][win[toys.idx[0][t]] & (toys.k[0][t] > 0)].sum() for t in range(T))
    f_toy = k_win / n.sum()
    assert abs(f_toy - f_mc) < 4 * math.sqrt(f_mc * (1 - f_mc) / n.sum())
    pw = lambda f, a, b: integrate_cdf(f, a, b)
    f_exact = (1.3 * NU_S * pw("s", 4, 6) + NU_B * 0.9**1.5 * pw("b", 4, 6)) / nu
    assert f_mc == pytest.approx(f_exact, abs=0.01)


def integrate_cdf(kind, a, b):
    if kind == "s":
        return (stats.norm.cdf(b, M0, SW) - stats.norm.cdf(a, M0, SW)) / ZS
    return (math.exp(-LAM * a) - math.exp(-LAM * b)) / ZB


def test_unbinned_toy_likelihood_matches_model_of_the_toy():
    x, ev = ref_events(5000, 2)
    m = unbinned_model({k: v[:100] for k, v in ev.items()})
    gen = ToyGenerator(m, {"u": ev})
    toys = gen.generate({"mu": 0.8, "n1": 0.3}, 4, seed=3)
    for p in (np.array([1.0, 0.0]), np.array([0.6, -0.7]), np.array([1.7, 1.4])):
        vals = gen.twice_nll_values(toys, p)
        for i in range(4):
            mi = gen.model_for(toys, i)
            assert vals[i] == pytest.approx(mi.twice_nll(p), rel=1e-11)
            # and by hand: sum_i k_i ln S_i - nu + Gaussian constraint with the drawn auxdata
            sel = toys.k[0][i] > 0
            xi, ki = x[toys.idx[0][i][sel]], toys.k[0][i][sel]
            kb = 1.1 ** p[1] if p[1] >= 1 else None
            if kb is not None:
                S = p[0] * NU_S * p_s(xi) / p_b(xi) + NU_B * kb
                lp = np.sum(ki * np.log(S)) - p[0] * NU_S - NU_B * kb
                lp += stats.norm.logpdf(toys.aux_normal[i][0], p[1], 1.0)
                assert vals[i] == pytest.approx(-2 * lp, rel=1e-10)


def test_mc_at_parameter_point_equals_reference_mode():
    x, ev = ref_events(3000, 3)
    m = unbinned_model({k: v[:50] for k, v in ev.items()})
    # MC weights describing the expected rate at theta0 = (mu = 1, n1 = 0)
    ev0 = dict(ev, weight=(NU_S * p_s(x) + NU_B * p_b(x)) / p_b(x) / len(x))
    g_ref = ToyGenerator(m, {"u": ev})
    g_at = ToyGenerator(m, {"u": ev0}, mc_at={"mu": 1.0, "n1": 0.0})
    for th in ({"mu": 0.4, "n1": 0.5}, {"mu": 2.0, "n1": -1.2}):
        np.testing.assert_allclose(g_at.expected_weights(th)[0], g_ref.expected_weights(th)[0], rtol=1e-10)
    assert g_ref.ratio_norms()["u"]["B"] == pytest.approx(1.0)
    assert g_ref.ratio_norms()["u"]["S"] == pytest.approx(1.0, abs=0.05)


def test_negative_weights_refused_or_dropped():
    _, ev = ref_events(500, 4)
    m = unbinned_model({k: v[:50] for k, v in ev.items()})
    bad = dict(ev, weight=np.where(np.arange(500) % 10 == 0, -1.0, 1.0))
    with pytest.raises(ValueError, match="negative weight"):
        ToyGenerator(m, {"u": bad})
    g = ToyGenerator(m, {"u": bad}, negative="drop")
    w = g.expected_weights({"mu": 1.0})[0]
    assert np.all(w[::10] == 0) and w.sum() == pytest.approx(NU_S + NU_B)


def test_seeding_and_npz_roundtrip(tmp_path):
    _, ev = ref_events(2000, 5)
    m = unbinned_model({k: v[:50] for k, v in ev.items()})
    gen = ToyGenerator(m, {"u": ev})
    a = gen.generate({"mu": 1.0}, 5, seed=(1, 2, 3))
    b = gen.generate({"mu": 1.0}, 5, seed=(1, 2, 3))
    c = gen.generate({"mu": 1.0}, 5, seed=(1, 2, 4))
    np.testing.assert_array_equal(a.k[0], b.k[0])
    np.testing.assert_array_equal(a.aux_normal, b.aux_normal)
    assert not np.array_equal(a.n_events(), c.n_events())
    a.save(tmp_path / "t.npz")
    r = ToySet.load(tmp_path / "t.npz")
    np.testing.assert_array_equal(r.idx[0], a.idx[0])
    np.testing.assert_array_equal(r.k[0], a.k[0])
    np.testing.assert_array_equal(r.aux_normal, a.aux_normal)


def test_events_with_negative_model_density_get_zero_weight():
    """At mu = -1 the model density S = mu nu_S r_S + nu_B is negative near the signal peak
    (as learned ratios with negative morphing coefficients can give): those MC events get
    expected weight 0, are counted in the toy metadata, never appear in a toy, and the other
    weights are the model's (normalised to the expected yield)."""
    x, ev = ref_events(20000, 8)
    m = unbinned_model({k: v[:50] for k, v in ev.items()})
    gen = ToyGenerator(m, {"u": ev})
    theta = {"mu": -1.0, "n1": 0.0}
    S = -1.0 * NU_S * p_s(x) / p_b(x) + NU_B
    bad = S <= 0
    assert 0 < bad.sum() < len(x) // 2
    info = {}
    w = gen.expected_weights(theta, info)[0]
    assert info["nonpositive_events"] == [int(bad.sum())]
    assert info["nonpositive_weight_fraction"][0] == pytest.approx(bad.mean())
    assert np.all(w[bad] == 0)
    w_hand = np.where(bad, 0.0, S)
    w_hand *= (NU_B - NU_S) / w_hand.sum()
    np.testing.assert_allclose(w, w_hand, rtol=1e-10)
    toys = gen.generate(theta, 50, seed=4)
    assert toys.meta["nonpositive_events"] == [int(bad.sum())]
    for t in range(50):
        picked = toys.idx[0][t][toys.k[0][t] > 0]
        assert not np.any(bad[picked])
    # at a point where the density is positive everywhere nothing is dropped
    assert gen.generate({"mu": 1.0}, 2, seed=1).meta["nonpositive_events"] == [0]


def _toy_model_with_shapes(n=2000):
    """Unbinned channel with per-event systematics (eventsys), normsys and sqrt morphing, plus a
    binned channel with lumi and staterror: every term of the toy likelihood."""
    rng = np.random.default_rng(5)
    ev = {"weight": rng.uniform(0.5, 1.5, n)}
    for c in ("A", "B"):
        ev[f"logr_{c}"] = rng.normal(0, 0.3, n)
        for d in ("up", "down"):
            ev[f"logr_{c}__s1_{d}"] = rng.normal(0, 0.1, n)
    spec = {
        "channels": [
            {
                "name": "u",
                "type": "unbinned",
                "samples": [
                    {
                        "name": "A",
                        "yield": 40.0,
                        "morphing": "sqrt(mu)",
                        "modifiers": [{"name": "s1", "type": "eventsys"}],
                    },
                    {
                        "name": "B",
                        "yield": 90.0,
                        "modifiers": [
                            {"name": "s1", "type": "eventsys"},
                            {"name": "n1", "type": "normsys", "data": {"hi": 1.1, "lo": 0.95}},
                        ],
                    },
                ],
            },
            {
                "name": "b",
                "type": "binned",
                "samples": [
                    {
                        "name": "s",
                        "data": [8.0, 3.0],
                        "morphing": "mu",
                        "modifiers": [{"name": "lumi", "type": "lumi", "data": None}],
                    },
                    {
                        "name": "bk",
                        "data": [20.0, 30.0],
                        "modifiers": [
                            {"name": "n1", "type": "normsys", "data": {"hi": 1.2, "lo": 0.9}},
                            {"name": "st", "type": "staterror", "data": [2.0, 3.0]},
                        ],
                    },
                ],
            },
        ]
    }
    meas = {
        "name": "m",
        "config": {"poi": "mu", "parameters": [{"name": "lumi", "auxdata": [1.0], "sigmas": [0.02]}]},
    }
    obs = {"u": {k: v[:200] for k, v in ev.items()}, "b": [12, 31]}
    return Model(spec, obs, meas), ev


@pytest.mark.parametrize("point", [{"mu": 1.2, "s1": 0.4, "n1": -0.3}, {"mu": 0.6, "s1": -1.7, "n1": 1.4}])
def test_one_pass_toy_hessian_matches_autodiff(point):
    """The batched toy fits' value, gradient and Hessian (one pass over each toy's own events,
    :meth:`ToyGenerator.twice_nll_vgh`) equal plain autodiff of the toy likelihood, inside and
    outside |alpha| <= 1, with the toys' own binned counts and auxiliary data."""
    import jax

    m, ev = _toy_model_with_shapes()
    gen = ToyGenerator(m, {"u": ev})
    toys = gen.generate({"mu": 1.0, "s1": 0.5, "n1": -0.5}, 3, seed=11)
    p = np.array(m.init, float)
    for k, v in point.items():
        p[m.index(k)] = v
    P = np.broadcast_to(p, (len(toys), m.npars))
    data, mc = toys.data(), gen.mc_arrays
    v, g, H = jax.vmap(gen.twice_nll_vgh, in_axes=(0, 0, None))(P, data, mc)
    ref_v = jax.vmap(gen.twice_nll, in_axes=(0, 0, None))(P, data, mc)
    ref_g = jax.vmap(jax.grad(gen.twice_nll), in_axes=(0, 0, None))(P, data, mc)
    ref_H = jax.vmap(jax.hessian(gen.twice_nll), in_axes=(0, 0, None))(P, data, mc)
    np.testing.assert_allclose(v, ref_v, rtol=1e-12)
    np.testing.assert_allclose(v, gen.twice_nll_values(toys, p), rtol=1e-12)
    np.testing.assert_allclose(g, ref_g, rtol=1e-9, atol=1e-9 * np.max(np.abs(ref_g)))
    np.testing.assert_allclose(H, ref_H, rtol=1e-9, atol=1e-9 * np.max(np.abs(ref_H)))
    # the toy data really enter: a second toy differs from the first
    assert abs(float(v[0] - v[1])) > 1e-3
