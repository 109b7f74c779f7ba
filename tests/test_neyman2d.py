"""Neyman regions for two POIs (nsbi.neyman2d) on a counting model with two signal strengths
that share a bin: toy t at a 2-D point against iminuit fits, critical values against Wilks'
chi2 (2 dof) in the large-count regime, the region of a dataset against its Wilks region, and
the coverage of independent toys at a true point."""

import math

import numpy as np
import pytest

from nsbi import fit as F
from nsbi import neyman as N
from nsbi.model import Model
from nsbi.neyman2d import asymptotic_critical_2d, coverage_2d, critical_grid, gather_region
from nsbi.scan2d import scan2d
from nsbi.toys import ToyGenerator

POINT = {"a": 1.0, "b": 1.0}


def counting(obs=(140, 220, 140)):
    """Bins (40 a + 100, 60 a + 60 b + 100, 40 b + 100) with a 5 % normalisation systematic."""
    spec = {
        "channels": [
            {
                "name": "c",
                "type": "binned",
                "samples": [
                    {"name": "sa", "data": [40.0, 60.0, 0.0], "morphing": "a", "modifiers": []},
                    {"name": "sb", "data": [0.0, 60.0, 40.0], "morphing": "b", "modifiers": []},
                    {
                        "name": "bkg",
                        "data": [100.0, 100.0, 100.0],
                        "modifiers": [{"name": "n1", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}}],
                    },
                ],
            }
        ]
    }
    meas = {
        "name": "m",
        "config": {"poi": "a", "parameters": [{"name": "a", "bounds": [[-3, 5]]}, {"name": "b", "bounds": [[-3, 5]]}]},
    }
    return Model(spec, {"c": list(obs)}, meas)


def test_toy_t_at_a_point_of_two_pois_equals_iminuit_fits():
    gen = ToyGenerator(counting())
    theta = N.theta_at(gen, POINT, "nominal")
    toys = gen.generate(theta, 6, seed=(1, 0, 0))
    res = N.toy_t(gen, toys, POINT)
    for i in range(len(toys)):
        m = gen.model_for(toys, i)
        free = F.fit(m, tolerance=1e-8, strategy=2, hesse=False)
        cond = F.fit(m, fixed=POINT, tolerance=1e-8, strategy=2, hesse=False)
        assert res["twice_nll_free"][i] == pytest.approx(free.twice_nll, abs=1e-6)
        assert res["twice_nll_cond"][i] == pytest.approx(cond.twice_nll, abs=1e-6)
        assert res["hat"]["b"][i] == pytest.approx(free.value("b"), abs=1e-4)
    assert res["n_fallback"] == 0 and res["n_failed"] == 0
    with pytest.raises(ValueError, match="one POI"):
        N.toy_t(gen, toys, POINT, kind="q")


def _chunks(gen, xs, ys, n, seed, nuisances="nominal"):
    out = []
    for i, xa in enumerate(xs):
        for j, yb in enumerate(ys):
            point = {"a": float(xa), "b": float(yb)}
            theta = N.theta_at(gen, point, nuisances)
            out.append(N.compute_chunk(gen, point, n, seed, mu_index=i * len(ys) + j, theta=theta))
    return out


def test_critical_values_follow_chi2_with_two_dof_at_large_counts():
    gen = ToyGenerator(counting())
    chunks = _chunks(gen, [1.0], [1.0], 2000, 11)
    assert chunks[0]["point"] == POINT and len(chunks[0]["point_hat"]["b"]) == 2000
    grid = critical_grid(chunks, ["a", "b"], [1.0], [1.0], cls=(0.68, 0.95))
    for cl in (0.68, 0.95):
        c = grid["critical"][N.cl_key(cl)]
        lo, hi = c["lo"][0, 0], c["hi"][0, 0]
        # the toy quantile's +-1 sigma band, widened to 3 sigma, holds Wilks' value
        v = c["value"][0, 0]
        assert v - 3 * (v - lo) <= asymptotic_critical_2d(cl) <= v + 3 * (hi - v), (cl, v, lo, hi)
    assert asymptotic_critical_2d(0.95) == pytest.approx(-2 * math.log(0.05))


def test_region_of_a_dataset_against_wilks_and_coverage():
    model = counting(obs=(150, 205, 145))
    gen = ToyGenerator(model)
    best = F.fit(model, errors="exact")
    ea, eb = best.errors[model.index("a")], best.errors[model.index("b")]
    xs = np.linspace(best.value("a") - 3.5 * ea, best.value("a") + 3.5 * ea, 7)
    ys = np.linspace(best.value("b") - 3.5 * eb, best.value("b") + 3.5 * eb, 7)
    scan = scan2d(model, xs, ys, ("a", "b"), best_fit=best).to_dict()
    chunks = _chunks(gen, xs, ys, 300, 5, nuisances="profiled")
    region = gather_region(chunks, {"observed": scan}, cls=(0.68, 0.95))
    assert np.array(region["n_toys"]).min() == 300
    for k in ("0.68", "0.95"):
        r = region["datasets"]["observed"]["regions"][k]
        # large counts: the Neyman region is Wilks' region up to the toys' statistical error
        assert r["area_ratio_toys_over_asymptotic"] == pytest.approx(1.0, abs=0.15), (k, r)
        assert np.isfinite(r["asymptotic"]["area"]) and len(r["toys"]["contours"]) == 1
    # the best fit is inside both regions
    ib, jb = np.unravel_index(np.argmin(scan["delta_twice_nll"]), (7, 7))
    assert region["datasets"]["observed"]["regions"]["0.68"]["toys"]["inside"][ib][jb]
    # coverage: independent toys at a node (another seed) fall below its critical value at the
    # nominal rate, within binomial errors
    i, j = 3, 3
    truth = {"a": float(xs[i]), "b": float(ys[j])}
    cov_chunk = N.compute_chunk(gen, truth, 400, 99, mu_index=i * 7 + j, theta=N.theta_at(gen, truth, "profiled"))
    cov = coverage_2d([cov_chunk], region)
    (row,) = cov["points"]
    assert row["point"] == truth and row["n_toys"] == 400
    for k, nominal in (("0.68", 0.68), ("0.95", 0.95)):
        c = row["toys"][k]
        assert abs(c["fraction"] - nominal) < 3 * c["error"] + 1e-9, (k, c)


def test_gather_refuses_incomplete_or_mixed_inputs():
    gen = ToyGenerator(counting())
    model = gen.model
    xs, ys = [0.5, 1.0], [1.0, 1.5]
    scan = scan2d(model, xs, ys, ("a", "b")).to_dict()
    chunks = _chunks(gen, [1.0], [1.0], 20, 3)
    with pytest.raises(ValueError, match="without toys"):
        gather_region(chunks, {"observed": scan})
    with pytest.raises(ValueError, match="not on the grid"):
        gather_region(_chunks(gen, [0.7], [1.0], 20, 3), {"observed": scan})
    with pytest.raises(ValueError, match="duplicate chunk seed"):
        critical_grid(chunks + chunks, ["a", "b"], [1.0], [1.0])
    one_poi = N.compute_chunk(gen, 1.0, 20, 3)
    with pytest.raises(ValueError, match="2-D construction"):
        critical_grid([one_poi], ["a", "b"], [1.0], [1.0])
