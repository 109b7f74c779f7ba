#!/usr/bin/env python
"""Full profiled fits: unbinned (1M events) and a large binned model, nsbi vs pyhf.

1. Unbinned: ``nsbi.fit.fit`` (minimisers of :mod:`nsbi.minimize`) of an unbinned model with
   ``--events`` events (4 processes, 3 per-event shape systematics, a normsys per background, POI
   ``mu``), jit-warm (compilation reported separately): the default (Newton on the exact
   Hessian, errors 2 H^-1) and the MIGRAD variants (exact Hessian given to Minuit, numerical
   HESSE, errors from the exact Hessian, MIGRAD only). Reports the likelihood passes and the time of
   one value+gradient call, so that the fit time can be read as passes x cost + overhead.
2. Binned: a deterministic synthetic pyhf workspace (``--channels`` x ``--bins``, signal + 4
   backgrounds, normsys/histosys/staterror/shapesys/lumi; written to ``--workspace``) fitted
   with nsbi and with pyhf (JAX backend, minuit optimizer, same tolerance and strategy), both
   jit-warm, in the same process (interleaved, minimum of ``--repeat``). The target is
   nsbi >= 3x faster with the same -2lnL at the minimum.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _common import ROOT, print_machine, synthetic_pyhf_workspace, table, timed_min, unbinned_model


def unbinned(n: int, repeat: int, seed: int) -> list[dict]:
    from nsbi import fit as F

    m, _ = unbinned_model(n, 4, 3, seed)
    t0 = time.perf_counter()
    F.fit(m, minimizer="migrad")  # compiles value+grad and the Hessian
    F.fit(m, minimizer="newton")  # compiles value+grad+Hessian
    t_first = time.perf_counter() - t0
    calls = {"vg": 0, "vgh": 0, "h": 0}
    orig_vg, orig_vgh, orig_h = m.twice_nll_and_grad, m.twice_nll_grad_hessian, m.hessian

    def counting(name, f):
        def wrapped(p):
            calls[name] += 1
            return f(p)

        return wrapped

    m.twice_nll_and_grad = counting("vg", orig_vg)
    m.twice_nll_grad_hessian = counting("vgh", orig_vgh)
    m.hessian = counting("h", orig_h)
    res = {}
    p0 = m.init.copy()
    # a start many standard deviations away (at 1M events: sigma(mu) ~ 0.01, sigma(alpha) ~ 0.02):
    # mu = 1.1, every nuisance parameter at +-0.1; and a far start, mu = 1.5 with every nuisance
    # parameter at +-1 (tens of standard deviations; the shape normalisation keeps the minimum unique).
    far = p0.copy()
    for i, name in enumerate(m.par_names):
        if name == "mu":
            far[i] = 1.1
        elif not m.fixed[i]:
            far[i] = 0.1 if i % 2 else -0.1
    farther = far.copy()
    for i, name in enumerate(m.par_names):
        if not m.fixed[i]:
            farther[i] = 1.5 if name == "mu" else 10.0 * far[i]
    rows = []
    for label, kw in (
        ("Newton on the exact Hessian (default)", {}),
        ("MIGRAD + HESSE, exact Hessian given to Minuit", {"minimizer": "migrad", "use_hessian": True}),
        ("MIGRAD + HESSE, numerical (no Hessian)", {"minimizer": "migrad", "use_hessian": False}),
        ("MIGRAD + errors from the exact Hessian", {"minimizer": "migrad", "errors": "exact", "use_hessian": True}),
        ("MIGRAD only", {"minimizer": "migrad", "hesse": False, "use_hessian": True}),
        ("Newton, started away from the minimum", {"init": far}),
        ("MIGRAD + HESSE (exact Hessian), same start", {"init": far, "minimizer": "migrad"}),
        ("Newton, started at mu = 1.5, every NP at +-1", {"init": farther}),
    ):
        for k in calls:
            calls[k] = 0
        r = F.fit(m, **kw)
        ncalls = dict(calls)
        t = timed_min({"fit": lambda kw=kw: res.__setitem__("r", F.fit(m, **kw)), "vg": lambda: orig_vg(p0)}, repeat)
        rows.append(
            {
                "what": label,
                "events": n,
                "fit_s": t["fit"],
                "vg_ms": 1e3 * t["vg"],
                "calls": ncalls["vg"],
                "hess_calls": ncalls["h"] + ncalls["vgh"],
                "twice_nll": r.twice_nll,
                "mu": r.value("mu"),
                "mu_err": r.error("mu"),
                "valid": r.status.get("valid"),
                "minimizer": r.status.get("minimizer"),
                "first_fit_s": t_first,
            }
        )
    m.twice_nll_and_grad, m.twice_nll_grad_hessian, m.hessian = orig_vg, orig_vgh, orig_h
    t = timed_min(
        {"hess": lambda: m.hessian(p0), "vgh": lambda: m.twice_nll_grad_hessian(p0), "vg": lambda: orig_vg(p0)}, repeat
    )
    rows.append(
        {
            "what": "exact Hessian (1 call)",
            "events": n,
            "fit_s": t["hess"],
            "vg_ms": 1e3 * t["vg"],
            "calls": 0,
            "hess_calls": 1,
        }
    )
    rows.append(
        {
            "what": "value+gradient+Hessian (1 call)",
            "events": n,
            "fit_s": t["vgh"],
            "vg_ms": 1e3 * t["vg"],
            "calls": 0,
            "hess_calls": 1,
        }
    )
    return rows


def binned(spec: dict, repeat: int, tolerance: float, strategy: int) -> dict:
    import pyhf

    from nsbi import fit as F
    from nsbi import workspace as W
    from nsbi.pyhf_check import pyhf_model

    ws = W.from_pyhf(spec)
    t0 = time.perf_counter()
    model = ws.model()
    t_build_nsbi = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, pm, pdata = pyhf_model(spec, "meas")
    t_build_pyhf = time.perf_counter() - t0
    pyhf.set_backend("jax", pyhf.optimize.minuit_optimizer(tolerance=tolerance, strategy=strategy))
    out: dict = {}

    def run_nsbi():
        out["nsbi"] = F.fit(model, tolerance=tolerance, strategy=strategy)

    def run_pyhf():
        b, f = pyhf.infer.mle.fit(pdata, pm, return_uncertainties=True, return_fitted_val=True)
        out["pyhf"] = (np.asarray(b), float(f))

    t0 = time.perf_counter()
    run_nsbi()
    t_first_nsbi = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_pyhf()
    t_first_pyhf = time.perf_counter() - t0
    t = timed_min({"nsbi": run_nsbi, "pyhf": run_pyhf}, repeat)
    r = out["nsbi"]
    b, fval = out["pyhf"]
    mu_p = float(b[pm.config.poi_index, 0])
    return {
        "npars": model.npars,
        "nbins": int(sum(len(c["samples"][0]["data"]) for c in spec["channels"])),
        "channels": len(spec["channels"]),
        "nsbi_s": t["nsbi"],
        "pyhf_s": t["pyhf"],
        "speedup": t["pyhf"] / t["nsbi"],
        "nsbi_first_s": t_first_nsbi,
        "pyhf_first_s": t_first_pyhf,
        "nsbi_build_s": t_build_nsbi,
        "pyhf_build_s": t_build_pyhf,
        "nsbi_twice_nll": r.twice_nll,
        "pyhf_twice_nll": fval,
        "delta_twice_nll": r.twice_nll - fval,
        "nsbi_mu": r.value("mu"),
        "pyhf_mu": mu_p,
        "nsbi_mu_err": r.error("mu"),
        "pyhf_mu_err": float(b[pm.config.poi_index, 1]),
        "nsbi_valid": r.status.get("valid"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=float, default=1e6)
    ap.add_argument("--channels", type=int, default=10)
    ap.add_argument("--bins", type=int, default=20)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tolerance", type=float, default=1e-3)
    ap.add_argument("--strategy", type=int, default=1)
    ap.add_argument(
        "--workspace",
        type=Path,
        default=ROOT / "benchmarks" / "data" / "synthetic_pyhf_workspace.json",
        help="where the synthetic pyhf workspace is written (and read back from)",
    )
    ap.add_argument("--skip-unbinned", action="store_true")
    ap.add_argument("--skip-binned", action="store_true")
    a = ap.parse_args()
    print_machine()
    if not a.skip_unbinned:
        rows = unbinned(int(a.events), a.repeat, 1)
        print(
            f"\nUnbinned fit, {int(a.events):.0e} events x 4 processes x 3 shape systematics "
            f"(jit-warm; first fit incl. compilation {rows[0]['first_fit_s']:.1f} s)"
        )
        print(
            table(
                rows,
                [
                    ("what", "fit", ""),
                    ("fit_s", "wall [s]", ".3f"),
                    ("calls", "value+grad calls", "d"),
                    ("hess_calls", "Hessian calls", "d"),
                    ("vg_ms", "one value+grad [ms]", ".1f"),
                    ("twice_nll", "-2lnL at min", ".4f"),
                    ("mu", "mu", ".5f"),
                    ("mu_err", "σ(mu)", ".5f"),
                    ("valid", "valid", ""),
                    ("minimizer", "minimizer", ""),
                ],
            )
        )
        ratio = rows[2]["fit_s"] / rows[0]["fit_s"]
        print(
            f"Newton (default) vs MIGRAD + numerical HESSE: {ratio:.1f}x faster; "
            f"Δ(-2lnL) = {rows[0]['twice_nll'] - rows[2]['twice_nll']:.2e}"
        )
    if not a.skip_binned:
        spec = synthetic_pyhf_workspace(a.seed, a.channels, a.bins)
        a.workspace.parent.mkdir(parents=True, exist_ok=True)
        a.workspace.write_text(json.dumps(spec, sort_keys=True))
        spec = json.loads(a.workspace.read_text())
        r = binned(spec, a.repeat, a.tolerance, a.strategy)
        print(
            f"\nBinned fit ({a.workspace.relative_to(ROOT) if a.workspace.is_relative_to(ROOT) else a.workspace}: "
            f"{r['channels']} channels, {r['nbins']} bins, {r['npars']} parameters; MIGRAD tol {a.tolerance}, "
            f"strategy {a.strategy}, uncertainties from HESSE on both sides; jit-warm, min of {a.repeat})"
        )
        rows = [
            {
                "who": "nsbi",
                "s": r["nsbi_s"],
                "first": r["nsbi_first_s"],
                "nll": r["nsbi_twice_nll"],
                "mu": r["nsbi_mu"],
                "err": r["nsbi_mu_err"],
            },
            {
                "who": "pyhf (jax, minuit)",
                "s": r["pyhf_s"],
                "first": r["pyhf_first_s"],
                "nll": r["pyhf_twice_nll"],
                "mu": r["pyhf_mu"],
                "err": r["pyhf_mu_err"],
            },
        ]
        print(
            table(
                rows,
                [
                    ("who", "", ""),
                    ("s", "fit [s]", ".3f"),
                    ("first", "first fit incl. jit [s]", ".2f"),
                    ("nll", "-2lnL at min", ".6f"),
                    ("mu", "mu", ".5f"),
                    ("err", "σ(mu)", ".5f"),
                ],
            )
        )
        print(f"speed-up nsbi vs pyhf: {r['speedup']:.1f}x; Δ(-2lnL) = {r['delta_twice_nll']:.2e}")


if __name__ == "__main__":
    main()
