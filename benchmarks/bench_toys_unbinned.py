#!/usr/bin/env python
"""Neyman-chunk toy fits on a demo-sized unbinned + binned model: one-pass kernels vs autodiff.

The model has the demo's shape: an unbinned signal region with ``--mc`` reference MC events
(default 182 593, as the demo's), 4 processes with the off-shell morphing (mu - sqrt(mu),
sqrt(mu), 1 - sqrt(mu), 1; expected yields as the demo's, ~1 200 events per toy at mu = 1) and
3 per-event shape systematics with shape normalisation, plus an 8-bin binned control region
with normsys and staterror. A chunk of ``--toys`` toys is generated at mu = ``--mu`` and fitted
twice per toy (free and conditional, as :func:`nsbi.neyman.toy_t`):

* ``onepass``: the current path, value, gradient and exact Hessian from one pass over each
  toy's events (``ToyGenerator.twice_nll_vgh``), ``--batch-size`` toys per vmapped call;
* ``autodiff``: the previous implementation, forward-over-reverse autodiff of the toy
  likelihood, all toys of the chunk in one vmapped call (as the workflow ran it);
* ``sqrt``: what a Neyman chunk runs now, :func:`nsbi.neyman.toy_t`: the one-pass kernels in
  the coordinate sqrt(mu), where the morphing coefficients are polynomials (no MIGRAD fallback
  near mu = 0; same -2 ln L values), ``--batch-size`` toys per vmapped call.

Each runs in its own process (peak RSS = VmHWM of that process after generation, compilation
and fits). Reported: compilation and fit time, toys/s (jit-warm, and for the whole chunk with
its compilation, as a workflow job pays it), the ratios, the largest |Δ(-2 ln L)| between the two on every toy and fit, the
fallback counts, peak RSS, and the cost per toy relative to one value+gradient pass over that
toy's events (the floor: a vmapped value+gradient of the toy likelihood, jit-warm).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import print_machine, run_worker, table, unbinned_events, vm_hwm_mb

YIELDS = {"S": 47.8, "SBI": 632.3, "B": 659.3, "qqZZ": 555.5}  # the demo's SR yields (140 fb-1)
MORPH = {"S": "mu - sqrt(mu)", "SBI": "sqrt(mu)", "B": "1 - sqrt(mu)", "qqZZ": None}
CR = {"S": 32.8, "SBI": 543.2, "B": 580.5, "qqZZ": 948.4}  # the demo's control-region yields
CR_SHAPE = np.array([0.22, 0.2, 0.16, 0.14, 0.1, 0.09, 0.06, 0.03])


def demo_like_model(n_mc: int, seed: int = 1):
    """(model, MC events): see the module docstring."""
    from _common import shape_norms

    from nsbi.model import Model

    raw = unbinned_events(n_mc, 4, 3, seed)
    names = list(YIELDS)
    ev = {"weight": np.ones(n_mc)}  # a sample of the reference density
    for c, name in enumerate(names):
        ev[f"logr_{name}"] = raw[f"logr_P{c}"]
        for k in range(3):
            for d in ("up", "down"):
                ev[f"logr_{name}__s{k}_{d}"] = raw[f"logr_P{c}__s{k}_{d}"]
    samples = []
    for name in names:
        mods = [{"name": f"s{k}", "type": "eventsys"} for k in range(3)]
        if name == "qqZZ":
            mods.append({"name": "qcdscale", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}})
        s = {"name": name, "yield": YIELDS[name], "modifiers": mods}
        if MORPH[name]:
            s["morphing"] = MORPH[name]
        samples.append(s)
    sr = {"name": "SR", "type": "unbinned", "samples": samples}
    shape_norms(ev, {"channels": [sr]})
    cr_samples = []
    for name in names:
        mods = [{"name": "staterror_CR", "type": "staterror", "data": (0.03 * CR[name] * CR_SHAPE).tolist()}]
        if name == "qqZZ":
            mods.append({"name": "qcdscale", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}})
        s = {"name": name, "data": (CR[name] * CR_SHAPE).tolist(), "modifiers": mods}
        if MORPH[name]:
            s["morphing"] = MORPH[name]
        cr_samples.append(s)
    cr = {"name": "CR", "type": "binned", "samples": cr_samples}
    spec = {"channels": [sr, cr]}
    meas = {"name": "m", "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [[0.0, 10.0]]}]}}
    obs_cr = np.round(sum(CR.values()) * CR_SHAPE).tolist()
    model = Model(spec, {"SR": {k: v[:1200] for k, v in ev.items()}, "CR": obs_cr}, meas)
    return model, ev


def worker(method: str, n_mc: int, n_toys: int, mu: float, batch_size: int, seed: int, out: str) -> dict:
    import jax

    from nsbi.jax_setup import jnp
    from nsbi.minimize import minimize_batch, take
    from nsbi.neyman import toy_t
    from nsbi.toys import ToyGenerator

    model, ev = demo_like_model(n_mc)
    gen = ToyGenerator(model, {"SR": ev})
    theta = np.array(model.init, float)
    theta[model.index("mu")] = mu
    toys = gen.generate(theta, n_toys, seed=(seed, 0, 0), pad_to=[2048])
    data = toys.data()
    free = ~np.asarray(model.fixed, bool)
    fc = free.copy()
    fc[model.index("mu")] = False
    vgh = gen.twice_nll_vgh if method == "onepass" else None
    bs = batch_size if method in ("onepass", "sqrt") else None

    def fits(sel):
        """(-2 ln L free, conditional, fallbacks, failed) of the toys ``sel``."""
        if method == "sqrt":
            r = toy_t(gen, toys.subset(sel), mu, batch_size=min(bs, len(sel)))
            return r["twice_nll_free"], r["twice_nll_cond"], r["n_fallback"], r["n_failed"]
        d = take(data, sel)
        kw = {"shared": (gen.mc_arrays,), "vgh": vgh, "batch_size": bs and min(bs, len(sel))}
        rf = minimize_batch(gen.twice_nll, d, theta, model.bounds, free, **kw)
        rc = minimize_batch(gen.twice_nll, d, theta, model.bounds, fc, **kw)
        return rf.twice_nll, rc.twice_nll, rf.n_fallback + rc.n_fallback, rf.n_failed + rc.n_failed

    t0 = time.perf_counter()
    warm = np.arange(bs if bs else n_toys)  # compiles the solver for the shape used below
    fits(warm[: min(len(warm), n_toys)])
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    v_free, v_cond, n_fallback, n_failed = fits(np.arange(n_toys))
    t_fit = time.perf_counter() - t0
    peak = vm_hwm_mb()  # generation, compilation and fits (before the floor measurement below)
    # the floor: one value+gradient pass over each toy's events (vmapped, jit-warm)
    vg = jax.jit(jax.vmap(jax.value_and_grad(gen.twice_nll), in_axes=(0, 0, None)))
    P = jnp.asarray(np.broadcast_to(theta, (n_toys, model.npars)))
    jax.block_until_ready(vg(P, data, gen.mc_arrays))
    t_vg = min(_timed(lambda: jax.block_until_ready(vg(P, data, gen.mc_arrays))) for _ in range(5))
    np.savez(out, free=v_free, cond=v_cond)
    return {
        "method": method,
        "compile_s": t_compile,
        "fit_s": t_fit,
        "toys_per_s": n_toys / t_fit,
        "vg_pass_s_per_toy": t_vg / n_toys,
        "fit_s_per_toy": t_fit / n_toys,
        "n_fallback": int(n_fallback),
        "n_failed": int(n_failed),
        "peak_rss_mb": peak,
        "chunk_toys_per_s": n_toys / (t_fit + t_compile),
        "events_per_toy": float(toys.n_events().mean()),
    }


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mc", type=int, default=182_593)
    ap.add_argument("--toys", type=int, default=200)
    ap.add_argument("--mu", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--methods", default="onepass,autodiff")
    ap.add_argument("--worker", nargs=2, metavar=("METHOD", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        res = worker(a.worker[0], a.mc, a.toys, a.mu, a.batch_size, a.seed, a.worker[1])
        print(json.dumps(res))
        return
    print_machine()
    rows, nll = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in a.methods.split(","):
            out = str(Path(tmp) / f"{method}.npz")
            args = ["--mc", a.mc, "--toys", a.toys, "--mu", a.mu, "--batch-size", a.batch_size, "--seed", a.seed]
            r = run_worker(Path(__file__), [method, out, *args])
            with np.load(out) as z:
                nll[method] = (z["free"], z["cond"])
            rows.append(r)
    ref = rows[-1]
    for r in rows:
        r["ratio"] = r["toys_per_s"] / ref["toys_per_s"]
        r["chunk_ratio"] = r["chunk_toys_per_s"] / ref["chunk_toys_per_s"]
        r["floor"] = r["fit_s_per_toy"] / r["vg_pass_s_per_toy"]
    last = list(nll)[-1]
    b1, b2 = nll[last]
    diffs = [
        f"{m} vs {last}: max |Δ(-2lnL)| free {np.max(np.abs(a1 - b1)):.1e}, conditional {np.max(np.abs(a2 - b2)):.1e}"
        for m, (a1, a2) in nll.items()
        if m != last
    ]
    note = "; ".join(diffs)
    print(
        f"\n{a.toys} toys at mu = {a.mu}, {a.mc} MC events, ~{rows[0]['events_per_toy']:.0f} events per toy, "
        f"free + conditional fit per toy; {note}"
    )
    print(
        table(
            rows,
            [
                ("method", "method", ""),
                ("compile_s", "compile [s]", ".1f"),
                ("fit_s", "fits [s]", ".1f"),
                ("toys_per_s", "toys/s", ".1f"),
                ("ratio", "toys/s vs last row", ".1f"),
                ("chunk_toys_per_s", "toys/s incl. compile", ".1f"),
                ("chunk_ratio", "vs last row", ".1f"),
                ("floor", "cost per toy / vg pass", ".0f"),
                ("n_fallback", "fallbacks", "d"),
                ("n_failed", "failed", "d"),
                ("peak_rss_mb", "peak RSS [MB]", ".0f"),
            ],
        )
    )


if __name__ == "__main__":
    sys.exit(main())
