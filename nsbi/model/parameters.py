"""Parameters of the model: parameter sets, their registry and the constraint terms.

Every modifier name becomes a :class:`ParameterSet` (pyhf's paramsets: one name, ``n``
components, inits, bounds, fixed flags and an optional ``normal`` or ``poisson`` constraint)
registered in order of first appearance by :class:`ParameterRegistry`; the measurement's
``config.parameters`` entries override the defaults. :class:`ConstraintTerms` collects the
constraints of the flattened parameter vector and evaluates their log-density (pyhf's, with
its constants).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .arrays import gammaln, jnp, scatter_add, xlogy
from .errors import ModelError

__all__ = ["ConstraintTerms", "ParameterRegistry", "ParameterSet", "normal_logpdf", "poisson_logpdf"]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)

#: parameter kinds that share one constrained nuisance parameter per name (code-4/4p alpha)
ALPHA_KINDS = ("normsys", "histosys", "eventsys")


@dataclass
class ParameterSet:
    """One named (possibly vector-valued) parameter, mirroring pyhf's paramsets."""

    name: str
    n: int
    inits: list[float]
    bounds: list[tuple[float, float]]
    fixed: list[bool]
    constraint: str | None = None  # None | "normal" | "poisson"
    auxdata: list[float] = field(default_factory=list)
    sigmas: list[float] = field(default_factory=list)  # normal
    factors: list[float] = field(default_factory=list)  # poisson (tau)
    kind: str = ""  # modifier type that created it

    @property
    def labels(self) -> list[str]:
        return (
            [self.name]
            if self.n == 1 and self.kind not in ("staterror", "shapesys", "shapefactor")
            else [f"{self.name}[{i}]" for i in range(self.n)]
        )


def _defaults(kind: str, n: int) -> dict:
    if kind in ALPHA_KINDS:
        return dict(inits=[0.0] * n, bounds=[(-5.0, 5.0)] * n, constraint="normal", auxdata=[0.0] * n, sigmas=[1.0] * n)
    if kind in ("normfactor", "morphing"):
        return dict(inits=[1.0] * n, bounds=[(0.0, 10.0)] * n, constraint=None)
    if kind == "shapefactor":
        return dict(inits=[1.0] * n, bounds=[(0.0, 10.0)] * n, constraint=None)
    if kind in ("staterror", "shapesys"):
        return dict(inits=[1.0] * n, bounds=[(1e-10, 10.0)] * n)
    raise ModelError(f"unknown modifier type {kind!r}")


class ParameterRegistry:
    """Parameter sets in order of first registration, with the measurement's overrides.

    ``measurement_params``: ``{name: entry of measurement.config.parameters}``. :meth:`add`
    registers (or returns the compatible existing) set, :meth:`finalize` applies the
    measurement's inits/bounds/fixed/auxdata/sigmas and checks the POI.
    """

    def __init__(self, measurement_params: Mapping[str, Mapping]):
        self.sets: dict[str, ParameterSet] = {}
        self.meas = dict(measurement_params)

    def add(self, name: str, kind: str, n: int = 1, **override) -> ParameterSet:
        shared_normal = set(ALPHA_KINDS)
        if name in self.sets:
            ps = self.sets[name]
            compatible = (
                ps.kind == kind
                or (ps.kind in shared_normal and kind in shared_normal)
                or ({ps.kind, kind} <= {"normfactor", "morphing"})
            )
            if not compatible or ps.n != n:
                raise ModelError(f"parameter {name!r} used as {ps.kind} (n={ps.n}) and as {kind} (n={n})")
            return ps
        d = _defaults(kind, n) if kind != "lumi" else {}
        d.update(override)
        if kind == "lumi":
            m = self.meas.get(name)
            if not m or "auxdata" not in m or "sigmas" not in m:
                raise ModelError(
                    f"lumi parameter {name!r} needs 'auxdata' and 'sigmas' in measurement.config.parameters"
                )
            d = dict(
                inits=list(m.get("inits", m["auxdata"])),
                bounds=[tuple(b) for b in m.get("bounds", [[0.0, 10.0 * m["auxdata"][0]]])],
                constraint="normal",
                auxdata=list(m["auxdata"]),
                sigmas=list(m["sigmas"]),
            )
        ps = ParameterSet(
            name=name,
            n=n,
            inits=list(d["inits"]),
            bounds=[tuple(map(float, b)) for b in d["bounds"]],
            fixed=list(d.get("fixed", [False] * n)),
            constraint=d.get("constraint"),
            auxdata=list(d.get("auxdata", [])),
            sigmas=list(d.get("sigmas", [])),
            factors=list(d.get("factors", [])),
            kind=kind,
        )
        self.sets[name] = ps
        return ps

    def finalize(self, poi: str | None) -> None:
        for name, m in self.meas.items():
            if name not in self.sets:
                continue  # pyhf ignores settings for absent parameters
            ps = self.sets[name]
            if "inits" in m:
                ps.inits = [float(v) for v in m["inits"]]
            if "bounds" in m:
                ps.bounds = [tuple(map(float, b)) for b in m["bounds"]]
            if "fixed" in m:
                ps.fixed = [bool(m["fixed"])] * ps.n
            if ps.kind != "lumi":
                if "auxdata" in m and ps.constraint:
                    ps.auxdata = [float(v) for v in m["auxdata"]]
                if "sigmas" in m and ps.constraint == "normal":
                    ps.sigmas = [float(v) for v in m["sigmas"]]
            for lst, what in ((ps.inits, "inits"), (ps.bounds, "bounds")):
                if len(lst) != ps.n:
                    raise ModelError(f"measurement parameter {name!r}: {what} has length {len(lst)}, expected {ps.n}")
        if poi is not None and poi not in self.sets:
            raise ModelError(f"POI {poi!r} is not a parameter of the model (known: {sorted(self.sets)})")


