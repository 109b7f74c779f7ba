"""The focused test statistic (nsbi.focused): its quadrature against closed forms, its
acceptance regions for a Gaussian measurement against the analytic ones (noncentral chi2), and
the toy engine's focused t (batched fits) against iminuit fits of the same datasets, its belt
and its coverage through the Neyman machinery."""

import copy
import math

import numpy as np
import pytest
import yaml
from conftest import TEST_CONFIG, job_counts, snakemake
from scipy import stats
from test_neyman import counting

from nsbi import config as ncfg
from nsbi import neyman as N
from nsbi.focused import DEFAULT_NODES, FocusDensity, focused_t, log_marginal
from nsbi.plotting.intervals import plot_belt
from nsbi.toys import ToyGenerator

LN2PI = math.log(2 * math.pi)


def gaussian_twice_nll(x, mu, sigma=1.0):
    """-2 ln N(x; mu, sigma) for every x (rows) and mu (last axis)."""
    x, mu = np.asarray(x, float)[..., None], np.asarray(mu, float)
    return ((x - mu) / sigma) ** 2 + LN2PI + 2 * math.log(sigma)


def analytic_critical(mu, mu0, tau, cl, sigma=1.0):
    """CL quantile of t_f at mu for x ~ N(mu, sigma^2) and the focus N(mu0, tau^2) (no bounds):
    t_f = k (z - d / tau^2)^2 - d^2 / tau^2 - ln(1 + tau^2) in units of sigma (z = (x - mu)/sigma,
    d = (mu - mu0)/sigma, tau -> tau/sigma, k = tau^2/(1 + tau^2)); returns (c, centre, half-width
    of the acceptance interval in x)."""
    d, tau = (mu - mu0) / sigma, tau / sigma
    k = tau**2 / (1 + tau**2)
    q = stats.ncx2.ppf(cl, 1, d**2 / tau**4)
    c = k * q - d**2 / tau**2 - math.log(1 + tau**2)
    return c, mu + sigma * d / tau**2, sigma * math.sqrt(q)


@pytest.mark.parametrize("sigma", [1.0, 0.1])
def test_marginal_of_a_gaussian_equals_the_closed_form(sigma):
    """The quadrature over the integrand's window (FocusDensity.window) is exact to 1e-7 for a
    likelihood wider or much narrower than the focus, and for one whose maximum lies outside a
    uniform focus; over the whole support (no window) the default nodes resolve only a
    likelihood that is not much narrower than the focus."""
    mu0, tau = 1.2, 0.7
    focus = FocusDensity.from_config({"density": "gaussian", "mean": mu0, "sigma": tau}, (-20.0, 20.0))
    x = np.linspace(-2.0, 4.0, 13)
    s2 = sigma**2 + tau**2  # x ~ N(mu0, sigma^2 + tau^2) after integrating mu over the focus
    want = (x - mu0) ** 2 / s2 + LN2PI + math.log(s2)

    def log_like(mu):  # the Gaussian likelihood of each x
        return -0.5 * ((mu - x[:, None]) / sigma) ** 2

    nodes, log_w = focus.quadrature(log_like)
    assert nodes.shape == (len(x), DEFAULT_NODES)
    got = log_marginal(gaussian_twice_nll(x, nodes, sigma), log_w)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)
    nodes, log_w = focus.quadrature()
    assert np.exp(log_w).sum() == pytest.approx(1.0, abs=1e-10)
    whole = log_marginal(gaussian_twice_nll(x, nodes, sigma), log_w)
    if sigma == 1.0:
        np.testing.assert_allclose(whole, want, rtol=0, atol=1e-7)
    else:
        assert np.max(np.abs(whole - want)) > 1e-3
    # uniform focus on [a, b]: the marginal is (Phi((b - x)/sigma) - Phi((a - x)/sigma)) / (b - a),
    # also where the window lies outside [a, b] (x = 4 with sigma = 0.1)
    a, b = 0.0, 3.0
    uni = FocusDensity.from_config({"density": "uniform", "low": a, "high": b}, (0.0, 5.0))
    nodes, log_w = uni.quadrature(log_like)
    got = log_marginal(gaussian_twice_nll(x, nodes, sigma), log_w)
    za, zb = (a - x) / sigma, (b - x) / sigma  # in logs: the far tails underflow
    with np.errstate(divide="ignore"):  # np.where evaluates both forms; each is used where it is finite
        upper = stats.norm.logsf(za) + np.log1p(-np.exp(stats.norm.logsf(zb) - stats.norm.logsf(za)))
        lower = stats.norm.logcdf(zb) + np.log1p(-np.exp(stats.norm.logcdf(za) - stats.norm.logcdf(zb)))
    want = -2 * (np.where(x < 0.5 * (a + b), upper, lower) - math.log(b - a))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_acceptance_regions_of_a_gaussian_measurement_are_the_analytic_ones():
    """x ~ N(mu, 1), focus N(mu0, tau^2): {x : t_f(mu) <= c_CL(mu)} is the interval centred at
    mu + (mu - mu0)/tau^2 with the noncentral chi2 half-width, and c_CL is the quantile of t_f
    over toys. The region is shifted away from the focus (power towards mu0)."""
    mu0, tau = 1.0, 0.8
    focus = FocusDensity("gaussian", mu0 - 10, mu0 + 10, mu0, tau, nodes=48)
    nodes, log_w = focus.quadrature()
    rng = np.random.default_rng(7)
    x_fine = np.linspace(-8.0, 10.0, 36001)
    for mu in (0.0, 1.0, 2.3):
        for cl in (0.68, 0.95):
            c, centre, half = analytic_critical(mu, mu0, tau, cl)
            t = focused_t(gaussian_twice_nll(x_fine, [mu])[:, 0], gaussian_twice_nll(x_fine, nodes), log_w)
            acc = x_fine[t <= c]
            assert acc.min() == pytest.approx(centre - half, abs=1e-3)
            assert acc.max() == pytest.approx(centre + half, abs=1e-3)
            assert np.all(np.diff(acc) < 1.5e-3)  # one interval
            if mu != mu0:
                assert (centre - mu) * (mu - mu0) > 0
            # the critical value is the CL quantile of t_f over toys at mu
            x = rng.normal(mu, 1.0, 100_000)
            tx = focused_t(gaussian_twice_nll(x, [mu])[:, 0], gaussian_twice_nll(x, nodes), log_w)
            assert np.mean(tx <= c) == pytest.approx(cl, abs=4 * math.sqrt(cl * (1 - cl) / len(x)))


