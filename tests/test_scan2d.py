"""2-D profile scans and contours (nsbi.scan2d) against a correlated Gaussian likelihood, whose
profiled contours are exact ellipses: (p - m)^T S^-1 (p - m) = level, with S the 2x2 block of
the covariance of the scanned pair, area pi * level * sqrt(det S)."""

import math

import numpy as np
import pytest

from nsbi.scan2d import LEVELS_2D, contour_lines, polygon_area, scan2d


class GaussianModel:
    """-2 ln L = (t - m)^T C^-1 (t - m) over three parameters, the third one a nuisance
    parameter correlated with both; the interface nsbi.fit uses of nsbi.model.Model."""

    def __init__(self, mean, cov):
        self.mean = np.asarray(mean, float)
        self.cov = np.asarray(cov, float)
        self.inv = np.linalg.inv(self.cov)
        self.par_names = ["a", "b", "nu"]
        self.npars = 3
        self.init = [0.0, 0.0, 0.0]
        self.bounds = [(-10.0, 10.0)] * 3
        self.fixed = [False] * 3
        self.constrained = [False, False, True]
        self.poi_name = "a"
        self.n_unbinned_events = 0

    def index(self, name):
        return self.par_names.index(name)

    def twice_nll(self, t):
        d = np.asarray(t, float) - self.mean
        return float(d @ self.inv @ d)

    def twice_nll_and_grad(self, t):
        d = np.asarray(t, float) - self.mean
        return float(d @ self.inv @ d), 2.0 * self.inv @ d

    def hessian(self, t):
        return 2.0 * self.inv

    def twice_nll_grad_hessian(self, t):
        v, g = self.twice_nll_and_grad(t)
        return v, g, 2.0 * self.inv


SIG = np.array([0.5, 1.2, 0.8])
RHO = np.array([[1.0, 0.6, 0.3], [0.6, 1.0, -0.4], [0.3, -0.4, 1.0]])
MEAN = np.array([1.0, -0.5, 0.2])


def gaussian():
    return GaussianModel(MEAN, RHO * np.outer(SIG, SIG))


def test_levels_are_the_two_dof_chi2_quantiles():
    # P(chi2_2 <= c) = 1 - exp(-c/2)
    assert 1 - math.exp(-LEVELS_2D["68"] / 2) == pytest.approx(0.6826894921370859, abs=1e-12)
    assert 1 - math.exp(-LEVELS_2D["95"] / 2) == pytest.approx(0.95, abs=1e-12)


def test_profiled_contours_of_a_correlated_gaussian_are_its_ellipses():
    model = gaussian()
    x = np.linspace(MEAN[0] - 4 * SIG[0], MEAN[0] + 4 * SIG[0], 17)
    y = np.linspace(MEAN[1] - 4 * SIG[1], MEAN[1] + 4 * SIG[1], 17)
    res = scan2d(model, x, y, ("a", "b"))
    S = model.cov[:2, :2]
    Sinv = np.linalg.inv(S)
    # the grid: the profiled -2 Delta ln L is the quadratic form of the marginal covariance
    X, Y = np.meshgrid(x - MEAN[0], y - MEAN[1], indexing="ij")
    exact = Sinv[0, 0] * X**2 + 2 * Sinv[0, 1] * X * Y + Sinv[1, 1] * Y**2
    assert res.converged.all()
    np.testing.assert_allclose(res.delta, exact, atol=2e-4)
    assert res.best == pytest.approx(tuple(MEAN[:2]), abs=1e-3)
    assert res.correlation == pytest.approx(RHO[0, 1], abs=1e-6)
    areas = res.areas()
    for key, level in LEVELS_2D.items():
        (poly,) = res.contours[key]
        d = poly - MEAN[:2]
        q = np.einsum("ni,ij,nj->n", d, Sinv, d)
        # every contour point lies on the ellipse (shape and orientation), the area is pi c sqrt(det S)
        np.testing.assert_allclose(q, level, rtol=2e-3)
        assert areas[key] == pytest.approx(math.pi * level * math.sqrt(np.linalg.det(S)), rel=2e-3)
    # profiling matters: the conditional (nu fixed at its best value) ellipse is smaller
    cond = np.linalg.inv(np.linalg.inv(model.cov)[:2, :2])
    assert np.linalg.det(cond) < 0.8 * np.linalg.det(S)
    out = res.to_dict()
    assert out["pois"] == ["a", "b"] and len(out["contours"]["68"]) == 1
    assert out["areas"]["95"] == pytest.approx(areas["95"])


def test_a_region_that_leaves_the_grid_has_no_area():
    model = gaussian()
    x = np.linspace(MEAN[0] - 1 * SIG[0], MEAN[0] + 1 * SIG[0], 6)
    y = np.linspace(MEAN[1] - 4 * SIG[1], MEAN[1] + 4 * SIG[1], 6)
    res = scan2d(model, x, y, ("a", "b"))
    assert math.isnan(res.areas()["95"])


def test_polygon_area_and_raw_grid_contours():
    square = np.array([[0, 0], [2, 0], [2, 3], [0, 3], [0, 0]], float)
    assert polygon_area(square) == pytest.approx(6.0)
    # three points per axis: contoured as it is (linear), a circle's level line lies inside it
    g = np.linspace(-2, 2, 3)
    z = np.add.outer(g**2, g**2)
    (line,) = contour_lines(g, g, z, 1.0)
    assert np.all(np.hypot(line[:, 0], line[:, 1]) <= 1.0 + 1e-12)


