"""Two-dimensional profile-likelihood scans of a pair of parameters and their contours.

At every point of a rectangular grid in ``(a, b)`` both parameters are fixed and every other
free parameter is profiled (:func:`nsbi.fit.fit`); ``Delta(-2 ln L)`` is taken w.r.t. the global
minimum (or the smallest grid value if lower). Contours are drawn at Wilks' thresholds for two
degrees of freedom (:data:`LEVELS_2D`: 2.30 and 5.99 for 68.27 % and 95 %) on a bicubic
interpolation of the grid (``contourpy``), and reported as closed polygons with their areas, so
that two methods' regions can be compared in numbers (e.g. the NSBI / oracle area ratio).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import chi2

from .fit import FitResult, fit

__all__ = [
    "EDGES",
    "LEVELS_2D",
    "Scan2DResult",
    "contour_lines",
    "filled_region",
    "polygon_area",
    "region_area",
    "scan2d",
]

#: Delta(-2 ln L) thresholds for 68.27 % and 95 % with two parameters (chi2 quantiles, 2 dof)
LEVELS_2D = {"68": float(chi2.ppf(0.6826894921370859, 2)), "95": float(chi2.ppf(0.95, 2))}

#: interpolation points per grid interval for the contours
REFINE = 8

#: the sides of the scanned rectangle
EDGES = ("x_low", "x_high", "y_low", "y_high")


@dataclass
class Scan2DResult:
    pois: tuple[str, str]
    x: np.ndarray  # grid of the first parameter
    y: np.ndarray  # grid of the second parameter
    twice_nll: np.ndarray  # [len(x), len(y)]
    delta: np.ndarray  # Delta(-2 ln L), same shape
    converged: np.ndarray  # same shape
    best: tuple[float, float]
    best_twice_nll: float
    correlation: float  # of the two parameters at the global minimum (2 H^-1)
    contours: dict = field(default_factory=dict)  # level -> list of (n, 2) polygons
    #: sides of the rectangle beyond which the parameters go on (not at a parameter's bound)
    open_edges: tuple[str, ...] = EDGES

    def _filled(self) -> dict[str, tuple[float, list[str]]]:
        return {k: filled_region(self.x, self.y, self.delta, LEVELS_2D[k]) for k in self.contours}

    def areas(self, filled=None) -> dict[str, float]:
        """Area of each level's region (:func:`region_area`): NaN where it reaches an open edge."""
        filled = filled or self._filled()
        return {k: _closed_area(area, reached, self.open_edges) for k, (area, reached) in filled.items()}

    def edges_reached(self, filled=None) -> dict[str, list[str]]:
        """The sides of the rectangle each level's region reaches (:func:`filled_region`)."""
        return {k: reached for k, (_area, reached) in (filled or self._filled()).items()}

    @classmethod
    def from_dict(cls, d) -> Scan2DResult:
        """The result written by :meth:`to_dict` (e.g. read back from a scan JSON file)."""
        return cls(
            pois=tuple(d["pois"]),
            x=np.asarray(d["x"], float),
            y=np.asarray(d["y"], float),
            twice_nll=np.asarray(d["twice_nll"], float),
            delta=np.asarray(d["delta_twice_nll"], float),
            converged=np.asarray(d["converged"], bool),
            best=tuple(float(v) for v in d["best"]),
            best_twice_nll=float(d["best_twice_nll"]),
            correlation=float(d["correlation"]),
            contours={k: [np.asarray(p, float) for p in polys] for k, polys in d["contours"].items()},
            open_edges=tuple(d.get("open_edges", EDGES)),
        )

    def to_dict(self) -> dict:
        filled = self._filled()
        return {
            "pois": list(self.pois),
            "x": self.x.tolist(),
            "y": self.y.tolist(),
            "twice_nll": self.twice_nll.tolist(),
            "delta_twice_nll": self.delta.tolist(),
            "converged": self.converged.tolist(),
            "best": [float(v) for v in self.best],
            "best_twice_nll": float(self.best_twice_nll),
            "correlation": float(self.correlation),
            "levels": dict(LEVELS_2D),
            "contours": {k: [np.asarray(p).tolist() for p in polys] for k, polys in self.contours.items()},
            "areas": self.areas(filled),
            "open_edges": list(self.open_edges),
            "edges_reached": self.edges_reached(filled),
        }


