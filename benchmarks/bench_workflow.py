#!/usr/bin/env python
"""Wall time per workflow stage from Snakemake ``benchmark:`` files (does not run anything).

Reads every ``*.tsv`` under ``results/<analysis>/benchmarks/`` (Snakemake's benchmark format:
columns ``s``, ``h:m:s``, ``max_rss``, ``max_vms``, ..., ``cpu_time``; one row per repeat,
the first row is used) and groups the jobs by stage = the first ``--depth`` path components
below ``benchmarks/`` (depth 1: the rule family, e.g. ``prep``, ``train``, ``fit``). Prints per
stage: number of jobs, summed job wall time (= serial time), the longest job, summed CPU
time, the largest peak RSS, and the elapsed span estimated from the file times (first job
start = its mtime - s, to the last mtime; parallel jobs make the span shorter than the sum).

    python benchmarks/bench_workflow.py results/hzz4l/benchmarks
    python benchmarks/bench_workflow.py results/hzz4l             # benchmarks/ is appended
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from pathlib import Path

from _common import table


def _num(v: str) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def read_benchmark(path: Path) -> dict:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        raise ValueError(f"{path}: empty benchmark file")
    r = rows[0]
    return {
        "s": _num(r.get("s")),
        "max_rss": _num(r.get("max_rss")),
        "cpu_time": _num(r.get("cpu_time")),
        "mtime": path.stat().st_mtime,
    }


def summarise(bench_dir: Path, depth: int = 1) -> list[dict]:
    files = sorted(bench_dir.rglob("*.tsv"))
    if not files:
        raise SystemExit(f"no benchmark files (*.tsv) under {bench_dir}")
    groups: dict[str, list[dict]] = defaultdict(list)
    for p in files:
        rel = p.relative_to(bench_dir)
        parts = rel.with_suffix("").parts
        stage = "/".join(parts[:depth]) if len(parts) > depth else (parts[0] if len(parts) > 1 else "(top)")
        try:
            groups[stage].append(read_benchmark(p))
        except (OSError, ValueError) as e:
            print(f"warning: skipping {p}: {e}")

    def row(name, items):
        starts = [i["mtime"] - (i["s"] if math.isfinite(i["s"]) else 0.0) for i in items]
        return {
            "stage": name,
            "jobs": len(items),
            "sum_s": sum(i["s"] for i in items if math.isfinite(i["s"])),
            "max_s": max((i["s"] for i in items if math.isfinite(i["s"])), default=math.nan),
            "cpu_s": sum(i["cpu_time"] for i in items if math.isfinite(i["cpu_time"])),
            "rss": max((i["max_rss"] for i in items if math.isfinite(i["max_rss"])), default=math.nan),
            "span_s": max(i["mtime"] for i in items) - min(starts),
            "_start": min(starts),
        }

    rows = sorted((row(k, v) for k, v in groups.items()), key=lambda r: r["_start"])
    rows.append(row("total", [i for v in groups.values() for i in v]))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", type=Path, help="results/<analysis>/benchmarks (or results/<analysis>)")
    ap.add_argument("--depth", type=int, default=1, help="path components below benchmarks/ that name a stage")
    a = ap.parse_args()
    d = a.path if a.path.name == "benchmarks" or not (a.path / "benchmarks").is_dir() else a.path / "benchmarks"
    rows = summarise(d, a.depth)
    print(f"Workflow stages from {d} (in order of first start)")
    print(
        table(
            rows,
            [
                ("stage", "stage", ""),
                ("jobs", "jobs", "d"),
                ("sum_s", "Σ job wall [s]", ".1f"),
                ("max_s", "longest job [s]", ".1f"),
                ("span_s", "elapsed span [s]", ".1f"),
                ("cpu_s", "Σ CPU [s]", ".1f"),
                ("rss", "max RSS [MB]", ".0f"),
            ],
        )
    )


if __name__ == "__main__":
    main()
