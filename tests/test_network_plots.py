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


def test_network_plots_use_the_poi_label_and_the_data_label(tmp_path, monkeypatch):
    """The colour bars and titles write the POI with its label (here c_W of a POI named cw,
    never mu), and the data/MC legend names the data with the data sample's label."""
    from nsbi.plotting import datamc, network

    figures = {"datamc": [], "sensitivity": []}

    def keep(kind, fn):
        def wrapper(*args, **kwargs):
            fig = fn(*args, **kwargs)
            figures[kind].append(fig)
            return fig

        return wrapper

    monkeypatch.setattr(datamc, "datamc_figure", keep("datamc", datamc.datamc_figure))
    monkeypatch.setattr(network, "sensitivity_figure", keep("sensitivity", network.sensitivity_figure))
    rng = np.random.default_rng(5)
    n = 500
    x = np.concatenate([rng.normal(1, 1, n), rng.normal(0, 1, n)])
    proc = np.array(["S"] * n + ["B"] * n)
    table = {"logr_S": norm.logpdf(x, 1, 1) - norm.logpdf(x, 0, 1), "logr_B": np.zeros(2 * n)}
    events = {"x": x, "y": rng.uniform(-1, 1, 2 * n), "weight": np.full(2 * n, 0.1), "process": proc}
    run_network_plots(
        events,
        table,
        {k: v[::7] for k, v in table.items()},
        ["S", "B"],
        {"S": "cw"},
        "cw",
        1.0,
        [2.0],
        {"B": 1.0},
        "x",
        "y",
        5,
        [tmp_path / "logr_S.png", tmp_path / "logr_B.png"],
        [tmp_path / "cw_2.png"],
        region_label="SR",
        poi_label="$c_W$",
        data_label="Pseudo-data",
    )
    (fig,) = figures["sensitivity"]
    bars = [ax.get_ylabel() for ax in fig.axes[2:]]
    assert bars[0] == r"mean of $-2\log p(x|c_W)/p(x|{c_W}_\mathrm{ref})$"
    assert "p(x_i|c_W)" in bars[1]
    assert fig.axes[0].get_title() == "SR, $c_W$ = 2 (per event)"
    assert len(figures["datamc"]) == 2
    for fig in figures["datamc"]:
        legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert "Pseudo-data" in legend and "Data" not in legend
        assert fig.axes[0].get_title(loc="right") == "SR, $c_W$ = 1"
    texts = bars + [f.axes[0].get_title(loc="right") for f in figures["datamc"]]
    assert not any(r"\mu" in t or "mu" in t for t in texts), texts
    # the default for library callers: the label of the POI name (mu -> Greek, as before)
    h = sensitivity_histograms([0.5], [0.5], [1.0], [1.0], [0, 1], [0, 1])
    assert network.sensitivity_figure(h, "x", "y").axes[2].get_ylabel() == (
        r"mean of $-2\log p(x|\mu)/p(x|{\mu}_\mathrm{ref})$"
    )


def test_datamc_legend_uses_the_data_label():
    from nsbi.plotting.datamc import datamc_figure

    rng = np.random.default_rng(1)
    mc = {"S": (rng.normal(size=200), np.full(200, 0.5)), "B": (rng.normal(size=200), np.full(200, 0.5))}
    edges = np.linspace(-3, 3, 7)
    fig = datamc_figure(
        mc, {"S": 1.0}, rng.normal(size=150), edges, "x", labels={"S": "signal"}, data_label="Run 2 data"
    )
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "Run 2 data" in legend and "signal" in legend and "Data" not in legend
    fig = datamc_figure(mc, {"S": 1.0}, rng.normal(size=150), edges, "x")
    assert "Data" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]  # the default
