"""Extended unbinned channels: per-event arrays, yields and shape normalisation.

One :class:`UnbinnedChannel` per unbinned channel of the workspace holds the
theta-independent per-event arrays (stacked in event chunks for the kernels of
:mod:`nsbi.model.kernels`) and computes the channel's term of ln L,
``sum_i w_i ln S_i(theta) - sum_c y_c(theta)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nsbi.jax_setup import jnp

from .errors import ModelError
from .interpolation import code4_mean
from .kernels import events_kernel, events_term
from .modifiers import NormsysFactors
from .morphing import MorphingCoefficients
from .parameters import ParameterSet

__all__ = ["UnbinnedChannel", "event_columns"]


def event_columns(process: str, systematic: str | None = None) -> tuple[str, ...]:
    """Column names in per-event files: ``logr_{process}``, ``logr_{process}__{syst}_up/_down``."""
    if systematic is None:
        return (f"logr_{process}",)
    return (f"logr_{process}__{systematic}_up", f"logr_{process}__{systematic}_down")


def _chunk_layout(x: np.ndarray, chunk: int, fill: float) -> np.ndarray:
    """(..., N) -> (nchunks, ..., chunk), padding the tail with ``fill``."""
    n = x.shape[-1]
    nch = max(1, -(-n // chunk))
    pad = nch * chunk - n
    if pad:
        x = np.concatenate([x, np.full(x.shape[:-1] + (pad,), fill, dtype=x.dtype)], axis=-1)
    x = x.reshape(x.shape[:-1] + (nch, chunk))
    return np.ascontiguousarray(np.moveaxis(x, -2, 0))


class UnbinnedChannel:
    """Stacked, theta-independent per-event arrays for one unbinned channel.

    Public attributes: ``name``; ``samples`` (process names, C); ``shape_names`` (eventsys
    names, K) and ``shape_par`` (their parameter indices); ``n_events``; ``sumw`` (sum of the
    event weights); ``has_shape_norm`` (some eventsys carries ``data.norm``) and ``arrays``,
    the device arrays read by the kernels, laid out as event chunks (nchunks, ..., chunk):
    ``w``; ``r`` (C) = exp(log r); per shape systematic k and process c: ``lu``/``ld`` =
    log g_up/down and ``gu``/``gd`` = g_up/down (0 and 1 for processes without k, giving a
    factor of exactly 1; padding events have w = 0). Inside |alpha_k| <= 1 the code-4 factor
    is a few multiply-adds per event; the value and gradient are computed together in one
    pass (custom VJP), see :func:`nsbi.model.kernels.events_kernel`.
    """

    CHUNK = 1024  # events per chunk: ~0.4 MB of arrays at 4 processes x 3 systematics (L2 resident)

    def __init__(
        self,
        ch: Mapping,
        events: Mapping[str, Any],
        parsets: Sequence[ParameterSet],
        par_slices: Mapping[str, slice],
        npars: int,
        morphing: MorphingCoefficients,
    ):
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
        mult = [[] for _ in range(C)]
        for c, s in enumerate(samples):
            for m in s.get("modifiers", []):
                if m["type"] in ("normfactor", "lumi"):
                    mult[c].append(par_slices[m["name"]].start)
        self._normsys = NormsysFactors.collect(samples, parsets, par_slices)
        maxm = max(1, max(len(x) for x in mult))
        mi = np.full((C, maxm), npars, dtype=int)
        for c in range(C):
            mi[c, : len(mult[c])] = mult[c]
        self._mult_idx = mi
        self._nu = np.array([float(s["yield"]) for s in samples])
        self._morph = [s.get("morphing") for s in samples]
        self._morphing = morphing
        self._par_slices = par_slices
        self.samples = [s["name"] for s in samples]
        self.shape_par = np.array([par_slices[n].start for n in shape_names], dtype=int)
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
        self._norm_log, self._norm_p = jnp.asarray(L), jnp.asarray(P)

    def shape_norms(self, p):
        """N_ck(alpha_k) = E_c[g_ck(alpha_k)], (K, C); only with ``has_shape_norm``."""
        alpha = p[self.shape_par]
        L, P = self._norm_log, self._norm_p
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
        y = jnp.asarray(self._nu) * jnp.prod(pext[self._mult_idx], axis=-1)
        if len(self._normsys):
            y = y * self._normsys.product(p)
        if any(e is not None for e in self._morph):
            y = y * jnp.stack(
                [jnp.asarray(self._morphing.value(e, p, self._par_slices), dtype=p.dtype) for e in self._morph]
            )
        return y

    def logl(self, p, d=None, custom_grad: bool = True):
        """sum_i w_i ln S_i(theta) - sum_c y_c(theta) (``d``: event arrays, default :attr:`arrays`).

        ``custom_grad=False`` differentiates the event scan by plain autodiff (forward mode,
        Hessians, gradients w.r.t. ``d``)."""
        d = self.arrays if d is None else d
        y = self.yields(p)
        ye = self.event_yields(p)
        alpha = p[self.shape_par] if len(self.shape_par) else jnp.zeros(0, dtype=p.dtype)
        if custom_grad:
            ev = events_term(ye, alpha, d)
        else:  # plain autodiff (supports forward mode, used for Hessians)
            ev = events_kernel(ye, alpha, d, False, True)
        return ev - jnp.sum(y)
