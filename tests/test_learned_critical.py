"""Learned critical values (nsbi.learned_critical): quantile regression against the exact
quantiles of t_mu for a Gaussian mean with a constrained nuisance parameter and the bound
mu >= 0, the audit, determinism from the seed, and the toys spread over the POI range against
the grid construction's toys."""

import copy
import math

import numpy as np
import pytest
from scipy import optimize, stats
from test_neyman import interference

from nsbi import neyman as N
from nsbi.learned_critical import QuantileRegressor, audit, sample_points, toys_over_range

#: x ~ N(mu + beta, 1) with the auxiliary measurement a ~ N(beta, SIG_BETA): profiling beta
#: leaves z = x - a ~ N(mu, S) with S^2 = 1 + SIG_BETA^2; mu_hat = max(z, 0) (bound mu >= 0)
SIG_BETA = 0.5
S = math.sqrt(1 + SIG_BETA**2)
CLS = (0.68, 0.95)


def t_of(z, mu):
    mu_hat = np.maximum(z, 0.0)
    return ((z - mu) ** 2 - (z - mu_hat) ** 2) / S**2


def simulate(mu, rng):
    mu = np.asarray(mu, float)
    beta = rng.normal(0.0, 1.0, mu.shape)  # any true beta: t does not depend on it
    x = rng.normal(mu + beta, 1.0)
    a = rng.normal(beta, SIG_BETA)
    return t_of(x - a, mu)


def exact_critical(mu, cl):
    """The CL quantile of t at mu: P(t <= c) = P(z >= 0, |z - mu| <= c^(1/2) S) +
    P(z < 0, (mu^2 - 2 z mu) / S^2 <= c), z ~ N(mu, S)."""

    def cdf(c):
        r = math.sqrt(c) * S
        p = stats.norm.cdf(mu + r, mu, S) - stats.norm.cdf(max(mu - r, 0.0), mu, S)
        if mu > 0:
            zmin = (mu**2 - c * S**2) / (2 * mu)
            p += max(stats.norm.cdf(0.0, mu, S) - stats.norm.cdf(min(zmin, 0.0), mu, S), 0.0)
        else:
            p += stats.norm.cdf(0.0, mu, S)
        return p - cl

    return optimize.brentq(cdf, 1e-12, 50.0, xtol=1e-10)


@pytest.fixture(scope="module")
def trained():
    """The regressor on 6000 toys of the bounded Gaussian (about 20 s of training)."""
    rng = np.random.default_rng(1)
    poi = sample_points(0.0, 3.0, 6000, seed=2)
    t = simulate(poi, rng)
    return QuantileRegressor(CLS, 0.0, 3.0, seed=3).fit(poi, t), poi, t


def test_exact_critical_values_of_the_bounded_gaussian():
    rng = np.random.default_rng(5)
    for mu in (0.0, 0.4, 2.5):
        t = simulate(np.full(200_000, mu), rng)
        for cl in CLS:
            assert np.quantile(t, cl) == pytest.approx(exact_critical(mu, cl), abs=0.03)
    # far from the bound: the chi2 (1 dof) quantiles
    assert exact_critical(6.0, 0.95) == pytest.approx(stats.chi2.ppf(0.95, 1), rel=1e-6)


