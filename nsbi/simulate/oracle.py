"""Exact likelihood ("oracle") of the built-in simulator.

All densities are differential cross sections dsigma_c/dx in fb per unit of the ten generator
variables (see :mod:`nsbi.simulate.physics`), evaluated at events given as a mapping with the
columns ``m4l, mZ1, mZ2, cos_theta_star, cos_theta1, cos_theta2, phi, phi1, pt4l, y4l`` (numpy
arrays). Outside the support the density is 0 (log = -inf). The interference I is signed: its log
is nan where dsigma_I <= 0 (use :meth:`Oracle.dsigma` for the signed value); the same holds for
the electroweak interference VI.

Ratios of *normalised* densities (``norm=True``) are what a classifier trained on two samples
with equal total weight learns: p_num(x) / p_den(x) with p_c = (dsigma_c/dx) / sigma_c. Mixtures
are written as {process: coefficient}, e.g. {"S": 1, "B": 1, "I": 1} (= SBI at mu = 1); their
density is sum_c coeff_c dsigma_c/dx and their cross section sum_c coeff_c sigma_c.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import physics as ph


def _col(events, key):
    try:
        return np.asarray(events[key], dtype=float)
    except KeyError as exc:
        raise KeyError(f"events lack the column {key!r} (need {ph.FEATURES})") from exc


def dsigma(process: str, events, mu: float = 1.0) -> np.ndarray:
    """Signed dsigma/dx in fb (SBI, VSBI at signal strength ``mu``)."""
    fam = ph.family(process)
    m, m1, m2 = _col(events, "m4l"), _col(events, "mZ1"), _col(events, "mZ2")
    cs, c1, c2 = (
        _col(events, "cos_theta_star"),
        _col(events, "cos_theta1"),
        _col(events, "cos_theta2"),
    )
    phi, phi1 = _col(events, "phi"), _col(events, "phi1")
    pt, y = _col(events, "pt4l"), _col(events, "y4l")
    me = ph.matrix_element(process, m, cs, c1, c2, phi, mu=mu)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        rest = ph.bw_pdf(m1) * ph.bw_pdf(m2) * np.exp(ph.pt_logpdf(pt, fam) + ph.y_logpdf(y, fam))
        val = ph.norm_constants()[fam] * me * rest
    inside = (
        (m >= ph.M4L_MIN)
        & (m <= ph.M4L_MAX)
        & (np.abs(cs) <= 1)
        & (np.abs(c1) <= 1)
        & (np.abs(c2) <= 1)
        & (np.abs(phi) <= np.pi)
        & (np.abs(phi1) <= np.pi)
        & np.isfinite(y)
    )
    return np.where(inside, val, 0.0)


def _log(x):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(x)


class Oracle:
    """Exact densities, cross sections and likelihood ratios of the built-in simulator.

    ``lumi_ifb`` only enters :meth:`expected_yield`; all densities are cross sections in fb.
    """

    def __init__(self, lumi_ifb: float = 140.0):
        self.lumi_ifb = float(lumi_ifb)

    # -------------------------------------------------------------- cross sections
    @staticmethod
    def xsec(process: str, mu: float = 1.0, kfactor: float = 0.0, qcdscale: float = 0.0) -> float:
        """Total cross section in fb (see :func:`nsbi.simulate.physics.xsec`)."""
        return ph.xsec(process, mu=mu, kfactor=kfactor, qcdscale=qcdscale)

    def expected_yield(self, process: str, mu: float = 1.0, nuisances=None) -> float:
        """lumi * (1.017)^alpha_lumi * sigma(process | mu, kfactor, qcdscale)."""
        nuis = ph.check_nuisances(nuisances)
        lumi = self.lumi_ifb * (1.0 + ph.LUMI_REL) ** nuis["lumi"]
        return lumi * ph.xsec(process, mu=mu, kfactor=nuis["kfactor"], qcdscale=nuis["qcdscale"])

    def nu_total(self, mu: float = 1.0, nuisances=None, mu_v: float | None = None) -> float:
        """Expected total number of events (SBI at mu plus qqZZ, plus VSBI at ``mu_v`` when the
        electroweak production is part of the model)."""
        total = self.expected_yield("SBI", mu, nuisances) + self.expected_yield("qqZZ", mu, nuisances)
        if mu_v is not None:
            total += self.expected_yield("VSBI", mu_v, nuisances)
        return total

    # -------------------------------------------------------------- densities
    @staticmethod
    def dsigma(process: str, events, mu: float = 1.0) -> np.ndarray:
        return dsigma(process, events, mu=mu)

    @staticmethod
    def log_dsigma(process: str, events) -> np.ndarray:
        """log(dsigma_c/dx / fb); -inf outside the support, nan where dsigma_I <= 0."""
        return _log(dsigma(process, events))

    @staticmethod
    def log_dsigma_mu(events, mu: float, mu_v: float | None = None) -> np.ndarray:
        """log dsigma/dx of the gg model at signal strength mu: mu S + sqrt(mu) I + B; with
        ``mu_v``, plus the electroweak model mu_V VS + sqrt(mu_V) VI + VB."""
        val = dsigma("SBI", events, mu=mu)
        if mu_v is not None:
            val = val + dsigma("VSBI", events, mu=mu_v)
        return _log(val)

    @staticmethod
    def _mixture(spec) -> dict:
        if isinstance(spec, str):
            ph.check_process(spec)
            return {spec: 1.0}
        if isinstance(spec, Mapping):
            if not spec:
                raise ValueError("empty mixture")
            return {ph.check_process(k): float(v) for k, v in spec.items()}
        raise TypeError(f"expected a process name or a {{process: coefficient}} mapping, got {spec!r}")

    def _mix_dsigma(self, spec, events):
        mix = self._mixture(spec)
        return sum(c * dsigma(p, events) for p, c in mix.items())

    def _mix_xsec(self, spec, region_xsec=None):
        mix = self._mixture(spec)
        xs = {} if region_xsec is None else dict(region_xsec)
        total = 0.0
        for p, c in mix.items():
            total += c * (float(xs[p]) if p in xs else ph.xsec(p))
        if not total > 0:
            raise ValueError(f"mixture {mix} has a non-positive cross section {total}")
        return total

    def log_ratio(self, num, den, events, norm: bool = True, region_xsec: Mapping | None = None) -> np.ndarray:
        """log(p_num(x) / p_den(x)); ``num`` / ``den``: process name or {process: coefficient}.

        ``norm=True`` divides each density by its total cross section (ratio of normalised pdfs,
        what a classifier learns); ``region_xsec`` ({process: sigma in fb}) overrides the total
        cross sections, e.g. with the cross sections inside a selected region.
        """
        lr = _log(self._mix_dsigma(num, events)) - _log(self._mix_dsigma(den, events))
        if norm:
            lr = lr - np.log(self._mix_xsec(num, region_xsec)) + np.log(self._mix_xsec(den, region_xsec))
        return lr

    def log_syst_ratio(self, process: str, systematic: str, direction, events, norm: bool = True) -> np.ndarray:
        """Exact log p_c(x | alpha = +-1) / p_c(x | alpha = 0) per event.

        ``direction``: "up" / "down" (or +1 / -1). For LES the events are in the coordinates of
        the varied sample: p_var(x) = p(x / (1 + d) in m4l, mZ1, mZ2, pt4l) (1 + d)^(-4), d = +-0.005.
        For kfactor (gg processes) / qcdscale (qqZZ) the ratio is the linear weight factor; with
        ``norm=True`` it is divided by sigma_var / sigma (LES keeps the cross section).
        """
        ph.check_process(process)
        alpha = {"up": 1.0, "down": -1.0, 1: 1.0, -1: -1.0}.get(direction)
        if alpha is None:
            raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
        if systematic == "LES":
            d = ph.LES_REL * alpha
            shifted = {k: _col(events, k) for k in ph.FEATURES}
            for k in ph.LES_SCALED:
                shifted[k] = shifted[k] / (1.0 + d)
            # I is signed; the ratio p_var/p is well defined where both have the same sign
            num = dsigma(process, shifted) * (1.0 + d) ** (-4)
            den = dsigma(process, events)
            return _log(num / den) if process == "I" else _log(num) - _log(den)
        m = _col(events, "m4l")
        if systematic == "kfactor":
            if ph.family(process) != "gg":
                return np.zeros_like(m)
            fac = ph.kfactor_factor(m, alpha)
            kw = {"kfactor": alpha}
        elif systematic == "qcdscale":
            if ph.family(process) != "qq":
                return np.zeros_like(m)
            fac = ph.qcdscale_factor(m, alpha)
            kw = {"qcdscale": alpha}
        elif systematic == "lumi":
            return np.zeros_like(m)
        else:
            raise ValueError(f"unknown systematic {systematic!r}; expected one of {ph.SYSTEMATICS}")
        lr = _log(fac)
        if norm:
            lr = lr - np.log(ph.xsec(process, **kw) / ph.xsec(process))
        return lr
