"""Several parameters of interest (morphing.pois): config, measurement, a model with two POIs,
its 2-D profile scan against the Gaussian approximation of its exact Hessian, and the workflow's
scan jobs (the DAG of a two-POI config, and the scan jobs run by Snakemake on a workspace)."""

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ROOT, job_counts, snakemake

from nsbi import build as nbuild
from nsbi import config as ncfg
from nsbi import fit as F
from nsbi.model import Model
from nsbi.scan2d import LEVELS_2D, scan2d

TEST_CONFIG = ROOT / "config" / "test.yaml"


def two_poi_raw():
    """The test config with the qq->ZZ normalisation as a second POI, mu_qq."""
    raw = yaml.safe_load(TEST_CONFIG.read_text())
    for s in raw["samples"]:
        if s["name"] == "qqZZ":
            s["type"] = "basis"
    m = raw["morphing"]
    for key in ("poi", "poi_init", "poi_bounds"):
        m.pop(key)
    m["pois"] = [
        {"name": "mu", "init": 1.0, "bounds": [0.0, 10.0]},
        {"name": "mu_qq", "init": 1.0, "bounds": [0.2, 3.0], "label": r"$\mu_{qq}$"},
    ]
    m["coefficients"]["qqZZ"] = "mu_qq"
    raw["fit"]["scan2d"] = [
        {
            "pois": ["mu", "mu_qq"],
            "x": {"low": 0.0, "high": 3.0, "points": 6},
            "y": {"low": 0.5, "high": 1.5, "points": 5},
        }
    ]
    return raw


def test_one_poi_config_gets_the_list_form_and_keeps_its_keys():
    cfg = ncfg.load(TEST_CONFIG)
    m = cfg["morphing"]
    assert m["pois"] == [{"name": "mu", "init": 1.0, "bounds": [0.0, 10.0]}]
    assert (m["poi"], m["poi_init"], m["poi_bounds"]) == ("mu", 1.0, [0.0, 10.0])
    assert ncfg.validate(cfg) == cfg  # idempotent
    assert nbuild.parameters(cfg) == [{"name": "mu", "bounds": [[0.0, 10.0]], "inits": [1.0]}]


def test_two_poi_config_sets_the_main_poi_and_the_measurement():
    cfg = ncfg.validate(two_poi_raw())
    m = cfg["morphing"]
    assert (m["poi"], m["poi_init"], m["poi_bounds"]) == ("mu", 1.0, [0.0, 10.0])
    assert ncfg.poi_names(cfg) == ["mu", "mu_qq"]
    assert ncfg.poi_labels(cfg) == {"mu": r"$\mu$", "mu_qq": r"$\mu_{qq}$"}
    assert ncfg.validate(cfg) == cfg
    assert nbuild.parameters(cfg)[1] == {"name": "mu_qq", "bounds": [[0.2, 3.0]], "inits": [1.0]}
    # coefficients with the main POI moved and the other one at its init
    f = nbuild.morphing_at(cfg, 4.0)
    assert f["S"] == pytest.approx(2.0) and f["qqZZ"] == 1.0
    with pytest.raises(KeyError, match="not a POI"):
        ncfg.poi_inits(cfg, kappa=1.0)


def _mutated(fn):
    raw = two_poi_raw()
    fn(raw)
    return raw