def test_focus_density_errors_name_the_config_key():
    with pytest.raises(ValueError, match="validation.focus"):
        FocusDensity.from_config({"density": "gaussian", "mean": 1.0}, (0.0, 5.0))
    with pytest.raises(ValueError, match="validation.focus.*bounds"):
        FocusDensity.from_config({"density": "uniform", "low": -1.0, "high": 2.0}, (0.0, 5.0))
    with pytest.raises(ValueError, match="kind must be"):
        FocusDensity("flat", 0.0, 1.0)
    m = counting(10.0, 20.0, 30)
    with pytest.raises(ValueError, match="focus density"):
        N.observed_t(m, [1.0], kind="focused")
    with pytest.raises(ValueError, match="kind must be one of"):
        N.observed_t(m, [1.0], kind="tf")


@pytest.fixture(scope="module")
def large_counting():
    """s = 100, b = 1000 with a 2 % normsys on b (nearly Gaussian), POI free in [-3, 5]."""
    m = counting(100.0, 1000.0, 1100, normsys=0.02, bounds=(-3.0, 5.0))
    focus = FocusDensity.from_config({"density": "gaussian", "mean": 1.5, "sigma": 0.5}, (-3.0, 5.0))
    return m, ToyGenerator(m), focus


def test_toy_engine_focused_t_equals_iminuit_fits_and_the_gaussian_limit(large_counting):
    m, gen, focus = large_counting
    mu = 1.0
    toys = gen.generate(N.theta_at(gen, mu), 2000, seed=(3, 0, 0))
    res = N.toy_t(gen, toys, mu, kind="focused", focus=focus)
    assert res["n_failed"] == 0 and res["converged"].all()
    # the same datasets fitted one by one with iminuit (observed_t)
    for i in range(3):
        one = N.observed_t(gen.model_for(toys, i), [mu], kind="focused", focus=focus)
        assert one["t"][0] == pytest.approx(res["t"][i], abs=2e-5)
    # nearly Gaussian: mu_hat ~ N(mu, sigma^2) with sigma^2 = ((s + b) + (0.02 b)^2) / s^2
    sigma = math.sqrt(1100.0 + 20.0**2) / 100.0
    for cl in (0.68, 0.95):
        c = analytic_critical(mu, 1.5, 0.5, cl, sigma)[0]
        got = np.quantile(res["t"], cl)
        # standard error of the sample quantile (density from the toys), plus 0.05 for the
        # Poisson and log-normal departures from the Gaussian
        dens = np.mean(np.abs(res["t"] - got) < 0.1) / 0.2
        se = math.sqrt(cl * (1 - cl) / len(res["t"])) / dens
        assert abs(got - c) < 3 * se + 0.05, (cl, got, c, se)


