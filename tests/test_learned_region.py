"""The learned construction for two POIs (nsbi.learned_critical.learned_region): quantile
regression of c_CL(a, b) against the quantiles of t for a bounded 2-D Gaussian mean, its audit,
the toys spread over a box through the toy engine (each tested at its own point), and the
regions drawn on a 2-D scan against those of the grid construction."""

import numpy as np
import pytest
from scipy import stats

from nsbi import neyman as N
from nsbi.learned_critical import QuantileRegressor, audit, learned_region, sample_box, toys_over_range
from nsbi.model import Model
from nsbi.neyman2d import critical_grid
from nsbi.scan2d import scan2d
from nsbi.toys import ToyGenerator

CLS = (0.68, 0.95)


def t_bounded(x, y, a, b):
    """x ~ N(a, 1), y ~ N(b, 1), a >= 0: t = (x - a)^2 - (x - max(x, 0))^2 + (y - b)^2."""
    return (x - a) ** 2 - (x - np.maximum(x, 0.0)) ** 2 + (y - b) ** 2


def simulate(pts, rng):
    return t_bounded(rng.normal(pts[:, 0], 1.0), rng.normal(pts[:, 1], 1.0), pts[:, 0], pts[:, 1])


def test_learned_critical_values_in_two_dimensions_match_the_quantiles_and_pass_the_audit():
    """At a = 0 the bound makes t a mixture (chi2_1 and chi2_2); far from it t ~ chi2_2. 4000
    toys over [0, 3] x [-1, 1] learn both, within 0.25 (68 %) of quantiles from 200 000 toys."""
    rng = np.random.default_rng(1)
    pts = sample_box([0.0, -1.0], [3.0, 1.0], 4000, seed=2)
    reg = QuantileRegressor(CLS, [0.0, -1.0], [3.0, 1.0], seed=3).fit(pts, simulate(pts, rng))
    for a in (0.0, 0.3, 2.5):
        big = np.tile([a, 0.2], (200_000, 1))
        want = np.quantile(simulate(big, rng), 0.68)
        assert reg.predict([[a, 0.2]])["0.68"][0] == pytest.approx(want, abs=0.25), a
    assert np.quantile(simulate(np.tile([2.5, 0.0], (200_000, 1)), rng), 0.95) == pytest.approx(
        stats.chi2.ppf(0.95, 2), abs=0.1
    )
    # the audit: independent toys at three points, within 3 binomial errors
    a_pts = np.repeat([[0.2, 0.0], [1.5, 0.5], [2.7, -0.5]], 400, axis=0)
    res = audit(reg, a_pts, simulate(a_pts, rng))
    assert res["passed"] and len(res["points"]) == 3 and res["points"][0]["poi"] == [0.2, 0.0]
    # wrong critical values fail it
    shifted = QuantileRegressor(CLS, [0.0, -1.0], [3.0, 1.0], seed=3).fit(pts, simulate(pts, rng) + 1.0)
    assert not audit(shifted, a_pts, simulate(a_pts, rng))["passed"]
    with pytest.raises(ValueError, match="2 parameter"):
        reg.predict([1.0, 2.0])


def two_counts(n_a=40, n_b=55):
    """Two bins: signal a (normfactor) in the first, b in the second, over known backgrounds."""
    spec = {
        "channels": [
            {
                "name": "c",
                "type": "binned",
                "samples": [
                    {
                        "name": "sa",
                        "data": [20.0, 0.0],
                        "modifiers": [{"name": "a", "type": "normfactor", "data": None}],
                    },
                    {
                        "name": "sb",
                        "data": [0.0, 30.0],
                        "modifiers": [{"name": "b", "type": "normfactor", "data": None}],
                    },
                    {"name": "bkg", "data": [20.0, 25.0], "modifiers": []},
                ],
            }
        ]
    }
    pars = [{"name": "a", "bounds": [[0.0, 4.0]]}, {"name": "b", "bounds": [[0.0, 4.0]]}]
    meas = {"name": "m", "config": {"poi": "a", "parameters": pars}}
    return Model(spec, {"c": [n_a, n_b]}, meas)


