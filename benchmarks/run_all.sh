#!/usr/bin/env bash
# Run every benchmark and collect the tables in benchmarks/results-<date>.md.
# Usage: benchmarks/run_all.sh [--quick] [--big]     (from the repository root)
#   --quick  smaller sizes (a few minutes); --big  adds 1e7 events to the NLL benchmark
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
QUICK=0; BIG=""
for a in "$@"; do
  case "$a" in
    --quick) QUICK=1 ;;
    --big) BIG="--big" ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
OUT=benchmarks/results-$(date +%Y%m%d-%H%M).md
{
  echo "# nsbi benchmarks $(date -Iseconds)"
  echo '```'; lscpu | grep -E 'Model name|^CPU\(s\)|Thread|Core|L2|L3|Hypervisor' || true; echo '```'
  if [ "$QUICK" = 1 ]; then
    $PY benchmarks/bench_nll.py --events 1e4,1e5,1e6 --systematics 0,3 --repeat 5
    $PY benchmarks/bench_fit.py --events 1e5 --repeat 2
    $PY benchmarks/bench_onnx.py --events 1e5 --repeat 3 --train-events 5e4 --epochs 3
    $PY benchmarks/bench_toys.py --toys 50
    $PY benchmarks/bench_toys_unbinned.py --toys 50 --mc 50000
    $PY benchmarks/bench_read.py --events 2e4 --step 5000 --repeat 2
    $PY benchmarks/bench_select.py --events 1e6 --steps 10000,100000
  else
    $PY benchmarks/bench_nll.py $BIG
    $PY benchmarks/bench_fit.py
    $PY benchmarks/bench_onnx.py
    $PY benchmarks/bench_toys.py
    $PY benchmarks/bench_toys_unbinned.py
    $PY benchmarks/bench_read.py
    $PY benchmarks/bench_select.py
  fi
  for d in results/*/benchmarks; do
    [ -d "$d" ] && $PY benchmarks/bench_workflow.py "$d"
  done
} 2>&1 | grep -v -E 'Warning|warn\(|litlogger|TPU available|GPU available|Trainer.fit. stopped' | tee "$OUT"
echo "written: $OUT"
