#!/usr/bin/env python
"""Unbinned -2lnL + gradient (jit-warm) against the memory-bandwidth floor.

For every (events, shape systematics) point a fresh process builds an unbinned model with
``--processes`` processes (a POI, a normsys per background and K per-event shape systematics on
every process), compiles ``Model.twice_nll_and_grad`` and times it (minimum over
``--repeat`` rounds), interleaved with two numpy floors measured in the same process:

* ``floor`` -- one numpy pass (``a.sum()``) over exactly the arrays the kernel reads
  (``Model.data``: weight, r = exp(log r), and log g / g = exp(log g) up/down per
  process and systematic), i.e. the memory-bandwidth floor of the kernel as implemented;
* ``floor_in`` -- the same over the input columns only (weight, log r, log g up/down), the
  floor of any implementation that does not store exp(log g) (it must then compute it).

Peak memory is VmHWM of the worker process (includes the input columns, the model's stacked
copies and XLA's buffers). Usage::

    python benchmarks/bench_nll.py                      # 1e4, 1e5, 1e6 events x K = 0, 1, 3, 10
    python benchmarks/bench_nll.py --big                # adds 1e7 events (K <= 3; ~4 GB per K=3 run)
    python benchmarks/bench_nll.py --events 1e6 --systematics 3 --repeat 15
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _common import machine_info, print_machine, run_worker, table, timed_min, unbinned_model, vm_hwm_mb


def worker(n: int, K: int, C: int, repeat: int, seed: int) -> dict:
    import jax

    t0 = time.perf_counter()
    m, ev = unbinned_model(n, C, K, seed)
    t_build = time.perf_counter() - t0
    p = m.init.copy()
    p[m.index("mu")] = 1.1
    for k in range(K):
        p[m.index(f"s{k}")] = 0.3 * (-1) ** k  # inside |alpha| <= 1 (polynomial branch)
    t0 = time.perf_counter()
    m.twice_nll_and_grad(p)
    t_compile_vg = time.perf_counter() - t0
    t0 = time.perf_counter()
    m.twice_nll(p)
    t_compile_v = time.perf_counter() - t0
    kern = [np.asarray(a) for a in jax.tree_util.tree_leaves(m.data)]
    inputs = list(ev.values())
    p_out = p.copy()
    if K:
        p_out[m.index("s0")] = 1.5  # one alpha outside |alpha| <= 1: exponential branch
    fns = {
        "vg": lambda: m.twice_nll_and_grad(p),
        "v": lambda: m.twice_nll(p),
        "floor": lambda: [a.sum() for a in kern],
        "floor_in": lambda: [a.sum() for a in inputs],
    }
    if K:
        m.twice_nll_and_grad(p_out)
        fns["vg_exp"] = lambda: m.twice_nll_and_grad(p_out)
    t = timed_min(fns, repeat)
    return {
        "events": n,
        "K": K,
        "C": C,
        "vg_ms": 1e3 * t["vg"],
        "v_ms": 1e3 * t["v"],
        "vg_exp_ms": 1e3 * t.get("vg_exp", float("nan")),
        "floor_ms": 1e3 * t["floor"],
        "floor_in_ms": 1e3 * t["floor_in"],
        "ratio": t["vg"] / t["floor"],
        "ratio_in": t["vg"] / t["floor_in"],
        "ns_per_event": 1e9 * t["vg"] / n,
        "kernel_MB": sum(a.nbytes for a in kern) / 1e6,
        "input_MB": sum(a.nbytes for a in inputs) / 1e6,
        "peak_MB": vm_hwm_mb(),
        "build_s": t_build,
        "compile_s": t_compile_vg + t_compile_v,
    }


COLUMNS = [
    ("events", "events", ".0e"),
    ("K", "shape syst", "d"),
    ("vg_ms", "NLL+grad [ms]", ".1f"),
    ("v_ms", "NLL only [ms]", ".1f"),
    ("vg_exp_ms", "NLL+grad, one α=1.5 [ms]", ".1f"),
    ("floor_ms", "numpy floor [ms]", ".1f"),
    ("ratio", "ratio to floor", ".2f"),
    ("ratio_in", "ratio to input-column floor", ".2f"),
    ("ns_per_event", "ns/event", ".0f"),
    ("kernel_MB", "arrays read [MB]", ".0f"),
    ("peak_MB", "peak RSS [MB]", ".0f"),
    ("compile_s", "compile [s]", ".1f"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", default="1e4,1e5,1e6", help="comma-separated event counts")
    ap.add_argument("--systematics", default="0,1,3,10", help="comma-separated numbers of shape systematics")
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--big", action="store_true", help="also 1e7 events (systematics <= 3 only)")
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, help="write the rows as JSON")
    ap.add_argument("--worker", nargs=5, type=float, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        n, K, C, rep, seed = map(int, a.worker)
        print(json.dumps(worker(n, K, C, rep, seed)))
        return
    events = [int(float(x)) for x in a.events.split(",")]
    systs = [int(x) for x in a.systematics.split(",")]
    if a.big and int(1e7) not in events:
        events.append(int(1e7))
    info = machine_info()
    print_machine(info)
    rows = []
    for n in events:
        for K in systs:
            if n >= int(1e7) and K > 3:
                continue
            r = run_worker(Path(__file__), [n, K, a.processes, a.repeat, a.seed])
            rows.append(r)
            print(f"  done: {n:.0e} events, K={K}: {r['vg_ms']:.1f} ms, ratio {r['ratio']:.2f}", flush=True)
    print()
    print(f"Unbinned NLL+gradient, {a.processes} processes (min of {a.repeat}; ratios measured in the same process)")
    print(table(rows, COLUMNS))
    if a.json:
        a.json.write_text(json.dumps({"machine": info, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
