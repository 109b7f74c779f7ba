#!/usr/bin/env python
"""Learned 2-D critical values vs the grid construction on a finished two-POI run (issue #16).

Reads a finished run of a two-POI configuration (``--results``, e.g. ``results/hzz4l_twopoi``):
its NSBI workspace. The region is wanted on a ``--points`` x ``--points`` grid over the box
``--x`` x ``--y`` of the POIs ``--pois``. Then, in this process:

* the learned construction: ``--toys`` toys spread over the box widened by ``--margin``, one
  per point, nuisance parameters profiled (:func:`nsbi.learned_critical.toys_over_range`), and
  the quantile regression;
* the grid construction *at the audit points only* (``--per-node`` toys at each): a grid
  construction on the whole region grid would need ``points**2 x per-node`` toys; its CPU is
  extrapolated from the audit nodes' (per toy);
* the audit: ``--audit-toys`` independent toys at each audit point (three nodes of the grid),
  the same toys for both constructions;
* the learned regions of the Asimov and observed data against Wilks' regions.

Printed: toys and CPU of both constructions and their ratios, the audit table, the areas.
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
from nsbi import workspace as W  # noqa: E402
from nsbi.analysis import scan_pair  # noqa: E402
from nsbi.config import widened_range  # noqa: E402
from nsbi.learned_critical import audit, learned_region, sample_box, toys_over_range  # noqa: E402
from nsbi.neyman import cl_key, compute_chunk, theta_at  # noqa: E402
from nsbi.validation import toy_generator  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default="results/hzz4l_twopoi")
    ap.add_argument("--pois", nargs=2, default=["mu", "mu_V"])
    ap.add_argument("--x", type=float, nargs=2, default=[0.4, 1.6])
    ap.add_argument("--y", type=float, nargs=2, default=[0.4, 1.6])
    ap.add_argument("--points", type=int, default=13, help="region grid points per POI")
    ap.add_argument("--toys", type=int, default=2000, help="learned construction: toys over the box")
    ap.add_argument("--margin", type=float, default=0.1)
    ap.add_argument("--regressor-seed", type=int, default=79)
    ap.add_argument(
        "--subsets", type=int, nargs="*", default=[1000, 1500], help="also train on the first N of the toys"
    )
    ap.add_argument("--per-node", type=int, default=200, help="grid construction: toys per node")
    ap.add_argument("--audit-toys", type=int, default=300)
    ap.add_argument("--seed", type=int, default=4242)
    args = ap.parse_args()
    res = Path(args.results)
    print_machine()
    cls = (0.68, 0.95)
    ws_path = res / "workspace/nsbi.json"
    model, gen = toy_generator(str(ws_path), "observed")
    a, b = args.pois
    x = np.linspace(*args.x, args.points)
    y = np.linspace(*args.y, args.points)
    ranges = [widened_range(*v, args.margin, model.bounds[model.index(n)]) for v, n in ((args.x, a), (args.y, b))]
    lo, hi = [r[0] for r in ranges], [r[1] for r in ranges]
    ws = W.load(ws_path)
    gx = {"low": args.x[0], "high": args.x[1], "points": args.points}
    gy = {"low": args.y[0], "high": args.y[1], "points": args.points}
    scans = {d: scan_pair(ws, d, [a, b], gx, gy).to_dict() for d in ("asimov", "observed")}

    # audit points: three nodes of the region grid, and their independent toys
    k = args.points
    nodes = [(k // 2, k // 2), (k // 4, k // 4), (3 * k // 4, 3 * k // 4)]
    audit_pts = [{a: float(x[i]), b: float(y[j])} for i, j in nodes]
    audit_chunks = [
        compute_chunk(gen, p, args.audit_toys, args.seed + 1, mu_index=n, theta=theta_at(gen, p, "profiled"))
        for n, p in enumerate(audit_pts)
    ]

    c0 = time.process_time()
    pts = sample_box(lo, hi, args.toys, seed=(args.seed, 0))
    toys = [toys_over_range(gen, pts, args.seed, 0, "profiled", batch_size=50, pois=[a, b])]
    c1 = time.process_time()
    region = learned_region(toys, audit_chunks, cls, lo, hi, scans, seed=args.regressor_seed)
    c2 = time.process_time()
    learned_cpu = c2 - c0

    # the grid construction at the audit nodes (its critical values there and its CPU per toy)
    g0 = time.process_time()
    grid_chunks = [
        compute_chunk(gen, p, args.per_node, args.seed + 2, mu_index=n, theta=theta_at(gen, p, "profiled"))
        for n, p in enumerate(audit_pts)
    ]
    grid_cpu_per_toy = (time.process_time() - g0) / (len(audit_pts) * args.per_node)
    grid_toys = args.points**2 * args.per_node
    grid_cpu = grid_toys * grid_cpu_per_toy

    print(f"\nbox [{lo}, {hi}] for a {args.points} x {args.points} region grid on {args.x} x {args.y}")
    print(
        f"learned: {args.toys} toys, {c1 - c0:.1f} s CPU for the toys, {c2 - c1:.1f} s for the training and regions "
        f"(best epoch {region['training']['best_epoch']}); fallbacks {region['n_fallback']}, failed {region['n_failed']}"
    )
    print(
        f"grid on the region grid: {grid_toys} toys ({args.points}^2 nodes x {args.per_node}), "
        f"{grid_cpu:.0f} s CPU (extrapolated from {len(audit_pts) * args.per_node} toys at the audit nodes)"
    )
    print(f"ratios grid / learned: toys {grid_toys / args.toys:.1f}x, CPU {grid_cpu / learned_cpu:.1f}x")

    levels = list(cls)

    class GridAtNodes:
        """The grid construction's critical values at the audit nodes (the audit's interface)."""

        cls = levels
        dim = 2

        @staticmethod
        def predict(pts):
            pts = np.asarray(pts, float).reshape(-1, 2)
            out = {cl_key(c): np.empty(len(pts)) for c in cls}
            for r, pt in enumerate(pts):
                n = next(i for i, p in enumerate(audit_pts) if np.allclose([p[a], p[b]], pt))
                for c in cls:
                    out[cl_key(c)][r] = np.quantile(grid_chunks[n]["t"], c)
            return out

    a_poi = np.concatenate([np.tile([p[a], p[b]], (args.audit_toys, 1)) for p in audit_pts])
    a_t = np.concatenate([np.asarray(c["t"], float) for c in audit_chunks])
    grid_audit = audit(GridAtNodes(), a_poi, a_t)
    print("\naudited coverage (fraction +- binomial error) on the same audit toys")
    print(f"| ({a}, {b}) | CL | learned c | learned coverage | grid c | grid coverage |")
    print("|---|---:|---:|---:|---:|---:|")
    for pl, pg in zip(region["audit"]["points"], grid_audit["points"]):
        for key in pl["levels"]:
            lv, gv = pl["levels"][key], pg["levels"][key]
            print(
                f"| ({pl['poi'][0]:.2f}, {pl['poi'][1]:.2f}) | {key} | {lv['critical']:.3f} | "
                f"{lv['fraction']:.3f} ± {lv['error']:.3f} | {gv['critical']:.3f} | {gv['fraction']:.3f} ± {gv['error']:.3f} |"
            )
    print(f"max |pull|: learned {region['audit']['max_abs_pull']:.2f}, grid {grid_audit['max_abs_pull']:.2f}")
    # toys needed: the same construction on the first N toys (same audit toys)
    for n in args.subsets:
        sub = [dict(toys[0], poi=np.asarray(toys[0]["poi"])[:n], t=np.asarray(toys[0]["t"])[:n])]
        r = learned_region(sub, audit_chunks, cls, lo, hi, scans, seed=args.regressor_seed)
        areas = {f"{d} {k}": v["toys"]["area"] for d, ds in r["datasets"].items() for k, v in ds["regions"].items()}
        print(
            f"first {n} toys: max |pull| {r['audit']['max_abs_pull']:.2f}, toys ratio {grid_toys / n:.1f}x, "
            f"areas {', '.join(f'{k} {v:.4f}' for k, v in areas.items())}"
        )
    print("\nregions (learned | Wilks), areas")
    for name, ds in region["datasets"].items():
        for key, r in ds["regions"].items():
            print(
                f"  {name} {key}: {r['toys']['area']:.4f} | {r['asymptotic']['area']:.4f}  ratio {r['area_ratio_toys_over_asymptotic']:.3f}"
            )
    print(
        json.dumps(
            {"learned_toys": args.toys, "grid_toys": grid_toys, "learned_cpu": learned_cpu, "grid_cpu": grid_cpu}
        )
    )


if __name__ == "__main__":
    main()
