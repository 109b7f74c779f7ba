"""Oracle closure of the whole statistical chain on the built-in simulator.

The learned ratios are replaced by the simulator's exact ones; the NSBI workspace is built
by the same code as in the workflow (nsbi.build) and fitted (nsbi.fit). Asimov fits must
return the injected μ, and the NSBI interval must not be wider than the histogram one.
"""

import copy

import numpy as np
import pytest

from nsbi import config as ncfg
from nsbi import fit as F
from nsbi.build import asimov_events, build_nsbi_workspace, morphing_at, normalise_ratios, reference_weights
from nsbi.simulate import Oracle, generate, generate_data

ROOT_CFG = "config/test.yaml"
PROCS = ["S", "SBI", "B", "qqZZ"]
REF = {"SBI": 1.0, "qqZZ": 1.0}
N = 40_000


@pytest.fixture(scope="module")
def setup():
    cfg = ncfg.load(ROOT_CFG)
    cfg = copy.deepcopy(cfg)
    cfg.pop("region_classifier", None)
    cfg["regions"] = [{"name": "SR", "type": "unbinned", "selection": "m4l > 0"}]
    cfg["systematics"] = [s for s in cfg["systematics"] if s["name"] in ("kfactor", "lumi")]
    cfg = ncfg.validate(cfg)
    oracle = Oracle(lumi_ifb=140.0)
    feats = list(
        oracle_features := [
            "m4l",
            "mZ1",
            "mZ2",
            "cos_theta_star",
            "cos_theta1",
            "cos_theta2",
            "phi",
            "phi1",
            "pt4l",
            "y4l",
        ]
    )
    events = {p: generate(p, N, seed=11 + i) for i, p in enumerate(PROCS)}
    data = generate_data(mu=1.0, seed=5)

    def log_pref(ev):
        dens = sum(a * np.exp(oracle.log_dsigma(j, ev)) / oracle.xsec(j) for j, a in REF.items())
        return np.log(dens / sum(REF.values()))

    def table(evs, procs):
        cols = {
            k: []
            for k in ["weight", "process"]
            + [f"logr_{c}" for c in PROCS]
            + [f"logr_{c}__kfactor_{d}" for c in ("S", "SBI", "B") for d in ("up", "down")]
        }
        for p, ev in zip(procs, evs):
            n = len(ev["m4l"])
            sub = {f: np.asarray(ev[f]) for f in oracle_features}
            lp = log_pref(sub)
            cols["weight"].append(np.asarray(ev["weight"], float))
            cols["process"].append(np.full(n, p))
            for c in PROCS:
                cols[f"logr_{c}"].append(oracle.log_dsigma(c, sub) - np.log(oracle.xsec(c)) - lp)
            for c in ("S", "SBI", "B"):
                for d in ("up", "down"):
                    cols[f"logr_{c}__kfactor_{d}"].append(oracle.log_syst_ratio(c, "kfactor", d, sub, norm=True))
        return {k: np.concatenate(v) for k, v in cols.items()}

    mc_table = table([events[p] for p in PROCS], PROCS)
    data_table = table([data], ["data"])
    data_table["weight"] = np.ones(len(data_table["weight"]))
    yields = {}
    for p in PROCS:
        ev = events[p]
        yields[("SR", p, "nominal")] = float(np.sum(ev["weight"]))
        if p != "qqZZ":
            for d in ("up", "down"):
                yields[("SR", p, f"kfactor_{d}")] = float(np.sum(ev[f"weight_kfactor_{d}"]))
    yields[("SR", "data", "nominal")] = float(len(data_table["weight"]))
    return cfg, yields, mc_table, data_table, feats


def _ws(cfg, setup, mu_init):
    cfg = copy.deepcopy(cfg)
    cfg["morphing"]["poi_init"] = mu_init
    _, yields, mc_table, data_table, _ = setup
    tables = {"SR": {"asimov": mc_table, "observed": data_table}}
    return build_nsbi_workspace(cfg, yields, tables, {}, reference=REF)


def _normalised(setup):
    table = dict(setup[2])
    for col, logn in normalise_ratios(table, REF, PROCS, {c: ["kfactor"] for c in ("S", "SBI", "B")}).items():
        table[col] = table[col] - logn
    return table


def test_exact_ratios_are_normalised(setup):
    _, _, mc_table, _, _ = setup
    corr = normalise_ratios(mc_table, REF, PROCS, {c: ["kfactor"] for c in ("S", "SBI", "B")})
    # exact ratios integrate to one up to the MC statistical precision (~1/sqrt(N))
    for col, logn in corr.items():
        assert abs(logn) < 0.05, (col, logn)
    u = reference_weights(mc_table["process"], mc_table["weight"], REF)
    assert u.sum() == pytest.approx(1.0)
    assert np.all(u[np.isin(mc_table["process"], ["S", "B"])] == 0)


@pytest.mark.parametrize("mu", [0.5, 1.0, 1.5, 2.0])
def test_asimov_fit_recovers_injected_mu(setup, mu):
    cfg = setup[0]
    ws = _ws(cfg, setup, mu)
    model = ws.model(dataset="asimov")
    res = F.fit(model, init=[1.0 if n == "mu" else v for n, v in zip(model.par_names, model.init)])
    i = res.names.index("mu")
    assert res.values[i] == pytest.approx(mu, abs=1e-3)
    # nuisance parameters stay at nominal: the builder stores the shape-normalisation nodes of
    # every per-event systematic, so each interpolated g(α) keeps unit mean for all α
    eventsys = [
        m
        for ch in ws.spec["channels"]
        if ch["type"] == "unbinned"
        for s in ch["samples"]
        for m in s["modifiers"]
        if m["type"] == "eventsys"
    ]
    assert len(eventsys) == 3
    for m in eventsys:
        for d in ("up", "down"):
            assert sum(m["data"]["norm"][d]["p"]) == pytest.approx(1.0, abs=1e-12)
    for name, value in zip(res.names, res.values):
        if name in ("kfactor", "lumi"):
            assert abs(value) < 1e-3, (name, value)
    # the Asimov total equals the model expectation at the injected point
    nu = sum(f * setup[1][("SR", c, "nominal")] for c, f in morphing_at(cfg, mu).items())
    assert model.twice_nll(res.values) < model.twice_nll(
        [v + 0.05 if n == "mu" else v for n, v in zip(res.names, res.values)]
    )
    w = asimov_events({**cfg, "morphing": {**cfg["morphing"], "poi_init": mu}}, _normalised(setup), REF)["weight"]
    assert np.sum(w) == pytest.approx(nu, rel=1e-9)


def test_observed_fit_is_compatible_with_truth(setup):
    cfg = setup[0]
    ws = _ws(cfg, setup, 1.0)
    model = ws.model(dataset="observed")
    res = F.fit(model)
    i = res.names.index("mu")
    assert abs(res.values[i] - 1.0) < 3 * res.errors[i] + 0.05
    assert 0.05 < res.errors[i] < 2.0
