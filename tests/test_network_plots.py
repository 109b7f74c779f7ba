"""Network-output plots: the per-event sensitivity -2 log p(x|mu)/p(x|mu_ref) against exact
densities, and its Asimov total against the likelihood of nsbi.model."""

import json

import numpy as np
import pytest
from scipy.stats import norm

from nsbi.model import Model
from nsbi.plotting.network import log_density_ratio, run_network_plots, sensitivity_histograms


def test_log_density_ratio_exact_mixture():
    # p_ref = N(0,1); r_A = 1 (A = p_ref), r_S = N(1,1)/N(0,1); p(x|mu) = (100 A + 10 mu S)/(100 + 10 mu)
    x = np.linspace(-3, 4, 50)
    logr = {"A": np.zeros_like(x), "S": norm.logpdf(x, 1, 1) - norm.logpdf(x, 0, 1)}
    yields = {"A": 100.0, "S": 10.0}
    got = log_density_ratio(logr, yields, {"A": 1.0, "S": 2.5}, {"A": 1.0, "S": 1.0})

    def p(mu):
        return (100 * norm.pdf(x) + 10 * mu * norm.pdf(x, 1, 1)) / (100 + 10 * mu)

    np.testing.assert_allclose(got, np.log(p(2.5) / p(1.0)), rtol=1e-12, atol=1e-12)
    # a negative coefficient can make the density negative: NaN, not a silent wrong value
    bad = log_density_ratio(logr, yields, {"A": 1.0, "S": -9.0}, {"A": 1.0, "S": 1.0})
    assert np.isnan(bad[-1]) and np.all(np.isfinite(bad[:5]))
    with pytest.raises(ValueError, match="not positive"):
        log_density_ratio(logr, yields, {"A": 0.0, "S": 0.0}, {"A": 1.0, "S": 1.0})


def test_sensitivity_histograms_weighted_mean():
    h = sensitivity_histograms(
        [0.5, 0.5, 1.5, 9.0], [0.5, 0.5, 0.5, 0.5], [1.0, 3.0, 2.0, np.nan], [1.0, 3.0, 2.0, 1.0], [0, 1, 2], [0, 1]
    )
    assert h["mean"][0, 0] == pytest.approx((1 * 1 + 3 * 3) / 4) and h["mean"][1, 0] == pytest.approx(2.0)
    assert h["sum_wq"] == pytest.approx(14.0) and h["n_invalid"] == 1


def test_run_network_plots_matches_the_model_likelihood(tmp_path):
    """Signal S ~ N(1, 1) and background B ~ N(0, 1) in x (y is an unrelated feature), yields
    f_S = mu; exact ratios vs the reference B. The summary's Asimov -2 Delta lnL at mu must equal
    the unbinned likelihood of nsbi.model evaluated on the same weighted MC events."""
    rng = np.random.default_rng(3)
    n = 4000
    x = np.concatenate([rng.normal(1, 1, n), rng.normal(0, 1, n)])
    y = rng.uniform(-1, 1, 2 * n)
    proc = np.array(["S"] * n + ["B"] * n)
    w = np.concatenate([np.full(n, 30.0 / n), np.full(n, 200.0 / n)])
    table = {"logr_S": norm.logpdf(x, 1, 1) - norm.logpdf(x, 0, 1), "logr_B": np.zeros(2 * n)}
    events = {"x": x, "y": y, "weight": w, "process": proc}
    logr_out = [tmp_path / "logr_S.png", tmp_path / "logr_B.png"]
    sens_out = [tmp_path / "mu_0.png", tmp_path / "mu_2.png"]
    summary = run_network_plots(
        events,
        table,
        table,
        ["S", "B"],
        {"S": "mu"},
        "mu",
        1.0,
        [0.0, 2.0],
        {"B": 1.0},
        "x",
        "y",
        10,
        logr_out,
        sens_out,
        labels={"x": "$x$"},
        region_label="SR",
    )
    for path in logr_out + sens_out:
        assert path.stat().st_size > 1000
    json.dumps(summary)
    # normalisation constants of the exact ratios are MC noise only
    assert abs(summary["log_normalisation"]["logr_S"]) < 0.05 and abs(summary["log_normalisation"]["logr_B"]) < 1e-12
    # the model: one unbinned channel, the MC events at mu = 1 as (weighted) observation, ratios
    # normalised as in the summary
    nrm = summary["log_normalisation"]
    obs = {"weight": w, "logr_S": table["logr_S"] - nrm["logr_S"], "logr_B": table["logr_B"] - nrm["logr_B"]}
    spec = {
        "channels": [
            {
                "name": "SR",
                "type": "unbinned",
                "samples": [
                    {"name": "S", "yield": summary["yields"]["S"], "morphing": "mu"},
                    {"name": "B", "yield": summary["yields"]["B"]},
                ],
            }
        ]
    }
    model = Model(spec, {"SR": obs}, {"name": "m", "config": {"poi": "mu", "parameters": []}})
    ref = model.twice_nll(np.array([1.0]))
    for value in (0.0, 2.0):
        expected = model.twice_nll(np.array([value])) - ref
        got = summary["sensitivity"][f"{value:g}"]["asimov_twice_delta_nll_fixed_nuisances"]
        assert got == pytest.approx(expected, rel=1e-9)
        assert expected > 0.5  # a real separation, so the comparison is not trivially 0 = 0
