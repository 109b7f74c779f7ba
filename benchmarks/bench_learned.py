#!/usr/bin/env python
"""Learned critical values vs the grid construction on a finished demo run (issue #16).

Reads a finished run of the demo configuration (``--results``, e.g. ``results/hzz4l``): its NSBI
workspace, the grid construction's belt (``validation/neyman/belt.json``) and the CPU time of
its Neyman chunks (``benchmarks/validation/neyman/*.tsv``). Then, in this process:

* the learned construction: ``--batches`` x ``--per-batch`` toys spread over the grid's range,
  one per sampled POI value, nuisance parameters profiled as in the run
  (:func:`nsbi.learned_critical.toys_over_range`), and the quantile regression;
* audit toys, ``--audit-toys`` at each of ``--audit`` POI values (seeds no other toys use);
* the audited coverage of both critical values on the same audit toys (the grid's interpolated
  linearly between its grid points) and the Asimov and observed 68 %/95 % intervals of both.

Printed: toys and CPU seconds of each construction and their ratios, the audit table, the
intervals. CPU of the learned construction = this process's CPU for its toys and training (the
grid's: the sum of its chunk jobs' CPU from the run's benchmark files, which includes each
job's start-up).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
from _common import print_machine

from nsbi.workflow import limit_threads

limit_threads(1)  # as the workflow's one-thread toy jobs

import nsbi.jax_setup  # noqa: E402,F401
from nsbi.config import widened_range  # noqa: E402
from nsbi.learned_critical import QuantileRegressor, audit, sample_points, toys_over_range  # noqa: E402
from nsbi.neyman import acceptance_interval, cl_key, compute_chunk, observed_t, read_belt, theta_at  # noqa: E402
from nsbi.validation import toy_generator  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default="results/hzz4l")
    ap.add_argument("--per-batch", type=int, default=250)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--audit", type=float, nargs="+", default=[0.1, 0.45, 1.5, 2.55])
    ap.add_argument("--audit-toys", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1357)
    ap.add_argument("--margin", type=float, default=0.1, help="as validation.learned.toys.margin")
    ap.add_argument("--regressor-seed", type=int, default=97)
    ap.add_argument("--subsets", type=int, nargs="*", default=[500, 750], help="also train on the first N toys")
    ap.add_argument(
        "--spread-seeds", type=int, nargs="*", default=[1, 2, 3, 4], help="retrain on the same toys with these seeds"
    )
    ap.add_argument("--save", default=None, help="write the toys and the audit toys to this .npz")
    args = ap.parse_args()
    res = Path(args.results)
    print_machine()
    belt = read_belt(res / "validation/neyman/belt.json")
    grid = np.asarray(belt["poi_values"], float)
    cls = belt["cls"]
    grid_toys = int(sum(belt["n_toys"]))
    grid_cpu = 0.0
    for f in sorted((res / "benchmarks/validation/neyman").glob("*.tsv")):
        with open(f) as fh:
            grid_cpu += float(next(csv.DictReader(fh, delimiter="\t"))["cpu_time"])
    model, gen = toy_generator(str(res / "workspace/nsbi.json"), "observed")
    lo, hi = float(grid[0]), float(grid[-1])
    t_lo, t_hi = widened_range(lo, hi, args.margin, model.bounds[model.poi_index])
    print(f"toys over [{t_lo:g}, {t_hi:g}] (grid [{lo:g}, {hi:g}], margin {args.margin})")

    c0, w0 = time.process_time(), time.perf_counter()
    batches = []
    for b in range(args.batches):
        pts = sample_points(t_lo, t_hi, args.per_batch, seed=(args.seed, b))
        batches.append(toys_over_range(gen, pts, args.seed, b, nuisances="profiled", batch_size=50))
    c1 = time.process_time()
    poi = np.concatenate([b["poi"] for b in batches])
    t = np.concatenate([b["t"] for b in batches])
    reg = QuantileRegressor(cls, t_lo, t_hi, seed=args.regressor_seed).fit(poi, t)
    c2, w2 = time.process_time(), time.perf_counter()
    learned_cpu = c2 - c0
    print(
        f"\nlearned: {len(t)} toys, toys {c1 - c0:.1f} s CPU, training {c2 - c1:.1f} s CPU "
        f"(best epoch {reg.history['best_epoch']}), wall {w2 - w0:.1f} s; "
        f"fallbacks {sum(b['n_fallback'] for b in batches)}, failed {sum(b['n_failed'] for b in batches)}"
    )
    print(f"grid:    {grid_toys} toys on {len(grid)} points, {grid_cpu:.1f} s CPU (sum of its chunk jobs)")
    print(f"ratios grid / learned: toys {grid_toys / len(t):.1f}x, CPU {grid_cpu / learned_cpu:.1f}x")

    # audit toys (their own seed stream), and the audited coverage of both critical values
    a_poi, a_t = [], []
    for i, v in enumerate(args.audit):
        ch = compute_chunk(gen, v, args.audit_toys, args.seed + 1, mu_index=i, theta=theta_at(gen, v, "profiled"))
        a_poi.append(np.full(len(ch["t"]), v))
        a_t.append(np.asarray(ch["t"], float))
    a_poi, a_t = np.concatenate(a_poi), np.concatenate(a_t)
    if args.save:
        np.savez(args.save, poi=poi, t=t, audit_poi=a_poi, audit_t=a_t)
    learned_audit = audit(reg, a_poi, a_t)

    class GridCritical:
        """The belt's critical values, linear between grid points (the audit's interface)."""

        cls, dim = reg.cls, 1

        @staticmethod
        def predict(x):
            x = np.ravel(x)
            return {k: np.interp(x, grid, np.asarray(v["value"], float)) for k, v in belt["critical"].items()}

    grid_audit = audit(GridCritical(), a_poi, a_t)
    print("\naudited coverage (fraction +- binomial error) on the same audit toys")
    print("| POI | CL | learned c | learned coverage | grid c | grid coverage |")
    print("|---:|---:|---:|---:|---:|---:|")
    for pl, pg in zip(learned_audit["points"], grid_audit["points"]):
        for k in pl["levels"]:
            a, g = pl["levels"][k], pg["levels"][k]
            print(
                f"| {pl['poi']:g} | {k} | {a['critical']:.3f} | {a['fraction']:.3f} ± {a['error']:.3f} | "
                f"{g['critical']:.3f} | {g['fraction']:.3f} ± {g['error']:.3f} |"
            )
    print(f"max |pull|: learned {learned_audit['max_abs_pull']:.2f}, grid {grid_audit['max_abs_pull']:.2f}")
    # toys needed: the same construction on the first N toys (whole batches: each batch spans the range)
    for n in args.subsets:
        sub = QuantileRegressor(cls, t_lo, t_hi, seed=args.regressor_seed).fit(poi[:n], t[:n])
        au = audit(sub, a_poi, a_t)
        print(f"first {n} toys: max |pull| {au['max_abs_pull']:.2f}, toys ratio {grid_toys / n:.1f}x")
    # the regressor's own spread: the same toys, other seeds (validation split and initial weights)
    for sd in args.spread_seeds:
        other = QuantileRegressor(cls, t_lo, t_hi, seed=sd).fit(poi, t)
        au = audit(other, a_poi, a_t)
        cs = " ".join(f"{p['poi']:g}:{p['levels'][cl_key(cls[0])]['critical']:.3f}" for p in au["points"])
        print(
            f"regressor seed {sd}: max |pull| {au['max_abs_pull']:.2f} (best epoch {other.history['best_epoch']}; c {cs})"
        )

    fine = np.linspace(lo, hi, 61)
    crit = reg.predict(fine)
    curves = {
        "observed": observed_t(model, fine),
        "asimov": observed_t(gen.model_for(gen.asimov(model.init)), fine),
    }
    print("\nintervals (learned | grid belt)")
    for name, curve in curves.items():
        tc = np.asarray(curve["t"], float)
        for k in crit:
            li = acceptance_interval(fine, tc - crit[k])
            gi = belt["datasets"][name]["intervals"][k]["toys"]
            print(f"  {name} {k}: [{li['lo']:.4f}, {li['hi']:.4f}] | [{gi['lo']:.4f}, {gi['hi']:.4f}]")
    print(
        json.dumps({"learned_toys": len(t), "grid_toys": grid_toys, "learned_cpu": learned_cpu, "grid_cpu": grid_cpu})
    )


if __name__ == "__main__":
    main()