@pytest.mark.parametrize(
    "pois, x, msg",
    [
        (("a", "a"), [0.0, 1.0], "two different"),
        (("a", "b"), [1.0, 0.0], "strictly increasing"),
        (("a", "b"), [0.0, 20.0], "leaves its bounds"),
    ],
)
def test_bad_scans_are_refused_before_any_fit(pois, x, msg):
    with pytest.raises(ValueError, match=msg):
        scan2d(gaussian(), x, [0.0, 1.0], pois)


def test_filled_region_areas_with_a_hole_and_at_a_bound():
    from nsbi.scan2d import filled_region, region_area

    g = np.linspace(-3.0, 3.0, 61)
    r = np.hypot(*np.meshgrid(g, g, indexing="ij"))
    # an annulus 1 <= r <= 2 as the region (r - 1.5)^2 <= 0.25: area 3 pi, not the outer disc's 4 pi
    area, edges = filled_region(g, g, (r - 1.5) ** 2, 0.25)
    assert area == pytest.approx(3 * math.pi, rel=2e-3) and edges == []
    # two discs of radius 0.5: twice pi / 4
    two = np.minimum(
        np.hypot(*np.meshgrid(g - 1.5, g, indexing="ij")), np.hypot(*np.meshgrid(g + 1.5, g, indexing="ij"))
    )
    assert filled_region(g, g, two**2, 0.25)[0] == pytest.approx(math.pi / 2, rel=2e-3)
    # the disc r <= 1 scanned on x >= 0 only: it reaches the side x_low; at a parameter's bound
    # the half disc is the region, else its area is unknown
    half = g[g >= 0]
    z = np.add.outer(half**2, g**2)
    assert filled_region(half, g, z, 1.0) == (pytest.approx(math.pi / 2, rel=2e-3), ["x_low"])
    assert region_area(half, g, z, 1.0, open_edges=("x_high", "y_low", "y_high")) == pytest.approx(
        math.pi / 2, rel=2e-3
    )
    assert math.isnan(region_area(half, g, z, 1.0))
    assert math.isnan(region_area(g, g, r, -1.0))  # empty


def test_a_region_at_a_parameter_bound_has_an_area():
    """A scan that starts at a parameter's lower bound: that side is not open, so a region cut
    by the bound has the area inside the bounds (the Gaussian's half ellipse)."""
    model = gaussian()
    model.bounds[0] = (MEAN[0], 10.0)
    x = np.linspace(MEAN[0], MEAN[0] + 4 * SIG[0], 9)
    y = np.linspace(MEAN[1] - 4 * SIG[1], MEAN[1] + 4 * SIG[1], 17)
    res = scan2d(model, x, y, ("a", "b"))
    assert res.open_edges == ("x_high", "y_low", "y_high")
    S = model.cov[:2, :2]
    assert res.areas()["68"] == pytest.approx(0.5 * math.pi * LEVELS_2D["68"] * math.sqrt(np.linalg.det(S)), rel=5e-3)
    assert res.edges_reached()["68"] == ["x_low"]
    back = type(res).from_dict(res.to_dict())
    assert back.open_edges == res.open_edges and back.areas() == pytest.approx(res.areas())


def test_closure2d_report_area_ratios():
    """The 2-D closure: areas of each kind's regions and their ratios to the oracle's, against
    the 10 % target; a region that leaves the scanned rectangle has no area and no ratio."""
    from nsbi.analysis import closure2d_report
    from nsbi.scan2d import Scan2DResult

    g = np.linspace(-3.0, 3.0, 25)
    X, Y = np.meshgrid(g, g, indexing="ij")

    def result(scale, y_shift=0.0):
        delta = (X**2 + (Y - y_shift) ** 2) / scale**2
        return Scan2DResult(
            pois=("a", "b"),
            x=g,
            y=g,
            twice_nll=delta,
            delta=delta,
            converged=np.ones_like(delta, bool),
            best=(0.0, y_shift),
            best_twice_nll=0.0,
            correlation=0.0,
            contours={k: contour_lines(g, g, delta, lv) for k, lv in LEVELS_2D.items()},
        )

    rep = closure2d_report({"nsbi": result(1.04), "hist": result(1.3, y_shift=2.5), "oracle": result(1.0)})
    assert rep["pois"] == ["a", "b"]
    assert rep["scans"]["oracle"]["area_68"] == pytest.approx(math.pi * LEVELS_2D["68"], rel=2e-3)
    assert rep["nsbi_over_oracle_area_68"] == pytest.approx(1.04**2, rel=2e-3)
    assert rep["nsbi_over_oracle_area_95"] == pytest.approx(1.04**2, rel=2e-3)
    assert rep["within_target"] is True
    # the histogram's region reaches the upper side of b: no area, no ratio
    assert rep["scans"]["hist"]["area_68"] is None and rep["hist_over_oracle_area_68"] is None
    assert closure2d_report({"nsbi": result(1.2), "oracle": result(1.0)})["within_target"] is False
    with pytest.raises(ValueError, match="different parameter pairs"):
        other = result(1.0)
        other.pois = ("a", "c")
        closure2d_report({"nsbi": other, "oracle": result(1.0)})
