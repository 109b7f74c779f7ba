#!/usr/bin/env python
"""A published likelihood fitted from the command line: `nsbi fit` against `pyhf fit`.

Workspaces (written to a temporary directory, deterministic):

* ``published-66``, ``published-105``, ``published-183``: ``_common.published_style_workspace``
  with ``scale`` 1, 2 and 4, shaped like HEPData search likelihoods (signal, control and
  validation regions, shared experimental histosys on every sample, theory normsys,
  background normfactors, lumi, staterror per channel);
* ``synthetic-251``: ``_common.synthetic_pyhf_workspace`` (10 channels x 20 bins, most
  parameters staterror/shapesys gammas), the workspace of bench_fit.py.

For each, in one run, with the commands a user types (wall time of the whole process,
interpreter start and imports included; minimum over ``--repeat`` calls):

* ``nsbi fit WS --output json``, first call: empty caches (``XDG_CACHE_HOME`` and
  ``NSBI_JAX_CACHE`` set to new directories: nothing compiled or generated before);
* the same, repeated: the caches filled by the first call (what a user's second call sees);
* ``pyhf fit --value WS`` (pyhf's defaults: numpy backend, scipy optimiser) and
  ``pyhf fit --value --backend jax --optimizer minuit WS``; pyhf keeps no compilation cache,
  so its first and repeated calls differ only by the operating system's file cache.

nsbi's fit also computes the HESSE errors and correlations; ``pyhf fit`` returns only the
best-fit values. These workspaces are pure HistFactory models, which nsbi evaluates with numpy
(``nsbi.model.Model.backend``): its command imports no JAX.

Then, in one process per tool: the warm fit (nsbi: MIGRAD seeded with the exact Hessian +
HESSE, with numpy as the command does, and with ``backend="jax"``, the compiled programs that
toys and combined models use; pyhf: ``pyhf.infer.mle.fit`` with the JAX backend and minuit,
uncertainties on), the time of the first fit (compilation included: nsbi's JAX compile time
is the JAX backend's first fit minus its warm fit) and -2 ln L at each tool's minimum, at
nsbi's minimum evaluated by pyhf (numpy backend) and between nsbi's two backends.

Targets (issue "Published likelihoods as first-class inputs"): CLI nsbi <= 0.5x pyhf for the
first and the repeated call; jit-warm fit >= 3x faster than pyhf-jax; -2 ln L agreement to
1e-8 relative.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import ROOT, print_machine, published_style_workspace, run_worker, synthetic_pyhf_workspace, table

BIN = Path(sys.executable).parent


def workspaces(which: list[str]) -> dict[str, dict]:
    makers = {
        "published-66": lambda: published_style_workspace(scale=1),
        "published-105": lambda: published_style_workspace(scale=2),
        "published-183": lambda: published_style_workspace(scale=4),
        "synthetic-251": lambda: synthetic_pyhf_workspace(),
    }
    return {k: makers[k]() for k in which}


def timed_cli(cmd: list[str], env: dict | None = None) -> tuple[float, dict]:
    """Wall time of one command and its JSON output (stdout)."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=3600)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return dt, json.loads(p.stdout)


def cli_rows(name: str, path: Path, repeat: int, tmp: Path) -> dict:
    cache = tmp / f"jaxcache-{name}"
    user = tmp / f"usercache-{name}"
    for d in (cache, user):
        shutil.rmtree(d, ignore_errors=True)
    env = {**os.environ, "NSBI_JAX_CACHE": str(cache), "XDG_CACHE_HOME": str(user)}
    nsbi = [str(BIN / "nsbi"), "fit", str(path), "--output", "json"]
    first, out_n = timed_cli(nsbi, env)
    again = min(timed_cli(nsbi, env)[0] for _ in range(repeat))
    pyhf_np = [str(BIN / "pyhf"), "fit", "--value", str(path)]
    pyhf_jax = pyhf_np + ["--backend", "jax", "--optimizer", "minuit"]
    t_np, out_p = zip(*(timed_cli(pyhf_np) for _ in range(repeat)))
    t_jax, out_j = zip(*(timed_cli(pyhf_jax) for _ in range(repeat)))
    return {
        "nsbi_first": first,
        "nsbi_again": again,
        "pyhf_np_first": t_np[0],
        "pyhf_np": min(t_np),
        "pyhf_jax_first": t_jax[0],
        "pyhf_jax": min(t_jax),
        "nll_nsbi": out_n["twice_nll"],
        "nll_pyhf_np": out_p[0]["twice_nll"],
        "nll_pyhf_jax": out_j[0]["twice_nll"],
    }


def first_and_warm(run, repeat: int):
    """``run()``'s result, the time of its first call and the minimum of ``repeat`` more."""
    t0 = time.perf_counter()
    out = run()
    first = time.perf_counter() - t0
    warm = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = run()
        warm.append(time.perf_counter() - t0)
    return out, first, min(warm)


