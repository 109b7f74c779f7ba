"""Cross-check of the binned nsbi likelihood against pyhf.

:func:`compare` builds the same binned model in pyhf (``modifier_settings`` set explicitly to
normsys code4 / histosys code4p) and in nsbi, compares ``-2 ln L`` at the nominal point and at
random points (relative tolerance ``rtol_nll``, default 1e-8), then fits both with Minuit and
compares best-fit values (``|a - b| <= tol_fit * max(1, |b|)``, default 1e-4), the minimum
``-2 ln L`` and the parameter errors. Errors are compared with one definition on both sides:
nsbi's exact (JAX) Hessian against a central finite-difference Hessian of pyhf's
``-2 logpdf`` at pyhf's best fit (``tol_fit``, relative); Minuit HESSE errors of both are
also reported and compared with the looser ``rtol_hesse`` (default 2e-2), because Minuit's
HESSE for parameters with limits depends on its internal step sizes at the 1e-3 level. Returns a JSON-serialisable report and raises
:class:`PyhfMismatch` on disagreement (``raise_on_fail``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .io import write_json

__all__ = ["compare", "PyhfMismatch", "pyhf_model", "to_pyhf_pars"]

MODIFIER_SETTINGS = {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}


class PyhfMismatch(AssertionError):
    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


def pyhf_model(pyhf_spec: Mapping, measurement: str | None = None):
    import pyhf

    ws = pyhf.Workspace(dict(pyhf_spec))
    model = ws.model(measurement_name=measurement, modifier_settings=MODIFIER_SETTINGS)
    return ws, model, ws.data(model)


def to_pyhf_pars(model, pmodel, pars) -> np.ndarray:
    """Map an nsbi parameter vector onto pyhf's parameter order (by parameter name)."""
    out = np.zeros(pmodel.config.npars)
    for ps in model.parsets:
        out[pmodel.config.par_slice(ps.name)] = np.asarray(pars)[model.par_slices[ps.name]]
    return out


def _from_pyhf_pars(model, pmodel, q) -> np.ndarray:
    out = np.zeros(model.npars)
    for ps in model.parsets:
        out[model.par_slices[ps.name]] = np.asarray(q)[pmodel.config.par_slice(ps.name)]
    return out


def _fd_errors(model, pm, pdata, x, free, h=1e-4) -> np.ndarray:
    """Errors from a central finite-difference Hessian of pyhf's -2 logpdf (free parameters)."""
    idx = np.flatnonzero(free)

    def f(p):
        return -2.0 * float(np.asarray(pm.logpdf(to_pyhf_pars(model, pm, p), pdata))[0])

    n = len(idx)
    H = np.zeros((n, n))
    steps = h * np.maximum(1.0, np.abs(x[idx]))
    f0 = f(x)
    for a in range(n):
        for b in range(a, n):
            ea = np.zeros_like(x)
            eb = np.zeros_like(x)
            ea[idx[a]] = steps[a]
            eb[idx[b]] = steps[b]
            if a == b:
                H[a, a] = (f(x + ea) - 2 * f0 + f(x - ea)) / steps[a] ** 2
            else:
                H[a, b] = H[b, a] = (f(x + ea + eb) - f(x + ea - eb) - f(x - ea + eb) + f(x - ea - eb)) / (
                    4 * steps[a] * steps[b]
                )
    return np.sqrt(np.diag(2.0 * np.linalg.inv(H)))


