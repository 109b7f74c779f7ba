"""Hypothesis tests, CLs and upper limits on the POI for any :class:`nsbi.model.Model`
(binned, unbinned or combined), with the conventions of pyhf (``pyhf.infer.hypotest``,
``pyhf.infer.intervals.upper_limits.upper_limit``).

Test statistics (Cowan, Cranmer, Gross, Vitells, arXiv:1007.1727), from the profiled
conditional fit (POI fixed at ``mu``, nuisance parameters profiled) and the unconditional fit
(POI free within its bounds), ``t_mu = max([-2 ln L(mu, theta_hat_hat)] - [-2 ln L(mu_hat,
theta_hat)], 0)``:

* ``"qtilde"`` (default, upper limits): the free fit uses the POI bounds ``(0, upper)``
  (the lower bound 0 makes mu_hat >= 0, i.e. q~_mu of eq. 16); ``q = 0`` where mu_hat > mu;
* ``"q"`` (eq. 14): the same with the model's own POI bounds (a negative lower bound lets
  mu_hat < 0);
* ``"q0"`` (discovery, eq. 12): ``t_0`` with the model's POI bounds, 0 where mu_hat < 0.

Where the free fit ends at the tested value (mu_hat on a POI bound equal to mu, e.g. q0 of a
deficit) both fits solve one problem and q is set to exactly 0 (pyhf keeps the difference of
the two fits, ~1e-12, which sqrt(q) turns into ~1e-6, or CL_s = 0/0 for q~ at mu = 0).
``poi_bounds`` replaces the POI bounds of the free fit for any of them. Fits are the projected
Newton minimiser of :mod:`nsbi.minimize` (MIGRAD where it does not converge, or throughout with
``minimizer="migrad"``), each started at
the model's initial values, to EDM < 0.002 x ``tolerance`` (default 1e-6, far tighter than a
fit for the parameter values needs: the p-values use sqrt(q)).

Asymptotic p-values (``calctype="asymptotics"``), as pyhf's ``AsymptoticCalculator``: the
Asimov dataset is the expected data at the POI ``mu_A`` (0, background only, for q~ and q;
1 for q0) with the nuisance parameters fitted to the data at POI = ``mu_A`` (auxiliary data at
those values too); ``q_A`` is the test statistic of that dataset. With ``s = sqrt(q)``,
``s_A = sqrt(q_A)`` the statistic ``x = s - s_A`` (q, q0; q~ where ``s <= s_A``) or
``x = (q - q_A) / (2 s_A)`` (q~ where ``s > s_A``), and

    CL_{s+b} = Phi(-(x + s_A)),   CL_b = Phi(-x),   CL_s = CL_{s+b} / CL_b.

The expected values are those at ``x = n`` for ``n = 2, 1, 0, -1, -2`` (the background-only
distribution's median and +-1, +-2 sigma points), in this order -- pyhf's: from the smallest
CL_s (the -2 sigma expected limit) to the largest (+2 sigma). For q0 the p-value is
``p0 = CL_{s+b} = Phi(-sqrt(q0))`` and its expected values ``Phi(-(n + sqrt(q0_A)))``; at
``s_A = 0`` (q~ at mu = 0) ``x = s`` and CL_s = 1.

Unbinned channels: the Asimov data (and the toys) come from a :class:`nsbi.toys.ToyGenerator`
(the reference MC reweighted by the model; :func:`generator_for` makes one from a workspace's
``asimov`` dataset); a binned-only model needs none.

Pseudo-experiments (``calctype="toybased"``), as pyhf's ``ToyCalculator``: ``n_toys`` toys at
(mu, theta_hat_hat(mu)) and at (mu_A, theta_hat_hat(mu_A)) (nuisance parameters fitted to the
data), each fitted twice (conditional and free) by the batched Newton of
:func:`nsbi.minimize.minimize_batch`; ``CL_{s+b}`` / ``CL_b`` = fraction of the toys of each
set with ``q >= q_obs``; the expected values are the 2.3, 15.9, 50, 84.1 and 97.7 percentiles
of the CL values of the background-only toys. Seeds: ``(seed, set, POI bits)``, so a point
gives the same toys whenever it is evaluated.

Upper limits (:func:`upper_limit`): the POI where CL_s = 1 - ``cl``, observed and the five
expected ones, by Brent's method (``scipy.optimize.brentq``) in a bracket that starts at the
POI bounds, whose upper end is doubled until every CL_s curve is below 1 - ``cl``; each
expected limit is searched between the two cached neighbouring points that bracket it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special
from scipy.optimize import brentq

from nsbi import minimize as M
from nsbi.validation import generator_for

_log = logging.getLogger(__name__)

__all__ = [
    "EXPECTED_NSIGMA",
    "TEST_STATS",
    "CLsScanResult",
    "HypoTestCalculator",
    "HypoTestResult",
    "SignificanceResult",
    "UpperLimitResult",
    "asymptotic_pvalues",
    "cls_scan",
    "generator_for",
    "hypotest",
    "limits_summary",
    "significance",
    "teststatistic",
    "upper_limit",
]

TEST_STATS = ("qtilde", "q", "q0")
CALCTYPES = ("asymptotics", "toybased")
#: expected values at the background-only statistic x = n (pyhf's order: -2 sigma limit first)
EXPECTED_NSIGMA = (2, 1, 0, -1, -2)
#: the band labels of the five expected values, in the order of :data:`EXPECTED_NSIGMA`
EXPECTED_LABELS = ("-2sigma", "-1sigma", "median", "+1sigma", "+2sigma")
#: percentiles of the toy CL values for the expected band (Phi(-2), Phi(-1), 0.5, ... x 100)
_PERCENTILES = tuple(100.0 * float(special.ndtr(-n)) for n in EXPECTED_NSIGMA)


def _floats(a) -> list[float]:
    return [float(v) for v in np.asarray(a, float).ravel()]


# ---------------------------------------------------------------------------- results
@dataclass
class HypoTestResult:
    """One hypothesis test at ``poi_value``. ``cls``/``clsb``/``clb`` observed; the
    ``*_expected`` arrays hold the five expected values in the order of :data:`EXPECTED_NSIGMA`
    (-2 sigma, -1 sigma, median, +1 sigma, +2 sigma expected limit). For ``q0`` the p-value of
    the background-only hypothesis is ``clsb`` (as pyhf returns it)."""

    poi: str
    poi_value: float
    test_stat: str
    calctype: str
    q: float
    poi_hat: float
    clsb: float
    clb: float
    cls: float
    clsb_expected: np.ndarray
    clb_expected: np.ndarray
    cls_expected: np.ndarray
    q_asimov: float | None = None
    converged: bool = True
    n_toys: int | None = None
    toys: dict = field(default_factory=dict, repr=False)

    @property
    def pvalue(self) -> float:
        """p-value of the tested hypothesis: CL_s (q~, q) or p0 = CL_{s+b} (q0), as pyhf's hypotest."""
        return self.clsb if self.test_stat == "q0" else self.cls

    @property
    def pvalue_expected(self) -> np.ndarray:
        return self.clsb_expected if self.test_stat == "q0" else self.cls_expected

    def to_dict(self) -> dict:
        out = {
            "poi": self.poi,
            "poi_value": float(self.poi_value),
            "test_stat": self.test_stat,
            "calctype": self.calctype,
            "q": float(self.q),
            "q_asimov": None if self.q_asimov is None else float(self.q_asimov),
            "poi_hat": float(self.poi_hat),
            "cls": float(self.cls),
            "clsb": float(self.clsb),
            "clb": float(self.clb),
            "cls_expected": _floats(self.cls_expected),
            "clsb_expected": _floats(self.clsb_expected),
            "clb_expected": _floats(self.clb_expected),
            "expected_order": list(EXPECTED_LABELS),
            "converged": bool(self.converged),
        }
        if self.n_toys is not None:
            out["n_toys"] = int(self.n_toys)
        return out