def test_focused_belt_and_coverage_through_the_neyman_machinery(large_counting, tmp_path):
    m, gen, focus = large_counting
    grid = np.linspace(0.0, 3.0, 7)
    chunks = [
        N.compute_chunk(gen, float(v), 300, seed=21, mu_index=i, kind="focused", focus=focus)
        for i, v in enumerate(grid)
    ]
    assert all(c["focus"] == focus.to_dict() for c in chunks)
    fine = np.linspace(0.0, 3.0, 61)
    obs = N.observed_t(m, fine, kind="focused", focus=focus)
    belt = N.gather(chunks, observed=obs)
    assert belt["kind"] == "focused" and all(math.isnan(v) for v in belt["critical_asymptotic"].values())
    iv = belt["datasets"]["observed"]["intervals"]["0.68"]
    assert iv["asymptotic"] is None and not iv["toys"]["empty"]
    assert iv["toys"]["lo"] < 1.0 < iv["toys"]["hi"]  # n_obs = s + b: the data sit at mu = 1
    # every grid point's critical value against the Gaussian limit (300 toys each)
    sigma = math.sqrt(1100.0 + 20.0**2) / 100.0
    c68 = belt["critical"]["0.68"]
    want = np.array([analytic_critical(v, 1.5, 0.5, 0.68, sigma)[0] for v in grid])
    se = 0.5 * (np.array(c68["hi"]) - np.array(c68["lo"]))  # the belt's +-1 sigma band
    assert np.all(np.abs(np.array(c68["value"]) - want) < 3 * se + 0.1), (c68, want)
    # coverage of independent toys with the belt's critical values
    cov_chunks = [N.compute_chunk(gen, 1.0, 400, seed=99, kind="focused", focus=focus)]
    cov = N.coverage_from_chunks(cov_chunks, belt=belt)
    for cl in (0.68, 0.95):
        r = cov["points"][0]["toys"][f"{cl:g}"]
        assert abs(r["pull"]) < 3.0, r
    assert cov["points"][0]["asymptotic"] == {}
    plot_belt(belt, tmp_path / "belt.png")
    assert (tmp_path / "belt.png").stat().st_size > 0
    # chunks of another focus density are not one belt
    other = FocusDensity.from_config({"density": "uniform", "nodes": 8}, (-3.0, 5.0))
    stray = N.compute_chunk(gen, 0.5, 20, seed=21, mu_index=99, kind="focused", focus=other)
    with pytest.raises(ValueError, match="focus densities"):
        N.gather([*chunks, stray])


def test_config_with_the_focused_statistic_is_checked_and_reaches_the_neyman_jobs(tmp_path):
    """validation.kind focused needs validation.focus (errors name the key); a valid config's
    Neyman and coverage jobs get the focus density as a parameter (dry run)."""
    raw = yaml.safe_load(TEST_CONFIG.read_text())
    raw["validation"]["kind"] = "focused"
    with pytest.raises(ncfg.ConfigError, match=r"'validation.focus': required by validation.kind focused"):
        ncfg.validate(copy.deepcopy(raw))
    raw["validation"]["focus"] = {"density": "gaussian", "mean": 1.0}
    with pytest.raises(ncfg.ConfigError, match=r"'validation.focus': .*positive sigma"):
        ncfg.validate(copy.deepcopy(raw))
    raw["validation"]["focus"] = {"density": "uniform", "low": -1.0, "high": 2.0}
    with pytest.raises(ncfg.ConfigError, match=r"'validation.focus': the range \[-1.0, 2.0\] leaves"):
        ncfg.validate(copy.deepcopy(raw))
    raw["validation"]["focus"] = {"density": "gaussian", "mean": 1.0, "sigma": 0.5, "nodes": 16}
    assert ncfg.validate(copy.deepcopy(raw))["validation"]["focus"]["nodes"] == 16
    cfg = tmp_path / "focused.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    out = snakemake("-n", "-p", "--configfile", str(cfg), "--directory", str(tmp_path), "--forceall").stdout
    counts = job_counts(out)
    assert counts["neyman_chunk"] >= 2 and counts["neyman_gather"] == 1