def _random_points(model, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    pts = [model.init.copy()]
    for _ in range(n):
        p = model.init.copy()
        for i in range(model.npars):
            if model.fixed[i]:
                continue
            lo, hi = model.bounds[i]
            span = min(hi - lo, 2.0) if np.isfinite(hi - lo) else 2.0
            p[i] = np.clip(p[i] + rng.uniform(-0.4, 0.4) * span, lo + 1e-6 * (hi - lo), hi - 1e-6 * (hi - lo))
        pts.append(p)
    return pts


def compare(
    ws_or_spec: Any,
    measurement: str | None = None,
    dataset: str | None = None,
    n_random: int = 5,
    seed: int = 12345,
    rtol_nll: float = 1e-8,
    tol_fit: float = 1e-4,
    rtol_hesse: float = 2e-2,
    fit: bool = True,
    raise_on_fail: bool = True,
    report_path: str | None = None,
) -> dict:
    """Compare nsbi and pyhf on the binned part of a workspace.

    ``ws_or_spec``: an nsbi :class:`~nsbi.workspace.Workspace`, an nsbi spec dict, or a pyhf
    workspace dict (recognised by the absence of ``"type"`` in its channels).
    """
    import pyhf

    from nsbi import fit as nfit
    from nsbi import workspace as W

    if isinstance(ws_or_spec, W.Workspace):
        ws = ws_or_spec
    elif all("type" not in c for c in ws_or_spec["channels"]):
        ws = W.from_pyhf(ws_or_spec)
    else:
        ws = W.Workspace(ws_or_spec)
    binned = [c["name"] for c in ws.spec["channels"] if c["type"] == "binned"]
    pspec = W.to_pyhf(ws, dataset=dataset)
    meas = ws.measurement(measurement)
    _, pm, pdata = pyhf_model(pspec, meas["name"])
    model = ws.model(dataset=dataset, measurement=meas["name"], channels=binned)

    report: dict[str, Any] = {"measurement": meas["name"], "npars": model.npars, "nll": [], "ok": True, "failures": []}
    for p in _random_points(model, n_random, seed):
        a = model.twice_nll(p)
        b = -2.0 * float(np.asarray(pm.logpdf(to_pyhf_pars(model, pm, p), pdata))[0])
        rel = abs(a - b) / max(abs(b), 1e-300)
        ok = rel <= rtol_nll
        report["nll"].append({"pars": p.tolist(), "nsbi": a, "pyhf": b, "rel_diff": rel, "ok": bool(ok)})
        if not ok:
            report["failures"].append(f"-2lnL differs: nsbi {a!r} vs pyhf {b!r} (rel {rel:.2e})")
    if fit:
        prev = pyhf.get_backend()
        try:
            pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-5, strategy=2))
            res, fval = pyhf.infer.mle.fit(pdata, pm, return_uncertainties=True, return_fitted_val=True)
        finally:
            pyhf.set_backend(*prev)
        res = np.asarray(res)
        r = nfit.fit(model, tolerance=1e-5, strategy=2)
        free = ~r.fixed
        # exact errors (nsbi) vs finite-difference Hessian of pyhf's -2 logpdf (same definition)
        e_exact = np.zeros(model.npars)
        H = model.hessian(r.values)[np.ix_(free, free)]
        e_exact[free] = np.sqrt(np.diag(2.0 * np.linalg.inv(H)))
        e_fd = np.zeros(model.npars)
        e_fd[free] = _fd_errors(model, pm, pdata, _from_pyhf_pars(model, pm, res[:, 0]), free)
        rows = []
        for ps in model.parsets:
            sl_n, sl_p = model.par_slices[ps.name], pm.config.par_slice(ps.name)
            it = zip(ps.labels, r.values[sl_n], r.errors[sl_n], res[sl_p, 0], res[sl_p, 1], e_exact[sl_n], e_fd[sl_n])
            for lab, vn, en, vp, ep, ex, efd in it:
                okv = abs(vn - vp) <= tol_fit * max(1.0, abs(vp))
                oke = abs(ex - efd) <= tol_fit * max(abs(efd), 1e-12) + 1e-12
                okh = abs(en - ep) <= rtol_hesse * max(abs(ep), 1e-12) + 1e-12
                rows.append(
                    {
                        "name": lab,
                        "value": {"nsbi": float(vn), "pyhf": float(vp)},
                        "error_exact": {"nsbi": float(ex), "pyhf_fd": float(efd)},
                        "error_hesse": {"nsbi": float(en), "pyhf": float(ep)},
                        "ok": bool(okv and oke and okh),
                    }
                )
                if not okv:
                    report["failures"].append(f"fit {lab}: value nsbi {vn:.8g} vs pyhf {vp:.8g}")
                if not oke:
                    report["failures"].append(f"fit {lab}: exact error nsbi {ex:.8g} vs pyhf (FD Hessian) {efd:.8g}")
                if not okh:
                    report["failures"].append(f"fit {lab}: HESSE error nsbi {en:.6g} vs pyhf {ep:.6g}")
        fv = float(np.asarray(fval))
        okf = abs(r.twice_nll - fv) <= max(tol_fit, rtol_nll * abs(fv))
        if not okf:
            report["failures"].append(f"-2lnL at minimum: nsbi {r.twice_nll!r} vs pyhf {fv!r}")
        report["fit"] = {"parameters": rows, "twice_nll": {"nsbi": r.twice_nll, "pyhf": fv}, "status": r.status}
    report["ok"] = not report["failures"]
    if report_path:
        write_json(report, report_path, indent=1)
    if raise_on_fail and not report["ok"]:
        raise PyhfMismatch("nsbi and pyhf disagree:\n  " + "\n  ".join(report["failures"]), report)
    return report
