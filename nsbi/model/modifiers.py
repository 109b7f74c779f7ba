"""Modifiers: the allowed types, the parameters they register, and the ``normsys`` factors.

:func:`register_modifier` / :func:`register_staterror` turn the modifiers of the workspace
into parameter sets (pyhf's rules: shapesys gets a Poisson constraint with tau = (nom/unc)^2,
staterror one Gaussian per bin with the relative uncertainty of the summed samples).
:class:`NormsysFactors` collects the ``normsys`` kappas of a list of samples (binned rows or
the processes of an unbinned channel) and evaluates their code-4 yield factors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .arrays import jnp, scatter_add
from .errors import ModelError
from .interpolation import code4_from_logs, code4_from_logs_derivatives
from .parameters import ALPHA_KINDS, ParameterRegistry, ParameterSet

__all__ = [
    "BINNED_MODIFIERS",
    "UNBINNED_MODIFIERS",
    "NormsysFactors",
    "alpha_parameters",
    "register_modifier",
    "register_staterror",
    "staterror_layout",
]

BINNED_MODIFIERS = ("normfactor", "normsys", "histosys", "staterror", "shapesys", "lumi", "shapefactor")
UNBINNED_MODIFIERS = ("normfactor", "normsys", "lumi", "eventsys")


def register_modifier(reg: ParameterRegistry, ch: Mapping, s: Mapping, m: Mapping, nb: int) -> None:
    """Register the parameter of modifier ``m`` of sample ``s`` in channel ``ch`` (``nb`` bins;
    staterror is registered per channel by :func:`register_staterror`)."""
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
        pass  # needs all samples of the channel: see register_staterror


def staterror_layout(binned_channels: Sequence[Mapping]) -> dict[str, dict[str, int]]:
    """Where each channel's bins sit in its staterror parameter set: ``{name: {channel:
    offset}}``. As in pyhf, one staterror name may span several channels: its parameter set
    has one gamma per bin of every channel that uses it, channel after channel."""
    layout: dict[str, dict[str, int]] = {}
    size: dict[str, int] = {}
    for ch in binned_channels:
        nb = len(ch["samples"][0]["data"])
        names = dict.fromkeys(
            m["name"] for s in ch["samples"] for m in s.get("modifiers", []) if m["type"] == "staterror"
        )
        for name in names:
            layout.setdefault(name, {})[ch["name"]] = size.get(name, 0)
            size[name] = size.get(name, 0) + nb
    return layout


def register_staterror(reg: ParameterRegistry, binned_channels: Sequence[Mapping]) -> None:
    """Register the staterror parameters of the binned channels (one gamma per bin of every
    channel using a name, :func:`staterror_layout`)."""
    # pyhf: per bin, sigma_b^2 = sum_s delta_sb^2 / (sum_{s with the modifier} nu_sb)^2
    sigmas: dict[str, list[np.ndarray]] = {}
    for ch in binned_channels:
        groups: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        for s in ch["samples"]:
            for m in s.get("modifiers", []):
                if m["type"] == "staterror":
                    groups.setdefault(m["name"], []).append(
                        (np.asarray(s["data"], float), np.asarray(m["data"], float))
                    )
        for name, items in groups.items():
            nomsum = np.sum([n for n, _ in items], axis=0)
            safe = np.where(nomsum > 0, nomsum, 1.0)
            rel2 = np.sum([np.where(nomsum > 0, (u / safe) ** 2, 0.0) for _, u in items], axis=0)
            sigmas.setdefault(name, []).append(np.sqrt(rel2))
    for name, parts in sigmas.items():
        sig = np.concatenate(parts)
        fixed = sig == 0
        sig = np.where(fixed, 1.0, sig)
        reg.add(
            name,
            "staterror",
            len(sig),
            constraint="normal",
            auxdata=[1.0] * len(sig),
            sigmas=sig.tolist(),
            fixed=fixed.tolist(),
        )


def alpha_parameters(parsets: Sequence[ParameterSet]) -> list[str]:
    """Names of the normsys/histosys/eventsys parameters (one alpha each), in parameter order."""
    return [ps.name for ps in parsets if ps.kind in ALPHA_KINDS]


@dataclass(eq=False)
class NormsysFactors:
    """Code-4 yield factors ``prod_j I(alpha_j; kappa_up, kappa_down)`` of a list of samples.

    ``par``: parameter indices of the alphas with a ``normsys`` on at least one sample;
    ``log_ku`` / ``log_kd``: (samples, len(par)) ln kappa (0 where a sample has none; several
    modifiers of one name on one sample multiply).
    """

    par: np.ndarray
    log_ku: np.ndarray
    log_kd: np.ndarray

    @classmethod
    def collect(
        cls, samples: Sequence[Mapping], parsets: Sequence[ParameterSet], par_slices: Mapping[str, slice]
    ) -> NormsysFactors:
        """The normsys modifiers of ``samples`` (sample dicts, in row order)."""
        names = alpha_parameters(parsets)
        col = {n: j for j, n in enumerate(names)}
        log_ku = np.zeros((len(samples), len(names)))
        log_kd = np.zeros((len(samples), len(names)))
        for r, s in enumerate(samples):
            for m in s.get("modifiers", []):
                if m["type"] != "normsys":
                    continue
                hi, lo = float(m["data"]["hi"]), float(m["data"]["lo"])
                if hi <= 0 or lo <= 0:
                    raise ModelError(f"normsys {m['name']!r} on sample {s['name']!r}: hi/lo must be > 0")
                log_ku[r, col[m["name"]]] += math.log(hi)
                log_kd[r, col[m["name"]]] += math.log(lo)
        used = np.any(log_ku != 0, axis=0) | np.any(log_kd != 0, axis=0)
        par = np.array([par_slices[n].start for n in names], dtype=int)[used]
        return cls(par, log_ku[:, used], log_kd[:, used])

    def __len__(self) -> int:
        return len(self.par)

    def product(self, p, xp=jnp):
        """Per-sample factor (samples,) at the parameter vector ``p``; use only if ``len(self)``."""
        a = p[self.par][None, :]
        return xp.prod(code4_from_logs(a, xp.asarray(self.log_ku), xp.asarray(self.log_kd), xp=xp), axis=1)

    def derivatives(self, p, xp=jnp):
        """The per-sample factors T (samples,), their Jacobian dT/dp (samples, len(p)) and what
        :meth:`weighted_hessian` needs, in closed form (:func:`code4_from_logs_derivatives`).

        T = prod_j f_j with f_j depending on alpha_j only: dT/dalpha_j = f'_j L_j with the
        leave-one-out products L_j = prod_{k != j} f_k (from running products, no division)."""
        a = p[self.par][None, :]
        f, f1, f2 = code4_from_logs_derivatives(a, xp.asarray(self.log_ku), xp.asarray(self.log_kd), xp=xp)
        ones = xp.ones_like(f[:, :1])
        before = xp.cumprod(xp.concatenate([ones, f[:, :-1]], axis=1), axis=1)
        after = xp.flip(xp.cumprod(xp.concatenate([ones, xp.flip(f[:, 1:], axis=1)], axis=1), axis=1), axis=1)
        loo = before * after
        T = loo[:, 0] * f[:, 0]
        J = scatter_add((f.shape[0], p.shape[0]), (slice(None), self.par), f1 * loo, xp, p.dtype)
        return T, J, (f, f1, f2, loo)

    def weighted_hessian(self, parts, u, npars: int, xp=jnp):
        """sum_s u_s d2T_s/dp dp^T (npars, npars) from the ``parts`` of :meth:`derivatives`:
        f''_j L_j on the diagonal, f'_j f'_k L_j / f_k = f'_j f'_k prod_{l != j, k} f_l off it.

        The division assumes f_k != 0: a code-4 factor is positive except for kappas far
        outside any published use (kappa_up = 0.001 with kappa_down = 1000), and exactly zero
        only at isolated alpha."""
        f, f1, f2, loo = parts
        A = (u[:, None] * f1 * loo).T @ (f1 / f)  # (Pn, Pn), symmetric
        diag = xp.sum(u[:, None] * f2 * loo, axis=0)
        eye = np.eye(len(self.par), dtype=bool)
        H = xp.where(eye, diag[None, :], A)
        return scatter_add((npars, npars), (self.par[:, None], self.par[None, :]), H, xp, f.dtype)
