"""Jobs whose memory is bounded by their chunk, not by their input.

A Neyman chunk's memory is bounded by the fit batch size, not by the number of toys: each
measurement runs one chunk in a fresh process and reads its peak resident memory (VmHWM). The
toys are large on purpose (~4 000 events each, 2 processes x 3 per-event systematics), so that
fitting every toy of a chunk in one vectorised call costs far more memory for twice the toys,
which the control measurement checks.

The region split (:func:`nsbi.prep.split_region_to_files`) holds about one row group of numpy
data, whatever its input's size, and writes the values the whole-file split gives, for any
row-group size of its input and output (peak traced memory of numpy buffers, tracemalloc).
"""

import gc
import json
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from conftest import ROOT

import nsbi.io as nio
from nsbi.prep import split_region, split_region_to_files

WORKER = r"""
import json, sys
import numpy as np
from nsbi.model import Model
from nsbi.neyman import compute_chunk
from nsbi.toys import ToyGenerator

n_toys, batch_size = int(sys.argv[1]), int(sys.argv[2]) or None
rng = np.random.default_rng(3)
n = 20000
ev = {"weight": np.ones(n)}
for c in ("A", "B"):
    ev[f"logr_{c}"] = rng.normal(0, 0.3, n)
    for k in range(3):
        z = rng.normal(0, 0.05, n)
        ev[f"logr_{c}__s{k}_up"], ev[f"logr_{c}__s{k}_down"] = z, -z
mods = [{"name": f"s{k}", "type": "eventsys"} for k in range(3)]
spec = {"channels": [{"name": "u", "type": "unbinned", "samples": [
    {"name": "A", "yield": 400.0, "morphing": "mu", "modifiers": mods},
    {"name": "B", "yield": 3600.0, "modifiers": mods},
]}]}
meas = {"name": "m", "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [[0.0, 5.0]]}]}}
model = Model(spec, {"u": {k: v[:4000] for k, v in ev.items()}}, meas)
gen = ToyGenerator(model, {"u": ev})
gen.pad_to = [4096]
chunk = compute_chunk(gen, 1.0, n_toys, 7, batch_size=batch_size)
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"peak_mb": peak / 1024, "n_failed": chunk["n_failed"], "n": len(chunk["t"])}))
"""


def _peak_mb(n_toys: int, batch_size: int) -> float:
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, str(n_toys), str(batch_size)], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["n"] == n_toys and out["n_failed"] == 0
    return out["peak_mb"]


@pytest.mark.slow
def test_chunk_memory_is_bounded_by_the_fit_batch_size():
    batched = {t: _peak_mb(t, 16) for t in (64, 128)}
    # control: all toys in one vectorised call, the memory grows with the number of toys
    unbatched = {t: _peak_mb(t, 0) for t in (64, 128)}
    growth = unbatched[128] - unbatched[64]
    assert growth > 100, unbatched
    # twice the toys at the same batch size: the same memory up to the toys' own data (a few MB)
    # and the spread of the peak between identical JAX processes (seen up to ~25 MB), a small
    # fraction of what the same 64 extra toys cost in one vectorised call
    assert batched[128] - batched[64] < min(50.0, 0.25 * growth), (batched, unbatched)
    assert unbatched[128] - batched[128] > 100, (unbatched, batched)


N_FEATURES = 6


def _select_output(path, n: int, seed: int = 1) -> dict[str, np.ndarray]:
    """A file laid out as a select job's output (features, ``weight``, ``event_key``; row groups
    of ``nio.ROW_GROUP_ROWS``); returns its columns."""
    rng = np.random.default_rng(seed)
    cols = {f"x{i}": rng.normal(size=n) for i in range(N_FEATURES)}
    cols["weight"] = rng.normal(1.0, 1.0, n)  # some negative weights
    cols["event_key"] = rng.permutation(n).astype(np.uint64)
    with nio.parquet_stream(path) as out:
        for s in range(0, n, 1000):
            out.write({k: v[s : s + 1000] for k, v in cols.items()})
    return cols


def _scores(columns):
    return {"score_a": 1.0 / (1.0 + np.exp(-np.asarray(columns["x0"]))), "score_b": np.asarray(columns["x2"]) ** 2}


SELECTION = "(score_a > 0.3) & (x1 < 0.5)"


@pytest.mark.parametrize("rows_in, rows_out", [(7, 300), (300, 300), (1000, 64), (4096, 10**6)])
def test_region_split_values_do_not_depend_on_the_row_groups(tmp_path, monkeypatch, rows_in, rows_out):
    """The streamed split (row group by row group of its input, column by column, kept rows
    copied into the output's row groups) writes bit for bit the rows, columns, dtypes and
    yields of the whole-file split, in row groups of ``ROW_GROUP_ROWS`` rows."""
    monkeypatch.setattr(nio, "ROW_GROUP_ROWS", rows_in)
    cols = _select_output(tmp_path / "sel.parquet", 9_000)
    ref = split_region(cols, SELECTION, "regions[0].selection", _scores(cols))
    monkeypatch.setattr(nio, "ROW_GROUP_ROWS", rows_out)
    summary = split_region_to_files(
        str(tmp_path / "sel.parquet"), tmp_path / "r.parquet", tmp_path / "r.json", SELECTION, "k", _scores, "test"
    )
    back = nio.read_parquet(tmp_path / "r.parquet")
    assert list(back) == list(ref) == [*cols, "score_a", "score_b"]
    for k in ref:
        assert back[k].dtype == ref[k].dtype
        np.testing.assert_array_equal(back[k], ref[k])
    w = ref["weight"]
    assert 0 < len(w) < 9_000 and summary["n_events"] == len(w) and summary["n_negative"] == int((w < 0).sum())
    sizes = [len(g["weight"]) for g in nio.iter_parquet(tmp_path / "r.parquet", ["weight"])]
    assert sizes[:-1] == [rows_out] * (len(w) // rows_out) and sum(sizes) == len(w)


def _split_peak(tmp_path, n: int, whole_file: bool = False) -> int:
    """Peak traced memory (numpy buffers) of splitting a select output of ``n`` rows."""
    sel = tmp_path / f"sel{n}.parquet"
    _select_output(sel, n, seed=n)
    gc.collect()  # the same garbage collections during the measure whatever ran before
    tracemalloc.start()
    if whole_file:
        split_region(nio.read_parquet(sel), "x1 > 0")
    else:
        split_region_to_files(str(sel), tmp_path / f"r{n}.parquet", tmp_path / f"r{n}.json", "x1 > 0")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_region_split_memory_does_not_grow_with_the_input(tmp_path, monkeypatch):
    """The streamed split's peak traced memory is the same for an input twice as large, and
    about one row group: the output's row group, filled column by column, plus the indices of
    the kept rows (1.2 row groups here; 1.56 when the split held each row group's kept rows
    before copying them). The whole-file split grows with the input (the measure can see
    growth)."""
    monkeypatch.setattr(nio, "ROW_GROUP_ROWS", 8000)
    group_bytes = 8000 * (N_FEATURES + 2) * 8
    _split_peak(tmp_path, 4_000)  # lazy imports, caches
    peaks = {n: _split_peak(tmp_path, n) for n in (200_000, 400_000)}
    whole = {n: _split_peak(tmp_path, n, whole_file=True) for n in (200_000, 400_000)}
    assert peaks[400_000] < 1.1 * peaks[200_000], peaks
    assert max(peaks.values()) < 1.35 * group_bytes, (peaks, group_bytes)
    assert whole[400_000] > 1.6 * whole[200_000], whole
