"""End-to-end run of a small analysis of the test's own (issue #19): nothing of it is named like
the demo (tree, weight and event-key branches, processes, POI, regions, systematics,
features), it reads a jagged branch and uses polynomial-basis morphing. The ROOT ntuples are
generated here from densities known in closed form, so the exact likelihood of the observed
events is computed in the test and compared with the NSBI result of the whole workflow.

The toy: a diboson-like process whose differential cross section is quadratic in a coupling
modifier ``kappa``,

    dσ(x|κ) = κ² T2(x) + κ T1(x) + T0(x),       x = (leading jet pT, Δφ),

with every T_k a yield times a product density: pT − 30 ~ exponential(scale s_k),
Δφ ~ (1 + c_k cos Δφ)/π on [0, π]. Basis samples are generated at κ = 0, 1, 2 (polynomial
morphing with the functions κ², κ, 1 reproduces dσ(x|κ) exactly), plus a POI-independent
``ttbar`` background. Events are split by the number of b-tagged jets: no b-tag is the
unbinned signal region (all diboson events, a quarter of ttbar), one or two b-tags the binned
ttbar control region (ttbar only, so it does not constrain κ). Systematics: a weight-based
jet-energy-scale-like variation and a normalisation uncertainty, both on ttbar only.
"""

import json
import math
import re
import time
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml
from conftest import ROOT, snakemake
from scipy.optimize import minimize_scalar

from nsbi import config as ncfg
from nsbi.check import check_config
from nsbi.fit import crossings
from nsbi.init import skeleton

pytestmark = pytest.mark.slow

ANALYSIS = "wwtoy"
TREE = "Nominal"
WEIGHT = "evt_w"
EVENT_KEY = "evtnum"
POI = "kappa"
KAPPA_INJECTED = 1.5
BASIS_POINTS = {"ww_k0": 0.0, "ww_k1": 1.0, "ww_k2": 2.0}
N_MC = {"ww_k0": 5000, "ww_k1": 5000, "ww_k2": 5000, "ttbar": 6000}
PT_MIN = 30.0

#: the components T_k of dσ(x|κ) = Σ_k κ^k T_k(x): expected events, pT scale, Δφ modulation
COMPONENTS = {
    2: {"events": 40.0, "scale": 250.0, "c": -0.9},
    1: {"events": 50.0, "scale": 90.0, "c": -0.3},
    0: {"events": 300.0, "scale": 30.0, "c": 0.9},
}
#: ttbar: expected events in all, fraction without b-tag (signal region), shape (both regions)
TTBAR = {"events": 600.0, "sr_fraction": 0.25, "scale": 90.0, "c": 0.0}
#: ttbar jet-energy-scale-like weight variation: w -> w (1 ± JES_SIZE tanh((pT − 90)/50))
JES_SIZE = 0.1

SCAN = {"low": 0.8, "high": 2.4, "points": 41}

#: allowed ratio of the NSBI to the exact 68 % interval width (see the test)
WIDTH_FACTOR = (0.75, 1.33)


# --------------------------------------------------------------------------- generation


def _dphi(rng, n, c):
    """n draws of Δφ ~ (1 + c cos Δφ)/π on [0, π] (rejection sampling, exact)."""
    out = np.empty(0)
    while len(out) < n:
        x = rng.uniform(0.0, math.pi, 2 * n + 16)
        keep = rng.uniform(0.0, 1.0 + abs(c), len(x)) < 1.0 + c * np.cos(x)
        out = np.concatenate([out, x[keep]])
    return out[:n]


def _component(rng, n, scale, c):
    """Leading jet pT and Δφ of n events of one component."""
    return PT_MIN + rng.exponential(scale, n), _dphi(rng, n, c)


def _jets(rng, lead):
    """Jagged jet pT: the leading jet plus 0-2 softer ones, in random order (so that only
    ``max(jet_pt, ...)`` gives the leading one)."""
    n_extra = rng.integers(0, 3, len(lead))
    jets = []
    for pt, k in zip(lead, n_extra):
        row = np.concatenate([[pt], pt * rng.uniform(0.2, 0.95, k)])
        jets.append(rng.permutation(row))
    return ak.Array(jets)