@dataclass
class CLsScanResult:
    """Hypothesis tests on a grid of POI values: ``cls`` (N,) observed, ``cls_expected`` (N, 5)."""

    poi: str
    test_stat: str
    calctype: str
    cl: float
    points: list[HypoTestResult]

    @property
    def values(self) -> np.ndarray:
        return np.array([p.poi_value for p in self.points], float)

    @property
    def cls(self) -> np.ndarray:
        return np.array([p.cls for p in self.points], float)

    @property
    def cls_expected(self) -> np.ndarray:
        return np.array([p.cls_expected for p in self.points], float).reshape(-1, 5)

    def to_dict(self) -> dict:
        return {
            "poi": self.poi,
            "test_stat": self.test_stat,
            "calctype": self.calctype,
            "cl": float(self.cl),
            "poi_values": _floats(self.values),
            "cls": _floats(self.cls),
            "cls_expected": [_floats(r) for r in self.cls_expected],
            "expected_order": list(EXPECTED_LABELS),
            "converged": [bool(p.converged) for p in self.points],
        }


@dataclass
class UpperLimitResult:
    """Observed and expected (-2, -1, median, +1, +2 sigma) upper limits on the POI at ``cl``;
    ``points``: every hypothesis test the root finding evaluated, by POI value; NaN where a
    limit is outside the searched range (``notes`` says why)."""

    poi: str
    cl: float
    test_stat: str
    calctype: str
    observed: float
    expected: np.ndarray
    points: list[HypoTestResult]
    notes: list[str] = field(default_factory=list)

    @property
    def scan(self) -> CLsScanResult:
        return CLsScanResult(self.poi, self.test_stat, self.calctype, self.cl, self.points)

    def to_dict(self) -> dict:
        return {
            "poi": self.poi,
            "cl": float(self.cl),
            "test_stat": self.test_stat,
            "calctype": self.calctype,
            "observed": float(self.observed),
            "expected": _floats(self.expected),
            "expected_order": list(EXPECTED_LABELS),
            "notes": list(self.notes),
            "scan": self.scan.to_dict(),
        }


