"""Small helpers for the thin Snakemake scripts: logging to the job's log file, holding the job
to its declared number of threads, progress bars."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def interactive() -> bool:
    """True when progress bars make sense: stderr is a terminal and ``CI`` is not set."""
    return sys.stderr.isatty() and not os.environ.get("CI")


#: environment variables read by OpenMP, OpenBLAS and MKL when their thread pools start
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _jax_started() -> bool:
    """True when JAX has created its backends (and with them its thread pools) already."""
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge  # no public query exists; absent in a future JAX: assume started

    started = getattr(xla_bridge, "backends_are_initialized", None)
    return True if started is None else bool(started())


def limit_threads(n: int) -> int:
    """Hold this process's numerical libraries to ``n`` compute threads (Snakemake's ``threads``).

    Without this every job starts one thread per CPU of the machine, so ``snakemake --cores 8``
    running eight one-thread jobs runs 8 x 8 threads, and a SLURM job given ``--cpus-per-task=2``
    on a 64-core node starts 64. Sets the OpenMP/BLAS variables and torch's intra-op pool. XLA
    (JAX) has no thread-count option: its CPU client sizes its pool from the CPUs the process
    may run on, so the process is restricted to ``n`` of them while JAX starts and released
    again afterwards (every thread may then run on any allowed CPU; only the pool size stays).
    Must run before the first JAX computation; later it only logs that XLA keeps its pool. A
    process that has not imported JAX yet does not import it here: :mod:`nsbi.jax_setup`
    applies the limit when it is imported. Returns the thread count in effect (at most the number of CPUs the process may use).
    """
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    n = max(1, min(int(n), len(allowed) or int(n)))
    for var in THREAD_ENV:
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    if not allowed or n >= len(allowed):
        return n
    if _jax_started():
        logging.getLogger("nsbi").warning("JAX started before limit_threads(%d): XLA keeps one thread per CPU", n)
        return n
    if "jax" not in sys.modules:
        # a job that has not imported JAX (training, selection, ONNX evaluation) does not pay
        # its import (seconds); nsbi.jax_setup applies the limit if the job imports it later
        global _PENDING_JAX_THREADS
        _PENDING_JAX_THREADS = n
        return n
    _start_jax(n, allowed)
    return n


#: thread count for XLA set by :func:`limit_threads` before JAX was imported
_PENDING_JAX_THREADS: int | None = None


def _start_jax(n: int, allowed: list[int]) -> None:
    """Create JAX's CPU client with a pool of ``n`` threads: the process is restricted to ``n``
    CPUs while the client starts, then every thread is released to all ``allowed`` CPUs."""
    os.sched_setaffinity(0, allowed[:n])
    try:
        import jax

        jax.devices()  # creates the clients, which size their thread pools from the affinity mask
    finally:
        for tid in os.listdir("/proc/self/task"):  # every thread JAX started, and this one
            try:
                os.sched_setaffinity(int(tid), allowed)
            except OSError:  # a thread that has exited meanwhile
                pass


def apply_pending_jax_threads() -> None:
    """Start JAX with the thread count :func:`limit_threads` set before JAX was imported
    (called by :mod:`nsbi.jax_setup` on import; does nothing otherwise)."""
    global _PENDING_JAX_THREADS
    n, _PENDING_JAX_THREADS = _PENDING_JAX_THREADS, None
    if n is not None and not _jax_started():
        _start_jax(n, sorted(os.sched_getaffinity(0)))


@contextmanager
def job_logging(smk: Any, name: str = "nsbi") -> Iterator[logging.Logger]:
    """Send ``logging`` output (and uncaught errors) of a Snakemake script to ``smk.log[0]``,
    and hold the job to the ``threads`` its rule declares (:func:`limit_threads`).

    Errors are logged with their traceback and re-raised, so Snakemake marks the job failed
    and deletes its outputs while the log is kept.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if smk is not None and len(smk.log):
        Path(smk.log[0]).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(smk.log[0], mode="w"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s", handlers=handlers, force=True
    )
    log = logging.getLogger(name)
    try:
        if smk is not None and getattr(smk, "threads", None):
            log.info("threads: %d", limit_threads(smk.threads))
        yield log
    except Exception:
        log.exception("job failed")
        raise
