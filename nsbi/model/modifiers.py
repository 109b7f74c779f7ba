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

from nsbi.jax_setup import jnp

from .errors import ModelError
from .interpolation import code4_from_logs
from .parameters import ALPHA_KINDS, ParameterRegistry, ParameterSet

__all__ = [
    "BINNED_MODIFIERS",
    "UNBINNED_MODIFIERS",
    "NormsysFactors",
    "alpha_parameters",
    "register_modifier",
    "register_staterror",
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


def register_staterror(reg: ParameterRegistry, binned_channels: Sequence[Mapping]) -> None:
    """Register the staterror parameters of the binned channels (one name per channel)."""
    # pyhf: per bin, sigma_b^2 = sum_s delta_sb^2 / (sum_{s with the modifier} nu_sb)^2
    for ch in binned_channels:
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

    def product(self, p):
        """Per-sample factor (samples,) at the parameter vector ``p`` (JAX); use only if ``len(self)``."""
        a = p[self.par][None, :]
        return jnp.prod(code4_from_logs(a, jnp.asarray(self.log_ku), jnp.asarray(self.log_kd), xp=jnp), axis=1)