@dataclass
class SignificanceResult:
    """Discovery test (q0): observed ``q0``, ``p0`` and ``z``; expected ones for the Asimov
    dataset at POI = ``asimov_poi`` (``p0_expected``/``z_expected``: the five values in the
    order of :data:`EXPECTED_NSIGMA`, the median at index 2)."""

    poi: str
    calctype: str
    q0: float
    p0: float
    z: float
    poi_hat: float
    asimov_poi: float
    p0_expected: np.ndarray
    z_expected: np.ndarray
    q0_asimov: float | None = None
    converged: bool = True

    def to_dict(self) -> dict:
        return {
            "poi": self.poi,
            "calctype": self.calctype,
            "q0": float(self.q0),
            "p0": float(self.p0),
            "z": float(self.z),
            "poi_hat": float(self.poi_hat),
            "asimov_poi": float(self.asimov_poi),
            "q0_asimov": None if self.q0_asimov is None else float(self.q0_asimov),
            "p0_expected": _floats(self.p0_expected),
            "z_expected": _floats(self.z_expected),
            "expected_order": list(EXPECTED_LABELS),
            "converged": bool(self.converged),
        }


# ---------------------------------------------------------------------------- formulae
def asymptotic_pvalues(q: float, q_asimov: float, test_stat: str = "qtilde") -> dict[str, Any]:
    """Asymptotic CL_{s+b}, CL_b, CL_s (observed, and the five expected values in the order of
    :data:`EXPECTED_NSIGMA`) from the test statistic ``q`` of the data and ``q_asimov`` of the
    Asimov dataset (pyhf's ``AsymptoticCalculator`` formulae, see the module docstring)."""
    if test_stat not in TEST_STATS:
        raise ValueError(f"test_stat must be one of {TEST_STATS}, got {test_stat!r}")
    q, qa = max(float(q), 0.0), max(float(q_asimov), 0.0)
    s, sa = math.sqrt(q), math.sqrt(qa)
    if test_stat == "qtilde" and s > sa and sa > 0:
        x = (q - qa) / (2.0 * sa)
    else:
        x = s - sa
    n = np.asarray(EXPECTED_NSIGMA, float)
    clsb, clb = float(special.ndtr(-(x + sa))), float(special.ndtr(-x))
    clsb_e, clb_e = special.ndtr(-(n + sa)), special.ndtr(-n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "clsb": clsb,
            "clb": clb,
            "cls": clsb / clb if clb > 0 else float("nan"),
            "clsb_expected": clsb_e,
            "clb_expected": clb_e,
            "cls_expected": clsb_e / clb_e,
        }


def _tail_fraction(samples: np.ndarray, q) -> np.ndarray:
    """Fraction of ``samples`` >= each value of ``q``."""
    s = np.sort(np.asarray(samples, float))
    return (len(s) - np.searchsorted(s, np.asarray(q, float), side="left")) / len(s)