@pytest.mark.parametrize(
    "mutation, message",
    [
        (lambda r: r["morphing"].update(poi="mu"), None),  # agrees with pois[0]: accepted
        (lambda r: r["morphing"].update(poi_init=2.0), r"'morphing.poi_init': give the POIs either"),
        (lambda r: r["morphing"]["pois"].append({"name": "mu"}), r"'morphing.pois\[2\].name': duplicate"),
        (lambda r: r["morphing"]["pois"][1].update(init=5.0), r"'morphing.pois\[1\].init': 5.0 is outside"),
        (lambda r: r["morphing"]["pois"][1].update(bounds=[2, 1]), r"'morphing.pois\[1\].bounds'"),
        (lambda r: r["morphing"]["pois"][1].update(name="LES"), r"'morphing.pois\[1\].name'.*systematic"),
        (lambda r: r["morphing"]["coefficients"].update(qqZZ="1"), r"'morphing.pois\[1\]': POI 'mu_qq' enters no"),
        (lambda r: r["morphing"]["coefficients"].update(qqZZ="kappa"), r"'morphing.coefficients.qqZZ'"),
        (lambda r: r["fit"]["scan2d"][0].update(pois=["mu", "LES"]), r"'fit.scan2d\[0\].pois\[1\]'"),
        (lambda r: r["fit"]["scan2d"][0].update(pois=["mu", "mu"]), r"'fit.scan2d\[0\].pois'"),
        (lambda r: r["fit"]["scan2d"][0]["y"].update(low=0.1), r"'fit.scan2d\[0\].y'.*bounds \[0.2, 3.0\]"),
        (lambda r: r["morphing"]["pois"][1].update(scan={"low": 2, "high": 1}), r"'morphing.pois\[1\].scan'"),
        (
            lambda r: r["validation"].update(region2d={**REGION2D, "pois": ["mu", "kfactor"]}),
            r"'validation.region2d.pois\[1\]'",
        ),
        (
            lambda r: r["validation"].update(region2d={**REGION2D, "y": {"low": 0.0, "high": 1.0, "points": 3}}),
            r"'validation.region2d.y'.*bounds \[0.2, 3.0\]",
        ),
        (
            lambda r: r["validation"].update(region2d={**REGION2D, "coverage": {"points": [[1.0, 0.9]]}}),
            r"'validation.region2d.coverage.points\[0\]': 0.9 is not a node",
        ),
    ],
)
def test_bad_poi_lists_are_rejected_naming_the_key(mutation, message):
    raw = _mutated(mutation)
    if message is None:
        assert ncfg.validate(raw)["morphing"]["poi"] == "mu"
        return
    with pytest.raises(ncfg.ConfigError, match=message):
        ncfg.validate(raw)


def test_basis_points_of_several_pois():
    raw = two_poi_raw()
    m = raw["morphing"]
    del m["coefficients"]
    m["basis"] = {
        "functions": ["mu", "sqrt(mu)", "1", "mu_qq"],
        "points": {
            "S": {"mu": 1.0, "mu_qq": 0.0},
            "SBI": {"mu": 4.0, "mu_qq": 0.0},
            "B": {"mu": 0.0, "mu_qq": 0.0},
            "qqZZ": {"mu": 0.0, "mu_qq": 1.0},
        },
    }
    cfg = ncfg.validate(raw)
    # the derived coefficients reproduce the basis: at every point its own sample has 1, the others 0
    for name, point in m["basis"]["points"].items():
        others = {**cfg["morphing"], "pois": [{"name": k, "init": v} for k, v in point.items()]}
        f = nbuild.morphing_at({**cfg, "morphing": others}, point["mu"])
        assert f[name] == pytest.approx(1.0, abs=1e-9)
        assert sum(abs(v) for k, v in f.items() if k != name) == pytest.approx(0.0, abs=1e-9)
    bad = copy.deepcopy(raw)
    bad["morphing"]["basis"]["points"]["S"] = 1.0
    with pytest.raises(ncfg.ConfigError, match=r"'morphing.basis.points.S': give a value of every POI"):
        ncfg.validate(bad)


