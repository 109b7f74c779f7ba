"""nsbi.workflow.limit_threads holds a job to its declared thread count, XLA included (XLA has no
thread-count flag: the pool is sized while the process is restricted to n CPUs), and leaves the
process free to run on every CPU afterwards."""

import json
import os
import subprocess
import sys

import pytest

CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1

# CPU seconds per wall second of a JAX computation that XLA parallelises (a large matmul and an
# elementwise exp), after limit_threads(n) or without it (n = 0)
PROBE = """
import json, os, resource, sys, time
n = int(sys.argv[1])
before = sorted(os.sched_getaffinity(0))
from nsbi.workflow import limit_threads
used = limit_threads(n) if n else None
import jax, jax.numpy as jnp
x = jnp.ones((1500, 1500))
f = jax.jit(lambda a: (a @ a).sum() + jnp.exp(a).sum())
f(x).block_until_ready()
t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
while time.perf_counter() - t0 < 1.5:
    f(x).block_until_ready()
r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
print(json.dumps({"used": used, "load": (r1.ru_utime - r0.ru_utime) / wall,
                  "before": before, "after": sorted(os.sched_getaffinity(0)),
                  "omp": os.environ.get("OMP_NUM_THREADS")}))
"""


def _probe(n: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "XLA_FLAGS")}
    out = subprocess.run([sys.executable, "-c", PROBE, str(n)], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(CPUS < 2, reason="needs at least 2 CPUs to tell one thread from several")
def test_one_thread_reaches_xla_and_the_process_stays_unpinned():
    r = _probe(1)
    assert r["used"] == 1 and r["omp"] == "1"
    # one busy thread: at most 1 CPU-second per second (load from other processes only lowers it)
    assert r["load"] < 1.25, r
    assert r["after"] == r["before"], "the process must not stay pinned to one CPU"


@pytest.mark.skipif(CPUS < 2, reason="needs at least 2 CPUs")
def test_more_threads_than_cpus_is_capped_and_changes_nothing_else():
    r = _probe(CPUS + 3)
    assert r["used"] == CPUS and r["omp"] == str(CPUS)
    assert r["after"] == r["before"]


def test_late_call_warns_instead_of_pretending(caplog):
    import jax

    from nsbi.workflow import limit_threads

    jax.devices()  # the test process has started JAX already
    if CPUS < 2:
        pytest.skip("needs at least 2 CPUs")
    before = os.environ.get("OMP_NUM_THREADS")
    try:
        with caplog.at_level("WARNING"):
            assert limit_threads(1) == 1
        assert "XLA keeps one thread per CPU" in caplog.text
        assert len(os.sched_getaffinity(0)) == CPUS
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before


def test_job_logging_applies_the_rules_threads(tmp_path):
    from types import SimpleNamespace

    from nsbi.workflow import job_logging

    smk = SimpleNamespace(log=[str(tmp_path / "job.log")], threads=CPUS + 5)
    before = os.environ.get("OMP_NUM_THREADS")
    try:
        with job_logging(smk, "nsbi.test"):
            assert os.environ["OMP_NUM_THREADS"] == str(CPUS)
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before
    assert f"threads: {CPUS}" in (tmp_path / "job.log").read_text()
