#!/usr/bin/env python
"""Focused test statistic vs the likelihood ratio on a finished demo run (issue #16).

Reads a finished run (``--results``, e.g. ``results/hzz4l``): its NSBI workspace and the POI range
of its Neyman construction. Then, in this process, for both statistics on the same toys:

* the Neyman belt: ``--toys`` toys at each of ``--points`` POI values over the range, nuisance
  parameters profiled on the data as in the workflow; each toy's two-sided t and focused t_f
  come from the same fits (:func:`nsbi.neyman.toy_profiles`);
* ``--eval-toys`` independent toys at ``--mu-true``, each with its profile on a grid of
  ``--fine`` values: its interval at every CL for both statistics (critical values linear
  between belt points), their median lengths, and the coverage of ``--mu-true``.

The focus density is a Gaussian (``--focus-mean``, ``--focus-sigma``) with ``--nodes`` nodes.
Printed: the belts, the interval table, the CPU time of the fits. The Wilks interval of t (chi2
quantiles) is given for reference.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _common import print_machine

from nsbi.workflow import limit_threads

limit_threads(1)  # as the workflow's one-thread toy jobs

import nsbi.jax_setup  # noqa: E402,F401
from nsbi.focused import FocusDensity  # noqa: E402
from nsbi.neyman import (  # noqa: E402
    asymptotic_critical,
    binomial_coverage,
    cl_key,
    interval_lengths,
    read_belt,
    theta_at,
    toy_profiles,
)
from nsbi.validation import toy_generator  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default="results/hzz4l")
    ap.add_argument("--points", type=int, default=11, help="belt points over the run's Neyman range")
    ap.add_argument("--toys", type=int, default=200, help="toys per belt point")
    ap.add_argument("--eval-toys", type=int, default=300)
    ap.add_argument("--mu-true", type=float, default=1.0)
    ap.add_argument("--fine", type=int, default=26, help="POI values of each evaluation toy's profile")
    ap.add_argument("--focus-mean", type=float, default=1.0)
    ap.add_argument("--focus-sigma", type=float, default=0.5)
    ap.add_argument("--nodes", type=int, default=24)
    ap.add_argument("--seed", type=int, default=2718)
    args = ap.parse_args()
    res = Path(args.results)
    print_machine()
    run_belt = read_belt(res / "validation/neyman/belt.json")
    cls = run_belt["cls"]
    lo, hi = float(run_belt["poi_values"][0]), float(run_belt["poi_values"][-1])
    grid = np.linspace(lo, hi, args.points)
    fine = np.linspace(lo, hi, args.fine)
    model, gen = toy_generator(str(res / "workspace/nsbi.json"), "observed")
    bounds = model.bounds[model.poi_index]
    focus = FocusDensity.from_config(
        {"density": "gaussian", "mean": args.focus_mean, "sigma": args.focus_sigma, "nodes": args.nodes}, bounds
    )
    print(f"workspace {res / 'workspace/nsbi.json'}: POI {model.poi_name}, {len(model.par_names)} parameters")
    print(f"focus: {focus.to_dict()}")

    # belts of both statistics from the same toys and fits
    c0, w0 = time.process_time(), time.perf_counter()
    t_lr, t_f, n_failed = [], [], 0
    for i, mu in enumerate(grid):
        toys = gen.generate(theta_at(gen, float(mu), "profiled"), args.toys, seed=(args.seed, i, 0))
        prof = toy_profiles(gen, toys, [float(mu)], focus=focus, batch_size=50)
        t_lr.append(prof["t"][:, 0])
        t_f.append(prof["t_focused"][:, 0])
        n_failed += prof["n_failed"]
    c1, w1 = time.process_time(), time.perf_counter()
    crit = {
        name: {cl_key(cl): np.array([np.quantile(t, cl) for t in ts]) for cl in cls}
        for name, ts in (("t", t_lr), ("focused", t_f))
    }
    print(
        f"\nbelts: {args.points} points x {args.toys} toys, {c1 - c0:.1f} s CPU, {w1 - w0:.1f} s wall, {n_failed} failed fits"
    )
    print("| POI | " + " | ".join(f"c_t {k} | c_f {k}" for k in crit["t"]) + " |")
    print("|---:|" + "---:|" * (2 * len(cls)))
    for i, mu in enumerate(grid):
        cells = " | ".join(f"{crit['t'][k][i]:.3f} | {crit['focused'][k][i]:.3f}" for k in crit["t"])
        print(f"| {mu:.3f} | {cells} |")

    # independent toys at mu_true: intervals toy by toy
    toys = gen.generate(theta_at(gen, args.mu_true, "profiled"), args.eval_toys, seed=(args.seed + 1, 0, 0))
    prof = toy_profiles(gen, toys, fine, focus=focus, batch_size=50)
    c2, w2 = time.process_time(), time.perf_counter()
    print(
        f"\nevaluation: {args.eval_toys} toys at {model.poi_name} = {args.mu_true}, profiles on {args.fine} values: "
        f"{c2 - c1:.1f} s CPU, {w2 - w1:.1f} s wall, {prof['n_failed']} failed fits"
    )
    j_true = int(np.argmin(np.abs(fine - args.mu_true)))
    rows = []
    print("| statistic | CL | median length | mean length | coverage of the true value | open | empty | with holes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, key in (("t (toys)", "t"), ("t_f (toys)", "focused"), ("t (Wilks)", None)):
        t = prof["t"] if key in ("t", None) else prof["t_focused"]
        for cl in cls:
            k = cl_key(cl)
            c = np.full(len(fine), asymptotic_critical(cl, "t")) if key is None else np.interp(fine, grid, crit[key][k])
            lengths = interval_lengths(fine, t, c)
            covered = binomial_coverage(int(np.sum(t[:, j_true] <= c[j_true])), len(t), cl)
            rows.append({"statistic": name, "cl": cl, **{q: v for q, v in lengths.items() if q != "lengths"}})
            rows[-1].update(mean=float(np.mean(lengths["lengths"])), coverage=covered)
            print(
                f"| {name} | {k} | {lengths['median']:.3f} | {np.mean(lengths['lengths']):.3f} | "
                f"{covered['fraction']:.3f} ± {covered['error']:.3f} | {lengths['n_open']} | {lengths['n_empty']} | "
                f"{lengths['n_disconnected']} |"
            )
    for cl in cls:
        k = cl_key(cl)
        a = next(r for r in rows if r["statistic"] == "t_f (toys)" and r["cl"] == cl)["median"]
        b = next(r for r in rows if r["statistic"] == "t (toys)" and r["cl"] == cl)["median"]
        print(f"median length ratio focused / likelihood ratio at CL {k}: {a / b:.3f}")
    print(json.dumps({"rows": rows, "belt_cpu": c1 - c0, "eval_cpu": c2 - c1}, default=float)[:4000])


if __name__ == "__main__":
    main()
