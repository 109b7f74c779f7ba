#!/usr/bin/env python
"""Select and region-split jobs in bounded memory: peak RSS and throughput on a large flat file.

Writes a flat ROOT file of ``--events`` events x ``--branches`` float64 branches (plus an
event id and a weight; baskets of 100 000 entries, as a ROOT file filled event by event would
have), then runs, each in its own process (peak RSS = VmHWM of that process):

* ``uproot``: a bare ``uproot.iterate`` over the same branches with the same step (the
  reference for throughput);
* ``read``: nsbi's reader alone, :func:`nsbi.io.iterate_chunks` over the same branches;
* ``select``: :func:`nsbi.prep.select_to_files` keeping every event (all branches as features),
  for each ``--steps`` value: reading chunk by chunk, streaming parquet row groups (the outputs
  of the steps are checked to be byte-identical);
* ``split``: :func:`nsbi.prep.split_region_to_files` on the select output (row group by row
  group, a region cut keeping about half of the events), once: its input does not depend on
  the step, and its chunk is one row group of :data:`nsbi.io.ROW_GROUP_ROWS` rows. To show that
  it does not grow with the input, a file of ``--events``/2 events is also selected (largest
  step) and split.

Printed: events/s, peak RSS, the memory of one chunk (rows x columns x 8 bytes: the step for the
reading jobs, a row group for the split), and the peak over (3 x one chunk + the job's constant).
The constant of a job is the same job on a tiny input (10 events): for the reading jobs, a
process that has imported nsbi.prep and selected it with a step of 1 event (interpreter, numpy,
awkward, uproot, pyarrow, and the first parquet write and read); for the split, the split of
that select output (one row group of 10 rows). Target: peak <= 3 x one chunk + the constant.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import print_machine, run_worker, table, vm_hwm_mb

from nsbi.io import ROW_GROUP_ROWS

BASKET = 100_000


def make_file(path: Path, n: int, branches: int, seed: int = 1) -> None:
    import uproot

    rng = np.random.default_rng(seed)
    names = [f"x{i}" for i in range(branches)]
    with uproot.recreate(path) as fh:
        fh.mktree("events", {"event_number": np.uint64, "weight": np.float64, **dict.fromkeys(names, np.float64)})
        for start in range(0, n, BASKET):
            m = min(BASKET, n - start)
            cols = {"event_number": np.arange(start, start + m, dtype=np.uint64), "weight": rng.normal(1.0, 0.5, m)}
            cols.update({k: rng.normal(0.0, 1.0, m) for k in names})
            fh["events"].extend(cols)


def _spec(path: str, branches: int, step: int) -> dict:
    return dict(
        files=[path],
        tree="events",
        weight="weight",
        features={f"x{i}": f"x{i}" for i in range(branches)},
        selections={"preselection": "x0 > -1e9"},  # keeps every event
        event_key="event_number",
        step_size=step,
    )


def worker(mode: str, path: str, branches: int, step: int, out: str) -> dict:
    """Run one job; only the split job does not import uproot (nor does it in the workflow)."""
    from nsbi.prep import select_to_files, split_region_to_files

    t0 = time.perf_counter()
    if mode == "select":
        n = select_to_files(out + ".parquet", out + ".json", None, **_spec(path, branches, step))["n_events"]
    elif mode == "split":
        n = split_region_to_files(path, out + ".parquet", out + ".json", "x1 > 0", "regions[0].selection")["n_events"]
    elif mode == "uproot":
        import uproot

        n = 0
        names = ["event_number", "weight"] + [f"x{i}" for i in range(branches)]
        for chunk in uproot.iterate({path: "events"}, expressions=names, step_size=step, library="np"):
            n += len(chunk["weight"])
    elif mode == "read":
        from nsbi.io import iterate_chunks

        n = 0
        names = ["event_number", "weight"] + [f"x{i}" for i in range(branches)]
        for _, ns in iterate_chunks([path], "events", names, step_size=step):
            n += len(ns["weight"])
            del ns
    else:  # the constant: imports and a 1-event select
        select_to_files(
            out + ".parquet",
            out + ".json",
            None,
            **dict(_spec(path, branches, 1), files=[path]),
        )
        n = 0
    return {"seconds": time.perf_counter() - t0, "rss_mb": vm_hwm_mb(), "events": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=float, default=1e7)
    ap.add_argument("--branches", type=int, default=12)
    ap.add_argument("--steps", default="100000,1000000")
    ap.add_argument("--worker", nargs=5, metavar=("MODE", "PATH", "BRANCHES", "STEP", "OUT"))
    a = ap.parse_args()
    if a.worker:
        m, path, br, step, out = a.worker
        print(json.dumps(worker(m, path, int(br), int(step), out)))
        return
    print_machine()
    steps = [int(float(s)) for s in a.steps.split(",")]
    n = int(a.events)
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        tmp = str(Path(tmp).resolve())  # the workers run in the repository root
        path = Path(tmp) / "big.root"
        t0 = time.perf_counter()
        make_file(path, n, a.branches)
        print(
            f"# wrote {n} events x {a.branches + 2} branches ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s"
        )
        tiny = Path(tmp) / "tiny.root"
        make_file(tiny, 10, a.branches)
        const = {"select": run_worker(Path(__file__), ["const", tiny, a.branches, 1, Path(tmp) / "c"])["rss_mb"]}
        const["split"] = run_worker(
            Path(__file__), ["split", Path(tmp) / "c.parquet", a.branches, 1, Path(tmp) / "cs"]
        )["rss_mb"]
        half = Path(tmp) / "half.root"
        make_file(half, n // 2, a.branches, seed=2)
        rows = []
        jobs = [(mode, path, n, step) for step in steps for mode in ("uproot", "read", "select")]
        jobs += [("split", path, n, steps[0]), ("select", half, n // 2, steps[-1]), ("split", half, n // 2, steps[-1])]
        for mode, root, n_in, step in jobs:
            sel = Path(tmp) / f"{root.stem}-sel{step}"
            src = f"{sel}.parquet" if mode == "split" else str(root)
            out = sel if mode == "select" else Path(tmp) / f"{root.stem}-{mode}{step}"
            r = run_worker(Path(__file__), [mode, src, a.branches, step, out], timeout=7200)
            chunk_mb = (ROW_GROUP_ROWS if mode == "split" else step) * (a.branches + 2) * 8 / 1e6
            c = const["split" if mode == "split" else "select"]
            rows.append(
                {
                    "mode": mode,
                    "step": step if mode != "split" else f"row groups of {ROW_GROUP_ROWS}",
                    "input": n_in,
                    "rate": r["events"] / r["seconds"] / 1e6,
                    "rss": r["rss_mb"],
                    "chunk": chunk_mb,
                    "ratio": r["rss_mb"] / (3 * chunk_mb + c),
                    "above": (r["rss_mb"] - c) / chunk_mb,
                    "events": r["events"],
                }
            )
        outputs = [Path(tmp) / f"big-sel{step}.parquet" for step in steps]
        same = all(filecmp.cmp(outputs[0], o, shallow=False) for o in outputs[1:])
        print(f"# select outputs of steps {', '.join(map(str, steps))} byte-identical: {same}")
    print(f"\nconstant of select (and of the reading jobs): {const['select']:.0f} MB (10 events, step 1)")
    print(f"constant of split: {const['split']:.0f} MB (one row group of 10 rows)\n")
    cols = [
        ("mode", "job", ""),
        ("step", "step", ""),
        ("input", "events in", "d"),
        ("rate", "M events/s", ".2f"),
        ("rss", "peak RSS [MB]", ".0f"),
        ("chunk", "one chunk [MB]", ".0f"),
        ("ratio", "peak / (3 chunks + const)", ".2f"),
        ("above", "(peak - const) / chunk", ".2f"),
        ("events", "events out", "d"),
    ]
    print(table(rows, cols))


if __name__ == "__main__":
    sys.exit(main())