def _signed_area(poly: np.ndarray) -> float:
    """Shoelace area of a polygon ``(n, 2)``: positive when anticlockwise."""
    p = np.asarray(poly, float)
    x, y = p[:, 0], p[:, 1]
    return float(0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def polygon_area(poly: np.ndarray) -> float:
    """Area enclosed by a polygon ``(n, 2)`` (shoelace formula; orientation ignored)."""
    return abs(_signed_area(poly))


def filled_region(x: np.ndarray, y: np.ndarray, delta: np.ndarray, level: float) -> tuple[float, list[str]]:
    """Area of the region ``delta <= level`` inside the scanned rectangle, and the sides of the
    rectangle (:data:`EDGES`) it reaches.

    The region is filled on the same interpolation as :func:`contour_lines`; its area is the sum
    of the signed areas of its boundaries (outer boundaries count positive, holes negative), so
    a region with a hole or several pieces gets its true area. Where the region reaches a side,
    that side bounds it: the area is the part inside the rectangle."""
    import contourpy

    x, y, z = _interpolated(x, y, delta)
    inside = np.where(np.isfinite(z), z, np.inf) <= level
    reached = [e for e, side in zip(EDGES, (inside[0], inside[-1], inside[:, 0], inside[:, -1])) if side.any()]
    if not inside.any():
        return 0.0, reached
    gen = contourpy.contour_generator(x, y, np.ma.masked_invalid(z).T, fill_type=contourpy.FillType.OuterOffset)
    points, offsets = gen.filled(float(np.nanmin(z)) - 1.0, float(level))
    rings = (pts[a:b] for pts, offs in zip(points, offsets) for a, b in zip(offs[:-1], offs[1:]))
    return abs(sum(_signed_area(ring) for ring in rings)), reached


def region_area(
    x: np.ndarray, y: np.ndarray, delta: np.ndarray, level: float, open_edges: Sequence[str] = EDGES
) -> float:
    """Area of the region ``delta <= level`` (:func:`filled_region`); NaN when it is empty or
    reaches a side in ``open_edges`` (there the region goes on beyond the scanned rectangle, so
    its area is unknown). A side at a parameter's bound is not open: the region ends there."""
    return _closed_area(*filled_region(x, y, delta, level), open_edges)


def _closed_area(area: float, reached: Sequence[str], open_edges: Sequence[str]) -> float:
    return float("nan") if area == 0.0 or set(reached) & set(open_edges) else area


def _interpolated(x, y, delta):
    """``(x, y, delta)`` on a grid ``REFINE`` times finer by a bicubic spline through the grid
    points, with at least four points per axis and a finite grid; otherwise as they are."""
    x, y, z = np.asarray(x, float), np.asarray(y, float), np.asarray(delta, float)
    if len(x) >= 4 and len(y) >= 4 and np.all(np.isfinite(z)):
        from scipy.interpolate import RectBivariateSpline

        spline = RectBivariateSpline(x, y, z, kx=3, ky=3, s=0)
        xf = np.linspace(x[0], x[-1], (len(x) - 1) * REFINE + 1)
        yf = np.linspace(y[0], y[-1], (len(y) - 1) * REFINE + 1)
        return xf, yf, spline(xf, yf)
    return x, y, z


def contour_lines(x: np.ndarray, y: np.ndarray, delta: np.ndarray, level: float) -> list[np.ndarray]:
    """Lines ``(n, 2)`` where ``delta`` (shape ``[len(x), len(y)]``) equals ``level``.

    With at least four grid points per axis and a finite grid, ``delta`` is interpolated by a
    bicubic spline through the grid points on a grid ``REFINE`` times finer before contouring;
    otherwise the grid is contoured as it is (non-finite points masked). A line that closes on
    itself is returned with its first point repeated at the end."""
    import contourpy

    x, y, z = _interpolated(x, y, delta)
    z = np.ma.masked_invalid(z)
    gen = contourpy.contour_generator(x, y, z.T, line_type=contourpy.LineType.Separate)
    return [np.asarray(line, float) for line in gen.lines(float(level))]


def _grid_order(nx: int, ny: int) -> list[tuple[int, int]]:
    """Serpentine order over the grid: consecutive points are neighbours, so each profile fit
    starts from the solution next to it."""
    order = []
    for i in range(nx):
        js = range(ny) if i % 2 == 0 else range(ny - 1, -1, -1)
        order.extend((i, j) for j in js)
    return order


def scan2d(
    model,
    x: Sequence[float],
    y: Sequence[float],
    pois: Sequence[str],
    best_fit: FitResult | None = None,
    tolerance: float = 0.001,
    strategy: int = 1,
) -> Scan2DResult:
    """Profile scan of the pair ``pois`` over the grid ``x`` x ``y`` (all other free
    parameters profiled at each point) with its 68 % and 95 % contours (:data:`LEVELS_2D`).

    Both parameters must be free parameters of ``model``; the grid values must lie inside their
    bounds and increase strictly."""
    if len(pois) != 2 or pois[0] == pois[1]:
        raise ValueError(f"a 2-D scan needs two different parameters, got {list(pois)}")
    a, b = (str(p) for p in pois)
    ia, ib = model.index(a), model.index(b)
    x, y = np.asarray(x, float), np.asarray(y, float)
    for name, idx, grid in ((a, ia, x), (b, ib, y)):
        if model.fixed[idx]:
            raise ValueError(f"2-D scan: parameter {name!r} is fixed in the measurement")
        if len(grid) < 2 or np.any(np.diff(grid) <= 0):
            raise ValueError(f"2-D scan: the grid of {name!r} must have >= 2 strictly increasing values")
        lo, hi = model.bounds[idx]
        if grid[0] < lo or grid[-1] > hi:
            raise ValueError(f"2-D scan: the grid of {name!r} [{grid[0]}, {grid[-1]}] leaves its bounds [{lo}, {hi}]")
    open_edges = tuple(
        edge
        for edge, value, bound in zip(EDGES, (x[0], x[-1], y[0], y[-1]), (*model.bounds[ia], *model.bounds[ib]))
        if not np.isclose(value, bound, rtol=0.0, atol=1e-12)
    )
    best = best_fit or fit(model, tolerance=tolerance, strategy=strategy)
    out = np.full((len(x), len(y)), np.nan)
    conv = np.zeros((len(x), len(y)), dtype=bool)
    start = best.values.copy()
    for i, j in _grid_order(len(x), len(y)):
        r = fit(
            model,
            init=start,
            fixed={a: float(x[i]), b: float(y[j])},
            tolerance=tolerance,
            strategy=strategy,
            hesse=False,
        )
        out[i, j], conv[i, j] = r.twice_nll, bool(r.status["valid"])
        if np.isfinite(r.twice_nll):
            start = r.values
    finite = out[np.isfinite(out)]
    ref = min(best.twice_nll, float(finite.min())) if finite.size else best.twice_nll
    delta = out - ref
    contours = {k: contour_lines(x, y, delta, lv) for k, lv in LEVELS_2D.items()}
    return Scan2DResult(
        pois=(a, b),
        x=x,
        y=y,
        twice_nll=out,
        delta=delta,
        converged=conv,
        best=(float(best.values[ia]), float(best.values[ib])),
        best_twice_nll=float(best.twice_nll),
        correlation=float(best.correlation[ia, ib]),
        contours=contours,
        open_edges=open_edges,
    )
