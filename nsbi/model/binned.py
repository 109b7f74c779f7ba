"""Binned HistFactory channels (pyhf semantics): expected rates and the Poisson term.

All binned channels of a model are stacked into one (sample rows, bins) table: each row is a
(channel, sample) pair, the bins of all channels are concatenated (``offsets``). The rate is
``(nominal + sum_j code4p deltas) * prod(normfactor, lumi, staterror, shapesys, shapefactor)
* prod_j code4(normsys) * morphing``, exactly as in ``pyhf.Model``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nsbi.jax_setup import jax, jnp

from .errors import ModelError
from .interpolation import code4p_delta
from .modifiers import NormsysFactors, alpha_parameters
from .morphing import MorphingCoefficients
from .parameters import ParameterSet, poisson_logpdf

__all__ = ["BinnedChannels"]


class BinnedChannels:
    """The binned channels of a model, stacked.

    Public attributes: ``rows`` (tuple of (channel name, sample name) per row), ``offsets``
    (``{channel: (first bin, number of bins)}`` in the concatenated bins), ``nbins`` and
    ``observations`` (concatenated observed counts, (nbins,); empty without binned samples).
    """

    def __init__(
        self,
        channels: Sequence[Mapping],
        observations: Mapping[str, Any],
        parsets: Sequence[ParameterSet],
        par_slices: Mapping[str, slice],
        npars: int,
        morphing: MorphingCoefficients,
    ):
        self._par_slices = par_slices
        self._morphing = morphing
        rows = []  # (channel dict, sample dict)
        offsets, nbins_total = {}, 0
        for ch in channels:
            nb = len(ch["samples"][0]["data"])
            for s in ch["samples"]:
                if len(s["data"]) != nb:
                    raise ModelError(
                        f"channel {ch['name']!r}: sample {s['name']!r} has {len(s['data'])} bins, expected {nb}"
                    )
                rows.append((ch, s))
            offsets[ch["name"]] = (nbins_total, nb)
            nbins_total += nb
        self.offsets = offsets
        self.nbins = nbins_total
        self.rows = tuple((ch["name"], s["name"]) for ch, s in rows)
        R, B = len(rows), nbins_total
        if R == 0:
            self.observations = np.zeros(0)
            return
        obs = []
        for ch in channels:
            if ch["name"] not in observations:
                raise ModelError(f"no observed data for binned channel {ch['name']!r}")
            d = np.asarray(observations[ch["name"]], dtype=float)
            if d.shape != (offsets[ch["name"]][1],):
                raise ModelError(
                    f"observed data for channel {ch['name']!r} has {d.size} bins, expected {offsets[ch['name']][1]}"
                )
            obs.append(d)
        self.observations = np.concatenate(obs)

        nominal = np.zeros((R, B))
        mult_idx: list[list[list[int]]] = [[[] for _ in range(B)] for _ in range(R)]
        alpha_names = alpha_parameters(parsets)
        col = {n: j for j, n in enumerate(alpha_names)}
        P = len(alpha_names)
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
                sl = par_slices[name]
                if k in ("normfactor", "lumi"):
                    for b in range(o, o + nb):
                        mult_idx[r][b].append(sl.start)
                elif k in ("staterror", "shapesys", "shapefactor"):
                    for j, b in enumerate(range(o, o + nb)):
                        mult_idx[r][b].append(sl.start + j)
                elif k == "histosys":
                    hi = np.asarray(m["data"]["hi_data"], float)
                    lo = np.asarray(m["data"]["lo_data"], float)
                    hs_up[r, col[name], o : o + nb] += hi - nom
                    hs_dn[r, col[name], o : o + nb] += nom - lo
                    has_hs[col[name]] = True
        self._normsys = NormsysFactors.collect([s for _, s in rows], parsets, par_slices)
        maxm = max(1, max(len(x) for row in mult_idx for x in row))
        one = npars  # index of an appended constant 1
        mi = np.full((R, B, maxm), one, dtype=int)
        for r in range(R):
            for b in range(B):
                mi[r, b, : len(mult_idx[r][b])] = mult_idx[r][b]
        self._nominal = nominal
        self._mult_idx = mi
        self._hs_par = np.array([par_slices[n].start for n in alpha_names], dtype=int)[has_hs]
        self._hs_up, self._hs_dn = hs_up[:, has_hs, :], hs_dn[:, has_hs, :]
        self._morph = morph

    def __len__(self) -> int:
        """Number of (channel, sample) rows."""
        return len(self.rows)

    def _shifts(self, a):
        """Code-4p histosys shifts (rows, histosys parameters, bins) at their values ``a``."""
        return code4p_delta(a[None, :, None], jnp.asarray(self._hs_up), jnp.asarray(self._hs_dn), xp=jnp)

    def _gathered(self, p):
        """The per-bin parameter factors (normfactor, lumi, staterror, shapesys, shapefactor)
        gathered into (rows, bins, slots): their product is the bin's factor (unused slots 1)."""
        pext = jnp.concatenate([p, jnp.ones(1, dtype=p.dtype)])
        return pext[self._mult_idx]

    def _row_factors(self, p):
        """Per-row factors (rows,): the normsys code-4 products times the morphing coefficients."""
        fac = jnp.ones(len(self.rows), dtype=p.dtype)
        if len(self._normsys):
            fac = fac * self._normsys.product(p)
        if any(e is not None for e in self._morph):
            morph = [self._morphing.value(e, p, self._par_slices) for e in self._morph]
            fac = fac * jnp.stack([jnp.asarray(v, dtype=p.dtype) for v in morph])
        return fac

    def rates(self, p):
        """Expected counts per (row, bin) following pyhf: (nominal + sum deltas) * prod factors."""
        nom = jnp.asarray(self._nominal)
        if len(self._hs_par):
            nom = nom + jnp.sum(self._shifts(p[self._hs_par]), axis=1)
        return nom * jnp.prod(self._gathered(p), axis=-1) * self._row_factors(p)[:, None]

    def logpdf(self, p, obs=None):
        """Sum of the Poisson log-probabilities of the observed (or given ``obs``) counts."""
        if not self.rows:
            return 0.0
        lam = jnp.sum(self.rates(p), axis=0)
        return jnp.sum(poisson_logpdf(jnp.asarray(self.observations if obs is None else obs), lam))

    def logpdf_grad_hessian(self, p, obs=None):
        """:meth:`logpdf`, its gradient and its exact Hessian (pure JAX, ``vmap``-able).

        The rate of row r in bin b is N_rb G_rb T_r: N the histosys-shifted nominal, G the
        product of the per-bin parameter factors (:meth:`_gathered`), T the per-row factors
        (:meth:`_row_factors`); lam_b = sum_r N_rb G_rb T_r. ln L = sum_b n_b ln lam_b - lam_b
        + const has gradient sum_b c_b dlam_b and Hessian sum_b (c_b d2lam_b - n_b/lam_b^2
        dlam_b dlam_b^T), c_b = n_b/lam_b - 1. Every piece is assembled from its structure:

        * a histosys shift depends on its own alpha only: its first and second derivatives
          D1, D2 (rows, histosys, bins) come from one forward pass each;
        * G is a product of gathered parameters: its derivatives are leave-one-out and
          leave-two-out products of the slots, scattered once to the parameters they belong to;
        * T is per row (rows,), cheap to differentiate by autodiff.

        Forward-over-reverse autodiff of the whole rate instead costs parameters x rows x
        bins x (histosys + slots) and dominated the binned fits (0.1-0.5 s per Hessian for
        the 66-251-parameter workspaces of benchmarks/bench_cli.py). Tested against it to
        1e-12 (tests/test_model.py)."""
        P = p.shape[0]
        if not self.rows:
            z = jnp.zeros(P, dtype=p.dtype)
            return jnp.zeros((), dtype=p.dtype), z, jnp.zeros((P, P), dtype=p.dtype)
        n = jnp.asarray(self.observations if obs is None else obs, dtype=p.dtype)
        R, B, K = self._mult_idx.shape
        mi = self._mult_idx  # (R, B, K) parameter index per slot; P is the constant 1
        bidx = np.broadcast_to(np.arange(B)[None, :, None], mi.shape)
        ridx = np.broadcast_to(np.arange(R)[:, None, None], mi.shape)
        N = jnp.asarray(self._nominal)
        hs = self._hs_par
        if len(hs):
            ones = jnp.ones(len(hs), dtype=p.dtype)

            def d1(x):
                return jax.jvp(self._shifts, (x,), (ones,))

            (shift, D1), (_, D2) = jax.jvp(d1, (p[hs],), (ones,))
            N = N + jnp.sum(shift, axis=1)
        x = self._gathered(p)  # (R, B, K)
        eye = np.eye(K, dtype=bool)
        L = jnp.stack([jnp.prod(jnp.where(eye[k], 1.0, x), axis=-1) for k in range(K)], axis=-1)
        G = jnp.prod(x, axis=-1)
        T = self._row_factors(p)
        JT = jax.jacfwd(self._row_factors)(p)  # (R, P)
        F = G * T[:, None]
        lam = jnp.sum(N * F, axis=0)
        ratio = jnp.where(n > 0, n / lam, 0.0)
        c = ratio - 1.0

        def to_params(shape, index, values):  # scatter-add onto parameter columns, drop the constant
            return jnp.zeros(shape + (P + 1,), dtype=p.dtype).at[index].add(values)[..., :P]

        # dlam_b/dp (B, P)
        J = to_params((B,), (bidx, mi), (N * T[:, None])[..., None] * L)
        J = J + jnp.einsum("rb,rp->bp", N * G, JT)
        if len(hs):
            J = J.at[:, hs].add(jnp.einsum("rb,rjb->bj", F, D1))
        value = jnp.sum(poisson_logpdf(n, lam))
        grad = J.T @ c
        hess = -(J * (ratio / lam)[:, None]).T @ J
        # sum_b c_b d2lam_b, with w = c N
        w = c[None, :] * N
        if K > 1:  # G: leave-two-out products for every pair of distinct slots
            pairs = [(k, q) for k in range(K) for q in range(K) if k != q]
            LL = jnp.stack([jnp.prod(jnp.where(eye[k] | eye[q], 1.0, x), axis=-1) for k, q in pairs], axis=-1)
            vals = (w * T[:, None])[..., None] * LL
            rows = np.stack([mi[..., k] for k, _ in pairs], axis=-1)
            cols = np.stack([mi[..., q] for _, q in pairs], axis=-1)
            hess = hess + jnp.zeros((P + 1, P + 1), dtype=p.dtype).at[rows, cols].add(vals)[:P, :P]
        A = to_params((R,), (ridx, mi), w[..., None] * L)  # (R, P): sum_b w dG/dp
        cross = A.T @ JT
        hess = hess + cross + cross.T
        u = jax.lax.stop_gradient(jnp.sum(w * G, axis=1))
        hess = hess + jax.hessian(lambda q: jnp.dot(u, self._row_factors(q)))(p)
        if len(hs):
            Dc = c[None, None, :] * D1  # (R, Ph, B)
            X = jnp.einsum("rjb,rb,rp->jp", Dc, G, JT)
            vals = jnp.einsum("rjb,r,rbk->jrbk", Dc, T, L)
            X = X + jnp.zeros((len(hs), P + 1), dtype=p.dtype).at[:, mi].add(vals)[:, :P]
            hess = hess.at[hs, :].add(X).at[:, hs].add(X.T)
            hess = hess.at[hs, hs].add(jnp.einsum("b,rb,rjb->j", c, F, D2))
        return value, grad, hess

    def expected(self, pars) -> dict[str, dict[str, np.ndarray]]:
        """Expected counts per channel and sample at ``pars``."""
        rates = np.asarray(self.rates(jnp.asarray(pars, dtype=float))) if self.rows else None
        out: dict[str, dict[str, np.ndarray]] = {}
        for r, (ch, s) in enumerate(self.rows):
            o, nb = self.offsets[ch]
            out.setdefault(ch, {})[s] = rates[r, o : o + nb]
        return out
