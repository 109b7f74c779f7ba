"""A Neyman chunk's memory is bounded by the fit batch size, not by the number of toys.

Each measurement runs one chunk in a fresh process and reads its peak resident memory
(VmHWM). The toys are large on purpose (~4 000 events each, 2 processes x 3 per-event
systematics), so that fitting every toy of a chunk in one vectorised call costs far more
memory for twice the toys, which the control measurement checks."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT

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
