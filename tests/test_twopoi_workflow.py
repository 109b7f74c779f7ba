"""The two-POI test config (config/twopoi_test.yaml, twin of config/twopoi.yaml) end to end:
the simulator's electroweak production with its own signal strength mu_V, every job of the
DAG, and the 2-D outputs (profile scans and contours for every workspace, the 2-D oracle
closure, the 2-D Neyman region with its coverage) checked in numbers."""

import math

import numpy as np
import pytest
import uproot
from conftest import ROOT, snakemake

from nsbi import config as ncfg
from nsbi.io import read_json
from nsbi.scan2d import LEVELS_2D, Scan2DResult
from nsbi.simulate import expected_yields

TWIN = ROOT / "config" / "twopoi_test.yaml"
PAIR = "mu__mu_V"


def test_two_poi_config_end_to_end(tmp_path):
    cfg = ncfg.load(TWIN)
    assert ncfg.poi_names(cfg) == ["mu", "mu_V"]
    snakemake("--cores", "2", "--configfile", str(TWIN), "--directory", str(tmp_path))
    check_run(tmp_path, cfg)


def check_run(tmp_path, cfg):
    """The checks of a finished run of the twin config in ``tmp_path``."""
    res = tmp_path / "results" / cfg["analysis"]

    # the pseudo-data contain the electroweak production: their count is the expected one
    sim = cfg["simulation"]
    with uproot.open(tmp_path / sim["output_dir"] / "data.root") as f:
        n_data = f[cfg["input"]["tree"]].num_entries
    nu = expected_yields(sim["data"]["mu"], None, sim["lumi_ifb"], mu_v=sim["data"]["mu_V"])
    assert nu["vv"] > 0.05 * nu["total"]
    assert abs(n_data - nu["total"]) < 4 * math.sqrt(nu["total"])

    # 2-D profile scans of every workspace and dataset; on the Asimov data every workspace's
    # best fit is the generation point (mu, mu_V) = (1, 1)
    scans = {}
    for kind in ("nsbi", "oracle", "hist"):
        for ds in ("asimov", "observed"):
            d = read_json(res / f"fit/{kind}/{ds}/scan2d/{PAIR}.json", nan_keys=("twice_nll", "delta_twice_nll"))
            s = Scan2DResult.from_dict(d)
            assert s.pois == ("mu", "mu_V") and s.converged.mean() >= 0.9, (kind, ds)
            assert np.nanmin(s.delta) >= -1e-6
            if ds == "asimov":  # the grid holds the generation point (1, 1), the minimum
                assert np.nanmin(s.delta) < 1e-3
            assert (res / f"fit/{kind}/{ds}/scan2d/{PAIR}.png").stat().st_size > 0
            # the 1-D profile of mu_V, every other parameter profiled
            one = read_json(res / f"fit/{kind}/{ds}/scan_mu_V.json", nan_keys=("twice_nll", "delta_twice_nll"))
            assert one["poi"] == "mu_V" and np.nanmin(one["delta_twice_nll"]) >= -1e-6
            scans[kind, ds] = s
        assert scans[kind, "asimov"].best == pytest.approx((1.0, 1.0), abs=2e-3), kind
        # x starts at mu = 0, y at mu_V = 0: the POIs' lower bounds, not open sides
        assert scans[kind, "asimov"].open_edges == ("x_high", "y_high")

    # the oracle's 68 % region on the Asimov data: closed, around (1, 1), nested in the 95 %
    oracle = scans["oracle", "asimov"]
    a68, a95 = oracle.areas()["68"], oracle.areas()["95"]
    assert 0 < a68 < a95 < 9.0
    assert oracle.edges_reached()["68"] == []

    # the 2-D closure: areas of every workspace and their ratios to the oracle's
    closure = read_json(res / f"validation/closure2d/{PAIR}.json")
    assert closure["pois"] == ["mu", "mu_V"] and closure["target_ratio"] == pytest.approx(1.10)
    assert closure["scans"]["oracle"]["area_68"] == pytest.approx(a68, rel=1e-9)
    for kind in ("nsbi", "hist"):
        area = closure["scans"][kind]["area_68"]
        ratio = closure[f"{kind}_over_oracle_area_68"]
        assert (ratio is None) == (area is None)
        if ratio is not None:
            assert ratio == pytest.approx(area / a68, rel=1e-9)
            # the exact likelihood is the physical limit: no method's region is much smaller
            assert ratio > 0.8, kind
    assert (closure["within_target"] is None) == (closure["nsbi_over_oracle_area_68"] is None)
    assert (res / f"validation/closure2d/{PAIR}.png").stat().st_size > 0

    # the 2-D Neyman region: toys at every node, critical values, coverage at (1, 1)
    region = read_json(res / "validation/region2d/region.json")
    r2d = cfg["validation"]["region2d"]
    assert region["pois"] == ["mu", "mu_V"]
    assert np.all(np.asarray(region["n_toys"]) == r2d["toys"]["per_batch"] * r2d["toys"]["batches"])
    assert np.all(np.asarray(region["n_failed"]) == 0)
    crit = {k: np.asarray(v["value"]) for k, v in region["critical"].items()}
    assert crit["0.68"].shape == (3, 3) and np.all(crit["0.68"] < crit["0.95"])
    # the critical values scatter around Wilks' (2.30, 5.99) with 20 toys per node
    assert 0.5 * LEVELS_2D["68"] < np.median(crit["0.68"]) < 2 * LEVELS_2D["68"]
    (point,) = region["coverage"]["points"]
    assert point["point"] == {"mu": 1.0, "mu_V": 1.0} and point["n_toys"] == r2d["coverage"]["per_batch"]
    for cl in ("0.68", "0.95"):
        cov = point["toys"][cl]
        assert cov["covered"] == pytest.approx(cov["fraction"] * cov["n"])
    assert set(region["datasets"]) == {"asimov", "observed"}
    assert (res / "validation/region2d/region.png").stat().st_size > 0
