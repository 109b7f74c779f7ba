"""Binned HistFactory channels (pyhf semantics): expected rates and the Poisson term.

All binned channels of a model are stacked: each *row* is a (channel, sample) pair, the bins
of all channels are concatenated (``offsets``), and each *entry* is one bin of one row (a
row has entries only in the bins of its own channel, so a model with many channels costs
samples x bins, not rows x all bins). The rate of an entry is ``(nominal + sum_j code4p
deltas) * prod(normfactor, lumi, staterror, shapesys, shapefactor) * prod_j code4(normsys)
* morphing``, exactly as in ``pyhf.Model``; a bin's expectation is the sum of its entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .arrays import is_jax, jax, jnp, scatter_add, segment_sum
from .errors import ModelError
from .interpolation import code4p_delta, code4p_delta_derivatives
from .modifiers import NormsysFactors, alpha_parameters, staterror_layout
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
        if not rows:
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

        stat_offset = staterror_layout(channels)
        alpha_names = alpha_parameters(parsets)
        col = {n: j for j, n in enumerate(alpha_names)}
        # entries: one per (row, bin of the row's channel)
        e_row, e_bin, nominal, mult, hs_up, hs_dn = [], [], [], [], [], []
        has_hs = np.zeros(len(alpha_names), dtype=bool)
        for r, (ch, s) in enumerate(rows):
            o, nb = offsets[ch["name"]]
            nom = np.asarray(s["data"], float)
            up, dn = np.zeros((nb, len(alpha_names))), np.zeros((nb, len(alpha_names)))
            fac: list[list[int]] = [[] for _ in range(nb)]
            for m in s.get("modifiers", []):
                k, name = m["type"], m["name"]
                sl = par_slices[name]
                if k in ("normfactor", "lumi"):
                    for j in range(nb):
                        fac[j].append(sl.start)
                elif k in ("staterror", "shapesys", "shapefactor"):
                    first = sl.start + (stat_offset[name][ch["name"]] if k == "staterror" else 0)
                    for j in range(nb):
                        fac[j].append(first + j)
                elif k == "histosys":
                    up[:, col[name]] += np.asarray(m["data"]["hi_data"], float) - nom
                    dn[:, col[name]] += nom - np.asarray(m["data"]["lo_data"], float)
                    has_hs[col[name]] = True
            e_row += [r] * nb
            e_bin += list(range(o, o + nb))
            nominal.append(nom)
            mult += fac
            hs_up.append(up)
            hs_dn.append(dn)
        slots = max(1, max(len(f) for f in mult))
        mi = np.full((len(mult), slots), npars, dtype=int)  # npars: an appended constant 1
        for e, f in enumerate(mult):
            mi[e, : len(f)] = f
        self._e_row = np.array(e_row, dtype=int)
        self._e_bin = np.array(e_bin, dtype=int)
        self._nominal = np.concatenate(nominal)
        self._mult_idx = mi
        self._hs_par = np.array([par_slices[n].start for n in alpha_names], dtype=int)[has_hs]
        self._hs_up = np.concatenate(hs_up)[:, has_hs]
        self._hs_dn = np.concatenate(hs_dn)[:, has_hs]
        self._normsys = NormsysFactors.collect([s for _, s in rows], parsets, par_slices)
        self._morph = [s.get("morphing") for _, s in rows]

    def __len__(self) -> int:
        """Number of (channel, sample) rows."""
        return len(self.rows)

    @property
    def has_morphing(self) -> bool:
        """Whether some row carries a morphing coefficient (evaluated with JAX only)."""
        return any(e is not None for e in self._morph)

    def _gathered(self, p, xp):
        """The per-bin parameter factors (normfactor, lumi, staterror, shapesys, shapefactor)
        gathered into (entries, slots): their product is the entry's factor (unused slots 1)."""
        pext = xp.concatenate([p, xp.ones(1, dtype=p.dtype)])
        return pext[self._mult_idx]

    def _morph_factors(self, p):
        """Per-row morphing coefficients (rows,), JAX (autodiff gives their derivatives)."""
        morph = [self._morphing.value(e, p, self._par_slices) for e in self._morph]
        return jnp.stack([jnp.asarray(v, dtype=p.dtype) for v in morph])

    def _check_backend(self, xp) -> None:
        if self.has_morphing and not is_jax(xp):
            raise ModelError("binned samples with morphing coefficients are evaluated with JAX only")

    def _row_factors(self, p, xp=jnp):
        """Per-row factors (rows,): the normsys code-4 products times the morphing coefficients."""
        self._check_backend(xp)
        fac = xp.ones(len(self.rows), dtype=p.dtype)
        if len(self._normsys):
            fac = fac * self._normsys.product(p, xp)
        if self.has_morphing:
            fac = fac * self._morph_factors(p)
        return fac

    def _row_factor_derivatives(self, p, xp):
        """The per-row factors T (rows,), their Jacobian (rows, P) and a function
        ``u -> sum_r u_r d2T_r/dp dp^T`` (P, P): the normsys products in closed form
        (:meth:`NormsysFactors.derivatives`), the morphing coefficients by autodiff, joined by
        the product rule."""
        self._check_backend(xp)
        R, P = len(self.rows), p.shape[0]
        ns = self._normsys
        if len(ns):
            NS, JNS, parts = ns.derivatives(p, xp)
        else:
            NS, JNS, parts = xp.ones(R, dtype=p.dtype), xp.zeros((R, P), dtype=p.dtype), None

        def normsys_hessian(u):
            return ns.weighted_hessian(parts, u, P, xp) if len(ns) else xp.zeros((P, P), dtype=p.dtype)

        if not self.has_morphing:
            return NS, JNS, normsys_hessian
        MO = self._morph_factors(p)
        JMO = jax.jacfwd(self._morph_factors)(p)

        def row_hessian(u):
            uNS = jax.lax.stop_gradient(u * NS)
            H = jax.hessian(lambda q: jnp.dot(uNS, self._morph_factors(q)))(p)
            C = JNS.T @ (u[:, None] * JMO)
            return H + C + C.T + normsys_hessian(u * MO)

        return NS * MO, JNS * MO[:, None] + NS[:, None] * JMO, row_hessian

    def _bin_sum(self, values, xp):
        """Sum per bin of per-entry values (entries, ...) -> (nbins, ...)."""
        return segment_sum(values, self._e_bin, self.nbins, xp)

    def _entry_rates(self, p, xp):
        """Expected counts per entry."""
        nom = xp.asarray(self._nominal)
        if len(self._hs_par):
            a = p[self._hs_par][None, :]
            nom = nom + xp.sum(code4p_delta(a, xp.asarray(self._hs_up), xp.asarray(self._hs_dn), xp=xp), axis=1)
        return nom * xp.prod(self._gathered(p, xp), axis=-1) * self._row_factors(p, xp)[self._e_row]

    def rates(self, p, xp=jnp):
        """Expected counts per (row, bin) following pyhf (0 outside a row's channel)."""
        return scatter_add(
            (len(self.rows), self.nbins), (self._e_row, self._e_bin), self._entry_rates(p, xp), xp, p.dtype
        )

    def logpdf(self, p, obs=None, xp=jnp):
        """Sum of the Poisson log-probabilities of the observed (or given ``obs``) counts."""
        if not self.rows:
            return 0.0
        lam = self._bin_sum(self._entry_rates(p, xp), xp)
        return xp.sum(poisson_logpdf(xp.asarray(self.observations if obs is None else obs), lam, xp))

    def logpdf_grad_hessian(self, p, obs=None, xp=jnp, hessian=True):
        """:meth:`logpdf`, its gradient and its exact Hessian (``None`` with ``hessian=False``),
        with numpy or JAX (``xp``; pure and ``vmap``-able with JAX).

        The rate of entry e (row r, bin b) is N_e G_e T_r: N the histosys-shifted nominal, G
        the product of the per-bin parameter factors (:meth:`_gathered`), T the per-row
        factors (:meth:`_row_factors`); lam_b sums the entries of bin b. ln L = sum_b n_b ln
        lam_b - lam_b + const has gradient sum_b c_b dlam_b and Hessian sum_b (c_b d2lam_b -
        n_b/lam_b^2 dlam_b dlam_b^T), c_b = n_b/lam_b - 1. Every piece is assembled from its
        structure:

        * a histosys shift depends on its own alpha only: its first and second derivatives
          D1, D2 (entries, histosys) in closed form (:func:`code4p_delta_derivatives`);
        * G is a product of gathered parameters: its derivatives are leave-one-out and
          leave-two-out products of the slots, scattered once to the parameters they belong to;
        * T is per row (rows,): the normsys products in closed form, morphing by autodiff
          (:meth:`_row_factor_derivatives`).

        Forward-over-reverse autodiff of the whole rate instead costs parameters x entries x
        (histosys + slots) and dominated the binned fits (0.1-0.5 s per Hessian for the
        66-251-parameter workspaces of benchmarks/bench_cli.py). Tested against it to 1e-10
        (tests/test_model.py)."""
        P = p.shape[0]
        if not self.rows:
            z = xp.zeros(P, dtype=p.dtype)
            return xp.zeros((), dtype=p.dtype), z, (xp.zeros((P, P), dtype=p.dtype) if hessian else None)
        n = xp.asarray(self.observations if obs is None else obs, dtype=p.dtype)
        E, K = self._mult_idx.shape
        mi, er, eb = self._mult_idx, self._e_row, self._e_bin  # mi: parameter per slot; P = the constant 1
        N = xp.asarray(self._nominal)
        hs = self._hs_par
        if len(hs):
            a = p[hs][None, :]
            shift, D1, D2 = code4p_delta_derivatives(a, xp.asarray(self._hs_up), xp.asarray(self._hs_dn), xp=xp)
            N = N + xp.sum(shift, axis=1)  # D1, D2: (E, Ph)
        x = self._gathered(p, xp)  # (E, K)
        eye = np.eye(K, dtype=bool)
        L = xp.stack([xp.prod(xp.where(eye[k], 1.0, x), axis=-1) for k in range(K)], axis=-1)
        G = xp.prod(x, axis=-1)
        T, JT, row_hessian = self._row_factor_derivatives(p, xp)  # JT: (R, P)
        Te, JTe = T[er], JT[er]
        F = G * Te
        lam = self._bin_sum(N * F, xp)
        ratio = xp.where(n > 0, n / lam, 0.0)
        c = ratio - 1.0
        ce = c[eb]

        def to_params(shape, index, values):  # scatter-add onto parameter columns, drop the constant
            return scatter_add(shape + (P + 1,), index, values, xp, p.dtype)[..., :P]

        # dlam_b/dp (B, P)
        J = to_params((self.nbins,), (eb[:, None], mi), (N * Te)[:, None] * L)
        J = J + self._bin_sum((N * G)[:, None] * JTe, xp)
        if len(hs):
            J = J + scatter_add((self.nbins, P), (slice(None), hs), self._bin_sum(F[:, None] * D1, xp), xp, p.dtype)
        value = xp.sum(poisson_logpdf(n, lam, xp))
        grad = J.T @ c
        if not hessian:
            return value, grad, None
        hess = -(J * (ratio / lam)[:, None]).T @ J
        # sum_b c_b d2lam_b, with w = c N per entry
        w = ce * N
        if K > 1:  # G: leave-two-out products for every pair of distinct slots
            pairs = [(k, q) for k in range(K) for q in range(K) if k != q]
            LL = xp.stack([xp.prod(xp.where(eye[k] | eye[q], 1.0, x), axis=-1) for k, q in pairs], axis=-1)
            rows = np.stack([mi[:, k] for k, _ in pairs], axis=-1)
            cols = np.stack([mi[:, q] for _, q in pairs], axis=-1)
            hess = hess + scatter_add((P + 1, P + 1), (rows, cols), (w * Te)[:, None] * LL, xp, p.dtype)[:P, :P]
        A = to_params((len(self.rows),), (er[:, None], mi), w[:, None] * L)  # (R, P): sum_e w dG/dp
        cross = A.T @ JT
        hess = hess + cross + cross.T
        u = segment_sum(w * G, er, len(self.rows), xp)
        if is_jax(xp):
            u = jax.lax.stop_gradient(u)
        hess = hess + row_hessian(u)
        if len(hs):
            Dc = ce[:, None] * D1  # (E, Ph)
            X = (Dc * G[:, None]).T @ JTe
            X = (
                X
                + scatter_add(
                    (len(hs), P + 1), (slice(None), mi), (Dc * Te[:, None]).T[:, :, None] * L[None, :, :], xp, p.dtype
                )[:, :P]
            )
            hess = hess + scatter_add((P, P), (hs, slice(None)), X, xp, p.dtype)
            hess = hess + scatter_add((P, P), (slice(None), hs), X.T, xp, p.dtype)
            hess = hess + scatter_add((P, P), (hs, hs), xp.sum((ce * F)[:, None] * D2, axis=0), xp, p.dtype)
        return value, grad, hess

    def expected(self, pars) -> dict[str, dict[str, np.ndarray]]:
        """Expected counts per channel and sample at ``pars``."""
        xp = jnp if self.has_morphing else np
        rates = np.asarray(self.rates(xp.asarray(pars, dtype=float), xp)) if self.rows else None
        out: dict[str, dict[str, np.ndarray]] = {}
        for r, (ch, s) in enumerate(self.rows):
            o, nb = self.offsets[ch]
            out.setdefault(ch, {})[s] = rates[r, o : o + nb]
        return out
