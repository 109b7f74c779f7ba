#!/usr/bin/env python
"""Toy fits: batched (``nsbi.minimize.minimize_batch``, vmapped Newton) vs sequential iminuit.

Needs ``nsbi/toys.py`` and ``nsbi/minimize`` (if they are absent the script says so and exits
0). Generates ``--toys`` pseudo-experiments of a binned model built from the synthetic pyhf
workspace of ``_common.synthetic_pyhf_workspace`` (``--channels`` x ``--bins``) at the nominal
point, then fits every toy (a) in batches with
``minimize_batch`` and (b) one after another with iminuit MIGRAD and the jit-compiled JAX
gradient of the same per-toy objective. Both are jit-warm (a first pass on a few toys
compiles); reports toys/s, the speed-up and the largest difference of -2lnL at the minima.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import print_machine, synthetic_pyhf_workspace, table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toys", type=int, default=200)
    ap.add_argument("--channels", type=int, default=2)
    ap.add_argument("--bins", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    try:
        from nsbi.minimize import minimize_batch, take
        from nsbi.toys import ToyGenerator
    except ImportError as e:  # pragma: no cover - depends on the parallel work
        print(f"SKIPPED: toy benchmark needs nsbi.toys and nsbi.minimize ({e})")
        return
    import jax
    import jax.numpy as jnp
    from iminuit import Minuit

    from nsbi import workspace as W

    print_machine()
    spec = synthetic_pyhf_workspace(a.seed, a.channels, a.bins)
    model = W.from_pyhf(spec).model()
    gen = ToyGenerator(model)
    toys = gen.generate(model.init, a.toys, a.seed)
    data = toys.data()
    mc = gen.mc_arrays
    free = ~np.asarray(model.fixed, bool)
    bounds = np.asarray(model.bounds, float)

    def batched(sel):
        return minimize_batch(
            gen.twice_nll,
            take(data, sel),
            model.init,
            bounds,
            free,
            shared=(mc,),
            batch_size=min(a.batch_size, len(sel) if isinstance(sel, np.ndarray) else a.batch_size),
        )

    vg = jax.jit(jax.value_and_grad(lambda p, d: gen.twice_nll(p, d, mc)))

    def sequential(idx, tol=0.1, strategy=1):
        out = []
        for i in idx:
            d = take(data, int(i))
            cache = {}

            def f(x, d=d, cache=cache):
                v, g = vg(jnp.asarray(x), d)
                cache["g"] = np.asarray(g)
                return float(v)

            def grad(x, d=d):
                return np.asarray(vg(jnp.asarray(x), d)[1])

            m = Minuit(f, model.init.copy(), grad=grad)
            m.errordef = 1
            m.limits = [tuple(b) for b in bounds]
            m.fixed = [not fr for fr in free]
            m.print_level = 0
            m.tol = tol
            m.strategy = strategy
            m.migrad()
            out.append(m.fval)
        return np.array(out)

    warm = np.arange(min(a.batch_size, a.toys))
    batched(warm)
    sequential(warm[:2])
    idx = np.arange(a.toys)
    t0 = time.perf_counter()
    rb = batched(idx)
    tb = time.perf_counter() - t0
    rows = [
        {
            "what": f"batched (vmap Newton, batch {a.batch_size})",
            "s": tb,
            "rate": a.toys / tb,
            "ratio": 1.0,
            "note": f"fallbacks {rb.n_fallback}, failed {rb.n_failed}",
        }
    ]
    for label, tol, strategy in (
        ("sequential iminuit + JAX grad, defaults (tol 0.1, strategy 1)", 0.1, 1),
        ("sequential iminuit + JAX grad, strict (tol 1e-4, strategy 2)", 1e-4, 2),
    ):
        t0 = time.perf_counter()
        fs = sequential(idx, tol, strategy)
        ts = time.perf_counter() - t0
        d = np.asarray(rb.twice_nll) - fs
        rows.append(
            {
                "what": label,
                "s": ts,
                "rate": a.toys / ts,
                "ratio": ts / tb,
                "note": f"max |Δ(-2lnL)| {np.max(np.abs(d)):.1e}; batched lower in {int(np.sum(d < -1e-4))}, "
                f"higher in {int(np.sum(d > 1e-4))} toys (|Δ| > 1e-4)",
            }
        )
    print(f"\n{a.toys} toys of a binned model ({model.npars} parameters, {a.channels}x{a.bins} bins)")
    print(
        table(
            rows,
            [
                ("what", "method", ""),
                ("s", "wall [s]", ".2f"),
                ("rate", "toys/s", ".1f"),
                ("ratio", "batched speed-up", ".1f"),
                ("note", "", ""),
            ],
        )
    )


if __name__ == "__main__":
    main()
