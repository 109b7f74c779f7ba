"""JAX in double precision, with a persistent compilation cache, set in one place.

Every likelihood, gradient and Hessian of nsbi is evaluated in float64. Modules that use JAX
import it from here (``from nsbi.jax_setup import jax, jnp``), so the settings are applied
before any array is created, whichever module is imported first.

Compiled XLA programs are kept on disk (:func:`compilation_cache_dir`), so a second process
that fits the same model (a later ``nsbi fit``, the next toy chunk of the workflow) loads them
instead of compiling again. The directory is ``$NSBI_JAX_CACHE`` if set (an empty value
turns the cache off), else ``jax/`` in nsbi's user cache (:mod:`nsbi.user_cache`), in a
subdirectory per JAX version, machine type and CPU feature set: a program compiled for one
CPU is never loaded on another, e.g. on a cluster whose nodes share a home directory.
"""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

import jax
import jax.numpy as jnp

from nsbi.user_cache import cache_root

jax.config.update("jax_enable_x64", True)

__all__ = ["compilation_cache_dir", "jax", "jnp"]


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def compilation_cache_dir() -> Path | None:
    """The persistent compilation cache of this process (``None``: turned off)."""
    root = os.environ.get("NSBI_JAX_CACHE")
    if root == "":
        return None
    if root is None:
        root = cache_root() / "jax"
    key = hashlib.sha256(f"{platform.machine()} {_cpu_flags()}".encode()).hexdigest()[:12]
    return Path(root) / f"jax{jax.__version__}-{platform.machine()}-{key}"


def _enable_cache() -> None:
    path = compilation_cache_dir()
    if path is None:
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: compile every time, as without the cache
        return
    jax.config.update("jax_compilation_cache_dir", str(path))
    # every program (the default skips those that compiled in under 1 s: many small ones add up)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


_enable_cache()

# a job's thread limit set before JAX was imported (nsbi.workflow.limit_threads)
from nsbi.workflow import apply_pending_jax_threads  # noqa: E402 - after the JAX settings above

apply_pending_jax_threads()