def worker(tool: str, path: str, repeat: int) -> dict:
    """One tool in this fresh process: first fit (with compilation) and jit-warm fit."""
    spec = json.loads(Path(path).read_text())
    import pyhf

    if tool in ("nsbi", "nsbi-jax"):
        from nsbi import fit as F
        from nsbi import workspace as W

        model = W.from_pyhf(spec).model(backend="jax" if tool == "nsbi-jax" else "auto")
        r, first, warm = first_and_warm(lambda: F.fit(model), repeat)
        ws = pyhf.Workspace(spec)
        pm = ws.model()
        # nsbi's best fit in pyhf's parameter order, evaluated by pyhf (numpy backend)
        vals = np.concatenate([np.atleast_1d(r.values[model.par_slices[n]]) for n in pm.config.par_order])
        pyhf_at_nsbi = float(-2 * pm.logpdf(vals, ws.data(pm))[0])
        return {
            "first": first,
            "warm": warm,
            "twice_nll": r.twice_nll,
            "pyhf_at_nsbi_min": pyhf_at_nsbi,
            "valid": bool(r.status["valid"]),
            "npars": model.npars,
            "minimizer": r.status["minimizer"],
            "backend": model.backend,
        }
    pyhf.set_backend("jax", pyhf.optimize.minuit_optimizer(tolerance=1e-3, strategy=1))
    ws = pyhf.Workspace(spec)
    pm = ws.model()
    data = ws.data(pm)
    (_, f), first, warm = first_and_warm(
        lambda: pyhf.infer.mle.fit(data, pm, return_uncertainties=True, return_fitted_val=True), repeat
    )
    return {"first": first, "warm": warm, "twice_nll": float(f)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--workspaces", default="published-66,published-105,published-183,synthetic-251", help="comma-separated"
    )
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--worker", nargs=3, metavar=("TOOL", "PATH", "REPEAT"))
    a = ap.parse_args()
    if a.worker:
        tool, path, rep = a.worker
        print(json.dumps(worker(tool, path, int(rep))))
        return
    print_machine()
    cli, inproc = [], []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, spec in workspaces(a.workspaces.split(",")).items():
            path = tmp / f"{name}.json"
            path.write_text(json.dumps(spec))
            nbins = sum(len(c["samples"][0]["data"]) for c in spec["channels"])
            r = cli_rows(name, path, a.repeat, tmp)
            env = {**os.environ, "NSBI_JAX_CACHE": ""}  # in-process timings: no persistent cache
            n, nj, p = (
                run_worker(Path(__file__), [tool, path, a.repeat], env=env) for tool in ("nsbi", "nsbi-jax", "pyhf")
            )
            label = f"{name} ({len(spec['channels'])} ch, {nbins} bins)"
            cli.append(
                {
                    "ws": label,
                    **r,
                    "ratio_first_np": r["nsbi_first"] / r["pyhf_np_first"],
                    "ratio_again_np": r["nsbi_again"] / r["pyhf_np"],
                    "ratio_first_jax": r["nsbi_first"] / r["pyhf_jax_first"],
                    "ratio_again_jax": r["nsbi_again"] / r["pyhf_jax"],
                }
            )
            inproc.append(
                {
                    "ws": label,
                    "npars": n["npars"],
                    "backend": n["backend"],
                    "nsbi_warm": n["warm"],
                    "jax_warm": nj["warm"],
                    "pyhf_warm": p["warm"],
                    "speedup": p["warm"] / n["warm"],
                    "speedup_jax": p["warm"] / nj["warm"],
                    "nsbi_first": n["first"],
                    "pyhf_first": p["first"],
                    "nsbi_compile": nj["first"] - nj["warm"],
                    "jax_rel": (nj["twice_nll"] - n["twice_nll"]) / abs(n["twice_nll"]),
                    "nll_nsbi": n["twice_nll"],
                    "nll_pyhf": p["twice_nll"],
                    "rel_min": (n["twice_nll"] - p["twice_nll"]) / abs(p["twice_nll"]),
                    "rel_same": (n["twice_nll"] - n["pyhf_at_nsbi_min"]) / abs(n["pyhf_at_nsbi_min"]),
                    "valid": n["valid"],
                }
            )
            print(f"# done {label}", flush=True)
    print("\nCLI wall time [s] (whole process; nsbi: empty cache / filled cache)\n")
    print(
        table(
            cli,
            [
                ("ws", "workspace", ""),
                ("nsbi_first", "nsbi first", ".2f"),
                ("nsbi_again", "nsbi repeated", ".2f"),
                ("pyhf_np", "pyhf (numpy, scipy)", ".2f"),
                ("pyhf_jax", "pyhf (jax, minuit)", ".2f"),
                ("ratio_first_np", "first / pyhf numpy", ".2f"),
                ("ratio_again_np", "repeated / pyhf numpy", ".2f"),
                ("ratio_first_jax", "first / pyhf jax", ".2f"),
                ("ratio_again_jax", "repeated / pyhf jax", ".2f"),
            ],
        )
    )
    print("\n-2 ln L at each CLI's minimum\n")
    print(
        table(
            cli,
            [
                ("ws", "workspace", ""),
                ("nll_nsbi", "nsbi", ".6f"),
                ("nll_pyhf_np", "pyhf numpy", ".6f"),
                ("nll_pyhf_jax", "pyhf jax", ".6f"),
            ],
        )
    )
    print("\nIn-process fits [s] (fresh process per tool and backend, no persistent cache)\n")
    print(
        table(
            inproc,
            [
                ("ws", "workspace", ""),
                ("npars", "parameters", "d"),
                ("backend", "nsbi backend", ""),
                ("nsbi_warm", "nsbi warm", ".3f"),
                ("jax_warm", "nsbi jax jit-warm", ".3f"),
                ("pyhf_warm", "pyhf-jax jit-warm", ".3f"),
                ("speedup", "speed-up", ".1f"),
                ("speedup_jax", "speed-up jax", ".1f"),
                ("nsbi_first", "nsbi first fit", ".2f"),
                ("nsbi_compile", "nsbi jax compile", ".2f"),
                ("pyhf_first", "pyhf-jax first fit", ".2f"),
                ("rel_min", "rel. diff -2lnL at minima", ".1e"),
                ("rel_same", "rel. diff same point", ".1e"),
                ("jax_rel", "rel. diff jax/numpy minima", ".1e"),
                ("valid", "nsbi valid", ""),
            ],
        )
    )


if __name__ == "__main__":
    sys.exit(main())