def test_learned_critical_values_match_the_exact_ones_and_pass_the_audit(trained):
    """One test for both (the training is the expensive part): the learned values against the
    exact quantiles, the audit on independent toys, and an audit that fails for wrong values."""
    reg = trained[0]
    mus = np.linspace(0.05, 2.95, 30)
    pred = reg.predict(mus)
    for cl, tol in ((0.68, 0.12), (0.95, 0.4)):
        exact = np.array([exact_critical(m, cl) for m in mus])
        np.testing.assert_allclose(pred[N.cl_key(cl)], exact, atol=tol)
    # the bound matters: near mu = 0 the 68 % critical value is far below chi2's 0.99
    assert pred["0.68"][0] < 0.5 < 0.9 < pred["0.68"][-1]
    assert np.all(pred["0.95"] > pred["0.68"])  # quantiles do not cross
    _, poi, t = trained
    rng = np.random.default_rng(11)
    audit_poi = np.repeat([0.1, 0.7, 1.3, 2.1, 2.8], 400)
    result = audit(reg, audit_poi, simulate(audit_poi, rng), tolerance=3.0)
    assert result["passed"] and len(result["points"]) == 5
    assert all(r["n_toys"] == 400 for r in result["points"])
    # critical values learned from a t scaled by 1.6 cover too much
    wrong = QuantileRegressor(CLS, 0.0, 3.0, seed=3, settings={"max_epochs": 60}).fit(poi, 1.6 * t)
    bad = audit(wrong, audit_poi, simulate(audit_poi, rng), tolerance=3.0)
    assert not bad["passed"] and bad["max_abs_pull"] > 3.0


def test_regressor_is_deterministic_from_its_seed():
    poi = sample_points(0.0, 3.0, 1500, seed=2)
    t = simulate(poi, np.random.default_rng(1))
    short = {"max_epochs": 40}
    fits = [QuantileRegressor(CLS, 0.0, 3.0, seed=s, settings=short).fit(poi, t) for s in (3, 3, 4)]
    mus = np.linspace(0, 3, 7)
    np.testing.assert_array_equal(fits[0].predict(mus)["0.95"], fits[1].predict(mus)["0.95"])
    assert not np.array_equal(fits[2].predict(mus)["0.95"], fits[0].predict(mus)["0.95"])
    with pytest.raises(ValueError, match="increase"):
        QuantileRegressor((0.95, 0.68), 0.0, 3.0)
    with pytest.raises(RuntimeError, match="not trained"):
        QuantileRegressor(CLS, 0.0, 3.0).predict([1.0])


def test_toys_over_the_range_are_the_grid_constructions_toys():
    """A toy at each of several POI values, fitted in one batch at its own POI, has the t of
    the first toy of compute_chunk at that POI with the same seed (the interference model:
    an unbinned channel, padded to one event count, and a binned one)."""
    _, gen = interference()
    points = [0.0, 0.4, 1.0, 2.2]
    out = toys_over_range(gen, points, seed=21, nuisances="nominal")
    assert out["poi"] == points and out["n_failed"] == 0
    for i, mu in enumerate(points):
        chunk = N.compute_chunk(gen, mu, 1, 21, mu_index=i, batch=0)
        assert out["t"][i] == pytest.approx(chunk["t"][0], abs=1e-6)


