"""Statistical model: binned (HistFactory/pyhf semantics) + extended unbinned NSBI channels.

The objective is ``-2 ln L`` (``twice_nll``), as in pyhf, so Minuit uses ``errordef = 1``.

Binned channels reproduce ``pyhf.Model.logpdf`` (continuous Poisson via ``lgamma``, Gaussian
and Poisson constraint terms with their constants) for the modifiers ``normfactor``,
``normsys`` (code 4), ``histosys`` (code 4p), ``staterror``, ``shapesys``, ``lumi`` and
``shapefactor``; a sample may additionally carry a morphing coefficient ``"morphing":
"<expression>"`` (an :mod:`nsbi.expr` expression of model parameters) that multiplies it.

Unbinned channels implement

    -ln L = nu_tot(theta) - sum_i w_i ln( sum_c f_c(mu) nu_c G_c(alpha) r_c(x_i) prod_k g_ck(x_i, alpha_k) )

where ``r_c = p_c / p_ref`` and ``g_ck`` are the per-event shape ratios at +-1 sigma
(interpolated per event with code 4), ``G_c`` the code-4 yield factors (``normsys``),
``normfactor``/``lumi`` multiply ``nu_c`` as in the binned case. The term
``-sum_i w_i ln p_ref(x_i)`` is theta-independent and dropped, so unbinned ``-2 ln L``
values are defined up to a constant (differences are exact).

The shape ratios ``g`` are assumed to describe *normalised* shape changes: the yield effect
of a systematic belongs to its ``normsys`` (same name => same nuisance parameter).

Shape normalisation: E_c[g_ck(alpha)] = 1 holds at the knots alpha = 0, +-1 only; the
interpolated per-event factor changes the integral of the density elsewhere (for large
per-event variations by percents within |alpha| <= 1 and by factors beyond), so the Poisson
term and the per-event term would disagree about the yield and the fit would pull alpha
to trade one against the other. An ``eventsys`` modifier may therefore carry
``data.norm`` (weighted nodes of the distributions of ln g_up / ln g_down under p_c, written
by the workspace builder, see :func:`nsbi.interpolation.code4_mean_nodes`); the per-event
term then uses y_c / prod_k N_ck(alpha_k) with N_ck(alpha) = E_c[g_ck(alpha)], which keeps
each factor normalised for every alpha, while the Poisson term keeps nu_c G_c(alpha). The
product over k is normalised up to the correlations of different systematics' factors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from jax.scipy.special import gammaln, xlogy

from nsbi.expr import parse
from nsbi.interpolation import CODE4_MATRIX_INV, code4_from_logs, code4_mean, code4_poly_weights, code4p_delta
from nsbi.jax_setup import jax, jnp

__all__ = ["Model", "ParameterSet", "ModelError", "event_columns"]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)

BINNED_MODIFIERS = ("normfactor", "normsys", "histosys", "staterror", "shapesys", "lumi", "shapefactor")
UNBINNED_MODIFIERS = ("normfactor", "normsys", "lumi", "eventsys")


class ModelError(ValueError):
    """Inconsistent model specification."""


def event_columns(process: str, systematic: str | None = None) -> tuple[str, ...]:
    """Column names in per-event files: ``logr_{process}``, ``logr_{process}__{syst}_up/_down``."""
    if systematic is None:
        return (f"logr_{process}",)
    return (f"logr_{process}__{systematic}_up", f"logr_{process}__{systematic}_down")


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
    if kind in ("normsys", "histosys", "eventsys"):
        return dict(inits=[0.0] * n, bounds=[(-5.0, 5.0)] * n, constraint="normal", auxdata=[0.0] * n, sigmas=[1.0] * n)
    if kind in ("normfactor", "morphing"):
        return dict(inits=[1.0] * n, bounds=[(0.0, 10.0)] * n, constraint=None)
    if kind == "shapefactor":
        return dict(inits=[1.0] * n, bounds=[(0.0, 10.0)] * n, constraint=None)
    if kind in ("staterror", "shapesys"):
        return dict(inits=[1.0] * n, bounds=[(1e-10, 10.0)] * n)
    raise ModelError(f"unknown modifier type {kind!r}")


class _Registry:
    def __init__(self, measurement_params: Mapping[str, Mapping]):
        self.sets: dict[str, ParameterSet] = {}
        self.meas = dict(measurement_params)

    def add(self, name: str, kind: str, n: int = 1, **override) -> ParameterSet:
        shared_normal = {"normsys", "histosys", "eventsys"}
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


def _normal_logpdf(x, mu, sigma):
    z = (x - mu) / sigma
    return -0.5 * z * z - jnp.log(sigma) - _LOG_SQRT_2PI


def _poisson_logpdf(n, lam):
    return xlogy(n, lam) - lam - gammaln(n + 1.0)


class Model:
    """Compiled likelihood for a workspace dataset.

    Parameters
    ----------
    spec : workspace dict (nsbi format; see :mod:`nsbi.workspace`). Binned channels follow the
        pyhf layout; unbinned channels list samples with ``yield``.
    observations : mapping channel -> list of counts (binned) or dict of per-event arrays
        (unbinned: ``weight`` and ``logr_*`` columns, see :func:`event_columns`).
    measurement : the measurement dict ``{"name", "config": {"poi", "parameters"}}``.
    """

    def __init__(self, spec: Mapping, observations: Mapping[str, Any], measurement: Mapping | None = None):
        self.spec = spec
        measurement = measurement or {"name": "default", "config": {"poi": None, "parameters": []}}
        self.measurement = measurement
        cfg = measurement.get("config", {})
        self.measurement_name = measurement.get("name")
        self.poi_name = cfg.get("poi")
        reg = _Registry({p["name"]: p for p in cfg.get("parameters", [])})
        self._reg = reg

        channels = list(spec["channels"])
        self.binned_channels = [c for c in channels if c.get("type", "binned") == "binned"]
        self.unbinned_channels = [c for c in channels if c.get("type", "binned") == "unbinned"]

        # ---- register parameters in order of appearance ----
        self._morph_exprs: dict[str, Any] = {}
        for ch in channels:
            nb = len(ch["samples"][0]["data"]) if ch.get("type", "binned") == "binned" else 1
            for s in ch["samples"]:
                self._register_morphing(reg, s)
                for m in s.get("modifiers", []):
                    self._register_modifier(reg, ch, s, m, nb)
        self._register_staterror(reg)
        reg.finalize(self.poi_name)

        # ---- flatten ----
        self.parsets = list(reg.sets.values())
        self.par_slices: dict[str, slice] = {}
        i = 0
        for ps in self.parsets:
            self.par_slices[ps.name] = slice(i, i + ps.n)
            i += ps.n
        self.npars = i
        self.par_names = [lab for ps in self.parsets for lab in ps.labels]
        self.init = np.array([v for ps in self.parsets for v in ps.inits], dtype=float)
        self.bounds = [tuple(b) for ps in self.parsets for b in ps.bounds]
        self.fixed = np.array([v for ps in self.parsets for v in ps.fixed], dtype=bool)
        self.poi_index = self.par_slices[self.poi_name].start if self.poi_name else None
        self.constrained = np.zeros(self.npars, dtype=bool)
        for ps in self.parsets:
            if ps.constraint:
                self.constrained[self.par_slices[ps.name]] = True

        self._build_constraints()
        self._build_binned(observations)
        self._build_unbinned(observations)

        # large per-event arrays are passed as arguments (never baked into the compiled
        # function as constants: that makes XLA compilation slow and memory hungry)
        self._data = [u.arrays for u in self._unb]
        self._twice_nll = jax.jit(self._twice_nll_jax)
        self._vg = jax.jit(jax.value_and_grad(self._twice_nll_jax))
        # Hessian: autodiff for the cheap parts, the unbinned event sums from a one-pass kernel
        self._hess = jax.jit(self._hessian_jax)
        self._vgh = jax.jit(self._value_grad_hessian_jax)
        self._hess_autodiff = jax.jit(jax.hessian(lambda p, d: self._twice_nll_jax(p, d, False)))

    # ------------------------------------------------------------------ registration
    def _register_morphing(self, reg: _Registry, s: Mapping) -> None:
        expr = s.get("morphing")
        if expr is None:
            return
        e = self._morph_exprs.get(expr)
        if e is None:
            e = parse(str(expr))
            self._morph_exprs[expr] = e
        for name in sorted(e.names):
            reg.add(name, "morphing")

    def _register_modifier(self, reg, ch, s, m, nb) -> None:
        kind, name = m["type"], m["name"]
        unb = ch.get("type", "binned") == "unbinned"
        allowed = UNBINNED_MODIFIERS if unb else BINNED_MODIFIERS
        if kind not in allowed:
            raise ModelError(
                f"channel {ch['name']!r} sample {s['name']!r}: modifier type {kind!r} not allowed "
                f"in {'unbinned' if unb else 'binned'} channels (allowed: {allowed})"
            )
        if kind in ("normfactor", "normsys", "histosys", "eventsys", "lumi"):
            reg.add(name, kind)
        elif kind == "shapefactor":
            reg.add(name, kind, nb)
        elif kind == "shapesys":
            nom = np.asarray(s["data"], dtype=float)
            unc = np.asarray(m["data"], dtype=float)
            valid = (nom > 0) & (unc > 0)
            tau = np.where(valid, nom**2 / np.where(valid, unc, 1.0) ** 2, 1.0)
            reg.add(
                name,
                kind,
                nb,
                constraint="poisson",
                auxdata=tau.tolist(),
                factors=tau.tolist(),
                fixed=(~valid).tolist(),
            )
        elif kind == "staterror":
            pass  # needs all samples of the channel: see _register_staterror

    def _register_staterror(self, reg: _Registry) -> None:
        # pyhf: per bin, sigma_b^2 = sum_s delta_sb^2 / (sum_{s with the modifier} nu_sb)^2
        for ch in self.binned_channels:
            nb = len(ch["samples"][0]["data"])
            groups: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
            for s in ch["samples"]:
                for m in s.get("modifiers", []):
                    if m["type"] == "staterror":
                        groups.setdefault(m["name"], []).append(
                            (np.asarray(s["data"], float), np.asarray(m["data"], float))
                        )
            for name, items in groups.items():
                if name in reg.sets:
                    raise ModelError(f"staterror {name!r} is used in more than one channel; use one name per channel")
                nomsum = np.sum([n for n, _ in items], axis=0)
                safe = np.where(nomsum > 0, nomsum, 1.0)
                rel2 = np.sum([np.where(nomsum > 0, (u / safe) ** 2, 0.0) for _, u in items], axis=0)
                sig = np.sqrt(rel2)
                fixed = sig == 0
                sig = np.where(fixed, 1.0, sig)
                reg.add(
                    name,
                    "staterror",
                    nb,
                    constraint="normal",
                    auxdata=[1.0] * nb,
                    sigmas=sig.tolist(),
                    fixed=fixed.tolist(),
                )

    # ------------------------------------------------------------------ constraints
    def _build_constraints(self) -> None:
        ni, nmu, nsig, pi, paux, pfac = [], [], [], [], [], []
        for ps in self.parsets:
            sl = self.par_slices[ps.name]
            idx = list(range(sl.start, sl.stop))
            if ps.constraint == "normal":
                ni += idx
                nmu += list(ps.auxdata)
                nsig += list(ps.sigmas)
            elif ps.constraint == "poisson":
                pi += idx
                paux += list(ps.auxdata)
                pfac += list(ps.factors)
        self._c_normal = (np.array(ni, int), np.array(nmu, float), np.array(nsig, float))
        self._c_poisson = (np.array(pi, int), np.array(paux, float), np.array(pfac, float))
        self.auxdata = np.concatenate([self._c_normal[1], self._c_poisson[1]])

    def _constraint_logpdf(self, p, aux_normal=None, aux_poisson=None):
        out = 0.0
        idx, aux, sig = self._c_normal
        if len(idx):
            aux = aux if aux_normal is None else aux_normal
            out = out + jnp.sum(_normal_logpdf(jnp.asarray(aux), p[idx], jnp.asarray(sig)))
        idx, aux, fac = self._c_poisson
        if len(idx):
            aux = aux if aux_poisson is None else aux_poisson
            out = out + jnp.sum(_poisson_logpdf(jnp.asarray(aux), p[idx] * jnp.asarray(fac)))
        return out

    # ------------------------------------------------------------------ morphing
    def _morph_value(self, expr: str | None, p):
        if expr is None:
            return 1.0
        e = self._morph_exprs[expr]
        ns = {n: p[self.par_slices[n].start] for n in e.names}
        return e.evaluate(ns, xp=_MORPH_XP)

    # ------------------------------------------------------------------ binned
    def _build_binned(self, observations: Mapping[str, Any]) -> None:
        rows = []  # (channel index, sample dict)
        offsets, nbins_total = {}, 0
        for ch in self.binned_channels:
            nb = len(ch["samples"][0]["data"])
            for s in ch["samples"]:
                if len(s["data"]) != nb:
                    raise ModelError(
                        f"channel {ch['name']!r}: sample {s['name']!r} has {len(s['data'])} bins, expected {nb}"
                    )
                rows.append((ch, s))
            offsets[ch["name"]] = (nbins_total, nb)
            nbins_total += nb
        self.binned_offsets = offsets
        self.nbins = nbins_total
        self._rows = rows
        R, B = len(rows), nbins_total
        self._b_rows = R
        if R == 0:
            self._b_obs = np.zeros(0)
            return
        obs = []
        for ch in self.binned_channels:
            if ch["name"] not in observations:
                raise ModelError(f"no observed data for binned channel {ch['name']!r}")
            d = np.asarray(observations[ch["name"]], dtype=float)
            if d.shape != (offsets[ch["name"]][1],):
                raise ModelError(
                    f"observed data for channel {ch['name']!r} has {d.size} bins, expected {offsets[ch['name']][1]}"
                )
            obs.append(d)
        self._b_obs = np.concatenate(obs)

        nominal = np.zeros((R, B))
        mult_idx: list[list[list[int]]] = [[[] for _ in range(B)] for _ in range(R)]
        normsys_names = [ps.name for ps in self.parsets if ps.kind in ("normsys", "histosys", "eventsys")]
        col = {n: j for j, n in enumerate(normsys_names)}
        P = len(normsys_names)
        log_ku = np.zeros((R, P))
        log_kd = np.zeros((R, P))
        hs_up = np.zeros((R, P, B))
        hs_dn = np.zeros((R, P, B))
        has_hs = np.zeros(P, dtype=bool)
        morph = []
        for r, (ch, s) in enumerate(rows):
            o, nb = offsets[ch["name"]]
            nom = np.asarray(s["data"], float)
            nominal[r, o : o + nb] = nom
            morph.append(s.get("morphing"))
            for m in s.get("modifiers", []):
                k, name = m["type"], m["name"]
                sl = self.par_slices[name]
                if k in ("normfactor", "lumi"):
                    for b in range(o, o + nb):
                        mult_idx[r][b].append(sl.start)
                elif k in ("staterror", "shapesys", "shapefactor"):
                    for j, b in enumerate(range(o, o + nb)):
                        mult_idx[r][b].append(sl.start + j)
                elif k == "normsys":
                    hi, lo = float(m["data"]["hi"]), float(m["data"]["lo"])
                    if hi <= 0 or lo <= 0:
                        raise ModelError(f"normsys {name!r} on sample {s['name']!r}: hi/lo must be > 0")
                    log_ku[r, col[name]] += math.log(hi)
                    log_kd[r, col[name]] += math.log(lo)
                elif k == "histosys":
                    hi = np.asarray(m["data"]["hi_data"], float)
                    lo = np.asarray(m["data"]["lo_data"], float)
                    hs_up[r, col[name], o : o + nb] += hi - nom
                    hs_dn[r, col[name], o : o + nb] += nom - lo
                    has_hs[col[name]] = True
        maxm = max(1, max(len(x) for row in mult_idx for x in row))
        one = self.npars  # index of an appended constant 1
        mi = np.full((R, B, maxm), one, dtype=int)
        for r in range(R):
            for b in range(B):
                mi[r, b, : len(mult_idx[r][b])] = mult_idx[r][b]
        self._b_nominal = nominal
        self._b_mult_idx = mi
        self._b_normsys_par = np.array([self.par_slices[n].start for n in normsys_names], dtype=int)
        used_ns = np.any(log_ku != 0, axis=0) | np.any(log_kd != 0, axis=0)
        self._b_ns_cols = np.flatnonzero(used_ns)
        self._b_log_ku, self._b_log_kd = log_ku[:, used_ns], log_kd[:, used_ns]
        self._b_hs_cols = np.flatnonzero(has_hs)
        self._b_hs_up, self._b_hs_dn = hs_up[:, has_hs, :], hs_dn[:, has_hs, :]
        self._b_morph = morph

    def _binned_rates(self, p):
        """Expected counts per (row, bin) following pyhf: (nominal + sum deltas) * prod factors."""
        nom = jnp.asarray(self._b_nominal)
        if len(self._b_hs_cols):
            a = p[self._b_normsys_par[self._b_hs_cols]]  # (Ph,)
            d = code4p_delta(a[None, :, None], jnp.asarray(self._b_hs_up), jnp.asarray(self._b_hs_dn), xp=jnp)
            nom = nom + jnp.sum(d, axis=1)
        pext = jnp.concatenate([p, jnp.ones(1, dtype=p.dtype)])
        fac = jnp.prod(pext[self._b_mult_idx], axis=-1)
        if len(self._b_ns_cols):
            a = p[self._b_normsys_par[self._b_ns_cols]][None, :]
            g = code4_from_logs(a, jnp.asarray(self._b_log_ku), jnp.asarray(self._b_log_kd), xp=jnp)
            fac = fac * jnp.prod(g, axis=1)[:, None]
        morph = [self._morph_value(e, p) for e in self._b_morph]
        if any(e is not None for e in self._b_morph):
            fac = fac * jnp.stack([jnp.asarray(v, dtype=p.dtype) for v in morph])[:, None]
        return nom * fac

    def expected_binned(self, pars) -> dict[str, dict[str, np.ndarray]]:
        """Expected counts per binned channel and sample at ``pars``."""
        rates = np.asarray(self._binned_rates(jnp.asarray(pars, dtype=float))) if self._b_rows else None
        out: dict[str, dict[str, np.ndarray]] = {}
        for r, (ch, s) in enumerate(self._rows):
            o, nb = self.binned_offsets[ch["name"]]
            out.setdefault(ch["name"], {})[s["name"]] = rates[r, o : o + nb]
        return out

    def _binned_logpdf(self, p, obs=None):
        if not self._b_rows:
            return 0.0
        lam = jnp.sum(self._binned_rates(p), axis=0)
        return jnp.sum(_poisson_logpdf(jnp.asarray(self._b_obs if obs is None else obs), lam))

    # ------------------------------------------------------------------ unbinned
    def _build_unbinned(self, observations: Mapping[str, Any]) -> None:
        self._unb = []
        for ch in self.unbinned_channels:
            ev = observations.get(ch["name"])
            if ev is None:
                raise ModelError(f"no events for unbinned channel {ch['name']!r}")
            self._unb.append(_UnbinnedChannel(self, ch, ev))

    # ------------------------------------------------------------------ objective
    def _twice_nll_jax(self, p, data, custom_grad=True):
        lp = self._constraint_logpdf(p) + self._binned_logpdf(p)
        for u, d in zip(self._unb, data):
            lp = lp + u.logl(p, d, custom_grad)
        return -2.0 * lp

    def _hessian_jax(self, p, data):
        """Exact Hessian of -2 ln L (see :meth:`_value_grad_hessian_jax`)."""
        return self._value_grad_hessian_jax(p, data)[2]

    def _value_grad_hessian_jax(self, p, data):
        """-2 ln L, its gradient and its exact Hessian from one pass over the events.

        Autodiff of the constraint, binned and yield terms, plus for each unbinned channel
        E(u) = sum_i w_i ln s_i with u = (yields, shape parameters): value and gradient
        J^T g_u, and Hessian J^T H_u J + sum_c (dE/dy_c) d2 y_c/d theta2, with g_u and H_u from
        :func:`_events_hessian` (one pass over the events instead of forward-over-reverse
        autodiff through the event scan)."""

        def rest(q):
            lp = self._constraint_logpdf(q) + self._binned_logpdf(q)
            for u in self._unb:
                lp = lp - jnp.sum(u.yields(q))
            return lp

        v, G = jax.value_and_grad(rest)(p)
        H = jax.hessian(rest)(p)
        for u, d in zip(self._unb, data):
            y = u.event_yields(p)
            C = y.shape[0]

            def uvec(q, u=u):
                a = q[u.shape_par] if len(u.shape_par) else jnp.zeros(0, dtype=q.dtype)
                return jnp.concatenate([u.event_yields(q), a])

            alpha = uvec(p)[C:]
            v_u, g_u, H_u = _events_hessian(y, alpha, d)
            J = jax.jacfwd(uvec)(p)
            gy = jax.lax.stop_gradient(g_u[:C])
            v = v + v_u
            G = G + J.T @ g_u
            H = H + J.T @ H_u @ J + jax.hessian(lambda q, u=u, gy=gy: jnp.dot(gy, u.event_yields(q)))(p)
        return -2.0 * v, -2.0 * G, -2.0 * H

    def twice_nll_with(self, p, data, binned_obs=None, aux_normal=None, aux_poisson=None, custom_grad=True):
        """Pure JAX -2 ln L with replaceable observations (hook for vmapped pseudo-experiments).

        ``data``: one dict per unbinned channel in the layout of ``self._data`` (keys ``w``,
        ``r``, ``lu``, ``ld``, ``gu``, ``gd``; shapes (nchunks, [K,] [C,] chunk)); ``binned_obs``:
        concatenated binned counts (``self.nbins``,); ``aux_normal`` / ``aux_poisson``: auxiliary
        data of the Gaussian / Poisson constraints in parameter order (``self._c_normal[0]`` /
        ``self._c_poisson[0]``). ``None`` keeps the model's own value. ``custom_grad=False``
        uses plain autodiff (forward mode and Hessians; gradients w.r.t. ``data``).
        """
        lp = self._constraint_logpdf(p, aux_normal, aux_poisson) + self._binned_logpdf(p, binned_obs)
        for u, d in zip(self._unb, data):
            lp = lp + u.logl(p, d, custom_grad)
        return -2.0 * lp

    def twice_nll(self, pars) -> float:
        """-2 ln L at ``pars`` (binned part identical to pyhf's ``-2 model.logpdf``)."""
        return float(self._twice_nll(jnp.asarray(pars, dtype=float), self._data))

    def twice_nll_and_grad(self, pars) -> tuple[float, np.ndarray]:
        v, g = self._vg(jnp.asarray(pars, dtype=float), self._data)
        return float(v), np.asarray(g)

    def hessian(self, pars) -> np.ndarray:
        """Exact Hessian of -2 ln L at ``pars``."""
        return np.asarray(self._hess(jnp.asarray(pars, dtype=float), self._data))

    def twice_nll_grad_hessian(self, pars) -> tuple[float, np.ndarray, np.ndarray]:
        """-2 ln L, gradient and exact Hessian at ``pars`` from one pass over the events
        (about the cost of :meth:`hessian`; used by the Newton minimiser in :mod:`nsbi.fit`)."""
        v, g, H = self._vgh(jnp.asarray(pars, dtype=float), self._data)
        return float(v), np.asarray(g), np.asarray(H)

    def index(self, label: str) -> int:
        try:
            return self.par_names.index(label)
        except ValueError:
            raise KeyError(f"unknown parameter {label!r}; known: {self.par_names}") from None

    def __repr__(self) -> str:
        return (
            f"Model(binned={[c['name'] for c in self.binned_channels]}, "
            f"unbinned={[c['name'] for c in self.unbinned_channels]}, npars={self.npars}, poi={self.poi_name!r})"
        )


@jax.custom_jvp
def _sqrt(x):
    """sqrt with a finite derivative at 0 (0.5/sqrt(1e-200) = 5e99 instead of inf).

    Morphing coefficients such as mu - sqrt(mu) are not differentiable at mu = 0. With the
    exact derivative, forward-mode autodiff (Hessians, Jacobians) multiplies inf by the zero
    tangent of every *other* parameter and the whole Hessian becomes NaN, e.g. in a profile
    scan at the fixed point mu = 0. The large finite slope keeps those products 0 and still
    points the way for a free mu at its bound."""
    return jnp.sqrt(x)


@_sqrt.defjvp
def _sqrt_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    safe = jnp.where(x > 1e-200, x, 1e-200)
    # the primal through _sqrt again, so that higher derivatives use this rule as well
    return _sqrt(x), t * (0.5 / _sqrt(safe))


class _MorphNamespace:
    """``jax.numpy`` for morphing expressions, with :func:`_sqrt`."""

    sqrt = staticmethod(_sqrt)

    def __getattr__(self, name):
        return getattr(jnp, name)


_MORPH_XP = _MorphNamespace()


def _code4_dweights(alpha):
    """d c_j / d alpha for the code-4 polynomial weights."""
    powers = [(i + 1) * alpha**i for i in range(6)]
    return [sum(powers[i] * CODE4_MATRIX_INV[i, j] for i in range(6)) for j in range(6)]


def _chunk_layout(x: np.ndarray, chunk: int, fill: float) -> np.ndarray:
    """(..., N) -> (nchunks, ..., chunk), padding the tail with ``fill``."""
    n = x.shape[-1]
    nch = max(1, -(-n // chunk))
    pad = nch * chunk - n
    if pad:
        x = np.concatenate([x, np.full(x.shape[:-1] + (pad,), fill, dtype=x.dtype)], axis=-1)
    x = x.reshape(x.shape[:-1] + (nch, chunk))
    return np.ascontiguousarray(np.moveaxis(x, -2, 0))


STORE_RHO_MAX_K = 7  # measured (1M events x 4 processes): K = 3, 5, 7 faster stored; K = 10 faster recomputed


def _events_kernel(y, alpha, d, want_grad: bool, general: bool):
    """sum_i w_i ln S_i and (optionally) its gradient w.r.t. the yields y (C,) and the
    shape parameters alpha (K,), in one pass over event chunks (``lax.scan``).

    ``general=False`` assumes all |alpha_k| <= 1 (polynomial branch only: no transcendental
    functions per event); ``general=True`` also handles the exponential branches.
    """
    C = d["r"].shape[1]
    K = d["lu"].shape[1]
    cw = [code4_poly_weights(alpha[k], jnp) for k in range(K)]
    dw = [_code4_dweights(alpha[k]) for k in range(K)] if want_grad else None

    def factor(k, lu, ld, gu, gd):
        """g_ck and (with want_grad) rho_ck = g'_ck / g_ck."""
        c = cw[k]
        g = (1.0 - c[0] - c[1]) + gu * (c[0] + lu * (c[2] + c[4] * lu)) + gd * (c[1] + ld * (c[5] * ld - c[3]))
        rho = None
        if want_grad:
            e = dw[k]
            gp = (-e[0] - e[1]) + gu * (e[0] + lu * (e[2] + e[4] * lu)) + gd * (e[1] + ld * (e[5] * ld - e[3]))
        if general:
            # one exponential per factor: g = g_up^a (a > 1) or g_down^-a (a < -1), and then
            # g'/g = ln g_up or -ln g_down
            a = alpha[k]
            out = jnp.abs(a) > 1.0
            log_g = jnp.where(a > 0.0, lu, ld)
            g = jnp.where(out, jnp.exp(jnp.abs(a) * log_g), g)
            if want_grad:
                gp = jnp.where(out, jnp.sign(a) * log_g * g, gp)
        if want_grad:
            rho = gp / g
        return g, rho

    def body(carry, x):
        if not want_grad:
            s = 0.0
            for c in range(C):
                t = x["r"][c]
                for k in range(K):
                    t = t * factor(k, x["lu"][k, c], x["ld"][k, c], x["gu"][k, c], x["gd"][k, c])[0]
                s = s + y[c] * t
            return carry + jnp.sum(x["w"] * jnp.log(s)), None
        # Value and gradient in three stages per chunk (the chunk stays cache resident):
        #   1. T_c = r_c prod_k g_ck and rho_ck = g'_ck / g_ck  (C + CK rows, materialised)
        #   2. Q_k = sum_c y_c T_c rho_ck                      (K rows, reads T and rho)
        #   3. s = sum_c y_c T_c; sum w ln s; [T; Q] @ (w / s)
        # The barriers stop XLA from re-deriving T and the factors inside every consumer
        # (measured: a fused chain is recomputed per output row; materialising rho instead of
        # recomputing the factors in stage 2 is 1.3x faster for |alpha| <= 1 and 3.4x faster
        # outside; see benchmarks/README.md).
        store = general or K <= STORE_RHO_MAX_K
        T, RHO = [], []  # RHO: rows c * K + k
        for c in range(C):
            t = x["r"][c]
            for k in range(K):
                g, rho = factor(k, x["lu"][k, c], x["ld"][k, c], x["gu"][k, c], x["gd"][k, c])
                t = t * g
                RHO.append(rho)
            T.append(t)
        if K and store:
            T, RHO = jax.lax.optimization_barrier((jnp.stack(T), jnp.stack(RHO)))
        else:
            T = jax.lax.optimization_barrier(jnp.stack(T))
            RHO = [
                factor(k, x["lu"][k, c], x["ld"][k, c], x["gu"][k, c], x["gd"][k, c])[1]
                for c in range(C)
                for k in range(K)
            ]
        Qk = [sum((y[c] * T[c]) * RHO[c * K + k] for c in range(C)) for k in range(K)]
        M = jax.lax.optimization_barrier(jnp.concatenate([T, jnp.stack(Qk)]) if K else T)
        s = 0.0
        for c in range(C):
            s = s + y[c] * M[c]
        val = jnp.sum(x["w"] * jnp.log(s))
        g = M @ (x["w"] / s)
        v0, g0 = carry
        return (v0 + val, g0 + g), None

    if not want_grad:
        v, _ = jax.lax.scan(body, jnp.zeros((), y.dtype), d)
        return v
    (v, g), _ = jax.lax.scan(body, (jnp.zeros((), y.dtype), jnp.zeros(C + K, y.dtype)), d)
    return v, g[:C], g[C:]


def _code4_d2weights(alpha):
    """d^2 c_j / d alpha^2 for the code-4 polynomial weights."""
    powers = {i: (i + 1) * i * alpha ** (i - 1) for i in range(1, 6)}  # d2/da2 of alpha^(i+1)
    return [sum(powers[i] * CODE4_MATRIX_INV[i, j] for i in powers) for j in range(6)]


def _events_hessian_kernel(y, alpha, d, general: bool):
    """sum_i w_i ln S_i, its gradient and its exact Hessian w.r.t. u = (y, alpha) in one pass.

    With s = sum_c y_c T_c, T_c = r_c prod_k g_ck(alpha_k), rho_ck = g'_ck/g_ck and
    sigma_ck = g''_ck/g_ck per event: d s/d y_c = T_c, d s/d alpha_k = Q_k = sum_c y_c T_c rho_ck,
    d2 s/d y_c d alpha_k = T_c rho_ck, d2 s/d alpha_k d alpha_l = sum_c y_c T_c rho_ck rho_cl
    (k != l) or sum_c y_c T_c sigma_ck (k = l), and
    H = sum_i w_i [s_uv / s - s_u s_v / s^2].

    Per chunk: (1) T, rho, sigma materialised once; (2) the rows
    Z = [T (C); Q (K); T rho (C K); d2 s/d alpha d alpha (K(K+1)/2)]; (3) Z @ (w/s) gives the
    gradient and the s_uv/s terms, D diag(w/s^2) D^T with D = [T; Q] the outer-product term
    (two small matmuls; 1.7x faster than einsums over (C, K, chunk) arrays, measured).
    """
    C = d["r"].shape[1]
    K = d["lu"].shape[1]
    n = C + K
    cw = [code4_poly_weights(alpha[k], jnp) for k in range(K)]
    dw = [_code4_dweights(alpha[k]) for k in range(K)]
    d2w = [_code4_d2weights(alpha[k]) for k in range(K)]
    pairs = [(k, m) for k in range(K) for m in range(k, K)]

    def poly(c, lu, ld, gu, gd, const):
        return const + gu * (c[0] + lu * (c[2] + c[4] * lu)) + gd * (c[1] + ld * (c[5] * ld - c[3]))

    def factor(k, lu, ld, gu, gd):
        c, e, f = cw[k], dw[k], d2w[k]
        g = poly(c, lu, ld, gu, gd, 1.0 - c[0] - c[1])
        gp = poly(e, lu, ld, gu, gd, -e[0] - e[1])
        gpp = poly(f, lu, ld, gu, gd, -f[0] - f[1])
        ig = 1.0 / g
        rho, sig = gp * ig, gpp * ig
        if general:
            # one exponential per factor; outside |a| <= 1, g'/g = ln g_up (a > 1) or -ln g_down
            # (a < -1) and g''/g = its square
            a = alpha[k]
            out = jnp.abs(a) > 1.0
            log_g = jnp.where(a > 0.0, lu, ld)
            g = jnp.where(out, jnp.exp(jnp.abs(a) * log_g), g)
            rho = jnp.where(out, jnp.sign(a) * log_g, rho)
            sig = jnp.where(out, log_g * log_g, sig)
        return g, rho, sig

    def body(carry, x):
        T, R, S = [], [], []  # R, S: rows c * K + k
        for c in range(C):
            t = x["r"][c]
            for k in range(K):
                g, r_, s_ = factor(k, x["lu"][k, c], x["ld"][k, c], x["gu"][k, c], x["gd"][k, c])
                t = t * g
                R.append(r_)
                S.append(s_)
            T.append(t)
        if K:
            T, R, S = jax.lax.optimization_barrier((jnp.stack(T), jnp.stack(R), jnp.stack(S)))
        else:
            T = jnp.stack(T)
        YT = [y[c] * T[c] for c in range(C)]
        s = sum(YT)
        rows = [T[c] for c in range(C)]
        rows += [sum(YT[c] * R[c * K + k] for c in range(C)) for k in range(K)]  # Q_k
        rows += [T[c] * R[c * K + k] for c in range(C) for k in range(K)]
        rows += [
            sum(YT[c] * (S[c * K + k] if k == m else R[c * K + k] * R[c * K + m]) for c in range(C)) for k, m in pairs
        ]
        Z = jax.lax.optimization_barrier(jnp.stack(rows))
        ws = x["w"] / s
        lin = Z @ ws
        D = Z[:n]
        DD = (D * (ws / s)) @ D.T
        val = jnp.sum(x["w"] * jnp.log(s))
        v0, l0, dd0 = carry
        return (v0 + val, l0 + lin, dd0 + DD), None

    nz = n + C * K + len(pairs)
    init = (jnp.zeros((), y.dtype), jnp.zeros(nz, y.dtype), jnp.zeros((n, n), y.dtype))
    (v, lin, DD), _ = jax.lax.scan(body, init, d)
    Hs = jnp.zeros((n, n), y.dtype)
    if K:
        h_ya = lin[n : n + C * K].reshape(C, K)
        h_aa = jnp.zeros((K, K), y.dtype)
        off = n + C * K
        for i, (k, m) in enumerate(pairs):
            h_aa = h_aa.at[k, m].set(lin[off + i]).at[m, k].set(lin[off + i])
        Hs = Hs.at[:C, C:].set(h_ya).at[C:, :C].set(h_ya.T).at[C:, C:].set(h_aa)
    return v, lin[:n], Hs - DD


def _events_hessian(y, alpha, d):
    if d["lu"].shape[1] == 0:
        return _events_hessian_kernel(y, alpha, d, False)
    inside = jnp.all(jnp.abs(alpha) <= 1.0)
    return jax.lax.cond(
        inside,
        lambda: _events_hessian_kernel(y, alpha, d, False),
        lambda: _events_hessian_kernel(y, alpha, d, True),
    )


def _events_term_impl(y, alpha, d, want_grad):
    if d["lu"].shape[1] == 0:
        return _events_kernel(y, alpha, d, want_grad, False)
    inside = jnp.all(jnp.abs(alpha) <= 1.0)
    return jax.lax.cond(
        inside,
        lambda: _events_kernel(y, alpha, d, want_grad, False),
        lambda: _events_kernel(y, alpha, d, want_grad, True),
    )


@jax.custom_vjp
def _events_term(y, alpha, d):
    return _events_term_impl(y, alpha, d, False)


def _events_term_fwd(y, alpha, d):
    v, gy, ga = _events_term_impl(y, alpha, d, True)
    return v, (gy, ga, d)


def _events_term_bwd(res, ct):
    gy, ga, d = res
    return ct * gy, ct * ga, jax.tree_util.tree_map(jnp.zeros_like, d)


_events_term.defvjp(_events_term_fwd, _events_term_bwd)


class _UnbinnedChannel:
    """Stacked, theta-independent per-event arrays for one unbinned channel.

    Arrays (laid out as event chunks, (nchunks, ..., chunk)): ``w``; ``r`` (C) = exp(log r);
    per shape systematic k and process c: ``lu``/``ld`` = log g_up/down and ``gu``/``gd`` =
    g_up/down (0 and 1 for processes without k, giving a factor of exactly 1). Inside
    |alpha_k| <= 1 the code-4 factor is a few multiply-adds per event; the value and gradient
    are computed together in one pass (custom VJP), see :func:`_events_kernel`.
    """

    CHUNK = 1024  # events per chunk: ~0.4 MB of arrays at 4 processes x 3 systematics (L2 resident)

    def __init__(self, model: Model, ch: Mapping, events: Mapping[str, Any]):
        self.name = ch["name"]
        samples = ch["samples"]
        C = len(samples)
        if "weight" not in events:
            raise ModelError(f"unbinned channel {self.name!r}: events have no 'weight' column")
        w = np.asarray(events["weight"], dtype=float)
        N = w.shape[0]
        self.n_events = N
        logr = np.empty((C, N))
        for c, s in enumerate(samples):
            (cname,) = event_columns(s["name"])
            if cname not in events:
                raise ModelError(f"unbinned channel {self.name!r}: missing column {cname!r}")
            logr[c] = np.asarray(events[cname], dtype=float)
        shape_names: list[str] = []
        for s in samples:
            for m in s.get("modifiers", []):
                if m["type"] == "eventsys" and m["name"] not in shape_names:
                    shape_names.append(m["name"])
        K = len(shape_names)
        lu = np.zeros((K, C, N))
        ld = np.zeros((K, C, N))
        for c, s in enumerate(samples):
            for m in s.get("modifiers", []):
                if m["type"] != "eventsys":
                    continue
                k = shape_names.index(m["name"])
                up, dn = event_columns(s["name"], m["name"])
                data = m.get("data") or {}
                up, dn = data.get("up", up), data.get("down", dn)
                for arr, col in ((lu, up), (ld, dn)):
                    if col not in events:
                        raise ModelError(f"unbinned channel {self.name!r}: missing column {col!r}")
                    arr[k, c] = np.asarray(events[col], dtype=float)
        self._build_shape_norm(samples, shape_names)
        for what, arr in (("log r", logr), ("log g", lu), ("log g", ld)):
            if not np.all(np.isfinite(arr)):
                raise ModelError(f"unbinned channel {self.name!r}: non-finite {what} values")
        # yields
        nu = np.array([float(s["yield"]) for s in samples])
        mult = [[] for _ in range(C)]
        ns_names = [ps.name for ps in model.parsets if ps.kind in ("normsys", "histosys", "eventsys")]
        log_ku = np.zeros((C, len(ns_names)))
        log_kd = np.zeros((C, len(ns_names)))
        for c, s in enumerate(samples):
            for m in s.get("modifiers", []):
                if m["type"] in ("normfactor", "lumi"):
                    mult[c].append(model.par_slices[m["name"]].start)
                elif m["type"] == "normsys":
                    j = ns_names.index(m["name"])
                    hi, lo = float(m["data"]["hi"]), float(m["data"]["lo"])
                    if hi <= 0 or lo <= 0:
                        raise ModelError(f"normsys {m['name']!r} on sample {s['name']!r}: hi/lo must be > 0")
                    log_ku[c, j] += math.log(hi)
                    log_kd[c, j] += math.log(lo)
        used = np.any(log_ku != 0, axis=0) | np.any(log_kd != 0, axis=0)
        self.ns_par = np.array([model.par_slices[n].start for n in ns_names], dtype=int)[used]
        self.log_ku, self.log_kd = log_ku[:, used], log_kd[:, used]
        maxm = max(1, max(len(x) for x in mult))
        mi = np.full((C, maxm), model.npars, dtype=int)
        for c in range(C):
            mi[c, : len(mult[c])] = mult[c]
        self.mult_idx = mi
        self.nu = nu
        self.morph = [s.get("morphing") for s in samples]
        self.samples = [s["name"] for s in samples]
        self.model = model
        self.shape_par = np.array([model.par_slices[n].start for n in shape_names], dtype=int)
        self.shape_names = shape_names
        L = min(self.CHUNK, max(256, int(2 ** math.ceil(math.log2(max(N, 1))))))
        self.arrays = {
            "w": jnp.asarray(_chunk_layout(w, L, 0.0)),
            "r": jnp.asarray(_chunk_layout(np.exp(logr), L, 1.0)),
            "lu": jnp.asarray(_chunk_layout(lu, L, 0.0)),
            "ld": jnp.asarray(_chunk_layout(ld, L, 0.0)),
            "gu": jnp.asarray(_chunk_layout(np.exp(lu), L, 1.0)),
            "gd": jnp.asarray(_chunk_layout(np.exp(ld), L, 1.0)),
        }
        self.sumw = float(np.sum(w))

    def _build_shape_norm(self, samples, shape_names) -> None:
        """Nodes of the eventsys ``data.norm`` entries as (K, C, M) arrays (identity where absent)."""
        K, C = len(shape_names), len(samples)
        norms = {}
        for c, s in enumerate(samples):
            for m in s.get("modifiers", []):
                if m["type"] == "eventsys" and (m.get("data") or {}).get("norm") is not None:
                    nrm = m["data"]["norm"]
                    try:
                        arrs = [np.asarray(nrm[d][f], dtype=float) for d in ("up", "down") for f in ("log", "p")]
                    except (KeyError, TypeError) as e:
                        raise ModelError(
                            f"unbinned channel {self.name!r}, sample {s['name']!r}: eventsys "
                            f"{m['name']!r} data.norm needs up/down with 'log' and 'p' lists"
                        ) from e
                    for d, (lg, pr) in zip(("up", "down"), (arrs[:2], arrs[2:])):
                        if (
                            lg.shape != pr.shape
                            or lg.ndim != 1
                            or not np.all(np.isfinite(lg))
                            or np.any(pr < 0)
                            or abs(pr.sum() - 1.0) > 1e-9
                        ):
                            raise ModelError(
                                f"unbinned channel {self.name!r}, sample {s['name']!r}: eventsys "
                                f"{m['name']!r} data.norm.{d} must be finite nodes with probabilities summing to 1"
                            )
                    norms[(shape_names.index(m["name"]), c)] = arrs
        self.has_shape_norm = bool(norms)
        if not norms:
            return
        M = max(max(len(a[0]), len(a[2])) for a in norms.values())
        L = np.zeros((2, K, C, M))
        P = np.zeros((2, K, C, M))
        P[:, :, :, 0] = 1.0  # identity: one node at ln g = 0
        for (k, c), (lu, pu, ld, pd) in norms.items():
            P[:, k, c, 0] = 0.0
            L[0, k, c, : len(lu)], P[0, k, c, : len(pu)] = lu, pu
            L[1, k, c, : len(ld)], P[1, k, c, : len(pd)] = ld, pd
        self.norm_log, self.norm_p = jnp.asarray(L), jnp.asarray(P)

    def shape_norms(self, p):
        """N_ck(alpha_k) = E_c[g_ck(alpha_k)], (K, C); ones without ``data.norm``."""
        alpha = p[self.shape_par]
        L, P = self.norm_log, self.norm_p
        return code4_mean(alpha[:, None], L[0], P[0], L[1], P[1], xp=jnp)

    def event_yields(self, p):
        """Coefficients of the per-event term: yields / prod_k N_ck(alpha_k) (C,)."""
        y = self.yields(p)
        if not self.has_shape_norm:
            return y
        return y / jnp.prod(self.shape_norms(p), axis=0)

    def yields(self, p):
        """Per-sample expected yields f_c(mu) nu_c G_c(alpha) * normfactors (C,)."""
        pext = jnp.concatenate([p, jnp.ones(1, dtype=p.dtype)])
        y = jnp.asarray(self.nu) * jnp.prod(pext[self.mult_idx], axis=-1)
        if len(self.ns_par):
            a = p[self.ns_par][None, :]
            y = y * jnp.prod(code4_from_logs(a, jnp.asarray(self.log_ku), jnp.asarray(self.log_kd), xp=jnp), axis=1)
        if any(e is not None for e in self.morph):
            y = y * jnp.stack([jnp.asarray(self.model._morph_value(e, p), dtype=p.dtype) for e in self.morph])
        return y

    def logl(self, p, d=None, custom_grad: bool = True):
        """sum_i w_i ln S_i(theta) - sum_c y_c(theta)."""
        d = self.arrays if d is None else d
        y = self.yields(p)
        ye = self.event_yields(p)
        alpha = p[self.shape_par] if len(self.shape_par) else jnp.zeros(0, dtype=p.dtype)
        if custom_grad:
            ev = _events_term(ye, alpha, d)
        else:  # plain autodiff (supports forward mode, used for Hessians)
            ev = _events_kernel(ye, alpha, d, False, True)
        return ev - jnp.sum(y)
