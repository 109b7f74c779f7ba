"""Pseudo-experiments (toys) and Asimov datasets for the full model (:class:`nsbi.model.Model`).

Method
------
For a parameter point theta a toy consists of

* **unbinned channels** — Poisson resampling of a fixed MC event set. Each MC event i gets the
  model's expected weight ``w_i(theta)`` (in events) and a toy count ``k_i ~ Poisson(w_i(theta))``
  (drawn as ``N ~ Poisson(sum_i w_i(theta))`` plus ``N`` multinomial picks with probabilities
  ``w_i(theta) / sum_j w_j(theta)``, identical in distribution). The toy is the set of MC events
  with ``k_i > 0`` carrying weight ``k_i``. The expected weights use the model's own density,
  ``lambda(x|theta) = S(x;theta) p_ref(x)`` with ``S = sum_c y_c(theta) r_c(x) prod_k g_ck(x)``
  (``ln S_i`` is the per-event term of the model's likelihood, obtained exactly from the model):

  - ``mc_at=None``: the MC events are a sample of the *reference density* p_ref (weights ``u_i``,
    any positive normalisation): ``w_i(theta) = u_i S_i(theta) / sum_j u_j``;
  - ``mc_at=theta0``: the MC weights describe the expected rate at theta0 (e.g. the workspace's
    ``asimov`` dataset, which is the reference events reweighted by the model at the nominal
    point): ``w_i(theta) = w_i S_i(theta) / S_i(theta0)``.

  With ``normalise=True`` (default) the weights are rescaled so that ``sum_i w_i(theta)`` equals
  the model's expected yield ``nu(theta) = sum_c y_c(theta)`` (the two agree when the ratios are
  normalised on the MC, see ``ratio_norms``; the rescaling makes the toy total follow the model).

  Assumptions: the MC events are re-used by all toys (toys are independent given the MC, but
  they share its finite-sample fluctuations; the MC should be much larger than the expected
  number of events so that repeated picks of one event are rare — ``repeat_fraction`` in the
  toy metadata reports how often it happens). ``S_i(theta) > 0`` is assumed for the events
  (as the model itself requires); with *learned* ratios and morphing coefficients of both signs
  (e.g. 1 - sqrt(mu) < 0 for mu > 1) the model density can come out negative at large mu for a
  few events. Those events get expected weight 0 (they cannot be drawn) and are counted:
  ``nonpositive_events`` / ``nonpositive_weight_fraction`` in the toy metadata (and in the
  Neyman chunk outputs), with a warning; the toy likelihood of such a point is that of the
  model, where these events never appear. Negative MC weights cannot be sampled: ``negative="raise"`` (default)
  refuses them, ``negative="drop"`` sets them to zero before the (re)normalisation (biased
  where negative weights matter, e.g. interference-dominated regions: prefer a positive
  reference sample with ``mc_at=None``, as the NSBI workspace's Asimov dataset does).

* **binned channels** — ``n_b ~ Poisson(nu_b(theta))`` (the model's expected counts).

* **auxiliary data** of every constrained, non-fixed parameter: Gaussian around theta
  (``N(theta_j, sigma_j)``: normsys, histosys, eventsys, lumi, staterror) and Poisson for
  shapesys (``Poisson(gamma_j tau_j)``); fixed parameters keep their nominal auxdata. The toy
  likelihood uses the drawn auxdata.

Randomness comes from ``numpy.random.Generator(PCG64(seed))``; ``seed`` may be an int or a
sequence of ints (e.g. ``(base_seed, mu_index, batch)``, combined with ``SeedSequence``).

The toy likelihood :meth:`ToyGenerator.twice_nll` is a pure JAX function of
``(params, toy, mc_arrays)`` built on :meth:`nsbi.model.Model.twice_nll_with`, suitable for
``jax.vmap`` (see :func:`nsbi.minimize.minimize_batch`); :meth:`ToyGenerator.model_for` builds an ordinary
:class:`~nsbi.model.Model` for one toy (for iminuit / :mod:`nsbi.fit` cross-checks).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nsbi.io import atomic_path
from nsbi.jax_setup import jax, jnp
from nsbi.model import Model
from nsbi.model.kernels import density_floor

_log = logging.getLogger(__name__)

__all__ = ["ToyGenerator", "ToySet", "make_rng", "param_vector"]


def make_rng(seed) -> np.random.Generator:
    """numpy Generator from an int or a sequence of ints (combined with SeedSequence)."""
    if isinstance(seed, (list, tuple, np.ndarray)):
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(s) for s in seed])))
    return np.random.Generator(np.random.PCG64(int(seed)))


def param_vector(model: Model, values=None, base=None) -> np.ndarray:
    """Full parameter vector: ``base`` (default ``model.init``) updated with ``values``
    (a vector, or a mapping label -> value)."""
    x = np.array(model.init if base is None else base, dtype=float)
    if values is None:
        return x
    if isinstance(values, Mapping):
        for k, v in values.items():
            x[model.index(k)] = float(v)
        return x
    v = np.asarray(values, float)
    if v.shape != x.shape:
        raise ValueError(f"parameter vector has shape {v.shape}, expected {x.shape}")
    return v.copy()


def _bucket(n: int) -> int:
    """Round up to 2^k or 1.5 * 2^k (few distinct padded shapes -> few compilations)."""
    n = max(int(n), 8)
    p = 1 << (n - 1).bit_length()
    return p * 3 // 4 if p * 3 // 4 >= n else p


@dataclass
class ToySet:
    """A batch of pseudo-experiments (leading axis T) at one parameter point.

    ``idx[j]``/``k[j]``: per unbinned channel j, padded (T, Nmax_j) indices into the MC events
    and their weights (0 for padding); ``binned``: (T, nbins) counts in the model's channel
    order; ``aux_normal``/``aux_poisson``: (T, n) auxiliary data in constraint order.
    """

    theta: np.ndarray
    binned: np.ndarray
    aux_normal: np.ndarray
    aux_poisson: np.ndarray
    idx: list[np.ndarray]
    k: list[np.ndarray]
    seed: Any = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.binned.shape[0])

    def data(self) -> dict:
        """JAX pytree (leading batch axis) consumed by :meth:`ToyGenerator.twice_nll`."""
        return {
            "binned": jnp.asarray(self.binned),
            "aux_normal": jnp.asarray(self.aux_normal),
            "aux_poisson": jnp.asarray(self.aux_poisson),
            "idx": [jnp.asarray(i) for i in self.idx],
            "k": [jnp.asarray(k) for k in self.k],
        }

    def subset(self, sel) -> ToySet:
        sel = np.atleast_1d(np.arange(len(self))[sel])
        return ToySet(
            self.theta,
            self.binned[sel],
            self.aux_normal[sel],
            self.aux_poisson[sel],
            [i[sel] for i in self.idx],
            [k[sel] for k in self.k],
            self.seed,
            dict(self.meta),
        )

    @classmethod
    def concatenate(cls, sets: Sequence[ToySet]) -> ToySet:
        """One batch from several (same channels and padded event counts, e.g. Asimov datasets
        at several points); ``theta`` becomes (T, npars), one row per entry."""
        sets = list(sets)
        if not sets:
            raise ValueError("no toy sets to concatenate")
        shapes = {tuple(i.shape[1] for i in s.idx) for s in sets}
        if len(shapes) > 1:
            raise ValueError(f"toy sets with different padded event counts {sorted(shapes)}")
        thetas = [np.broadcast_to(s.theta, (len(s), np.shape(s.theta)[-1])) for s in sets]
        return cls(
            np.concatenate(thetas),
            np.concatenate([s.binned for s in sets]),
            np.concatenate([s.aux_normal for s in sets]),
            np.concatenate([s.aux_poisson for s in sets]),
            [np.concatenate([s.idx[j] for s in sets]) for j in range(len(sets[0].idx))],
            [np.concatenate([s.k[j] for s in sets]) for j in range(len(sets[0].k))],
            meta={"concatenated": len(sets)},
        )

    def n_events(self) -> np.ndarray:
        """(T, n_unbinned_channels) total event counts."""
        if not self.k:
            return np.zeros((len(self), 0))
        return np.stack([k.sum(axis=1) for k in self.k], axis=1)

    def save(self, path) -> Path:
        """npz (no pickle)."""
        path = Path(path)
        arrs = {
            "theta": self.theta,
            "binned": self.binned,
            "aux_normal": self.aux_normal,
            "aux_poisson": self.aux_poisson,
            "n_unbinned": np.array(len(self.idx)),
        }
        for j, (i, k) in enumerate(zip(self.idx, self.k)):
            arrs[f"idx_{j}"], arrs[f"k_{j}"] = i, k
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrs)
        return path

    @classmethod
    def load(cls, path) -> ToySet:
        with np.load(path, allow_pickle=False) as z:
            n = int(z["n_unbinned"])
            return cls(
                z["theta"],
                z["binned"],
                z["aux_normal"],
                z["aux_poisson"],
                [z[f"idx_{j}"] for j in range(n)],
                [z[f"k_{j}"] for j in range(n)],
            )


def _unchunk(a, n: int) -> np.ndarray:
    """Model chunk layout (nch, ..., L) -> flat (..., n)."""
    a = np.asarray(a)
    a = np.moveaxis(a, 0, -2)
    return a.reshape(a.shape[:-2] + (a.shape[-2] * a.shape[-1],))[..., :n]


class ToyGenerator:
    """Pseudo-experiments and Asimov datasets of ``model`` (see the module docstring).

    ``mc``: ``{unbinned channel: event columns}`` (``weight`` + the ``logr_*`` columns the
    model needs) — required when the model has unbinned channels; ``mc_at``: None (MC samples
    the reference density) or the parameter point (vector or mapping) the MC weights describe.
    """

    def __init__(
        self,
        model: Model,
        mc: Mapping[str, Mapping[str, Any]] | None = None,
        mc_at=None,
        normalise: bool = True,
        negative: str = "raise",
    ):
        if negative not in ("raise", "drop"):
            raise ValueError("negative must be 'raise' or 'drop'")
        self.model = model
        self.normalise = bool(normalise)
        names = [c["name"] for c in model.unbinned_channels]
        mc = dict(mc or {})
        missing = [n for n in names if n not in mc]
        if missing:
            raise ValueError(f"no MC events given for unbinned channel(s) {missing}")
        self.mc_columns = {n: {c: np.asarray(v) for c, v in mc[n].items()} for n in names}
        obs = self._binned_obs_dict(model.binned_observations)
        obs.update({n: self.mc_columns[n] for n in names})
        # the MC model: same spec/measurement, MC events as "observations" (per-event arrays)
        self.mc_model = Model(model.spec, obs, model.measurement) if names else model
        self._mc_obs = obs
        m = self.mc_model
        self.channel_names = names
        self.n_mc = [u.n_events for u in m.unbinned_terms]
        self.mc_arrays = [
            {key: jnp.asarray(_unchunk(a, u.n_events)) for key, a in u.arrays.items()} for u in m.unbinned_terms
        ]
        self._w = [np.asarray(self.mc_columns[n]["weight"], float) for n in names]
        for n, w in zip(names, self._w):
            if np.any(w < 0):
                if negative == "raise":
                    raise ValueError(
                        f"unbinned channel {n!r}: {int(np.sum(w < 0))} MC events with negative weight cannot be "
                        "Poisson-sampled; use a positive reference sample (mc_at=None) or negative='drop'"
                    )
                w[w < 0] = 0.0
        self._logS = jax.jit(self._log_density)
        self._yields = jax.jit(lambda p: [u.yields(p) for u in m.unbinned_terms])
        self.mc_at = None if mc_at is None else param_vector(model, mc_at)
        self._den = []
        for j, w in enumerate(self._w):
            if self.mc_at is None:
                self._den.append(np.full_like(w, w.sum()))
            else:
                self._den.append(np.exp(self.log_density(self.mc_at)[j]))
        ni, sig = model.constraints.normal_index, model.constraints.normal_sigma
        pi, fac = model.constraints.poisson_index, model.constraints.poisson_factor
        self._n_idx, self._n_sig, self._n_aux0 = (
            np.asarray(ni, int),
            np.asarray(sig, float),
            np.asarray(model.constraints.normal_aux, float),
        )
        self._p_idx, self._p_fac, self._p_aux0 = (
            np.asarray(pi, int),
            np.asarray(fac, float),
            np.asarray(model.constraints.poisson_aux, float),
        )
        #: ``twice_nll(p, toy, mc_arrays)``: -2 ln L of one toy (pure JAX, autodiff-friendly);
        #: ``twice_nll_vgh``: the same with its gradient and exact Hessian from one pass over the
        #: toy's events (what the batched toy fits use)
        self.twice_nll, self.twice_nll_vgh = self._make_nll(self.mc_model)
        self._sqrt_poi_nll: tuple | None = None
        #: default padded event count per unbinned channel for :meth:`generate` (None: automatic
        #: bucket 2^k or 1.5*2^k). Fixing it keeps one compiled shape across parameter points.
        self.pad_to: list[int] | None = None

    # ------------------------------------------------------------------ helpers
    def _binned_obs_dict(self, flat) -> dict[str, np.ndarray]:
        out = {}
        for ch in self.model.binned_channels:
            o, nb = self.model.binned_offsets[ch["name"]]
            out[ch["name"]] = np.asarray(flat[o : o + nb], float)
        return out

    def _log_density(self, p):
        data = self.mc_model.data
        ws = [d["w"] for d in data]

        def f(ws_):
            dd = [dict(d, w=w) for d, w in zip(data, ws_)]
            return self.mc_model.twice_nll_with(p, dd, custom_grad=False)

        g = jax.grad(f)(ws)
        return [-0.5 * gi for gi in g]

    def log_density(self, theta) -> list[np.ndarray]:
        """ln S_i(theta) of the MC events, per unbinned channel (the model's per-event term)."""
        p = jnp.asarray(param_vector(self.model, theta), dtype=float)
        return [_unchunk(a, n) for a, n in zip(self._logS(p), self.n_mc)]

    def expected_weights(self, theta, info: dict | None = None) -> list[np.ndarray]:
        """w_i(theta) of the MC events per unbinned channel (expected events).

        Events where the model density S_i(theta) is not positive (ln S not finite, or at the
        model's density floor, :func:`nsbi.model.kernels.density_floor`) get weight 0; ``info``
        (if given) receives per channel ``nonpositive_events`` and ``nonpositive_weight_fraction``
        (their share of the MC weight)."""
        theta = param_vector(self.model, theta)
        out = []
        logS = self.log_density(theta)
        ys = self._yields(jnp.asarray(theta)) if self.channel_names else []
        if info is not None:
            info.setdefault("nonpositive_events", [])
            info.setdefault("nonpositive_weight_fraction", [])
        for j, w in enumerate(self._w):
            # not positive: ln S is not finite, or it is the kernels' density floor
            floor = float(density_floor(ys[j]))
            with np.errstate(invalid="ignore"):
                bad = ~np.isfinite(logS[j]) | (logS[j] <= np.log(floor) + 1e-9)
            with np.errstate(invalid="ignore", over="ignore"):
                wt = np.where(bad, 0.0, w * np.exp(np.where(bad, 0.0, logS[j])) / self._den[j])
            frac = float(w[bad].sum() / w.sum()) if w.sum() > 0 else 0.0
            if bad.any():
                _log.warning(
                    "unbinned channel %r: model density not positive for %d of %d MC events "
                    "(%.2g of the MC weight) at theta = %s; they get expected weight 0",
                    self.channel_names[j],
                    int(bad.sum()),
                    bad.size,
                    frac,
                    np.round(theta, 4).tolist(),
                )
            if info is not None:
                info["nonpositive_events"].append(int(bad.sum()))
                info["nonpositive_weight_fraction"].append(frac)
            if self.normalise:
                nu = float(jnp.sum(ys[j]))
                s = wt.sum()
                if not s > 0:
                    raise ValueError(f"unbinned channel {self.channel_names[j]!r}: no positive expected weight")
                wt = wt * (nu / s)
            out.append(wt)
        return out

    def ratio_norms(self) -> dict[str, dict[str, float]]:
        """Diagnostic: sum_i u_i r_c(x_i) / sum_i u_i per channel and process (1 for ratios
        normalised on this MC; only meaningful for ``mc_at=None``)."""
        out = {}
        for j, (n, u) in enumerate(zip(self.channel_names, self.mc_model.unbinned_terms)):
            r = np.asarray(self.mc_arrays[j]["r"])
            out[n] = {s: float(np.sum(self._w[j] * r[c]) / self._w[j].sum()) for c, s in enumerate(u.samples)}
        return out

    def expected_binned(self, theta) -> np.ndarray:
        """Expected binned counts (nbins,) in the model's channel order."""
        if not self.model.binned_samples:
            return np.zeros(0)
        exp = self.model.expected_binned(param_vector(self.model, theta))
        return np.concatenate([np.sum(list(exp[c["name"]].values()), axis=0) for c in self.model.binned_channels])

    # ------------------------------------------------------------------ generation
    def generate(self, theta, n_toys: int, seed, pad_to: Sequence[int] | None = None) -> ToySet:
        """``n_toys`` pseudo-experiments at ``theta`` (vector or mapping label -> value)."""
        theta = param_vector(self.model, theta)
        rng = make_rng(seed)
        T = int(n_toys)
        pad_to = self.pad_to if pad_to is None else pad_to
        lam = self.expected_binned(theta)
        if np.any(lam < 0):
            raise ValueError("negative expected binned counts at this parameter point")
        binned = rng.poisson(lam, size=(T, lam.size)).astype(float)
        fixed = self.model.fixed
        mu_n = theta[self._n_idx]
        aux_n = rng.normal(mu_n, self._n_sig, size=(T, mu_n.size))
        aux_n = np.where(fixed[self._n_idx], self._n_aux0, aux_n)
        lam_p = theta[self._p_idx] * self._p_fac
        aux_p = rng.poisson(np.maximum(lam_p, 0.0), size=(T, lam_p.size)).astype(float)
        aux_p = np.where(fixed[self._p_idx], self._p_aux0, aux_p)
        idxs, ks, rep = [], [], []
        info: dict = {}
        for j, wt in enumerate(self.expected_weights(theta, info)):
            tot = float(wt.sum())
            cdf = np.cumsum(wt) / tot
            per_idx, per_k = [], []
            n_rep = n_tot = 0
            for _ in range(T):
                n = rng.poisson(tot)
                pick = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(wt) - 1)
                u, c = np.unique(pick, return_counts=True)
                per_idx.append(u)
                per_k.append(c)
                n_rep += int(n - len(u))
                n_tot += int(n)
            nmax = max([len(u) for u in per_idx] + [1])
            nmax = _bucket(nmax) if pad_to is None else max(int(pad_to[j]), nmax)
            idx = np.zeros((T, nmax), np.int64)
            K = np.zeros((T, nmax), float)
            for t, (u, c) in enumerate(zip(per_idx, per_k)):
                idx[t, : len(u)], K[t, : len(u)] = u, c
            idxs.append(idx)
            ks.append(K)
            rep.append(n_rep / max(n_tot, 1))
        return ToySet(
            theta, binned, aux_n, aux_p, idxs, ks, seed=seed, meta={"repeat_fraction": rep, "n_toys": T, **info}
        )

    def asimov(self, theta) -> ToySet:
        """Asimov dataset at ``theta`` as a one-entry ToySet: all MC events with their expected
        weights w_i(theta), binned counts nu_b(theta), auxdata at theta (gamma*tau for shapesys)."""
        theta = param_vector(self.model, theta)
        fixed = self.model.fixed
        aux_n = np.where(fixed[self._n_idx], self._n_aux0, theta[self._n_idx])
        aux_p = np.where(fixed[self._p_idx], self._p_aux0, theta[self._p_idx] * self._p_fac)
        ws = self.expected_weights(theta)
        return ToySet(
            theta,
            self.expected_binned(theta)[None, :],
            aux_n[None, :],
            aux_p[None, :],
            [np.arange(len(w))[None, :] for w in ws],
            [w[None, :] for w in ws],
            seed=None,
            meta={"asimov": True},
        )

    # ------------------------------------------------------------------ likelihood
    def sqrt_poi_nll(self) -> tuple[Model, Callable, Callable]:
        """``(model, twice_nll, twice_nll_vgh)`` as :attr:`twice_nll` and :attr:`twice_nll_vgh`
        (same toys, same values) with the POI's entry of the parameter vector held as its square
        root (:class:`Model` ``sqrt_poi``; ``model`` gives its bounds and inits): the coordinate
        in which fits near POI = 0 see exact derivatives. Only where
        ``model.sqrt_poi_possible`` (else :class:`Model` raises its ModelError); built once."""
        if self._sqrt_poi_nll is None:
            m = self.model
            mk = Model(m.spec, self._mc_obs, m.measurement, sqrt_poi=True)
            self._sqrt_poi_nll = (mk, *self._make_nll(mk))
        return self._sqrt_poi_nll

    def _make_nll(self, m: Model):
        def events(toy, mc):
            """The toy's own events (MC rows ``idx`` with weights ``k``) in the model's event
            layout, one chunk per channel: the cost per toy follows its event count."""
            data = []
            for j in range(len(mc)):
                a, i, k = mc[j], toy["idx"][j], toy["k"][j]
                data.append(
                    {
                        "w": k[None, :],
                        "r": a["r"][:, i][None],
                        "lu": a["lu"][:, :, i][None],
                        "ld": a["ld"][:, :, i][None],
                        "gu": a["gu"][:, :, i][None],
                        "gd": a["gd"][:, :, i][None],
                    }
                )
            return data

        def twice_nll(p, toy, mc):
            """-2 ln L of one toy (pure JAX, plain autodiff: vmap/grad/hessian friendly)."""
            obs = (toy["binned"], toy["aux_normal"], toy["aux_poisson"])
            return m.twice_nll_with(p, events(toy, mc), *obs, custom_grad=False)

        def twice_nll_vgh(p, toy, mc):
            """(-2 ln L, gradient, exact Hessian) of one toy from one pass over its events."""
            obs = (toy["binned"], toy["aux_normal"], toy["aux_poisson"])
            return m.value_grad_hessian_with(p, events(toy, mc), *obs)

        return twice_nll, twice_nll_vgh

    def twice_nll_values(self, toys: ToySet, pars) -> np.ndarray:
        """-2 ln L of every toy at ``pars`` ((npars,) or (T, npars))."""
        P = np.broadcast_to(np.asarray(pars, float), (len(toys), self.model.npars))
        f = jax.jit(jax.vmap(self.twice_nll, in_axes=(0, 0, None)))
        return np.asarray(f(jnp.asarray(P), toys.data(), self.mc_arrays))

    # ------------------------------------------------------------------ one toy as a Model
    def model_for(self, toys: ToySet, i: int = 0) -> Model:
        """An ordinary :class:`Model` with the data of toy ``i`` (events with k > 0, drawn
        binned counts, drawn auxdata as measurement ``auxdata``)."""
        obs = self._binned_obs_dict(toys.binned[i])
        for j, n in enumerate(self.channel_names):
            k = toys.k[j][i]
            sel = k != 0
            ev = {c: v[toys.idx[j][i][sel]] for c, v in self.mc_columns[n].items()}
            ev["weight"] = k[sel]
            obs[n] = ev
        model = self.model
        aux = {}
        for ii, a in zip(self._n_idx, toys.aux_normal[i]):
            aux[int(ii)] = float(a)
        for ii, a in zip(self._p_idx, toys.aux_poisson[i]):
            aux[int(ii)] = float(a)
        meas = copy.deepcopy(model.measurement)
        params = {p["name"]: p for p in meas.setdefault("config", {}).setdefault("parameters", [])}
        for ps in model.parsets:
            if not ps.constraint:
                continue
            sl = model.par_slices[ps.name]
            p = params.setdefault(ps.name, {"name": ps.name})
            if ps.kind == "lumi":
                p.setdefault("sigmas", list(ps.sigmas))
            p["auxdata"] = [aux[j] for j in range(sl.start, sl.stop)]
            p["inits"] = list(ps.inits)
            p["bounds"] = [list(b) for b in ps.bounds]
        meas["config"]["parameters"] = list(params.values())
        return Model(model.spec, obs, meas)
