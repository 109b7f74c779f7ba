"""Neyman construction: toy critical values vs chi2 quantiles in the asymptotic regime, chunked
belt + gather + intervals vs the analytic counting-experiment interval, coverage, Asimov
bias/linearity, plots."""

import json
import math
import re

import numpy as np
import pytest
from scipy import optimize, stats

from nsbi import neyman as N
from nsbi.model import Model
from nsbi.plotting.intervals import (
    plot_belt,
    plot_coverage,
    plot_linearity,
    plot_t_distribution,
)
from nsbi.toys import ToyGenerator


def counting(s, b, n_obs, normsys=None, bounds=(0.0, 5.0), staterror=None):
    mods = [] if normsys is None else [{"name": "a", "type": "normsys", "data": {"hi": 1 + normsys, "lo": 1 - normsys}}]
    if staterror is not None:
        mods.append({"name": "st", "type": "staterror", "data": [staterror]})
    spec = {
        "channels": [
            {
                "name": "c",
                "type": "binned",
                "samples": [
                    {"name": "s", "data": [s], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
                    {"name": "b", "data": [b], "modifiers": mods},
                ],
            }
        ]
    }
    meas = {"name": "m", "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [list(bounds)]}]}}
    return Model(spec, {"c": [n_obs]}, meas)


def test_critical_values_approach_chi2_quantiles(tmp_path):
    # large counts: s = 100, b = 1000, 2% normsys on b -> Wilks regime
    m = counting(100.0, 1000.0, 1100, normsys=0.02)
    gen = ToyGenerator(m)
    n = 2000
    chunks = [N.compute_chunk(gen, 1.0, n // 2, seed=5, mu_index=0, batch=b) for b in range(2)]
    belt = N.gather(chunks)
    assert belt["n_toys"] == [n] and belt["n_failed"] == [0]
    for cl in (0.68, 0.95):
        q = stats.chi2.ppf(cl, 1)
        # standard error of a sample quantile: sqrt(cl (1 - cl) / n) / density
        se = math.sqrt(cl * (1 - cl) / n) / stats.chi2.pdf(q, 1)
        c = belt["critical"][f"{cl:g}"]["value"][0]
        assert abs(c - q) < 3 * se, (cl, c, q, se)
        assert belt["critical_asymptotic"][f"{cl:g}"] == pytest.approx(q)
        assert belt["critical"][f"{cl:g}"]["lo"][0] <= c <= belt["critical"][f"{cl:g}"]["hi"][0]
    assert abs(belt["mean_t"][0] - 1.0) < 3 * math.sqrt(2 / n)
    t = np.concatenate([c["t"] for c in chunks])
    plot_t_distribution(t, tmp_path / "t.png", mu=1.0)
    assert (tmp_path / "t.png").stat().st_size > 0
    assert N.asymptotic_critical(0.95, "q") == pytest.approx(stats.chi2.ppf(0.90, 1))


def _t_counting(mu, s, b, n):
    lam, lam_hat = s * mu + b, max(n, b)  # mu_hat >= 0 bound: lam_hat = max(n, b)
    return 2 * ((lam - lam_hat) - n * math.log(lam / lam_hat))


def test_belt_from_chunks_and_intervals(tmp_path):
    s, b, n_obs = 20.0, 50.0, 80
    m = counting(s, b, n_obs)
    gen = ToyGenerator(m)
    grid = np.linspace(0.0, 3.5, 15)
    paths = []
    for i, mu in enumerate(grid):
        for batch in range(2):
            c = N.compute_chunk(gen, float(mu), 100, seed=11, mu_index=i, batch=batch)
            paths.append(N.write_chunk(c, tmp_path / f"chunk_{i}_{batch}.{'json' if batch == 0 else 'npz'}"))
    fine = np.linspace(0.0, 3.5, 141)
    obs = N.observed_t(m, fine)
    # analytic t_mu of the one-bin counting experiment
    np.testing.assert_allclose(obs["t"], [_t_counting(x, s, b, n_obs) for x in fine], atol=1e-6)
    asimov = N.observed_t(gen.model_for(gen.asimov({"mu": 1.0})), fine)
    belt = N.gather(paths, observed=obs, asimov=asimov)
    N.write_json(belt, tmp_path / "belt.json")
    assert belt["poi"] == "mu" and belt["poi_values"] == pytest.approx(grid.tolist())
    assert belt["n_toys"] == [200] * len(grid)
    iv = belt["datasets"]["observed"]["intervals"]
    for cl in (0.68, 0.95):
        k = f"{cl:g}"
        level = stats.chi2.ppf(cl, 1)

        def f(x, level=level):
            return _t_counting(x, s, b, n_obs) - level

        lo, hi = optimize.brentq(f, 0.0, 1.5), optimize.brentq(f, 1.5, 3.5)
        assert iv[k]["asymptotic_fine"]["lo"] == pytest.approx(lo, abs=2e-3)
        assert iv[k]["asymptotic_fine"]["hi"] == pytest.approx(hi, abs=2e-3)
        # near-asymptotic regime: the toy interval is close to Wilks' (critical values from
        # 200 toys: ~0.1 in t_mu, i.e. a few 0.01 in mu, plus the 0.25 grid interpolation)
        assert iv[k]["toys"]["lo"] == pytest.approx(lo, abs=0.12)
        assert iv[k]["toys"]["hi"] == pytest.approx(hi, abs=0.12)
        assert iv[k]["toys"]["connected"] and not iv[k]["toys"]["open_hi"]
    ai = belt["datasets"]["asimov"]["intervals"]["0.68"]["asymptotic_fine"]
    assert 0.5 * (ai["lo"] + ai["hi"]) == pytest.approx(1.0, abs=0.05)
    plot_belt(belt, tmp_path / "belt.png")
    assert (tmp_path / "belt.png").stat().st_size > 0
    with pytest.raises(ValueError, match="duplicate"):
        N.gather(paths + paths[:1])


# ------------------------------------------------------------------ unbinned model (exact ratios)
LAM, M0, SW, HI = 0.3, 5.0, 0.5, 10.0
ZB = 1 - math.exp(-LAM * HI)
ZS = stats.norm.cdf(HI, M0, SW) - stats.norm.cdf(0.0, M0, SW)


def unbinned(n_mc=20000, seed=1, with_binned=False):
    rng = np.random.default_rng(seed)
    x = -np.log(1 - rng.uniform(size=n_mc) * ZB) / LAM
    lr = np.log(stats.norm.pdf(x, M0, SW) / ZS) - np.log(LAM * np.exp(-LAM * x) / ZB)
    lr -= np.log(np.mean(np.exp(lr)))  # ratio normalised on the MC (as the NSBI workspace does)
    ev = {"weight": np.ones(n_mc), "logr_S": lr, "logr_B": np.zeros(n_mc)}
    chans = [
        {
            "name": "u",
            "type": "unbinned",
            "samples": [
                {"name": "S", "yield": 50.0, "morphing": "mu", "modifiers": []},
                {
                    "name": "B",
                    "yield": 200.0,
                    "modifiers": [{"name": "n1", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}}],
                },
            ],
        }
    ]
    obs = {"u": {k: v[:200] for k, v in ev.items()}}
    if with_binned:
        chans.append(
            {
                "name": "c",
                "type": "binned",
                "samples": [
                    {
                        "name": "b",
                        "data": [30.0, 20.0],
                        "modifiers": [
                            {"name": "sh", "type": "shapesys", "data": [3.0, 4.0]},
                            {"name": "n1", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}},
                        ],
                    },
                    {"name": "s", "data": [5.0, 8.0], "morphing": "mu", "modifiers": []},
                ],
            }
        )
        obs["c"] = [33, 25]
    meas = {"name": "m", "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [[-1.0, 5.0]]}]}}
    m = Model({"channels": chans}, obs, meas)
    return m, ToyGenerator(m, {"u": ev})


def test_coverage_unbinned(tmp_path):
    _, gen = unbinned()
    gen.pad_to = [384]  # one compiled shape for all parameter points
    mus, n_belt, n_cov = [0.5, 1.5], 600, 300
    belt = N.gather([N.compute_chunk(gen, mu, n_belt, seed=1, mu_index=i, batch_size=150) for i, mu in enumerate(mus)])
    cov = N.coverage_from_chunks(
        [N.compute_chunk(gen, mu, n_cov, seed=2, mu_index=i, batch_size=150) for i, mu in enumerate(mus)], belt=belt
    )
    N.write_json(cov, tmp_path / "coverage.json")
    for row in cov["points"]:
        assert row["n_failed"] == 0
        for cl in (0.68, 0.95):
            k = f"{cl:g}"
            # toy critical values: binomial error of the coverage toys and of the belt quantile
            sig_t = math.sqrt(cl * (1 - cl) * (1 / n_cov + 1 / n_belt))
            assert abs(row["toys"][k]["fraction"] - cl) < 3 * sig_t, (row["poi_true"], k, row["toys"][k])
            sig_a = math.sqrt(cl * (1 - cl) / n_cov)
            assert abs(row["asymptotic"][k]["fraction"] - cl) < 3 * sig_a, (row["poi_true"], k, row["asymptotic"][k])
            a, b_ = row["asymptotic"][k]["clopper_pearson_68"]
            assert a <= row["asymptotic"][k]["fraction"] <= b_
    plot_coverage(cov, tmp_path / "coverage.png")
    assert (tmp_path / "coverage.png").stat().st_size > 0


def test_linearity_on_asimov(tmp_path):
    _, gen = unbinned(n_mc=5000, with_binned=True)
    points = [
        {"mu": 0.5},
        {"mu": 1.0},
        {"mu": 2.0},
        {"mu": 1.0, "n1": 0.5},
        {"mu": 1.5, "n1": -1.3, "sh[1]": 1.1},
        {"mu": 5.0},
    ]
    lin = N.linearity(gen, points)
    N.write_json(lin, tmp_path / "linearity.json")
    assert lin["n_failed"] == 0
    for p, inj in zip(lin["points"], points):
        assert p["poi_fitted"] == pytest.approx(inj["mu"], abs=1e-3)
        for name, v in inj.items():
            assert p["fitted"][name] == pytest.approx(v, abs=1e-3)
        assert p["poi_error"] > 0 or p["at_bound"]
    assert lin["max_abs_poi_bias"] < 1e-3
    assert lin["linear_fit"]["slope"] == pytest.approx(1.0, abs=1e-3)
    assert [p["shifted"] for p in lin["points"]] == [[], [], [], ["n1"], ["n1", "sh[1]"], []]
    assert [p["at_bound"] for p in lin["points"]] == [False] * 5 + [True]  # mu = 5 is the upper bound
    assert lin["n_fitted_at_bound"] == 0 and all(p["fitted_at_bound"] == [] for p in lin["points"])
    assert lin["max_abs_nuisance_bias_over_error"] < 1e-2
    # errors: 2 H^-1 of the toy likelihood (gen.twice_nll, the vmapped toys' -2lnL, plain
    # autodiff) at the injected point: an implementation independent of nsbi.fit's Model
    import jax
    import jax.numpy as jnp

    free = ~np.asarray(gen.model.fixed, bool)
    for p, inj in zip(lin["points"][:5], points[:5]):
        th = N.param_vector(gen.model, inj)
        data = jax.tree_util.tree_map(lambda a: jnp.asarray(a[0]), gen.asimov(th).data())
        H = np.asarray(jax.hessian(gen.twice_nll)(jnp.asarray(th), data, gen.mc_arrays))
        err = np.sqrt(np.diag(2.0 * np.linalg.inv(H[np.ix_(free, free)])))
        assert [p["errors"][n] for n, f in zip(gen.model.par_names, free) if f] == pytest.approx(err, rel=2e-3)
        assert p["converged"]
    plot_linearity(lin, tmp_path / "lin.png")
    assert (tmp_path / "lin.png").stat().st_size > 0


def interference(n_mc=6000, seed=3, bounds=(0.0, 5.0)):
    """Off-shell-like interference on the exponential model above: the density at mu is
    mu S + sqrt(mu) I + B with I = -sqrt(S B) (|I| < 2 sqrt(S B): positive for every mu),
    written with the basis samples S, SBI = S + I + B and B and the coefficients mu - sqrt(mu),
    sqrt(mu), 1 - sqrt(mu); plus a binned control region with the same morphing."""
    rng = np.random.default_rng(seed)
    x = -np.log(1 - rng.uniform(size=n_mc) * ZB) / LAM
    p_ref = LAM * np.exp(-LAM * x) / ZB
    dens = {"S": 60.0 * stats.norm.pdf(x, M0, SW) / ZS, "B": 200.0 * p_ref}
    dens["SBI"] = dens["S"] + dens["B"] - np.sqrt(dens["S"] * dens["B"])
    ev = {"weight": np.ones(n_mc)}
    samples = []
    for name, morph in (("S", "mu - sqrt(mu)"), ("SBI", "sqrt(mu)"), ("B", "1 - sqrt(mu)")):
        nu = float(np.mean(dens[name] / p_ref))  # the yield, estimated on the MC itself
        ev[f"logr_{name}"] = np.log(dens[name] / (nu * p_ref))
        mods = [{"name": "n1", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}}] if name == "B" else []
        samples.append({"name": name, "yield": nu, "morphing": morph, "modifiers": mods})
    cr = {
        "name": "c",
        "type": "binned",
        "samples": [
            {"name": "S", "data": [4.0, 2.0], "morphing": "mu - sqrt(mu)", "modifiers": []},
            {"name": "SBI", "data": [40.0, 30.0], "morphing": "sqrt(mu)", "modifiers": []},
            {
                "name": "B",
                "data": [38.0, 29.0],
                "morphing": "1 - sqrt(mu)",
                "modifiers": [{"name": "sh", "type": "shapesys", "data": [3.0, 4.0]}],
            },
        ],
    }
    spec = {"channels": [{"name": "u", "type": "unbinned", "samples": samples}, cr]}
    meas = {"name": "m", "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [list(bounds)]}]}}
    m = Model(spec, {"u": {k: v[:150] for k, v in ev.items()}, "c": [40, 30]}, meas)
    return m, ToyGenerator(m, {"u": ev})


@pytest.mark.parametrize("mu", [0.0, 0.3])
def test_toys_near_mu_zero_are_fitted_in_sqrt_mu_without_fallback(mu):
    """Interference morphing has an infinite slope in mu at mu = 0, where the batched Newton in
    mu stops on the bound and hands the toy to MIGRAD. :func:`nsbi.neyman.toy_t` fits in
    sqrt(mu), where the coefficients are polynomials: no fallback, and the same t_mu as the
    fits in mu (batched Newton with MIGRAD fallback at 1e-6) to 1e-6 on every toy."""
    from nsbi.minimize import minimize_batch

    model, gen = interference()
    assert model.sqrt_poi_possible
    ip = model.poi_index
    theta = N.param_vector(model, {"mu": mu})
    toys = gen.generate(theta, 40, seed=(7, 0, 0))
    res = N.toy_t(gen, toys, mu)
    assert res["n_fallback"] == 0 and res["n_failed"] == 0 and res["n_negative_t"] == 0
    free = ~np.asarray(model.fixed, bool)
    fc = free.copy()
    fc[ip] = False
    kw = {"shared": (gen.mc_arrays,), "vgh": gen.twice_nll_vgh}
    rf = minimize_batch(gen.twice_nll, toys.data(), theta, model.bounds, free, **kw)
    rc = minimize_batch(gen.twice_nll, toys.data(), theta, model.bounds, fc, **kw)
    assert rf.n_failed == 0 and rc.n_failed == 0
    if mu == 0.0:
        assert rf.n_fallback > 0  # the fits in mu do need MIGRAD here
    np.testing.assert_allclose(res["twice_nll_free"], rf.twice_nll, rtol=0, atol=1e-6)
    np.testing.assert_allclose(res["twice_nll_cond"], rc.twice_nll, rtol=0, atol=1e-6)
    np.testing.assert_allclose(res["t"], np.maximum(rc.twice_nll - rf.twice_nll, 0.0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(res["poi_hat"], rf.values[:, ip], rtol=0, atol=1e-4)
    assert np.all(res["poi_hat"] >= 0.0)
    if mu == 0.0:
        assert np.sum(res["poi_hat"] == 0.0) > 5  # toys whose free fit sits on the bound


def test_linearity_at_mu_zero_with_interference():
    """The Asimov fit at mu = 0 converges by Newton in sqrt(mu) (no MIGRAD); values and the
    errors of the other points are in mu, from the Hessian in mu (as in the fits in mu)."""
    import jax
    import jax.numpy as jnp

    _, gen = interference()
    lin = N.linearity(gen, [{"mu": 0.0}, {"mu": 1.0}, {"mu": 2.0, "n1": 0.5}])
    assert lin["n_failed"] == 0
    assert [p["minimizer"] for p in lin["points"]] == ["newton"] * 3
    # from the default start (mu = 1) the mu = 0 Asimov fit ends in a second, local minimum near
    # mu = 0.33; the fit from the injected point finds the global one, which is reported
    assert [p["local_minimum_from_start"] for p in lin["points"]] == [True, False, False]
    assert lin["n_local_minima_from_start"] == 1
    for p, inj in zip(lin["points"], (0.0, 1.0, 2.0)):
        assert p["poi_fitted"] == pytest.approx(inj, abs=1e-4)
    assert lin["points"][2]["fitted"]["n1"] == pytest.approx(0.5, abs=1e-3)
    model = gen.model
    free = ~np.asarray(model.fixed, bool)
    for p in lin["points"][1:]:
        th = N.param_vector(model, p["injected"])
        data = jax.tree_util.tree_map(lambda a: jnp.asarray(a[0]), gen.asimov(th).data())
        H = np.asarray(jax.hessian(gen.twice_nll)(jnp.asarray(th), data, gen.mc_arrays))
        err = np.sqrt(np.diag(2.0 * np.linalg.inv(H[np.ix_(free, free)])))
        assert [p["errors"][n] for n, f in zip(model.par_names, free) if f] == pytest.approx(err, rel=2e-3)


def test_linearity_reports_a_nuisance_parameter_that_runs_to_its_bound():
    """An inconsistent model (per-event shape factors without their normalisation, see
    tests/test_model.py) fitted on its own Asimov dataset: the shape parameter runs to its
    bound, which the summary reports instead of hiding it behind a zero POI error."""
    from test_model import _norm_events, _norm_model

    ev = _norm_events(20000)
    out = {}
    for norm in (False, True):
        gen = ToyGenerator(_norm_model(ev, {k: v[:10] for k, v in ev.items()}, norm), {"u": ev})
        out[norm] = N.linearity(gen, [{"mu": 1.0}, {"mu": 1.0, "sh": 1.0}])
    bad, good = out[False], out[True]
    assert "sh" in bad["points"][1]["fitted_at_bound"]
    # a parameter held on a bound has no Hessian error; the nominal point is pulled too
    assert bad["points"][1]["errors"]["sh"] == 0.0
    assert bad["n_fitted_at_bound"] == 1 and bad["max_abs_nuisance_bias_over_error"] > 0.2
    assert good["n_fitted_at_bound"] == 0 and good["max_abs_nuisance_bias_over_error"] < 0.05


def test_profiled_generation_point_is_the_conditional_mle():
    """``theta_at(..., "profiled")``: toys at each mu are generated at the conditional MLE of the
    nuisance parameters on the observed data. Counting model lambda = mu s + gamma b with a
    Gaussian staterror constraint N(1 | gamma, sigma): the conditional MLE of gamma solves
    n b / lambda - b - (gamma - 1) / sigma^2 = 0 (by hand, scipy root finding); the toys' mean
    count and mean auxiliary datum reproduce mu s + gamma_hat b and gamma_hat, and differ from
    the nominal-nuisance toys."""
    s, b, delta, n_obs, mu = 10.0, 50.0, 5.0, 80, 1.0
    model = counting(s, b, n_obs, staterror=delta)
    gen = ToyGenerator(model)
    sig = delta / b

    def score(g):
        return n_obs * b / (mu * s + g * b) - b - (g - 1.0) / sig**2

    g_hat = optimize.brentq(score, 0.5, 2.0, xtol=1e-14)
    assert g_hat > 1.1  # the data pull the nuisance parameter well away from nominal
    theta = N.theta_at(gen, mu, "profiled")
    assert theta[model.index("mu")] == mu
    assert theta[model.index("st[0]")] == pytest.approx(g_hat, abs=1e-5)
    T = 4000
    toys = gen.generate(theta, T, seed=5)
    lam = mu * s + g_hat * b
    assert abs(toys.binned[:, 0].mean() - lam) < 4 * math.sqrt(lam / T)
    assert abs(toys.aux_normal[:, 0].mean() - g_hat) < 4 * sig / math.sqrt(T)
    nominal = gen.generate(N.theta_at(gen, mu, "nominal"), T, seed=5)
    assert abs(nominal.binned[:, 0].mean() - (mu * s + b)) < 4 * math.sqrt((mu * s + b) / T)
    assert toys.binned[:, 0].mean() - nominal.binned[:, 0].mean() > 5.0


# ------------------------------------------------------------------ POI-neutral keys, old files, POI label
def _as_written_before(obj, kind):
    """``obj`` with the keys of the earlier version (the POI called "mu"), written out here by
    hand rather than from nsbi.io's table, so that a wrong table fails the tests."""
    import copy

    obj = copy.deepcopy(obj)

    def rename(d, old, new):
        assert new in d, (kind, new)
        d[old] = d.pop(new)

    if kind == "chunk":
        for old, new in (("mu", "poi_value"), ("mu_index", "poi_index"), ("mu_hat", "poi_hat")):
            rename(obj, old, new)
        obj["format"] = "nsbi-neyman-chunk-1"
    elif kind == "t_curve":
        rename(obj, "mu", "poi_values")
        rename(obj, "mu_hat", "poi_hat")
    elif kind == "belt":
        rename(obj, "mu", "poi_values")
        for ds in obj["datasets"].values():
            rename(ds, "mu_hat", "poi_hat")
    elif kind == "coverage":
        del obj["poi"]  # the coverage output had no "poi" entry
        for row in obj["points"]:
            rename(row, "mu_true", "poi_true")
    return obj


def _write_old_chunk(chunk, path):
    """A chunk file as the earlier version wrote it: JSON, or npz with the arrays t, mu_hat,
    converged and theta next to a JSON header."""
    old = _as_written_before(chunk, "chunk")
    if path.suffix == ".npz":
        arrays = {k: np.asarray(old.pop(k)) for k in ("t", "mu_hat", "converged", "theta")}
        np.savez_compressed(path, header=np.array(json.dumps(old)), **arrays)
    else:
        path.write_text(json.dumps(old))
    return path


@pytest.fixture(scope="module")
def small_belt():
    """Chunks, observed t curve, belt and coverage of a counting experiment whose POI is
    called ``cw`` (a few toys: the numbers only have to be reproducible)."""
    spec = {
        "channels": [
            {
                "name": "c",
                "type": "binned",
                "samples": [
                    {"name": "s", "data": [20.0], "modifiers": [{"name": "cw", "type": "normfactor", "data": None}]},
                    {"name": "b", "data": [50.0], "modifiers": []},
                ],
            }
        ]
    }
    m = Model(
        spec, {"c": [80]}, {"name": "m", "config": {"poi": "cw", "parameters": [{"name": "cw", "bounds": [[0, 5]]}]}}
    )
    gen = ToyGenerator(m)
    grid = [0.5, 1.5, 2.5]
    chunks = [N.compute_chunk(gen, v, 40, seed=3, mu_index=i, batch=b) for i, v in enumerate(grid) for b in range(2)]
    obs = N.observed_t(m, np.linspace(0.5, 2.5, 9))
    belt = N.gather(chunks, observed=obs)
    cov_chunks = [N.compute_chunk(gen, 1.5, 40, seed=4, mu_index=0)]
    cov = N.coverage_from_chunks(cov_chunks, belt=belt)
    return {"chunks": chunks, "obs": obs, "belt": belt, "cov_chunks": cov_chunks, "cov": cov}


def test_outputs_have_poi_neutral_keys_and_the_poi_name(small_belt):
    c = small_belt["chunks"][2]
    assert c["poi"] == "cw" and c["format"] == "nsbi-neyman-chunk-2"
    assert c["poi_value"] == 1.5 and c["poi_index"] == 1 and len(c["poi_hat"]) == 40
    assert small_belt["obs"]["poi_values"] == pytest.approx(np.linspace(0.5, 2.5, 9).tolist())
    assert small_belt["obs"]["poi_hat"] == pytest.approx(1.5, abs=1e-3)  # (80 - 50) / 20
    belt, cov = small_belt["belt"], small_belt["cov"]
    assert belt["poi"] == "cw" and belt["poi_values"] == [0.5, 1.5, 2.5]
    assert belt["datasets"]["observed"]["poi_hat"] == pytest.approx(1.5, abs=1e-3)
    assert cov["poi"] == "cw" and [p["poi_true"] for p in cov["points"]] == [1.5]
    # no output of the validation stage names the POI "mu" any more
    for obj in (c, small_belt["obs"], belt, cov):
        text = json.dumps(obj)
        assert not re.search(r'"mu(_hat|_true|_index)?"', text), text[:300]


def test_readers_accept_files_with_the_old_keys(small_belt, tmp_path):
    """Chunks (JSON and npz), t curves, belts and coverage files written with the keys of the
    earlier version are read with a DeprecationWarning and give the same numbers."""
    chunks, obs, belt = small_belt["chunks"], small_belt["obs"], small_belt["belt"]
    new_paths, old_paths = [], []
    for i, c in enumerate(chunks):
        ext = "json" if i % 2 == 0 else "npz"
        new_paths.append(N.write_chunk(c, tmp_path / f"new_{i}.{ext}"))
        old_paths.append(_write_old_chunk(c, tmp_path / f"old_{i}.{ext}"))
    old_obs = _as_written_before(obs, "t_curve")
    for p in old_paths:
        with pytest.warns(DeprecationWarning, match=r"'mu', 'mu_index', 'mu_hat'.*'poi_value', 'poi_index', 'poi_hat'"):
            assert N.read_chunk(p) == N.read_chunk(new_paths[old_paths.index(p)])
    with pytest.warns(DeprecationWarning, match=r"'mu'"):
        from_old = N.gather(old_paths, observed=old_obs)
    assert from_old == N.gather(new_paths, observed=obs) == belt
    # an old chunk in memory (not from a file) is upgraded too
    with pytest.warns(DeprecationWarning):
        assert N.gather([_as_written_before(c, "chunk") for c in chunks], observed=obs) == belt
    # coverage against an old belt file, from old coverage chunks
    N.write_json(_as_written_before(belt, "belt"), tmp_path / "old_belt.json")
    N.write_json(belt, tmp_path / "belt.json")
    old_cov_chunk = _write_old_chunk(small_belt["cov_chunks"][0], tmp_path / "oc.json")
    with pytest.warns(DeprecationWarning, match=r"old_belt\.json.*'mu', 'mu_hat'.*'poi_values', 'poi_hat'"):
        cov_old = N.coverage_from_chunks([old_cov_chunk], belt=tmp_path / "old_belt.json")
    assert cov_old == N.coverage_from_chunks(small_belt["cov_chunks"], belt=tmp_path / "belt.json")
    assert cov_old == small_belt["cov"]
    assert N.read_belt(tmp_path / "belt.json") == json.loads((tmp_path / "belt.json").read_text())
    # the plots read old files as well (the same data points)
    old_cov = _as_written_before(small_belt["cov"], "coverage")
    with pytest.warns(DeprecationWarning, match=r"'mu_true'.*'poi_true'"):
        fig = plot_coverage(old_cov)
    x_old = fig.axes[0].lines[1].get_xdata()
    assert np.allclose(x_old, plot_coverage(small_belt["cov"]).axes[0].lines[1].get_xdata())
    with pytest.warns(DeprecationWarning):
        fig = plot_belt(_as_written_before(belt, "belt"))
    assert fig.axes[0].get_xlabel() == "cw"  # no poi_label: the POI name, plain text (not Greek)
    # a file with an old key and its new name is ambiguous
    both = {**chunks[0], "mu": 7.0}
    with pytest.raises(ValueError, match=r"'mu'.*'poi_value'"):
        N.gather([both])


def test_interval_plots_use_the_poi_label(small_belt):
    """Axis and legend texts write the POI with the given label, never as mu."""
    import matplotlib.pyplot as plt

    belt, cov = small_belt["belt"], small_belt["cov"]
    texts = []
    fig = plot_belt(belt, poi_label="$c_W$")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "$c_W$"
    assert ax.get_ylabel() == r"$t_{c_W} = -2\ln\lambda(c_W)$"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "$t_{c_W}$ observed" in legend
    texts += [ax.get_xlabel(), ax.get_ylabel(), *legend]
    fig = plot_coverage(cov, poi_label="$c_W$")
    assert fig.axes[0].get_xlabel() == "true $c_W$"
    texts.append(fig.axes[0].get_xlabel())
    lin = {"poi": "cw", "points": [{"poi_injected": v, "poi_fitted": v, "poi_error": 0.1} for v in (0.5, 1.0)]}
    fig = plot_linearity(lin, poi_label="$c_W$")
    assert fig.axes[0].get_ylabel() == "fitted $c_W$" and fig.axes[1].get_xlabel() == "injected $c_W$"
    fig = plot_t_distribution(np.linspace(0.01, 3, 50), kind="q", mu=1.5, poi_label="$c_W$")
    assert fig.axes[0].get_xlabel() == r"$\tilde q_{c_W}$ ($c_W$ = 1.5)"
    texts += [fig.axes[0].get_xlabel()]
    assert not any(r"\mu" in t or "μ" in t for t in texts), texts
    # defaults: the label of the POI name the results carry (mu -> Greek, unchanged demo plots)
    assert plot_coverage({**cov, "poi": "mu"}).axes[0].get_xlabel() == r"true $\mu$"
    assert plot_coverage(cov).axes[0].get_xlabel() == "true cw"
    assert plot_belt({**belt, "poi": "mu"}).axes[0].get_ylabel() == r"$t_{\mu} = -2\ln\lambda(\mu)$"
    for f in map(plt.figure, plt.get_fignums()):
        f.canvas.draw()  # every label is valid mathtext
    plt.close("all")
