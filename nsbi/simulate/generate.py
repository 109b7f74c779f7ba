"""Monte Carlo generation, pseudo-data and ROOT output of the built-in simulator.

Random numbers
--------------
Every random stream is ``numpy.random.default_rng(SeedSequence([seed, zlib.crc32(tag)]))`` with
``tag`` the process name ("S", "B", "SBI", "I", "qqZZ", "VS", ...) or "data": equal seeds give identical
output, different processes get independent streams (Python's randomised ``hash()`` is never
used). The draws of one batch are made in a fixed order, so results do not depend on anything
but (seed, tag, n_events).

Weighted MC samples
-------------------
Events are drawn from the proposal

    q(x) = q_m(m4l) * (1/2)^3 [cos_theta_star, cos_theta1, cos_theta2 uniform]
                    * (1/2pi)^2 [phi, phi1 uniform]
                    * bw(mZ1) bw(mZ2) f_pt(pt4l) f_y(y4l)   [exact distributions of the process family]

with q_m(m) ~ (m / 220)^(-3) on [220, 1000] GeV (inverse CDF; (m / 220)^(-2) for the electroweak
processes, whose m4l spectrum is harder), and weighted with

    w_i = lumi_ifb * (dsigma_c / dx)(x_i) / q(x_i) / N      (sum of w estimates lumi * sigma_c),

signed for the interference I. Weight branches: ``weight``; for S, B, SBI, I also
``weight_kfactor_up/down`` = weight * (1 +- 0.10 (m4l - 220) / 780); for qqZZ
``weight_qcdscale_up/down`` = weight * (1 +- (0.03 + 0.04 (m4l - 220) / 780)); the electroweak
processes (VS, VB, VSBI, VI) have no weight systematic.

LES variations (``LES_up`` / ``LES_down``) are the *same* events with the *same* weights, all lepton
four-momenta scaled by 1 +- 0.005; m4l, mZ1, mZ2, pt4l recomputed from the scaled leptons.

Pseudo-data
-----------
Total count N ~ Poisson(nu_total), nu_total = lumi * (1 + 0.017)^alpha_lumi *
[sigma_SBI(mu, alpha_kfactor) + sigma_qqZZ(alpha_qcdscale)]; the split between gg (SBI at mu, which
contains S, B and I coherently) and qqZZ is binomial with their expected yields. With an
electroweak signal strength mu_V, the non-gg events are split binomially again between VSBI at
mu_V and qqZZ. Each event is drawn
exactly by accept-reject from the proposal: the density ratio (matrix element x weight-systematic
factor / q_m) is bounded by an angular bound from the triangle inequality times the maximum of
its m4l dependence on a dense grid (the m4l dependence is a positive sum of convex power laws, so
the maximum is at an end point, which the grid contains) with a 5 % margin; a weight exceeding the
bound raises RuntimeError. LES is applied by scaling the leptons by 1 + 0.005 alpha_LES. Events are
shuffled; data weight = 1.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from ..io import atomic_path
from . import physics as ph
from .kinematics import (
    build_leptons,
    lepton_observables,
    sort_by_pt,
    system_observables_unsorted,
)

VARIATIONS = ("nominal", "LES_up", "LES_down")
_ANGLE_PROPOSAL = (0.5**3) * (1.0 / ph.TWO_PI) ** 2
BOUND_MARGIN = 1.05
BASKET_SIZE = 200_000  # entries per ROOT basket


def rng_for(seed: int, tag: str) -> np.random.Generator:
    """Random generator for (seed, tag), stable across runs and platforms."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(tag.encode("utf-8"))]))


# ----------------------------------------------------------------------------- proposal
def sample_proposal(rng: np.random.Generator, n: int, fam: str) -> dict:
    """Draw n events from the proposal of family 'gg' or 'qq' (plus the hidden azimuths/flavours)."""
    gen = {
        "m4l": ph.proposal_m_sample(rng.random(n), fam),
        "mZ1": ph.bw_sample(rng.random(n)),
        "mZ2": ph.bw_sample(rng.random(n)),
        "cos_theta_star": rng.uniform(-1.0, 1.0, n),
        "cos_theta1": rng.uniform(-1.0, 1.0, n),
        "cos_theta2": rng.uniform(-1.0, 1.0, n),
        "phi": rng.uniform(-np.pi, np.pi, n),
        "phi1": rng.uniform(-np.pi, np.pi, n),
        "pt4l": rng.gamma(ph.PT_SHAPE, ph.PT_SCALE[fam], n),
        "y4l": rng.normal(0.0, ph.Y_SIGMA[fam], n),
    }
    hidden = {
        "psi": rng.uniform(-np.pi, np.pi, n),
        "phi_p": rng.uniform(-np.pi, np.pi, n),
        "flavour_mu": rng.random((n, 2)) < 0.5,
    }
    return gen, hidden