def _write(path, rng, lead, dphi, nbtag, weights, key_offset):
    """One ROOT file with tree ``TREE``; ``weights``: branch name -> per-event weights."""
    n = len(lead)
    keys = key_offset + rng.permutation(n).astype(np.uint64) * np.uint64(7) + np.uint64(3)
    branches = {
        EVENT_KEY: keys,
        "jet_pt": _jets(rng, lead),
        "dphi_ll": dphi,
        "n_btag": np.asarray(nbtag, np.int32),
        **weights,
    }
    with uproot.recreate(path) as fh:
        fh[TREE] = branches


def _mixture(rng, n, kappa):
    """n events of dσ(x|κ): the components in fixed proportions κ^k σ_k / Σ (stratified)."""
    yields = {k: kappa**k * c["events"] for k, c in COMPONENTS.items()}
    total = sum(yields.values())
    counts = {k: int(round(n * y / total)) for k, y in yields.items()}
    counts[0] += n - sum(counts.values())
    parts = [_component(rng, counts[k], c["scale"], c["c"]) for k, c in COMPONENTS.items() if counts[k]]
    lead = np.concatenate([p[0] for p in parts])
    dphi = np.concatenate([p[1] for p in parts])
    order = rng.permutation(n)
    return lead[order], dphi[order], total


def _jes(lead):
    return JES_SIZE * np.tanh((lead - 90.0) / 50.0)