def two_poi_model():
    """Signal strength mu of S and normalisation mu_b of B in an unbinned channel and a binned
    sideband that holds B only, with a constrained per-event systematic."""
    rng = np.random.default_rng(5)
    n = 3000
    x = rng.uniform(0, 1, n)
    ev = {"weight": np.full(n, 1.0)}
    # S peaks at high x, B falls: log r relative to the reference (uniform)
    ev["logr_S"] = np.log(2 * x)
    ev["logr_B"] = np.log(2 * (1 - x))
    ev["logr_B__s1_up"] = 0.05 * (x - 0.5)
    ev["logr_B__s1_down"] = -0.05 * (x - 0.5)
    spec = {
        "channels": [
            {
                "name": "u",
                "type": "unbinned",
                "samples": [
                    {"name": "S", "yield": 800.0, "morphing": "mu", "modifiers": []},
                    {
                        "name": "B",
                        "yield": 2200.0,
                        "morphing": "mu_b",
                        "modifiers": [{"name": "s1", "type": "eventsys"}],
                    },
                ],
            },
            {
                "name": "side",
                "type": "binned",
                "samples": [{"name": "B", "data": [300.0, 200.0], "morphing": "mu_b", "modifiers": []}],
            },
        ]
    }
    meas = {
        "name": "m",
        "config": {
            "poi": "mu",
            "parameters": [{"name": "mu", "bounds": [[0.0, 5.0]]}, {"name": "mu_b", "bounds": [[0.2, 3.0]]}],
        },
    }
    return Model(spec, {"u": ev, "side": [300, 200]}, meas)


def test_two_poi_model_fit_and_2d_scan_agree_with_the_hessian():
    model = two_poi_model()
    assert model.poi_name == "mu" and {"mu", "mu_b"} <= set(model.par_names)
    best = F.fit(model, errors="exact")
    assert best.status["valid"]
    ia, ib = model.index("mu"), model.index("mu_b")
    ea, eb = best.errors[ia], best.errors[ib]
    x = np.linspace(best.values[ia] - 3.5 * ea, best.values[ia] + 3.5 * ea, 15)
    y = np.linspace(best.values[ib] - 3.5 * eb, best.values[ib] + 3.5 * eb, 15)
    res = scan2d(model, x, y, ("mu", "mu_b"), best_fit=best)
    assert res.converged.all()
    assert np.nanmin(res.delta) >= -1e-6
    assert res.correlation == pytest.approx(best.correlation[ia, ib])
    assert res.correlation < -0.3  # the unbinned region alone cannot tell S from B apart fully
    # a likelihood of ~3000 events is close to Gaussian: the profiled 68 % region has nearly the
    # area of the ellipse of the covariance block 2 H^-1
    S = best.covariance[np.ix_([ia, ib], [ia, ib])]
    gauss = math.pi * LEVELS_2D["68"] * math.sqrt(np.linalg.det(S))
    assert res.areas()["68"] == pytest.approx(gauss, rel=0.05)
    # the 1-D profile of mu is the minimum over mu_b of the 2-D profile: never above the grid's
    # minimum of each row, and close to it (the grid in mu_b is 0.5 errors wide)
    s1 = F.scan(model, values=x, poi="mu", best_fit=best)
    row_min = res.delta.min(axis=1)
    assert np.all(s1.delta <= row_min + 1e-6)
    np.testing.assert_allclose(s1.delta, row_min, atol=0.15)


REGION2D = {
    "pois": ["mu", "mu_qq"],
    "x": {"low": 0.5, "high": 1.5, "points": 3},
    "y": {"low": 0.6, "high": 1.4, "points": 3},
    "toys": {"per_batch": 30, "batches": 2, "seed": 17},
    "coverage": {"points": [[1.0, 1.0]], "per_batch": 40, "seed": 71},
}


