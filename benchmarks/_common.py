"""Shared helpers for the benchmark scripts (not a test module, not imported by nsbi).

Conventions: every figure is a minimum over ``repeat`` runs, and every speed is also given
as a ratio to a reference measured in the same process, interleaved with it, so that the
ratios stay meaningful on a shared, loaded machine (absolute times are not).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# ----------------------------------------------------------------------------- timing
def timed_min(fns: dict[str, Callable[[], object]], repeat: int = 7) -> dict[str, float]:
    """Minimum wall time (s) of each callable, interleaved round-robin over ``repeat`` rounds."""
    out = {k: float("inf") for k in fns}
    for _ in range(int(repeat)):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            out[k] = min(out[k], time.perf_counter() - t0)
    return out


def vm_hwm_mb() -> float:
    """Peak resident set size of this process (MB) from /proc/self/status (VmHWM)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def vm_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def run_worker(script: Path, args: Sequence[str], timeout: float = 3600, env: dict | None = None) -> dict:
    """Run ``python script --worker ARGS`` in a fresh process (environment ``env``, default
    this one's); it prints one JSON line last."""
    cmd = [sys.executable, str(script), "--worker", *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT), env=env)
    if p.returncode != 0:
        raise RuntimeError(f"worker {cmd} failed ({p.returncode}):\n{p.stderr[-4000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- machine
def machine_info() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        keep = (
            "Model name",
            "CPU(s)",
            "Thread(s) per core",
            "Core(s) per socket",
            "L2 cache",
            "L3 cache",
            "Hypervisor vendor",
        )
        for line in out.splitlines():
            k, _, v = line.partition(":")
            if k.strip() in keep:
                info[k.strip()] = v.strip()
        flags = re.search(r"Flags:\s*(.*)", out)
        if flags:
            info["simd"] = " ".join(f for f in flags.group(1).split() if f in ("avx2", "fma", "avx512f"))
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        info["load_avg_1min"] = os.getloadavg()[0]
    except OSError:
        pass
    for mod in ("numpy", "jax", "jaxlib", "torch", "lightning", "onnxruntime", "pyhf", "iminuit"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", "?")
        except Exception:  # noqa: BLE001 - optional
            info[mod] = "not installed"
    return info


def print_machine(info: dict | None = None) -> None:
    info = info or machine_info()
    print("# machine: " + "; ".join(f"{k}={v}" for k, v in info.items()))


# ----------------------------------------------------------------------------- tables
def table(rows: Iterable[dict], columns: Sequence[tuple[str, str, str]]) -> str:
    """Markdown table; columns = (key, header, format)."""
    rows = list(rows)
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    sep = "|" + "|".join("---:" for _ in columns) + "|"
    lines = [head, sep]
    for r in rows:
        cells = []
        for k, _, fmt in columns:
            v = r.get(k, "")
            cells.append(format(v, fmt) if isinstance(v, (int, float, np.floating)) and fmt else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- models
def unbinned_events(n: int, processes: int, systematics: int, seed: int) -> dict[str, np.ndarray]:
    """Synthetic per-event columns (weight, logr_P{c}, logr_P{c}__s{k}_up/_down) of an
    Asimov-like dataset: reference events with normalised ratios (E_ref[r] = E_ref[r g] = 1)
    weighted by the nominal expectation, w_i = sum_c nu_c r_c(x_i) / n with nu_c = n / C, so
    the fit converges near mu = 1, alpha = 0 (like a real fit would)."""
    rng = np.random.default_rng(seed)
    ev = {}
    s = np.zeros(n)
    for c in range(processes):
        sig = 0.3
        ev[f"logr_P{c}"] = lr = rng.normal(-0.5 * sig * sig, sig, n)
        s += np.exp(lr) / processes
        for k in range(systematics):
            a = 0.05
            z = rng.normal(0.0, a, n)
            ev[f"logr_P{c}__s{k}_up"] = z - 0.5 * a * a
            ev[f"logr_P{c}__s{k}_down"] = -z - 0.5 * a * a
    ev = {"weight": s, **ev}
    return ev


def unbinned_spec(n: int, processes: int, systematics: int) -> tuple[dict, dict]:
    """Spec + measurement: P0 scaled by POI ``mu``, a normsys on P1.., K eventsys on every process."""
    samples = []
    for c in range(processes):
        mods = [{"name": f"s{k}", "type": "eventsys"} for k in range(systematics)]
        if c:  # backgrounds: a normsys each (on P0 it would be degenerate with mu up to its constraint)
            mods.append({"name": f"norm{c}", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}})
        s = {"name": f"P{c}", "yield": float(n) / processes, "modifiers": mods}
        if c == 0:
            s["morphing"] = "mu"
        samples.append(s)
    spec = {"channels": [{"name": "SR", "type": "unbinned", "samples": samples}]}
    meas = {"name": "m", "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [[0.0, 5.0]]}]}}
    return spec, meas


def shape_norms(ev: dict[str, np.ndarray], spec: dict) -> None:
    """Attach the shape-normalisation nodes (eventsys ``data.norm``) with the workflow's own
    builder, :func:`nsbi.build.shape_norm_nodes`: the synthetic events are all reference
    events (one component, unit weights), so p_c has weights r_c."""
    from nsbi.build import shape_norm_nodes

    samples = spec["channels"][0]["samples"]
    table = {**ev, "process": np.full(len(ev["weight"]), "ref"), "weight": np.ones(len(ev["weight"]))}
    systs = {s["name"]: [m["name"] for m in s["modifiers"] if m["type"] == "eventsys"] for s in samples}
    nodes = shape_norm_nodes(table, {"ref": 1.0}, list(systs), systs)
    for s in samples:
        for m in s["modifiers"]:
            if m["type"] == "eventsys":
                m["data"] = {"norm": nodes[s["name"]][m["name"]]}


def unbinned_model(n: int, processes: int = 4, systematics: int = 3, seed: int = 1):
    from nsbi.model import Model

    ev = unbinned_events(n, processes, systematics, seed)
    spec, meas = unbinned_spec(n, processes, systematics)
    shape_norms(ev, spec)
    return Model(spec, {"SR": ev}, meas), ev


def synthetic_pyhf_workspace(
    seed: int = 2024, channels: int = 10, bins: int = 20, backgrounds: int = 4, shapesys_channels: int = 2
) -> dict:
    """Deterministic large pyhf workspace: ``channels`` x ``bins``, a signal (``mu``) and
    ``backgrounds`` background samples with normsys (shared + per sample), histosys (shared),
    staterror (per channel) and shapesys (first background of the first ``shapesys_channels``
    channels; every staterror/shapesys bin is a parameter); lumi on the signal.
    Observations are Poisson draws of the nominal expectation at mu = 1 (seeded)."""
    rng = np.random.default_rng(seed)
    chans, obs = [], []
    x = np.linspace(0.0, 1.0, bins)
    for ch in range(channels):
        samples = []
        peak = rng.uniform(0.2, 0.8)
        sig = 20.0 * np.exp(-0.5 * ((x - peak) / 0.08) ** 2) + 0.1
        samples.append(
            {
                "name": "signal",
                "data": sig.round(6).tolist(),
                "modifiers": [
                    {"name": "mu", "type": "normfactor", "data": None},
                    {"name": "lumi", "type": "lumi", "data": None},
                    {"name": "sig_theory", "type": "normsys", "data": {"hi": 1.08, "lo": 0.93}},
                ],
            }
        )
        total = sig.copy()
        for b in range(backgrounds):
            slope = rng.uniform(-2.0, 0.5)
            nom = rng.uniform(50, 300) * np.exp(slope * x) + rng.uniform(1, 5)
            tilt = rng.uniform(0.02, 0.08) * (x - 0.5)
            mods = [
                {
                    "name": f"bkg{b}_norm",
                    "type": "normsys",
                    "data": {"hi": float(1 + rng.uniform(0.03, 0.15)), "lo": float(1 - rng.uniform(0.03, 0.15))},
                },
                {
                    "name": "jes",
                    "type": "histosys",
                    "data": {
                        "hi_data": (nom * (1 + tilt)).round(6).tolist(),
                        "lo_data": (nom * (1 - tilt)).round(6).tolist(),
                    },
                },
                {"name": f"stat_ch{ch}", "type": "staterror", "data": np.sqrt(nom).round(6).tolist()},
            ]
            if b == 0 and ch < shapesys_channels:
                mods.append({"name": f"shape_ch{ch}", "type": "shapesys", "data": (0.05 * nom).round(6).tolist()})
            if b == 1:
                mods.append({"name": f"eff_ch{ch % 3}", "type": "normsys", "data": {"hi": 1.04, "lo": 0.96}})
            samples.append({"name": f"bkg{b}", "data": nom.round(6).tolist(), "modifiers": mods})
            total += nom
        chans.append({"name": f"ch{ch}", "samples": samples})
        obs.append({"name": f"ch{ch}", "data": rng.poisson(total).astype(float).tolist()})
    return {
        "version": "1.0.0",
        "channels": chans,
        "observations": obs,
        "measurements": [
            {
                "name": "meas",
                "config": {
                    "poi": "mu",
                    "parameters": [
                        {"name": "lumi", "auxdata": [1.0], "sigmas": [0.02], "bounds": [[0.5, 1.5]], "inits": [1.0]},
                        {"name": "mu", "bounds": [[0.0, 10.0]], "inits": [1.0]},
                    ],
                },
            }
        ],
    }


def published_style_workspace(seed: int = 7, scale: int = 1) -> dict:
    """Deterministic workspace shaped like a published search likelihood (HEPData style).

    ``scale`` = 1: 4 signal regions x 3 bins, 3 one-bin control regions and 2 two-bin
    validation regions (9 channels, 19 bins); a signal (POI ``mu_sig``) and 7 backgrounds, two
    of them normalised in the control regions (``mu_ttbar``, ``mu_wjets``); 36 experimental
    histosys shared by every MC sample and channel (some one-sided, a few pruned per sample),
    one theory normsys per background and one theory histosys for the two largest, lumi,
    and a staterror per channel: 66 parameters. ``scale`` = k repeats the regions k times and
    adds 20 (k - 1) experimental systematics (105 parameters for k = 2, 183 for k = 4).
    Observations are Poisson draws at mu_sig = 1.
    """
    rng = np.random.default_rng(seed)
    regions = []
    for k in range(scale):
        regions += [(f"SR{i}_{k}", 3, "SR") for i in range(4)]
        regions += [(f"CR_{b}_{k}", 1, "CR") for b in ("ttbar", "wjets", "top")]
        regions += [(f"VR{i}_{k}", 2, "VR") for i in range(2)]
    backgrounds = ("ttbar", "wjets", "singletop", "diboson", "zjets", "ttV", "multijet")
    exp = [f"EXP_{n}" for n in ("JES", "JER", "MET", "btag", "ctag", "ltag", "lep", "pu", "trig")]
    exp = [f"{e}_{j}" for e in exp for j in range(4)] + [f"EXP_extra_{j}" for j in range(20 * (scale - 1))]
    norm = {"ttbar": "mu_ttbar", "wjets": "mu_wjets"}
    channels, observations = [], []
    for name, nb, kind in regions:
        base = {"SR": 8.0, "CR": 400.0, "VR": 60.0}[kind] * rng.uniform(0.6, 1.4)
        samples, total = [], np.zeros(nb)
        for s in ("signal", *backgrounds):
            frac = rng.uniform(0.3, 1.0) if s != "signal" else (1.2 if kind == "SR" else 0.03)
            nom = base * frac * np.exp(-rng.uniform(0.1, 0.8) * np.arange(nb)) + 0.05
            mods = [{"name": "lumi", "type": "lumi", "data": None}]
            if s == "signal":
                mods.append({"name": "mu_sig", "type": "normfactor", "data": None})
            elif s in norm:
                mods.append({"name": norm[s], "type": "normfactor", "data": None})
            else:
                mods.append({"name": f"theory_{s}_xsec", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}})
            if s in ("ttbar", "wjets"):
                tilt = rng.uniform(0.03, 0.12) * np.linspace(-1, 1, nb)
                mods.append(
                    {
                        "name": f"theory_{s}_shape",
                        "type": "histosys",
                        "data": {"hi_data": (nom * (1 + tilt)).tolist(), "lo_data": (nom * (1 - tilt)).tolist()},
                    }
                )
            for e in exp:
                if rng.uniform() < 0.15:  # pruned for this sample, as published models are
                    continue
                up = rng.normal(0.0, 0.03, nb)
                dn = -up if rng.uniform() < 0.8 else np.zeros(nb)  # some one-sided
                mods.append(
                    {
                        "name": e,
                        "type": "histosys",
                        "data": {"hi_data": (nom * (1 + up)).tolist(), "lo_data": (nom * (1 + dn)).tolist()},
                    }
                )
            mods.append({"name": f"staterror_{name}", "type": "staterror", "data": (0.05 * nom).tolist()})
            samples.append({"name": s, "data": nom.tolist(), "modifiers": mods})
            total += nom
        channels.append({"name": name, "samples": samples})
        observations.append({"name": name, "data": rng.poisson(total).astype(float).tolist()})
    return {
        "version": "1.0.0",
        "channels": channels,
        "observations": observations,
        "measurements": [
            {
                "name": "NormalMeasurement",
                "config": {
                    "poi": "mu_sig",
                    "parameters": [
                        {"name": "lumi", "auxdata": [1.0], "sigmas": [0.017], "bounds": [[0.9, 1.1]], "inits": [1.0]},
                        {"name": "mu_sig", "bounds": [[0.0, 10.0]], "inits": [1.0]},
                    ],
                },
            }
        ],
    }