def test_learned_construction_in_the_workflow(tmp_path):
    """validation.method quantile_regression: the DAG has the learned jobs instead of the grid
    construction's, and the jobs, run by Snakemake on a binned workspace, give the critical
    values of learned_construction on the jobs' own toys (deterministic training)."""
    import json

    import yaml
    from conftest import job_counts, snakemake
    from test_multipoi import two_poi_raw, two_poi_workspace

    from nsbi import config as ncfg
    from nsbi import workspace as W
    from nsbi.learned_critical import learned_construction

    raw = two_poi_raw()
    raw["validation"].update(
        workspace="hist",
        method="quantile_regression",
        learned={
            "toys": {"per_batch": 400, "batches": 2, "seed": 5},
            "network": {"max_epochs": 150, "seed": 9},
            "audit": {"per_point": 100, "tolerance": 4.0},
        },
    )
    cfg_path = tmp_path / "learned.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    cfg = ncfg.validate(raw)
    counts = job_counts(snakemake("-n", "--configfile", str(cfg_path), "--directory", str(tmp_path)).stdout)
    assert counts["learned_toys"] == 2 and counts["learned_audit_chunk"] == 3 and counts["learned_critical"] == 1
    assert not {"neyman_chunk", "coverage_chunk", "neyman_gather", "coverage"} & set(counts)
    W.save(two_poi_workspace(cfg), tmp_path / ncfg.results_dir(cfg) / "workspace" / "hist.json")
    target = f"{ncfg.results_dir(cfg)}/validation/learned/critical.json"
    rules = ("learned_toys", "learned_audit_chunk", "learned_critical")
    snakemake(
        "--cores", "2", "--configfile", str(cfg_path), "--directory", str(tmp_path), target, "--allowed-rules", *rules
    )
    out = json.loads((tmp_path / target).read_text())
    assert out["n_toys"] == 800 and out["audit"]["passed"] and len(out["audit"]["points"]) == 3
    assert set(out["datasets"]) == {"observed", "asimov"}
    base = tmp_path / ncfg.results_dir(cfg) / "validation" / "learned"
    toys = [json.loads((base / f"toys/b{b}.json").read_text()) for b in (0, 1)]
    assert toys[0]["poi"] != toys[1]["poi"]  # the batches draw different POI values
    v = cfg["validation"]
    fine = np.linspace(v["grid"]["low"], v["grid"]["high"], v["observed_points"])
    again = learned_construction(
        toys,
        sorted((base / "audit").glob("*.json")),
        v["cls"],
        *ncfg.learned_range(cfg),  # the toys' range: the grid's, widened by the margin
        fine,
        seed=9,
        settings={"max_epochs": 150, "hidden": [32, 32], "learning_rate": 0.01, "patience": 40},
    )
    for k in out["critical"]:
        np.testing.assert_allclose(out["critical"][k], again["critical"][k], rtol=1e-6, atol=1e-6)  # float32 network
    assert (base / "critical.png").stat().st_size > 0


def test_learned_toys_cover_the_grid_range_widened_within_the_poi_bounds():
    import yaml
    from conftest import TEST_CONFIG

    from nsbi import config as ncfg

    raw = yaml.safe_load(TEST_CONFIG.read_text())
    raw["validation"]["grid"] = {"low": 0.0, "high": 3.0, "points": 7}
    raw["morphing"]["poi_bounds"] = [0.0, 3.2]
    assert ncfg.learned_range(ncfg.validate(copy.deepcopy(raw))) == pytest.approx((0.0, 3.2))  # default 10 %
    raw["validation"]["grid"]["low"] = 1.0
    raw["validation"]["learned"] = {"toys": {"margin": 0.05}}
    assert ncfg.learned_range(ncfg.validate(raw)) == pytest.approx((0.9, 3.1))


def test_audit_takes_any_critical_values_exact_pass_and_a_coarse_grid_near_the_bound_fails():
    """The audit interface (``cls``, ``dim``, ``predict``) also serves a grid construction's
    critical values, so that both are audited on the same toys (benchmarks/bench_learned.py)."""

    class Tabulated:
        cls, dim = list(CLS), 1

        def __init__(self, nodes):
            self.nodes = np.asarray(nodes, float)
            self.values = {N.cl_key(cl): np.array([exact_critical(m, cl) for m in self.nodes]) for cl in CLS}

        def predict(self, x):
            return {k: np.interp(np.ravel(x), self.nodes, v) for k, v in self.values.items()}

    rng = np.random.default_rng(21)
    audit_poi = np.repeat([0.05, 0.15, 1.3], 2000)
    t = simulate(audit_poi, rng)
    exact = audit(Tabulated(np.linspace(0.0, 3.0, 301)), audit_poi, t, tolerance=3.0)
    assert exact["passed"] and [r["poi"] for r in exact["points"]] == [0.05, 0.15, 1.3]
    # nodes 0 and 1.3: linear interpolation misses the steep rise of c_68 just above the bound
    coarse = audit(Tabulated([0.0, 1.3, 3.0]), audit_poi, t, tolerance=3.0)
    assert not coarse["passed"]
    assert coarse["points"][2]["levels"]["0.68"]["pull"] == pytest.approx(exact["points"][2]["levels"]["0.68"]["pull"])