def generate(directory: Path, seed: int = 20260705) -> dict:
    """Write the basis samples, ttbar and the observed data; return the observed
    signal-region events (leading pT, Δφ) for the exact likelihood."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for i, (name, kappa) in enumerate(BASIS_POINTS.items()):
        n = N_MC[name]
        lead, dphi, total = _mixture(rng, n, kappa)
        w = np.full(n, total / n)  # Σw = expected events at κ_j, exactly
        _write(directory / f"{name}.root", rng, lead, dphi, np.zeros(n), {WEIGHT: w}, np.uint64(10**9 * (i + 1)))
    # ttbar: exactly a quarter of the MC without b-tag, so the MC yield in each region is exact
    n = N_MC["ttbar"]
    lead, dphi = _component(rng, n, TTBAR["scale"], TTBAR["c"])
    nbtag = np.where(np.arange(n) < round(TTBAR["sr_fraction"] * n), 0, rng.integers(1, 3, n))
    w = np.full(n, TTBAR["events"] / n)
    weights = {WEIGHT: w, f"{WEIGHT}_jes_up": w * (1 + _jes(lead)), f"{WEIGHT}_jes_down": w * (1 - _jes(lead))}
    _write(directory / "ttbar.root", rng, lead, dphi, nbtag, weights, np.uint64(5 * 10**9))
    # observed data at the injected κ: Poisson counts of every component and of ttbar
    parts = [
        _component(rng, rng.poisson(KAPPA_INJECTED**k * c["events"]), c["scale"], c["c"]) for k, c in COMPONENTS.items()
    ]
    n_ww = sum(len(p[0]) for p in parts)
    tt_lead, tt_dphi = _component(rng, rng.poisson(TTBAR["events"]), TTBAR["scale"], TTBAR["c"])
    tt_nbtag = np.where(rng.uniform(size=len(tt_lead)) < TTBAR["sr_fraction"], 0, rng.integers(1, 3, len(tt_lead)))
    lead = np.concatenate([p[0] for p in parts] + [tt_lead])
    dphi = np.concatenate([p[1] for p in parts] + [tt_dphi])
    nbtag = np.concatenate([np.zeros(n_ww, int), tt_nbtag])
    order = rng.permutation(len(lead))
    lead, dphi, nbtag = lead[order], dphi[order], nbtag[order]
    _write(directory / "obsdata.root", rng, lead, dphi, nbtag, {}, np.uint64(9 * 10**9))
    sr = nbtag == 0
    return {"lead": lead[sr], "dphi": dphi[sr], "n_sr": int(sr.sum()), "n_cr": int((~sr).sum())}


# --------------------------------------------------------------------------- exact likelihood


def _density(lead, dphi, scale, c):
    return np.exp(-(lead - PT_MIN) / scale) / scale * (1.0 + c * np.cos(dphi)) / math.pi


def exact_twice_nll(kappa, lead, dphi):
    """−2 ln L of the extended unbinned likelihood of the observed signal-region events, from
    the generated densities and true yields (nuisance parameters at their nominal values, at
    which the data were generated). The control region holds ttbar only, so with the nuisance
    parameters fixed it does not depend on κ and is left out (a constant)."""
    tt = TTBAR["events"] * TTBAR["sr_fraction"]
    nu = tt + sum(kappa**k * c["events"] for k, c in COMPONENTS.items())
    dens = tt * _density(lead, dphi, TTBAR["scale"], TTBAR["c"])
    for k, c in COMPONENTS.items():
        dens = dens + kappa**k * c["events"] * _density(lead, dphi, c["scale"], c["c"])
    return 2.0 * (nu - np.sum(np.log(dens)))


def exact_counting_twice_nll(kappa, n):
    """−2 ln L of the signal-region event count alone (no shape information)."""
    nu = TTBAR["events"] * TTBAR["sr_fraction"] + sum(kappa**k * c["events"] for k, c in COMPONENTS.items())
    return 2.0 * (nu - n * math.log(nu))


def scan_interval(f, values):
    """Best value, Δ(−2 ln L) on ``values`` and the 68 % interval (crossings of 1, found as
    the workflow finds them: nsbi.fit.crossings on the same grid)."""
    best = minimize_scalar(f, bounds=(values[0], values[-1]), method="bounded", options={"xatol": 1e-8})
    delta = np.array([f(v) for v in values]) - best.fun
    return best.x, delta, crossings(values, delta, 1.0)


# --------------------------------------------------------------------------- config


def analysis_config(ntuples: Path) -> dict:
    files = {name: [str(ntuples / f"{name}.root")] for name in [*BASIS_POINTS, "ttbar", "obsdata"]}
    return {
        "analysis": ANALYSIS,
        "output_dir": "results",
        "seed": 77,
        "simulation": {"enabled": False},
        "input": {"tree": TREE, "format": "flat", "step_size": 2500, "event_key": EVENT_KEY},
        "samples": [
            *({"name": n, "type": "basis", "files": files[n], "weight": WEIGHT} for n in BASIS_POINTS),
            {"name": "ttbar", "type": "background", "files": files["ttbar"], "weight": WEIGHT},
            {"name": "obsdata", "type": "data", "files": files["obsdata"], "weight": "1"},
        ],
        "systematics": [
            {
                "name": "jes",
                "type": "weight",
                "samples": ["ttbar"],
                "up": {"weight": f"{WEIGHT}_jes_up"},
                "down": {"weight": f"{WEIGHT}_jes_down"},
            },
            {"name": "ttxsec", "type": "norm", "samples": ["ttbar"], "up": {"norm": 1.1}, "down": {"norm": 0.9}},
        ],
        "features": [
            {"name": "lead_pt", "expr": "max(jet_pt, default=0)"},  # jagged branch
            {"name": "dphi", "expr": "dphi_ll"},
            {"name": "nbtag", "expr": "n_btag"},
        ],
        "preselection": "(count(jet_pt) >= 1) && (dphi_ll >= 0)",
        "regions": [
            {"name": "SigReg", "type": "unbinned", "selection": "nbtag < 0.5"},
            {
                "name": "TopCtrl",
                "type": "binned",
                "selection": "nbtag > 0.5",
                "observable": "lead_pt",
                "binning": [30, 60, 90, 130, 180, 250, 400, 5000],
                "samples": ["ttbar"],
            },
        ],
        "morphing": {
            "poi": POI,
            "basis": {"functions": [f"{POI}**2", POI, "1"], "points": dict(BASIS_POINTS)},
            "poi_init": 1.0,
            "poi_bounds": [0.0, 4.0],
        },
        "training": {
            "features": ["lead_pt", "dphi"],  # nbtag is 0 in the signal region
            "members": 2,
            "folds": 2,
            "hidden": [32, 32],
            "learning_rate": 0.003,
            "batch_size": 256,
            "max_epochs": 40,
            "patience": 5,
            "seed": 11,
        },
        "plots": {"sensitivity": {"poi_values": [1.0, 2.0], "bins": 10}},
        # toy validation as small as the schema allows (it is part of the DAG)
        "validation": {
            "grid": {"low": 1.0, "high": 2.0, "points": 2},
            "toys": {"per_batch": 4, "batches": 1, "seed": 5},
            "observed_points": 5,
            "coverage": {"poi_true": [1.0], "per_batch": 4, "batches": 1, "seed": 6},
            "linearity": [KAPPA_INJECTED],
        },
        "fit": {
            "scan": dict(SCAN),
            "limits": {"enabled": True, "workspaces": ["nsbi"], "datasets": ["observed"]},
            "histogram_baseline": {"observable": "lead_pt", "binning": [30, 50, 75, 100, 150, 200, 300, 500, 5000]},
        },
    }


def demo_names() -> dict[str, set[str]]:
    """Names the demo configs give: ``paths`` those that become parts of output paths
    (analysis, samples, regions, systematics, features, POI, region-classifier classes),
    ``branches`` its tree and branch names."""
    paths, branches = set(), set()
    for f in ("config/config.yaml", "config/test.yaml"):
        d = yaml.safe_load((ROOT / f).read_text())
        paths |= {d["analysis"], d["morphing"]["poi"], *d.get("region_classifier", {}).get("classes", {})}
        for key in ("samples", "regions", "systematics", "features"):
            paths |= {x["name"] for x in d.get(key, [])}
        branches |= {d["input"]["tree"], d["input"]["event_key"]} | {s["weight"] for s in d["samples"]}
        for s in d.get("systematics", []):
            branches |= {v["weight"] for v in (s.get("up", {}), s.get("down", {})) if "weight" in v}
    return {"paths": paths, "branches": {b for b in branches if b.isidentifier()}}


def _appears(name: str, text: str) -> bool:
    """``name`` occurs in ``text`` not as part of a longer word (letters on neither side)."""
    return re.search(rf"(?<![A-Za-z]){re.escape(name)}(?![A-Za-z])", text) is not None


def check_run(work: Path, cfg: dict, observed: dict) -> None:
    """The assertions on a finished run in ``work`` (``observed``: from :func:`generate`)."""
    res = work / ncfg.results_dir(cfg)
    fit = json.loads((res / "fit/nsbi/observed/fit.json").read_text())
    ip = fit["names"].index(POI)
    kappa_hat, sigma = fit["values"][ip], fit["errors"][ip]
    stat = json.loads((res / "fit/nsbi/observed/scan_stat_only.json").read_text())
    prof = json.loads((res / "fit/nsbi/observed/scan.json").read_text())
    assert stat["poi"] == prof["poi"] == POI and stat["mode"] == "stat_only"
    values = np.asarray(stat["values"])
    np.testing.assert_allclose(values, np.linspace(SCAN["low"], SCAN["high"], SCAN["points"]))

    # exact likelihood of the generated densities on the same grid
    kx, _, (xlo, xhi) = scan_interval(lambda k: exact_twice_nll(k, observed["lead"], observed["dphi"]), values)
    _, _, (clo, chi) = scan_interval(lambda k: exact_counting_twice_nll(k, observed["n_sr"]), values)
    nlo, nhi = stat["intervals"]["68"]
    plo, phi_ = prof["intervals"]["68"]
    exact_width, nsbi_width = xhi - xlo, nhi - nlo
    print(
        f"observed events: {observed['n_sr']} in SigReg, {observed['n_cr']} in TopCtrl\n"
        f"NSBI fit: {POI} = {kappa_hat:.4f} +- {sigma:.4f} (injected {KAPPA_INJECTED})\n"
        f"68% intervals: NSBI stat-only [{nlo:.4f}, {nhi:.4f}] width {nsbi_width:.4f}; "
        f"NSBI stat+syst [{plo:.4f}, {phi_:.4f}] width {phi_ - plo:.4f}\n"
        f"  exact (nuisances nominal) best {kx:.4f} [{xlo:.4f}, {xhi:.4f}] width {exact_width:.4f}; "
        f"exact counting only [{clo:.4f}, {chi:.4f}] width {chi - clo:.4f}\n"
        f"  NSBI / exact width: {nsbi_width / exact_width:.3f}"
    )

    # 1. the fitted POI matches the injection. The data are one seeded Poisson draw at κ = 1.5,
    # so |κ̂ − κ| is a draw of about one σ: 2σ (95 %) is the bound, the seed makes it
    # deterministic; the fit has converged
    assert fit["status"]["valid"]
    assert abs(kappa_hat - KAPPA_INJECTED) < 2 * sigma, (kappa_hat, sigma)
    assert 0 < sigma < 0.5

    # 2. NSBI stat-only interval (constrained nuisance parameters fixed at their best fit) vs
    # the exact likelihood with the nuisance parameters at their true (nominal) values. Both
    # widths are found on the same grid with the same interpolation. The learned ratios come
    # from 5000-6000 MC events per sample (2 members) and a few tens of epochs; the shape information is
    # worth a factor 1.5 in width over the event count alone here, so WIDTH_FACTOR = (0.75,
    # 1.33) fails a model that loses most of it (or invents information it does not have)
    assert np.all(np.isfinite([xlo, xhi, nlo, nhi]))
    assert WIDTH_FACTOR[0] < nsbi_width / exact_width < WIDTH_FACTOR[1]
    # and its centre agrees with the exact one to a fraction of the interval
    assert abs(0.5 * (nlo + nhi) - 0.5 * (xlo + xhi)) < 0.5 * exact_width
    # the stat+syst interval is no narrower than the stat-only one
    assert phi_ - plo >= nsbi_width * (1 - 1e-6)

    # 3. the CLs upper limit (asymptotic q~) and the discovery significance. With the data far
    # from kappa = 0, CL_b ~ 1 and CL_s ~ CL_{s+b} = Phi(-sqrt(t)): the 95 % CL limit is where
    # the profile scan crosses t = 1.645^2 = 2.706, to well within 1 %; the discovery test's
    # q0 is the profile likelihood ratio at kappa = 0, compared with the exact likelihood's
    lim = json.loads((res / "fit/nsbi/observed/limits.json").read_text())
    upper = lim["upper_limit"]["observed"]
    one_sided = crossings(np.asarray(prof["values"]), np.asarray(prof["delta_twice_nll"]), 1.645**2)[1]
    z_exact = math.sqrt(
        exact_twice_nll(0.0, observed["lead"], observed["dphi"])
        - exact_twice_nll(kx, observed["lead"], observed["dphi"])
    )
    print(
        f"CLs 95% upper limit: {upper:.4f} (profile scan t = 2.706 at {one_sided:.4f}); expected "
        f"{lim['upper_limit']['expected'][2]:.4f}; Z = {lim['significance']['z']:.3f} (exact, nuisances nominal: "
        f"{z_exact:.3f})"
    )
    assert abs(upper - one_sided) < 0.01 * one_sided
    assert (res / "fit/nsbi/observed/cls.png").stat().st_size > 0
    assert 0.8 < lim["significance"]["z"] / z_exact < 1.25

    # 4. no demo name in the output paths (names the demo turns into paths, as whole words)
    files = sorted(str(p.relative_to(work)) for p in (work / "results").rglob("*") if p.is_file())
    assert files and all(f.startswith(f"results/{ANALYSIS}/") for f in files)
    leaks = {n: [f for f in files if _appears(n, f)] for n in sorted(demo_names()["paths"])}
    leaks = {n: fs for n, fs in leaks.items() if fs}
    assert not leaks, f"demo names in output paths: { {n: fs[:3] for n, fs in leaks.items()} }"


# --------------------------------------------------------------------------- the test


def test_foreign_analysis_end_to_end(tmp_path):
    observed = generate(tmp_path / "ntuples")
    raw = analysis_config(tmp_path / "ntuples")
    cfg_path = tmp_path / "wwtoy.yaml"
    cfg_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = ncfg.load(cfg_path)

    # the analysis shares no name with the demo
    demo = demo_names()
    ours = {ANALYSIS, TREE, WEIGHT, EVENT_KEY, POI, "jet_pt", "dphi_ll", "n_btag", f"{WEIGHT}_jes_up"}
    ours |= {x["name"] for key in ("samples", "regions", "systematics", "features") for x in cfg[key]}
    assert not ours & (demo["paths"] | demo["branches"])

    # what a new user starts from: `nsbi init` finds the tree, the weight and event-key
    # branches and the jagged branch; `nsbi check` finds every input usable
    text = skeleton(sorted((tmp_path / "ntuples").glob("*.root")))
    assert f"tree: {TREE}" in text and f"event_key: {EVENT_KEY}" in text and f"weight: {WEIGHT}" in text
    assert "  # jet_pt (" in text and "- {name: jet_pt}" not in text  # jagged: a comment, not a feature
    assert check_config(cfg) == []

    work = tmp_path / "run"
    t0 = time.perf_counter()
    snakemake("--cores", "2", "--configfile", str(cfg_path), "--directory", str(work))
    wall = time.perf_counter() - t0
    print(f"\nDAG wall time: {wall:.0f} s")

    check_run(work, cfg, observed)