def test_two_poi_dag_has_the_scan_and_region_jobs(tmp_path):
    raw = two_poi_raw()
    raw["validation"]["region2d"] = REGION2D
    cfg = tmp_path / "twopoi.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    counts = job_counts(snakemake("-n", "--configfile", str(cfg), "--directory", str(tmp_path)).stdout)
    n_ws = 3 * 2  # nsbi, hist, oracle x asimov, observed
    assert counts["scan_poi"] == n_ws and counts["scan2d"] == n_ws and counts["fit"] == n_ws
    assert counts["region2d_chunk"] == 9 * 2 and counts["region2d_coverage_chunk"] == 1 and counts["region2d"] == 1
    # a one-POI config has none of them
    one = job_counts(snakemake("-n", "--configfile", str(TEST_CONFIG), "--directory", str(tmp_path / "one")).stdout)
    assert not {"scan_poi", "scan2d", "region2d_chunk", "region2d", "closure2d"} & set(one)


def two_poi_workspace(cfg):
    """A binned workspace of the two-POI config: its control region with mu_qq on qq->ZZ."""
    from nsbi import workspace as W

    channel = {
        "name": "CRqq",
        "type": "binned",
        "samples": [
            {"name": "S", "data": [5.0, 15.0], "morphing": "mu - sqrt(mu)", "modifiers": []},
            {"name": "SBI", "data": [30.0, 50.0], "morphing": "sqrt(mu)", "modifiers": []},
            {"name": "B", "data": [27.0, 40.0], "morphing": "1 - sqrt(mu)", "modifiers": []},
            {"name": "qqZZ", "data": [60.0, 20.0], "morphing": "mu_qq", "modifiers": []},
        ],
    }
    return W.build_workspace(
        binned=[channel],
        datasets={"asimov": {"CRqq": [90.0, 85.0]}, "observed": {"CRqq": [95.0, 80.0]}},
        poi="mu",
        parameters=nbuild.parameters(cfg),
    )


def test_scan_jobs_run_on_a_workspace(tmp_path):
    """The scan_poi and scan2d jobs (scripts, params, outputs), run by Snakemake on a binned
    workspace of two POIs placed where the workflow writes its histogram workspace."""
    from nsbi import workspace as W

    raw = two_poi_raw()
    raw["fit"]["scan2d"][0]["y"] = {"low": 0.2, "high": 2.0, "points": 5}
    cfg_path = tmp_path / "twopoi.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    cfg = ncfg.validate(raw)
    ws = two_poi_workspace(cfg)
    out = tmp_path / ncfg.results_dir(cfg)
    W.save(ws, out / "workspace" / "hist.json")
    targets = [f"{ncfg.results_dir(cfg)}/fit/hist/observed/{t}" for t in ("scan_mu_qq.json", "scan2d/mu__mu_qq.json")]
    snakemake(
        "--cores",
        "1",
        "--configfile",
        str(cfg_path),
        "--directory",
        str(tmp_path),
        *targets,
        "--allowed-rules",
        "scan_poi",
        "scan2d",
    )
    s1 = json.loads((tmp_path / targets[0]).read_text())
    s2 = json.loads((tmp_path / targets[1]).read_text())
    model = W.load(out / "workspace" / "hist.json").model(dataset="observed")
    best = F.fit(model, errors="exact")
    assert s1["poi"] == "mu_qq" and s1["best"] == pytest.approx(best.value("mu_qq"), abs=1e-3)
    assert len(s1["values"]) == 31 and min(s1["delta_twice_nll"]) == pytest.approx(0.0, abs=1e-3)
    assert s2["pois"] == ["mu", "mu_qq"] and np.shape(s2["delta_twice_nll"]) == (6, 5)
    assert s2["best"] == pytest.approx([best.value("mu"), best.value("mu_qq")], abs=1e-3)
    for t in targets:
        assert Path(tmp_path / t).with_suffix(".png").stat().st_size > 0


