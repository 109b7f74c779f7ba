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
n, jax_first = int(sys.argv[1]), sys.argv[2] == "jax-first"
before = sorted(os.sched_getaffinity(0))
if jax_first:  # a job whose script imports nsbi's JAX modules before job_logging limits it
    from nsbi.jax_setup import jax, jnp
from nsbi.workflow import limit_threads
used = limit_threads(n) if n else None
imported_by_limit = "jax" in sys.modules and not jax_first
from nsbi.jax_setup import jax, jnp  # otherwise: a job that imports JAX later, or never
x = jnp.ones((1500, 1500))
f = jax.jit(lambda a: (a @ a).sum() + jnp.exp(a).sum())
f(x).block_until_ready()
t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
while time.perf_counter() - t0 < 1.5:
    f(x).block_until_ready()
r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
print(json.dumps({"used": used, "load": (r1.ru_utime - r0.ru_utime) / wall, "imported_by_limit": imported_by_limit,
                  "before": before, "after": sorted(os.sched_getaffinity(0)),
                  "omp": os.environ.get("OMP_NUM_THREADS")}))
"""


def _probe(n: int, order: str = "jax-first") -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "XLA_FLAGS")}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(n), order], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(CPUS < 2, reason="needs at least 2 CPUs to tell one thread from several")
@pytest.mark.parametrize("order", ["jax-first", "jax-later"])
def test_one_thread_reaches_xla_and_the_process_stays_unpinned(order):
    r = _probe(1, order)
    assert r["used"] == 1 and r["omp"] == "1"
    # a job without JAX does not import it to limit it (the import takes seconds)
    assert not r["imported_by_limit"]
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