def normal_logpdf(x, mu, sigma, xp=jnp):
    """ln N(x | mu, sigma), elementwise."""
    z = (x - mu) / sigma
    return -0.5 * z * z - xp.log(sigma) - _LOG_SQRT_2PI


def poisson_logpdf(n, lam, xp=jnp):
    """Continuous Poisson ln P(n | lam) = n ln lam - lam - ln Gamma(n + 1), as pyhf."""
    return xlogy(n, lam, xp) - lam - gammaln(n + 1.0, xp)


@dataclass(frozen=True, eq=False)
class ConstraintTerms:
    """Constraint terms of the flattened parameter vector, in parameter order.

    Gaussian: ``ln N(aux_j | theta_j, sigma_j)`` for ``normal_index`` (normsys, histosys,
    eventsys, lumi, staterror); Poisson: ``ln Pois(aux_j | theta_j tau_j)`` for
    ``poisson_index`` (shapesys, ``poisson_factor`` = tau). ``normal_aux`` / ``poisson_aux``
    are the model's auxiliary data (pseudo-experiments draw their own, see :mod:`nsbi.toys`).
    The arrays are numpy (int indices, float values).
    """

    normal_index: np.ndarray
    normal_aux: np.ndarray
    normal_sigma: np.ndarray
    poisson_index: np.ndarray
    poisson_aux: np.ndarray
    poisson_factor: np.ndarray

    @classmethod
    def collect(cls, parsets: Sequence[ParameterSet], par_slices: Mapping[str, slice]) -> ConstraintTerms:
        """The constraints of ``parsets`` laid out by ``par_slices``."""
        ni, nmu, nsig, pi, paux, pfac = [], [], [], [], [], []
        for ps in parsets:
            sl = par_slices[ps.name]
            idx = list(range(sl.start, sl.stop))
            if ps.constraint == "normal":
                ni += idx
                nmu += list(ps.auxdata)
                nsig += list(ps.sigmas)
            elif ps.constraint == "poisson":
                pi += idx
                paux += list(ps.auxdata)
                pfac += list(ps.factors)
        return cls(
            np.array(ni, int),
            np.array(nmu, float),
            np.array(nsig, float),
            np.array(pi, int),
            np.array(paux, float),
            np.array(pfac, float),
        )

    @property
    def auxdata(self) -> np.ndarray:
        """Auxiliary data in pyhf's order: the Gaussian ones, then the Poisson ones."""
        return np.concatenate([self.normal_aux, self.poisson_aux])

    def logpdf(self, p, aux_normal=None, aux_poisson=None, xp=jnp):
        """Sum of the constraint log-densities at ``p``; ``aux_*`` replace the auxdata."""
        out = 0.0
        idx, aux, sig = self.normal_index, self.normal_aux, self.normal_sigma
        if len(idx):
            aux = aux if aux_normal is None else aux_normal
            out = out + xp.sum(normal_logpdf(xp.asarray(aux), p[idx], xp.asarray(sig), xp))
        idx, aux, fac = self.poisson_index, self.poisson_aux, self.poisson_factor
        if len(idx):
            aux = aux if aux_poisson is None else aux_poisson
            out = out + xp.sum(poisson_logpdf(xp.asarray(aux), p[idx] * xp.asarray(fac), xp))
        return out

    def logpdf_grad_hessian(self, p, aux_normal=None, aux_poisson=None, xp=jnp, hessian=True):
        """:meth:`logpdf`, its gradient and its (diagonal) Hessian in closed form; the
        Hessian is ``None`` with ``hessian=False``.

        Gaussian: d/dtheta = (aux - theta) / sigma^2, d2 = -1/sigma^2; Poisson with
        lam = theta tau: d/dtheta = aux/theta - tau, d2 = -aux/theta^2."""
        P = p.shape[0]
        value = self.logpdf(p, aux_normal, aux_poisson, xp)
        grad = xp.zeros(P, dtype=p.dtype)
        curv = xp.zeros(P, dtype=p.dtype)
        idx, aux, sig = self.normal_index, self.normal_aux, self.normal_sigma
        if len(idx):
            aux = xp.asarray(aux if aux_normal is None else aux_normal)
            inv2 = 1.0 / xp.asarray(sig) ** 2
            grad = grad + scatter_add(P, idx, (aux - p[idx]) * inv2, xp, p.dtype)
            curv = curv - scatter_add(P, idx, inv2, xp, p.dtype)
        idx, aux, fac = self.poisson_index, self.poisson_aux, self.poisson_factor
        if len(idx):
            aux = xp.asarray(aux if aux_poisson is None else aux_poisson)
            theta = p[idx]
            grad = grad + scatter_add(P, idx, aux / theta - xp.asarray(fac), xp, p.dtype)
            curv = curv - scatter_add(P, idx, aux / theta**2, xp, p.dtype)
        return value, grad, (xp.diag(curv) if hessian else None)