def test_intervals_toy_by_toy_and_their_lengths_in_the_gaussian_limit(large_counting):
    """toy_profiles gives every toy's t and t_f on a grid (the same values as toy_t at a grid
    point); with the Gaussian limit's critical values the median interval lengths are those of
    the Gaussian measurement mu_hat ~ N(mu, sigma^2): 2 sigma sqrt(chi2 quantile) for t, and
    the closed form of t_f evaluated at the toys' mu_hat for the focused statistic."""
    m, gen, focus = large_counting
    sigma = math.sqrt(1100.0 + 20.0**2) / 100.0
    grid = np.round(np.linspace(-2.0, 4.0, 121), 10)
    toys = gen.generate(N.theta_at(gen, 1.0), 400, seed=(5, 0, 0))
    prof = N.toy_profiles(gen, toys, grid, focus=focus)
    assert prof["n_failed"] == 0 and prof["t"].shape == prof["t_focused"].shape == (400, len(grid))
    j = int(np.flatnonzero(grid == 1.0)[0])
    np.testing.assert_allclose(prof["t"][:, j], N.toy_t(gen, toys, 1.0)["t"], atol=1e-5)
    np.testing.assert_allclose(
        prof["t_focused"][:, j], N.toy_t(gen, toys, 1.0, kind="focused", focus=focus)["t"], atol=1e-5
    )
    for cl in (0.68, 0.95):
        lr = N.interval_lengths(grid, prof["t"], stats.chi2.ppf(cl, 1))
        assert lr["n_empty"] == lr["n_open"] == lr["n_disconnected"] == 0
        assert lr["median"] == pytest.approx(2 * sigma * math.sqrt(stats.chi2.ppf(cl, 1)), rel=0.03)
        c_f = np.array([analytic_critical(v, 1.5, 0.5, cl, sigma)[0] for v in grid])
        got = N.interval_lengths(grid, prof["t_focused"], c_f)
        x = prof["poi_hat"][:, None]
        s2 = sigma**2 + 0.5**2
        t_gauss = (x - grid) ** 2 / sigma**2 - (x - 1.5) ** 2 / s2 - math.log(s2 / sigma**2)
        want = N.interval_lengths(grid, t_gauss, c_f)
        assert got["median"] == pytest.approx(want["median"], rel=0.05), (cl, got["median"], want["median"])


def test_learned_critical_values_of_the_focused_statistic(large_counting):
    """The learned construction with t_f: toys spread over the range, each at its own POI,
    the quantile regression, its audit, and the learned c_68 against the Gaussian limit."""
    from nsbi.learned_critical import learned_construction, sample_points, toys_over_range

    m, gen, focus = large_counting
    pts = sample_points(0.0, 3.0, 600, seed=4)
    toys = toys_over_range(gen, pts, 8, 0, kind="focused", focus=focus, batch_size=100)
    assert toys["kind"] == "focused" and toys["n_failed"] == 0
    audit = [N.compute_chunk(gen, v, 300, 9, mu_index=i, kind="focused", focus=focus) for i, v in enumerate((0.5, 2.5))]
    fine = np.linspace(0.0, 3.0, 31)
    curve = N.observed_t(m, fine, kind="focused", focus=focus)
    out = learned_construction([toys], audit, (0.68, 0.95), 0.0, 3.0, fine, {"observed": curve}, seed=3)
    assert out["kind"] == "focused" and out["audit"]["passed"], out["audit"]
    assert out["datasets"]["observed"]["intervals"]["0.68"]["asymptotic"] is None
    sigma = math.sqrt(1100.0 + 20.0**2) / 100.0
    want = np.array([analytic_critical(v, 1.5, 0.5, 0.68, sigma)[0] for v in fine])
    # 600 toys in all: a few tenths of statistical error (more at the ends of the range, where
    # the regression flattens; the likelihood ratio's c_68 would be about 2 above)
    inner = (fine >= 0.5) & (fine <= 2.5)
    assert np.max(np.abs(np.array(out["critical"]["0.68"]) - want)[inner]) < 0.45
    lr = N.compute_chunk(gen, 0.5, 20, 9, mu_index=0)
    with pytest.raises(ValueError, match="audit toys' statistic"):
        learned_construction([toys], [lr], (0.68,), 0.0, 3.0, fine, seed=3)
    raw = yaml.safe_load(TEST_CONFIG.read_text())
    raw["validation"].update(method="quantile_regression", kind="focused", focus={"mean": 1.0, "sigma": 0.5})
    assert ncfg.validate(copy.deepcopy(raw))["validation"]["kind"] == "focused"
    raw["validation"]["kind"] = "q"
    with pytest.raises(ncfg.ConfigError, match="'validation.method': quantile_regression learns"):
        ncfg.validate(raw)
