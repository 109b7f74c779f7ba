"""The persistent compilation cache (nsbi.jax_setup): a second process loads the programs the
first compiled instead of compiling them; the cache is per CPU feature set and can be turned off."""

import json
import os
import subprocess
import sys

from nsbi import jax_setup

_PROBE = r"""
import json, sys, time
import numpy as np
from nsbi.jax_setup import jax, jnp, compilation_cache_dir
from jax._src import monitoring

events = []
monitoring.register_event_listener(lambda name, **kw: events.append(name))
f = jax.jit(lambda x: jnp.sum(jnp.log1p(jnp.exp(jnp.sin(x) @ jnp.cos(x).T))))
value = float(f(jnp.asarray(np.linspace(0.0, 1.0, 64).reshape(8, 8))))
print(json.dumps({"dir": str(compilation_cache_dir()), "value": value,
                  "config": jax.config.jax_compilation_cache_dir, "events": sorted(set(events))}))
"""


def _run(env):
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE], env={**os.environ, **env}, capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_second_process_loads_the_compiled_program(tmp_path):
    first = _run({"NSBI_JAX_CACHE": str(tmp_path)})
    assert first["dir"].startswith(str(tmp_path)) and first["config"] == first["dir"]
    files = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert files, "nothing written to the cache"
    second = _run({"NSBI_JAX_CACHE": str(tmp_path)})
    assert second["value"] == first["value"]
    hits = [e for e in second["events"] if "cache_hits" in e]
    assert hits, second["events"]  # the program came from the cache
    assert not [e for e in first["events"] if "cache_hits" in e]


def test_cache_off_and_per_cpu(tmp_path, monkeypatch):
    off = _run({"NSBI_JAX_CACHE": ""})
    assert off["dir"] == "None" and not off["config"]
    monkeypatch.setenv("NSBI_JAX_CACHE", str(tmp_path))
    a = jax_setup.compilation_cache_dir()
    monkeypatch.setattr(jax_setup, "_cpu_flags", lambda: "fpu sse2")
    b = jax_setup.compilation_cache_dir()
    assert a.parent == b.parent == tmp_path and a != b