def _me(process, gen, mu=1.0):
    return ph.matrix_element(
        process,
        gen["m4l"],
        gen["cos_theta_star"],
        gen["cos_theta1"],
        gen["cos_theta2"],
        gen["phi"],
        mu=mu,
    )


def _proposal_m_and_angles(gen, fam):
    return ph.proposal_m_pdf(gen["m4l"], fam) * _ANGLE_PROPOSAL


# ----------------------------------------------------------------------------- event records
def _lepton_record(raw_lep: dict, scale: float) -> dict:
    obs = lepton_observables(raw_lep, scale)
    obs.update({k: raw_lep[k] for k in ("charge", "pdgid", "zidx")})
    return sort_by_pt(obs)


def _assemble(gen: dict, raw_lep: dict, scale: float, weights: dict) -> dict:
    """Output arrays: jagged leptons (pt-sorted), high-level features, event_number, weights."""
    lep = _lepton_record(raw_lep, scale)
    n = gen["m4l"].shape[0]
    out = {}
    for key in ("pt", "eta", "phi", "E", "charge", "pdgid", "zidx"):
        # var-length (jagged) lists of 4, as read back from ROOT
        out[f"lep_{key}"] = ak.unflatten(np.ascontiguousarray(lep[key]).reshape(-1), np.full(n, 4, dtype=np.int64))
    out["event_number"] = np.arange(n, dtype=np.uint64)
    for key, val in weights.items():
        out[key] = np.asarray(val, dtype=np.float64)
    sysobs = system_observables_unsorted(raw_lep, scale)
    for key in ph.FEATURES:
        out[key] = np.asarray(sysobs[key] if key in sysobs else gen[key], dtype=np.float64)
    return out


def _mc_raw(process: str, n_events: int, seed: int, lumi_ifb: float):
    ph.check_process(process)
    if n_events < 1:
        raise ValueError("n_events must be >= 1")
    fam = ph.family(process)
    rng = rng_for(seed, process)
    gen, hidden = sample_proposal(rng, int(n_events), fam)
    n0 = ph.norm_constants()[fam]
    w = lumi_ifb * n0 * _me(process, gen) / _proposal_m_and_angles(gen, fam) / n_events
    lep = build_leptons(gen, hidden["psi"], hidden["phi_p"], hidden["flavour_mu"])
    return gen, lep, w


def _weight_branches(process: str, w: np.ndarray, m4l: np.ndarray) -> dict:
    """Nominal and systematic weight branches; ``m4l`` is the stored nominal m4l so that the
    weight ratios equal the documented factors of the stored variable exactly."""
    weights = {"weight": w}
    for d, sign in (("up", 1.0), ("down", -1.0)):
        if ph.family(process) == "gg":
            weights[f"weight_kfactor_{d}"] = w * ph.kfactor_factor(m4l, sign)
        elif ph.family(process) == "qq":
            weights[f"weight_qcdscale_{d}"] = w * ph.qcdscale_factor(m4l, sign)
    return weights


def _scale_for(variation: str) -> float:
    if variation == "nominal":
        return 1.0
    if variation == "LES_up":
        return 1.0 + ph.LES_REL
    if variation == "LES_down":
        return 1.0 - ph.LES_REL
    raise ValueError(f"unknown variation {variation!r}; expected one of {VARIATIONS}")


def generate_variations(
    process: str,
    n_events: int,
    seed: int,
    lumi_ifb: float = 140.0,
    variations=VARIATIONS,
) -> dict:
    """{variation: arrays} for the same events (nominal, LES_up, LES_down)."""
    gen, lep, w = _mc_raw(process, n_events, seed, lumi_ifb)
    out = {"nominal": _assemble(gen, lep, 1.0, {})}
    weights = _weight_branches(process, w, out["nominal"]["m4l"])
    out["nominal"].update(weights)
    for v in variations:
        if v != "nominal":
            out[v] = _assemble(gen, lep, _scale_for(v), weights)
    return {v: _order(out[v]) for v in variations}