def test_cli_scans_two_pois(tmp_path):
    from nsbi import workspace as W
    from nsbi.cli import main

    path = W.save(two_poi_workspace(ncfg.validate(two_poi_raw())), tmp_path / "ws.json")
    out = tmp_path / "scan2d.json"
    args = ["scan", str(path), "--dataset", "observed", "--poi", "mu", "mu_qq", "--points", "6"]
    assert (
        main([*args, "--range", "0", "3", "--range", "0.2", "2", "-o", str(out), "--plot", str(tmp_path / "s.png")])
        == 0
    )
    got = json.loads(out.read_text())
    model = W.load(path).model(dataset="observed")
    ref = scan2d(model, np.linspace(0, 3, 6), np.linspace(0.2, 2, 6), ("mu", "mu_qq"))
    np.testing.assert_allclose(got["delta_twice_nll"], ref.delta, atol=1e-6)
    assert got["areas"]["68"] == pytest.approx(ref.areas()["68"], rel=1e-6)
    assert (tmp_path / "s.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="one or two --poi"):
        main(["scan", str(path), "--poi", "mu", "mu_qq", "S"])
    with pytest.raises(SystemExit, match="--mode profile"):
        main([*args, "--mode", "stat_only"])


def test_region_jobs_run_on_a_workspace(tmp_path):
    """The 2-D construction's jobs (toys per node and batch, coverage toys, the region) run by
    Snakemake on the binned two-POI workspace: the critical values are those of the same toys
    made here with nsbi.neyman, and the region has both datasets and the coverage point."""
    from nsbi import neyman as N
    from nsbi import workspace as W
    from nsbi.neyman2d import critical_grid
    from nsbi.validation import toy_generator

    raw = two_poi_raw()
    raw["validation"].update(workspace="hist", region2d=REGION2D)
    cfg_path = tmp_path / "twopoi.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    cfg = ncfg.validate(raw)
    ws_path = tmp_path / ncfg.results_dir(cfg) / "workspace" / "hist.json"
    W.save(two_poi_workspace(cfg), ws_path)
    target = f"{ncfg.results_dir(cfg)}/validation/region2d/region.json"
    rules = ("region2d_chunk", "region2d_coverage_chunk", "region2d")
    snakemake(
        "--cores", "2", "--configfile", str(cfg_path), "--directory", str(tmp_path), target, "--allowed-rules", *rules
    )
    region = json.loads((tmp_path / target).read_text())
    assert region["pois"] == ["mu", "mu_qq"] and set(region["datasets"]) == {"asimov", "observed"}
    assert np.array(region["n_toys"]).tolist() == [[60] * 3] * 3
    # node 4 (mu = 1, mu_qq = 1), batch 1: the same toys as the job's
    model, gen = toy_generator(str(ws_path), "observed")
    point = {"mu": 1.0, "mu_qq": 1.0}
    theta = N.theta_at(gen, point, "profiled")
    mine = [N.compute_chunk(gen, point, 30, 17, mu_index=4, batch=b, theta=theta) for b in (0, 1)]
    job = N.read_chunk(tmp_path / ncfg.results_dir(cfg) / "validation/region2d/chunks/node4_b1.json")
    np.testing.assert_allclose(job["t"], mine[1]["t"], atol=1e-8)
    grid = critical_grid(mine, ["mu", "mu_qq"], [1.0], [1.0], cls=cfg["validation"]["cls"])
    for k in grid["critical"]:
        assert region["critical"][k]["value"][1][1] == pytest.approx(grid["critical"][k]["value"][0, 0], abs=1e-8)
    (row,) = region["coverage"]["points"]
    assert row["point"] == point and row["n_toys"] == 40
    assert (tmp_path / target).with_suffix(".png").stat().st_size > 0


# --------------------------------------------------------------------------- two signal strengths
TWOPOI_TEST_CONFIG = ROOT / "config" / "twopoi_test.yaml"


def test_two_poi_morphing_equals_the_simulator_density_event_by_event():
    """The morphing of config/twopoi_test.yaml (mu on the gg basis S, SBI, B; mu_V on the
    electroweak basis VS, VSBI, VB; qq->ZZ fixed) reproduces the simulator's exact density
    dsigma_SBI(x|mu) + dsigma_VSBI(x|mu_V) + dsigma_qqZZ(x), per event (1e-10), and the
    model's likelihood built from it equals the exact extended likelihood (1e-10)."""
    from nsbi.expr import parse
    from nsbi.simulate import FEATURES, Oracle, generate_data, xsec

    cfg = ncfg.load(TWOPOI_TEST_CONFIG)
    assert ncfg.poi_names(cfg) == ["mu", "mu_V"]
    lumi = cfg["simulation"]["lumi_ifb"]
    coef = {n: parse(str(cfg["morphing"]["coefficients"].get(n, "1"))) for n in ncfg.mc_samples(cfg)}
    oracle = Oracle(lumi)
    data = generate_data(mu=1.0, mu_v=1.0, seed=12, lumi_ifb=lumi)
    x = {f: np.asarray(data[f]) for f in FEATURES}
    ds = {n: oracle.dsigma(n, x) for n in coef}

    def exact(mu, mu_v):
        return oracle.dsigma("SBI", x, mu=mu) + oracle.dsigma("VSBI", x, mu=mu_v) + oracle.dsigma("qqZZ", x)

    points = [(1.0, 1.0), (0.0, 2.5), (2.2, 0.0), (0.4, 1.7)]
    for mu, mu_v in points:
        morphed = sum(float(e.evaluate({"mu": mu, "mu_V": mu_v})) * ds[n] for n, e in coef.items())
        np.testing.assert_allclose(morphed, exact(mu, mu_v), rtol=1e-10)

    # the same morphing inside the likelihood: yields lumi * sigma_c, ratios p_c / p_ref
    log_pref = np.log(ds["qqZZ"] / xsec("qqZZ"))
    events = {"weight": np.ones(len(log_pref))}
    events.update({f"logr_{n}": np.log(ds[n] / xsec(n)) - log_pref for n in coef})
    spec = {
        "channels": [
            {
                "name": "SR",
                "type": "unbinned",
                "samples": [
                    {
                        "name": n,
                        "yield": lumi * xsec(n),
                        "morphing": cfg["morphing"]["coefficients"].get(n),
                        "modifiers": [],
                    }
                    for n in coef
                ],
            }
        ]
    }
    meas = {"name": "m", "config": {"poi": "mu", "parameters": nbuild.parameters(cfg)}}
    model = Model(spec, {"SR": events}, meas)

    def exact_twice_nll(mu, mu_v):
        nu = lumi * (xsec("SBI", mu=mu) + xsec("VSBI", mu=mu_v) + xsec("qqZZ"))
        return -2.0 * (np.sum(np.log(lumi * exact(mu, mu_v))) - nu)

    def pars(mu, mu_v):
        p = np.zeros(len(model.par_names))
        p[model.index("mu")], p[model.index("mu_V")] = mu, mu_v
        return p

    ref = model.twice_nll(pars(1.0, 1.0)) - exact_twice_nll(1.0, 1.0)  # p_ref's constant
    for mu, mu_v in points:
        got = model.twice_nll(pars(mu, mu_v)) - ref
        assert got == pytest.approx(exact_twice_nll(mu, mu_v), rel=1e-10)


def test_electroweak_data_signal_strength_is_checked_against_the_processes():
    raw = yaml.safe_load(TWOPOI_TEST_CONFIG.read_text())
    del raw["simulation"]["data"]["mu_V"]
    with pytest.raises(ncfg.ConfigError, match=r"'simulation.data.mu_V': required.*\['VS', 'VB', 'VSBI'\]"):
        ncfg.validate(raw)
    one = yaml.safe_load(TEST_CONFIG.read_text())
    one["simulation"]["data"]["mu_V"] = 1.0
    with pytest.raises(ncfg.ConfigError, match=r"'simulation.data.mu_V': the pseudo-data have no electroweak"):
        ncfg.validate(one)
