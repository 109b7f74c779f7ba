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

from nsbi.jax_setup import jnp

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

    def rates(self, p):
        """Expected counts per (row, bin) following pyhf: (nominal + sum deltas) * prod factors."""
        nom = jnp.asarray(self._nominal)
        if len(self._hs_par):
            a = p[self._hs_par]  # (Ph,)
            d = code4p_delta(a[None, :, None], jnp.asarray(self._hs_up), jnp.asarray(self._hs_dn), xp=jnp)
            nom = nom + jnp.sum(d, axis=1)
        pext = jnp.concatenate([p, jnp.ones(1, dtype=p.dtype)])
        fac = jnp.prod(pext[self._mult_idx], axis=-1)
        if len(self._normsys):
            fac = fac * self._normsys.product(p)[:, None]
        morph = [self._morphing.value(e, p, self._par_slices) for e in self._morph]
        if any(e is not None for e in self._morph):
            fac = fac * jnp.stack([jnp.asarray(v, dtype=p.dtype) for v in morph])[:, None]
        return nom * fac

    def logpdf(self, p, obs=None):
        """Sum of the Poisson log-probabilities of the observed (or given ``obs``) counts."""
        if not self.rows:
            return 0.0
        lam = jnp.sum(self.rates(p), axis=0)
        return jnp.sum(poisson_logpdf(jnp.asarray(self.observations if obs is None else obs), lam))

    def expected(self, pars) -> dict[str, dict[str, np.ndarray]]:
        """Expected counts per channel and sample at ``pars``."""
        rates = np.asarray(self.rates(jnp.asarray(pars, dtype=float))) if self.rows else None
        out: dict[str, dict[str, np.ndarray]] = {}
        for r, (ch, s) in enumerate(self.rows):
            o, nb = self.offsets[ch]
            out.setdefault(ch, {})[s] = rates[r, o : o + nb]
        return out