def test_toys_over_a_box_and_the_region_against_the_grid_construction():
    m = two_counts()
    gen = ToyGenerator(m)
    pts = np.array([[0.5, 1.0], [1.5, 0.2], [2.0, 2.0]])
    out = toys_over_range(gen, pts, seed=21, pois=["a", "b"])
    assert out["pois"] == ["a", "b"] and out["n_failed"] == 0
    for i, (a, b) in enumerate(pts):
        chunk = N.compute_chunk(gen, {"a": a, "b": b}, 1, 21, mu_index=i, batch=0)
        assert out["t"][i] == pytest.approx(chunk["t"][0], abs=1e-6)
    # learned (1500 toys over the box) vs the grid construction (300 toys at each of 3 x 3 nodes)
    x = y = np.linspace(0.0, 2.5, 11)
    scans = {"observed": scan2d(m, x, y, ["a", "b"]).to_dict()}
    toys = [
        toys_over_range(gen, sample_box([0.0, 0.0], [2.7, 2.7], 500, seed=(7, k)), 7, k, pois=["a", "b"])
        for k in range(3)
    ]
    audit_chunks = [N.compute_chunk(gen, {"a": 1.0, "b": 1.0}, 300, 8, mu_index=0)]
    res = learned_region(toys, audit_chunks, CLS, [0.0, 0.0], [2.7, 2.7], scans, seed=5)
    assert res["n_toys"] == 1500 and res["audit"]["passed"], res["audit"]
    nodes = [0.5, 1.0, 1.5]
    grid_chunks = [
        N.compute_chunk(gen, {"a": a, "b": b}, 300, 9, mu_index=3 * i + j)
        for i, a in enumerate(nodes)
        for j, b in enumerate(nodes)
    ]
    grid = critical_grid(grid_chunks, ["a", "b"], nodes, nodes, CLS)
    at = np.ix_([2, 4, 6], [2, 4, 6])  # the nodes on the scan grid
    for k in ("0.68", "0.95"):
        learned_c, grid_c = np.array(res["critical"][k]["value"])[at], grid["critical"][k]["value"]
        band = 0.5 * (grid["critical"][k]["hi"] - grid["critical"][k]["lo"])
        assert np.all(np.abs(learned_c - grid_c) < 3 * band + 0.15), (k, learned_c, grid_c)
        r = res["datasets"]["observed"]["regions"][k]
        # a closed region of about Wilks' size (the counts are in the asymptotic regime)
        assert r["area_ratio_toys_over_asymptotic"] == pytest.approx(1.0, abs=0.2)
    with pytest.raises(ValueError, match="same two POIs"):
        learned_region([toys[0], {**toys[1], "pois": ["b", "a"]}], [], CLS, [0.3, 0.3], [1.7, 1.7], scans)


def test_learned_region_jobs_run_on_a_workspace(tmp_path):
    """validation.region2d.method quantile_regression: the DAG has the learned toys, audit and
    region jobs instead of the toys per node; run by Snakemake on the binned two-POI workspace,
    the region equals learned_region on the jobs' own toys (deterministic training), with
    both datasets and the coverage point."""
    import json

    import yaml
    from conftest import job_counts, snakemake
    from test_multipoi import REGION2D, two_poi_raw, two_poi_workspace

    from nsbi import config as ncfg
    from nsbi import workspace as W

    raw = two_poi_raw()
    learned = {
        "toys": {"per_batch": 300, "batches": 2, "seed": 3},
        "network": {"max_epochs": 100, "seed": 4},
        "audit": {"per_point": 100, "tolerance": 4.0},
    }
    raw["validation"].update(
        workspace="hist", region2d={**REGION2D, "method": "quantile_regression", "learned": learned}
    )
    cfg_path = tmp_path / "twopoi.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    cfg = ncfg.validate(raw)
    counts = job_counts(snakemake("-n", "--configfile", str(cfg_path), "--directory", str(tmp_path)).stdout)
    assert counts["region2d_learned_toys"] == 2 and counts["region2d_audit_chunk"] == 3 and counts["region2d"] == 1
    assert "region2d_chunk" not in counts
    box = ncfg.region2d_box(cfg)
    assert box == ([0.4, 0.52], [1.6, 1.48])  # x [0.5, 1.5], y [0.6, 1.4] widened by 10 %
    ws_path = tmp_path / ncfg.results_dir(cfg) / "workspace" / "hist.json"
    W.save(two_poi_workspace(cfg), ws_path)
    target = f"{ncfg.results_dir(cfg)}/validation/region2d/region.json"
    rules = ("region2d_learned_toys", "region2d_audit_chunk", "region2d_coverage_chunk", "region2d")
    snakemake(
        "--cores", "2", "--configfile", str(cfg_path), "--directory", str(tmp_path), target, "--allowed-rules", *rules
    )
    region = json.loads((tmp_path / target).read_text())
    assert region["method"] == "quantile_regression" and region["n_toys"] == 600 and region["audit"]["passed"]
    assert set(region["datasets"]) == {"asimov", "observed"} and len(region["audit"]["points"]) == 3
    base = tmp_path / ncfg.results_dir(cfg) / "validation" / "region2d" / "learned"
    toys = [json.loads((base / f"toys/b{b}.json").read_text()) for b in (0, 1)]
    again = learned_region(
        toys,
        sorted((base / "audit").glob("*.json")),
        cfg["validation"]["cls"],
        *box,
        {"observed": {k: region[k] for k in ("pois", "x", "y")} | {"delta_twice_nll": [[0.0] * 3] * 3, "best": [1, 1]}},
        seed=4,
        settings={"max_epochs": 100, "hidden": [32, 32], "learning_rate": 0.01, "patience": 40},
    )
    for k in region["critical"]:
        np.testing.assert_allclose(region["critical"][k]["value"], again["critical"][k]["value"], rtol=1e-6, atol=1e-6)
    (row,) = region["coverage"]["points"]
    assert row["point"] == {"mu": 1.0, "mu_qq": 1.0} and row["n_toys"] == 40
    assert (tmp_path / target).with_suffix(".png").stat().st_size > 0