def _order(arrays: dict) -> dict:
    """Fixed branch order: leptons, event_number, weights, features."""
    keys = [k for k in arrays if k.startswith("lep_")] + ["event_number"]
    keys += [k for k in arrays if k.startswith("weight")] + list(ph.FEATURES)
    return {k: arrays[k] for k in keys}


def generate(
    process: str,
    n_events: int,
    seed: int,
    lumi_ifb: float = 140.0,
    variation: str = "nominal",
) -> dict:
    """Weighted MC sample of ``process`` ("S", "B", "SBI", "I", "qqZZ").

    Returns ``{branch: np.ndarray | ak.Array}`` (lepton branches jagged). ``variation`` may be
    "nominal", "LES_up" or "LES_down" (the same events with scaled leptons).
    """
    _scale_for(variation)
    return generate_variations(process, n_events, seed, lumi_ifb, variations=(variation,))[variation]


# ----------------------------------------------------------------------------- pseudo-data
def expected_yields(mu: float = 1.0, nuisances=None, lumi_ifb: float = 140.0, mu_v: float | None = None) -> dict:
    """Expected event counts {'gg': nu_SBI(mu), 'qqZZ': nu_qq, 'total': ...} at the nuisance values.

    With ``mu_v`` (the electroweak signal strength) the electroweak production is part of the
    model: {'gg', 'vv': nu_VSBI(mu_v), 'qqZZ', 'total'}; without it, it is absent.
    """
    nuis = ph.check_nuisances(nuisances)
    lumi = lumi_ifb * (1.0 + ph.LUMI_REL) ** nuis["lumi"]
    gg = lumi * ph.xsec("SBI", mu=mu, kfactor=nuis["kfactor"])
    qq = lumi * ph.xsec("qqZZ", qcdscale=nuis["qcdscale"])
    if mu_v is None:
        return {"gg": gg, "qqZZ": qq, "total": gg + qq}
    vv = lumi * ph.xsec("VSBI", mu=mu_v)
    return {"gg": gg, "vv": vv, "qqZZ": qq, "total": gg + vv + qq}


def _syst_factor(fam, m, nuis):
    if fam == "gg":
        return ph.kfactor_factor(m, nuis["kfactor"])
    if fam == "qq":
        return ph.qcdscale_factor(m, nuis["qcdscale"])
    return np.ones_like(np.asarray(m, dtype=float))  # no weight systematic on the EW processes


def ratio_bound(process: str, mu: float, nuis: dict, n_grid: int = 20001) -> float:
    """Upper bound of matrix_element * syst_factor / (q_m * angle proposal) over the whole space."""
    fam = ph.family(process)
    grid = np.linspace(ph.M4L_MIN, ph.M4L_MAX, n_grid)
    fac = _syst_factor(fam, grid, nuis)
    vals = ph.matrix_element_bound_m(process, grid, mu=mu) * fac / (ph.proposal_m_pdf(grid, fam) * _ANGLE_PROPOSAL)
    return float(vals.max() * BOUND_MARGIN)


def accept_reject(rng, process: str, n: int, mu: float, nuis: dict, batch: int = 200_000):
    """Exactly n unweighted events of ``process`` (SBI or VSBI at mu, or qqZZ) including the weight
    systematics."""
    fam = ph.family(process)
    bound = ratio_bound(process, mu, nuis)
    acc_gen, acc_hidden, have = [], [], 0
    while have < n:
        gen, hidden = sample_proposal(rng, batch, fam)
        ratio = _me(process, gen, mu) * _syst_factor(fam, gen["m4l"], nuis) / _proposal_m_and_angles(gen, fam)
        if np.any(ratio > bound) or np.any(ratio < 0):
            raise RuntimeError(f"accept-reject bound violated for {process}: max ratio {ratio.max()} > {bound}")
        keep = rng.random(batch) * bound < ratio
        acc_gen.append({k: v[keep] for k, v in gen.items()})
        acc_hidden.append({k: v[keep] for k, v in hidden.items()})
        have += int(keep.sum())
    gen = {k: np.concatenate([g[k] for g in acc_gen])[:n] for k in acc_gen[0]}
    hidden = {k: np.concatenate([h[k] for h in acc_hidden])[:n] for k in acc_hidden[0]}
    return gen, hidden