def _toy_pvalues(samples_sb: np.ndarray, samples_b: np.ndarray, q: float) -> dict[str, Any]:
    """pyhf's ``ToyCalculator`` p-values: fractions of toys with q >= q_obs; expected: the
    percentiles of the CL values of the background-only toys (evaluated at each of them)."""
    at = np.concatenate([[q], np.asarray(samples_b, float)])
    clsb, clb = _tail_fraction(samples_sb, at), _tail_fraction(samples_b, at)
    with np.errstate(divide="ignore", invalid="ignore"):
        cls = clsb / clb
    band = np.percentile(np.stack([clsb[1:], clb[1:], cls[1:]]), _PERCENTILES, axis=1)  # (5, 3)
    return {
        "clsb": float(clsb[0]),
        "clb": float(clb[0]),
        "cls": float(cls[0]),
        "clsb_expected": band[:, 0],
        "clb_expected": band[:, 1],
        "cls_expected": band[:, 2],
    }


def _clip_teststat(t: np.ndarray | float, poi_hat, mu: float, test_stat: str):
    """q from t_mu: 0 where mu_hat > mu (q~, q) or mu_hat < 0 (q0), and where the free fit
    ends at mu (on a POI bound: both fits solve the same problem, t = 0 but for the fits' noise,
    which sqrt(q) would blow up: 1e-12 -> 1e-6)."""
    t = np.where(np.abs(np.asarray(poi_hat) - mu) <= 1e-12 * (1.0 + abs(mu)), 0.0, np.maximum(t, 0.0))
    if test_stat == "q0":
        return np.where(np.asarray(poi_hat) < 0.0, 0.0, t)
    return np.where(np.asarray(poi_hat) > mu, 0.0, t)


def _poi_bits(mu: float) -> list[int]:
    b = int(np.float64(mu).view(np.uint64))
    return [b >> 32, b & 0xFFFFFFFF]


def _with_data(model, data):
    """``model`` itself, or the same spec and measurement with the observations ``data``."""
    if data is None:
        return model
    from nsbi.model import Model

    return Model(model.spec, data, model.measurement)


# ---------------------------------------------------------------------------- calculator
class HypoTestCalculator:
    """Hypothesis tests of one model and dataset, with the fits shared between POI values
    (free fits, the Asimov dataset and its fits are made once).

    ``model``: :class:`nsbi.model.Model` with the data (``data``: observations replacing it,
    ``{channel: counts or event columns}``). ``test_stat``: ``"qtilde"``, ``"q"`` or ``"q0"``;
    ``calctype``: ``"asymptotics"`` or ``"toybased"`` (``n_toys`` per hypothesis, ``seed``,
    ``batch_size`` toys per vectorised fit). ``generator``: :class:`nsbi.toys.ToyGenerator`
    (required with unbinned channels, see :func:`generator_for`). ``asimov_poi``: POI of the
    Asimov dataset / background toys (default 0; 1 for q0, as pyhf). ``poi_bounds``: POI bounds of
    the free fit (default: the model's, lower bound 0 for q~). ``tolerance``: fits to
    EDM < 0.002 x tolerance; ``minimizer``: ``"newton"`` (projected Newton on the exact Hessian,
    MIGRAD where it does not converge) or ``"migrad"`` (seeded with the exact Hessian).
    Fits, Asimov models and results are cached (:attr:`results`: POI value -> result).
    """

    def __init__(
        self,
        model,
        data: Mapping[str, Any] | None = None,
        *,
        test_stat: str = "qtilde",
        calctype: str = "asymptotics",
        generator=None,
        asimov_poi: float | None = None,
        poi_bounds: Sequence[float] | None = None,
        tolerance: float = 1e-6,
        minimizer: str = "newton",
        n_toys: int = 1000,
        seed: int = 0,
        batch_size: int | None = None,
    ):
        if minimizer not in ("newton", "migrad"):
            raise ValueError(f"minimizer must be 'newton' or 'migrad', got {minimizer!r}")
        if test_stat not in TEST_STATS:
            raise ValueError(f"test_stat must be one of {TEST_STATS}, got {test_stat!r}")
        if calctype not in CALCTYPES:
            raise ValueError(f"calctype must be one of {CALCTYPES}, got {calctype!r}")
        model = _with_data(model, data)
        if model.poi_index is None:
            raise ValueError("the measurement defines no POI: a hypothesis test needs one")
        ip = int(model.poi_index)
        if model.fixed[ip]:
            raise ValueError(f"the POI {model.poi_name!r} is fixed in the measurement: unfix it for a hypothesis test")
        self.model = model
        self.poi = model.poi_name
        self.ip = ip
        self.test_stat = test_stat
        self.calctype = calctype
        self.tolerance = float(tolerance)
        self.minimizer = minimizer
        self.n_toys = int(n_toys)
        self.seed = int(seed)
        self.batch_size = batch_size
        self.asimov_poi = float(asimov_poi if asimov_poi is not None else (1.0 if test_stat == "q0" else 0.0))
        self._generator = generator
        b = np.array(model.bounds, float).reshape(-1, 2)
        if poi_bounds is not None:
            b[ip] = [float(poi_bounds[0]), float(poi_bounds[1])]
        elif test_stat == "qtilde":
            b[ip, 0] = 0.0
        if not b[ip, 0] < b[ip, 1]:
            raise ValueError(f"empty POI range {b[ip].tolist()} for the free fit")
        self.bounds = b
        self.free = ~np.asarray(model.fixed, bool)
        self._free_fits: dict[int, Any] = {}
        self._cond_fits: dict[tuple[int, float], Any] = {}
        self._asimov: dict[float, Any] = {}
        self._toys: dict[tuple[str, float, float], dict] = {}
        self.results: dict[float, HypoTestResult] = {}

    # ------------------------------------------------------------------ pieces
    @property
    def generator(self):
        """The :class:`nsbi.toys.ToyGenerator` (made for a binned-only model when not given)."""
        if self._generator is None:
            if self.model.unbinned_channels:
                raise ValueError(
                    "Asimov datasets and toys of a model with unbinned channels need a ToyGenerator with MC "
                    "events (generator=nsbi.limits.generator_for(workspace, model) or nsbi.toys.ToyGenerator)"
                )
            from nsbi.toys import ToyGenerator

            self._generator = ToyGenerator(self.model)
        return self._generator

    def _start(self) -> np.ndarray:
        x0 = np.array(self.model.init, float)
        return np.where(self.free, np.clip(x0, self.bounds[:, 0], self.bounds[:, 1]), x0)

    def _cond_setup(self, mu: float, x0: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b = self.bounds.copy()
        b[self.ip] = [min(b[self.ip, 0], mu), max(b[self.ip, 1], mu)]
        x = np.array(x0, float)
        x[..., self.ip] = mu
        free = self.free.copy()
        free[self.ip] = False
        return x, b, free

    def _minimize(self, model, x0, bounds, free):
        r = M.minimize(
            M.Objective.from_model(model),
            x0,
            bounds,
            free,
            method=self.minimizer,
            tolerance=self.tolerance,
            use_hessian=True,
        )
        if not r.converged:
            _log.warning("%s fit did not converge: %s", model.poi_name, r.message)
        r.hessian, r.minuit = None, None  # cached per POI value: keep no npars^2 arrays
        return r

    def _model(self, which):
        return self.model if which == "data" else self.asimov_model(which)

    def free_fit(self, which="data"):
        """Unconditional fit (:class:`nsbi.minimize.MinimizeResult`) of the data (``"data"``)
        or of the Asimov dataset at POI = ``which`` (a number)."""
        key = id(self._model(which))
        if key not in self._free_fits:
            self._free_fits[key] = self._minimize(self._model(which), self._start(), self.bounds, self.free)
        return self._free_fits[key]

    def conditional_fit(self, mu: float, which="data"):
        """Fit with the POI fixed at ``mu`` (nuisance parameters profiled) of the data or of the
        Asimov dataset at POI = ``which``."""
        mu = float(mu)
        model = self._model(which)
        key = (id(model), mu)
        if key not in self._cond_fits:
            x0, b, free = self._cond_setup(mu, self._start())
            self._cond_fits[key] = self._minimize(model, x0, b, free)
        return self._cond_fits[key]

    def asimov_model(self, mu_a: float | None = None):
        """The Asimov dataset at POI = ``mu_a`` (default :attr:`asimov_poi`) as a model: the
        expected data (and auxiliary data) at the POI ``mu_a`` and the nuisance parameters of the
        conditional fit to the data there."""
        mu_a = self.asimov_poi if mu_a is None else float(mu_a)
        if mu_a not in self._asimov:
            theta = self.conditional_fit(mu_a).values
            gen = self.generator
            self._asimov[mu_a] = gen.model_for(gen.asimov(theta), 0)
        return self._asimov[mu_a]

    def teststatistic(self, mu: float, which="data") -> tuple[float, float, bool]:
        """(q, mu_hat, converged) at the POI ``mu`` for the data or the Asimov dataset at POI =
        ``which``."""
        mu = 0.0 if self.test_stat == "q0" else float(mu)
        rf, rc = self.free_fit(which), self.conditional_fit(mu, which)
        poi_hat = float(rf.values[self.ip])
        q = float(_clip_teststat(rc.twice_nll - rf.twice_nll, poi_hat, mu, self.test_stat))
        return q, poi_hat, bool(rf.converged and rc.converged)

    # ------------------------------------------------------------------ toys
    def toy_seed(self, mu: float, gen_poi: float) -> list[int]:
        """Seed of the toys generated at POI = ``gen_poi`` for the test at ``mu``:
        ``[seed, 0 (s+b toys) or 1 (b-only toys), bits of mu, bits of gen_poi]``."""
        mu = 0.0 if self.test_stat == "q0" else float(mu)
        tag = 0 if float(gen_poi) == mu else 1
        return [self.seed, tag, *_poi_bits(mu), *_poi_bits(float(gen_poi))]

    def toy_teststats(self, mu: float, gen_poi: float) -> dict[str, np.ndarray]:
        """Test statistic at ``mu`` of ``n_toys`` toys generated at POI = ``gen_poi`` and the
        nuisance parameters fitted to the data there (batched fits)."""
        mu = 0.0 if self.test_stat == "q0" else float(mu)
        key = (self.test_stat, mu, float(gen_poi))
        if key in self._toys:
            return self._toys[key]
        gen = self.generator
        theta = np.array(self.conditional_fit(gen_poi).values, float)
        toys = gen.generate(theta, self.n_toys, seed=self.toy_seed(mu, gen_poi))
        data = toys.data()
        x0 = np.where(self.free, np.clip(theta, self.bounds[:, 0], self.bounds[:, 1]), theta)
        kw = {
            "shared": (gen.mc_arrays,),
            "vgh": gen.twice_nll_vgh,
            "batch_size": self.batch_size,
            "tol": M.edm_max_of(self.tolerance),
            "fallback_tolerance": self.tolerance,
        }
        rf = M.minimize_batch(gen.twice_nll, data, x0, self.bounds, self.free, **kw)
        xc, bc, fc = self._cond_setup(mu, x0)
        rc = M.minimize_batch(gen.twice_nll, data, xc, bc, fc, **kw)
        poi_hat = rf.values[:, self.ip]
        q = _clip_teststat(rc.twice_nll - rf.twice_nll, poi_hat, mu, self.test_stat)
        out = {"q": np.asarray(q, float), "poi_hat": poi_hat, "converged": rf.converged & rc.converged}
        self._toys[key] = out
        return out

    # ------------------------------------------------------------------ the test
    def hypotest(self, mu: float) -> HypoTestResult:
        """The hypothesis test at POI = ``mu`` (cached)."""
        mu = 0.0 if self.test_stat == "q0" else float(mu)
        if mu in self.results:
            return self.results[mu]
        q, poi_hat, ok = self.teststatistic(mu)
        extra: dict[str, Any] = {}
        if self.calctype == "asymptotics":
            qa, _, ok_a = self.teststatistic(mu, self.asimov_poi)
            pv = asymptotic_pvalues(q, qa, self.test_stat)
            ok = ok and ok_a
            n_toys = None
        else:
            qa = None
            sb = self.toy_teststats(mu, mu)
            bo = self.toy_teststats(mu, self.asimov_poi)
            pv = _toy_pvalues(sb["q"], bo["q"], q)
            n_toys = self.n_toys
            extra = {"q_sb": sb["q"], "q_b": bo["q"], "converged_sb": sb["converged"], "converged_b": bo["converged"]}
        res = HypoTestResult(
            poi=self.poi,
            poi_value=mu,
            test_stat=self.test_stat,
            calctype=self.calctype,
            q=q,
            poi_hat=poi_hat,
            q_asimov=qa,
            converged=ok,
            n_toys=n_toys,
            toys=extra,
            **pv,
        )
        self.results[mu] = res
        return res


# ---------------------------------------------------------------------------- functions
def _calculator(model, data, calculator, **kw) -> HypoTestCalculator:
    if calculator is not None:
        return calculator
    return HypoTestCalculator(model, data, **kw)


def teststatistic(
    model,
    poi_value: float,
    data: Mapping[str, Any] | None = None,
    test_stat: str = "qtilde",
    poi_bounds: Sequence[float] | None = None,
    tolerance: float = 1e-6,
) -> float:
    """q~_mu, q_mu or q0 of the model's data (or ``data``) at POI = ``poi_value``."""
    calc = HypoTestCalculator(model, data, test_stat=test_stat, poi_bounds=poi_bounds, tolerance=tolerance)
    return calc.teststatistic(poi_value)[0]


def hypotest(
    model,
    poi_value: float,
    data: Mapping[str, Any] | None = None,
    *,
    test_stat: str = "qtilde",
    calctype: str = "asymptotics",
    generator=None,
    calculator: HypoTestCalculator | None = None,
    **kwargs,
) -> HypoTestResult:
    """Hypothesis test at POI = ``poi_value`` (CL_s, CL_{s+b}, CL_b, observed and expected; see
    the module docstring). ``kwargs``: options of :class:`HypoTestCalculator`; ``calculator``
    reuses one (its fits are cached)."""
    calc = _calculator(model, data, calculator, test_stat=test_stat, calctype=calctype, generator=generator, **kwargs)
    return calc.hypotest(poi_value)


def cls_scan(
    model,
    values: Sequence[float],
    data: Mapping[str, Any] | None = None,
    *,
    cl: float = 0.95,
    test_stat: str = "qtilde",
    calctype: str = "asymptotics",
    generator=None,
    calculator: HypoTestCalculator | None = None,
    **kwargs,
) -> CLsScanResult:
    """CL_s (observed and expected) at each POI value of ``values``."""
    calc = _calculator(model, data, calculator, test_stat=test_stat, calctype=calctype, generator=generator, **kwargs)
    pts = [calc.hypotest(float(v)) for v in values]
    return CLsScanResult(calc.poi, calc.test_stat, calc.calctype, float(cl), pts)


def _bracket_of(cache: Mapping[float, HypoTestResult], k: int, level: float) -> tuple[float, float] | None:
    """Neighbouring cached POI values where curve ``k`` (0 observed, 1..5 expected) goes from
    >= level to < level (the lowest such pair)."""
    mus = sorted(cache)
    f = [_curve(cache[m], k) - level for m in mus]
    for i in range(len(mus) - 1):
        if f[i] >= 0 > f[i + 1]:
            return mus[i], mus[i + 1]
    return None


def _curve(r: HypoTestResult, k: int) -> float:
    return float(r.cls if k == 0 else r.cls_expected[k - 1])


def upper_limit(
    model,
    data: Mapping[str, Any] | None = None,
    cl: float = 0.95,
    *,
    test_stat: str = "qtilde",
    calctype: str = "asymptotics",
    generator=None,
    bracket: Sequence[float] | None = None,
    xtol: float = 1e-9,
    rtol: float = 1e-10,
    max_doublings: int = 20,
    calculator: HypoTestCalculator | None = None,
    **kwargs,
) -> UpperLimitResult:
    """Observed and expected upper limits on the POI at confidence level ``cl``: the roots of
    CL_s(POI) - (1 - cl) (Brent's method to ``xtol``/``rtol``), pyhf's ``upper_limit``
    without a scan. ``bracket``: the search range (default the POI bounds of the free fit; its
    upper end is doubled up to ``max_doublings`` times until every CL_s is below 1 - cl).
    ``kwargs``: options of :class:`HypoTestCalculator` (``tolerance``, ``n_toys``, ...)."""
    if not 0 < cl < 1:
        raise ValueError(f"cl must be in (0, 1), got {cl}")
    calc = _calculator(model, data, calculator, test_stat=test_stat, calctype=calctype, generator=generator, **kwargs)
    if calc.test_stat == "q0":
        raise ValueError("upper limits use test_stat 'qtilde' or 'q'")
    level = 1.0 - cl
    lo, hi = (float(v) for v in (bracket if bracket is not None else calc.bounds[calc.ip]))
    if not lo < hi:
        raise ValueError(f"empty bracket [{lo}, {hi}]")
    cache = calc.results

    def values(mu):
        r = calc.hypotest(mu)
        return np.array([_curve(r, k) for k in range(6)])

    notes = []
    v_hi = values(hi)
    n = 0
    while np.any(v_hi > level) and n < max_doublings:
        hi = 2.0 * hi if hi > 0 else (hi + 1.0)
        v_hi = values(hi)
        n += 1
    v_lo = values(lo)
    limits = np.full(6, np.nan)
    names = ("observed",) + tuple(f"expected {lab}" for lab in EXPECTED_LABELS)
    for k in range(6):
        if not np.isfinite(v_lo[k]) or v_lo[k] < level:
            notes.append(f"{names[k]}: CLs < {level:g} already at {calc.poi} = {lo:g} (limit below the search range)")
            continue
        br = _bracket_of(cache, k, level)
        if br is None:
            notes.append(f"{names[k]}: CLs > {level:g} up to {calc.poi} = {hi:g} (limit above the search range)")
            continue
        limits[k] = brentq(lambda m, k=k: _curve(calc.hypotest(m), k) - level, *br, xtol=xtol, rtol=rtol)
    for note in notes:
        _log.warning("upper limit: %s", note)
    pts = [cache[m] for m in sorted(cache)]
    return UpperLimitResult(calc.poi, float(cl), calc.test_stat, calc.calctype, limits[0], limits[1:], pts, notes)


def significance(
    model,
    data: Mapping[str, Any] | None = None,
    *,
    calctype: str = "asymptotics",
    generator=None,
    asimov_poi: float = 1.0,
    calculator: HypoTestCalculator | None = None,
    **kwargs,
) -> SignificanceResult:
    """Discovery significance: q0, p0 = CL_{s+b} of the background-only hypothesis and
    Z = Phi^-1(1 - p0) (asymptotically sqrt(q0)), observed and expected for the Asimov dataset
    (toys) at POI = ``asimov_poi`` (pyhf: 1). ``kwargs``: options of :class:`HypoTestCalculator`;
    ``calculator``: one with ``test_stat="q0"`` to reuse."""
    calc = _calculator(
        model, data, calculator, test_stat="q0", calctype=calctype, generator=generator, asimov_poi=asimov_poi, **kwargs
    )
    if calc.test_stat != "q0":
        raise ValueError(f"significance needs a calculator with test_stat 'q0', got {calc.test_stat!r}")
    r = calc.hypotest(0.0)
    return SignificanceResult(
        poi=calc.poi,
        calctype=calc.calctype,
        q0=r.q,
        p0=r.clsb,
        z=float(0.0 - special.ndtri(r.clsb)),
        poi_hat=r.poi_hat,
        asimov_poi=calc.asimov_poi,
        p0_expected=np.asarray(r.clsb_expected, float),
        z_expected=0.0 - special.ndtri(np.asarray(r.clsb_expected, float)),
        q0_asimov=r.q_asimov,
        converged=r.converged,
    )


def limits_summary(
    ws, dataset: str | None = None, *, cl: float = 0.95, test_stat: str = "qtilde", asimov_poi: float = 1.0
) -> tuple[dict, UpperLimitResult]:
    """The workflow's limits of a workspace (:class:`nsbi.workspace.Workspace`) on ``dataset``:
    asymptotic observed and expected upper limits at ``cl`` and the discovery significance
    (expected at POI = ``asimov_poi``), as a JSON-ready dict, and the limit (whose
    hypothesis tests, ``.scan``, draw the CL_s plot)."""
    model = ws.model(dataset=dataset)
    gen = generator_for(ws, model)
    ul = upper_limit(model, cl=cl, test_stat=test_stat, generator=gen)
    sig = significance(model, generator=gen, asimov_poi=asimov_poi)
    summary = {"dataset": ws.dataset(dataset)["name"], "upper_limit": ul.to_dict(), "significance": sig.to_dict()}
    return summary, ul