def generate_data(
    mu: float = 1.0,
    nuisances=None,
    seed: int | None = None,
    lumi_ifb: float = 140.0,
    mu_v: float | None = None,
) -> dict:
    """Unweighted pseudo-data at signal strength ``mu`` and nuisance values ``nuisances``
    ({LES, kfactor, qcdscale, lumi} in sigma units, missing -> 0). Same branches as the MC
    (weight = 1, no systematic weight branches) plus nothing that reveals the process.

    With ``mu_v`` the data contain the electroweak production at signal strength ``mu_v``
    (VSBI); its count is drawn binomially from what is not gg, after the gg count."""
    if seed is None:
        raise ValueError("generate_data needs an explicit seed")
    nuis = ph.check_nuisances(nuisances)
    rng = rng_for(seed, "data")
    nu = expected_yields(mu, nuis, lumi_ifb, mu_v=mu_v)
    n_tot = int(rng.poisson(nu["total"]))
    n_gg = int(rng.binomial(n_tot, nu["gg"] / nu["total"])) if nu["total"] > 0 else 0
    counts = [("SBI", n_gg, mu)]
    if mu_v is not None:
        rest = nu["vv"] + nu["qqZZ"]
        n_vv = int(rng.binomial(n_tot - n_gg, nu["vv"] / rest)) if rest > 0 else 0
        counts.append(("VSBI", n_vv, mu_v))
    counts.append(("qqZZ", n_tot - sum(c[1] for c in counts), mu))
    parts = []
    for process, k, strength in counts:
        if k > 0:
            parts.append(accept_reject(rng, process, k, strength, nuis))
    if parts:
        gen = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
        hidden = {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]}
    else:
        gen, hidden = sample_proposal(rng, 0, "gg")
    perm = rng.permutation(n_tot)
    gen = {k: v[perm] for k, v in gen.items()}
    hidden = {k: v[perm] for k, v in hidden.items()}
    lep = build_leptons(gen, hidden["psi"], hidden["phi_p"], hidden["flavour_mu"])
    scale = 1.0 + ph.LES_REL * nuis["LES"]
    return _assemble(gen, lep, scale, {"weight": np.ones(n_tot)})


# ----------------------------------------------------------------------------- ROOT output
def _root_branches(arrays: dict) -> dict:
    lep_keys = [k for k in arrays if k.startswith("lep_")]
    out = {"lep": ak.zip({k[4:]: arrays[k] for k in lep_keys})} if lep_keys else {}
    out.update({k: np.asarray(v) for k, v in arrays.items() if not k.startswith("lep_")})
    return out


def write_root(path, arrays: dict, tree: str = "events") -> Path:
    """Write ``arrays`` to ``path`` atomically (temporary file in the same directory, then rename).

    Lepton branches become ``lep_*`` jagged branches with the counter branch ``nlep``.
    """
    path = Path(path)
    branches = _root_branches(arrays)
    n = len(next(iter(branches.values())))
    with atomic_path(path) as tmp, uproot.recreate(tmp) as f:
        t = f.mktree(
            tree,
            {k: (v.type if isinstance(v, ak.Array) else v.dtype) for k, v in branches.items()},
        )
        for start in range(0, max(n, 1), BASKET_SIZE):
            t.extend({k: v[start : start + BASKET_SIZE] for k, v in branches.items()})
    return path


def write_sample(
    process: str,
    outdir,
    n_events: int,
    seed: int,
    lumi_ifb: float = 140.0,
    tree: str = "events",
):
    """Write {outdir}/{process}.root, {process}_LES_up.root, {process}_LES_down.root; returns the paths."""
    outdir = Path(outdir)
    samples = generate_variations(process, n_events, seed, lumi_ifb)
    return [write_root(outdir / name, samples[var], tree) for var, name in sample_files(process).items()]


#: file name of the pseudo-data (:func:`write_data`) in the simulator's output directory
DATA_FILE = "data.root"


def sample_files(process: str) -> dict[str, str]:
    """{variation: file name} that :func:`write_sample` writes for ``process``
    (rules/simulate.smk names the same files)."""
    return {var: f"{process}.root" if var == "nominal" else f"{process}_{var}.root" for var in VARIATIONS}


def write_data(
    path,
    mu: float = 1.0,
    nuisances=None,
    seed: int | None = None,
    lumi_ifb: float = 140.0,
    tree: str = "events",
    mu_v: float | None = None,
):
    """Write unweighted pseudo-data (see :func:`generate_data`) to ``path``; returns the path."""
    return write_root(
        path,
        generate_data(mu=mu, nuisances=nuisances, seed=seed, lumi_ifb=lumi_ifb, mu_v=mu_v),
        tree,
    )
