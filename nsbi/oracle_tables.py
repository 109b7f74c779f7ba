"""Per-event exact log-ratios from the built-in simulator (the oracle), in the layout of the
evaluation tables, so that an "oracle" workspace is built and fitted by the same code as
the NSBI one. This is the physical limit of the analysis: NSBI with perfect networks.

    logr_c            = log p_c(x) / p_ref(x),  p_ref = Σ_j a_j p_j / Σ_j a_j (normalised p_j)
    logr_c__k_up/down = log p_c(x | α_k = ±1) / p_c(x)

Overall constants do not matter: the workspace builder normalises every ratio on the MC
(:func:`nsbi.build.normalise_ratios`), exactly as for the learned ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .simulate import FEATURES, PROCESSES, Oracle

__all__ = ["oracle_table"]


def oracle_table(
    events: Mapping[str, np.ndarray],
    processes: Sequence[str],
    reference: Mapping[str, float],
    systematics: Sequence[tuple[str, str, str]],
    lumi_ifb: float = 140.0,
) -> dict[str, np.ndarray]:
    """``events``: columns with the simulator's variables (+ ``weight``, ``process``,
    ``event_key``); ``systematics``: (process, systematic, direction) triples."""
    missing = [f for f in FEATURES if f not in events]
    if missing:
        raise ValueError(f"the oracle needs the simulator variables as features; missing {', '.join(missing)}")
    oracle = Oracle(lumi_ifb=lumi_ifb)
    x = {f: np.asarray(events[f], float) for f in FEATURES}
    for name in [*processes, *reference]:
        if name not in PROCESSES:
            raise ValueError(f"sample '{name}' is not a process of the built-in simulator")
    pref = sum(a * np.exp(oracle.log_dsigma(j, x)) / oracle.xsec(j) for j, a in reference.items())
    log_pref = np.log(pref / float(sum(reference.values())))
    out = {k: np.asarray(events[k]) for k in ("weight", "process", "event_key") if k in events}
    with np.errstate(divide="ignore"):
        for c in processes:
            out[f"logr_{c}"] = oracle.log_dsigma(c, x) - np.log(oracle.xsec(c)) - log_pref
        for c, syst, direction in systematics:
            out[f"logr_{c}__{syst}_{direction}"] = oracle.log_syst_ratio(c, syst, direction, x, norm=True)
    for k, v in out.items():
        if k.startswith("logr_") and not np.all(np.isfinite(v)):
            raise ValueError(
                f"oracle {k} is not finite for {int(np.sum(~np.isfinite(v)))} event(s) (outside the simulator's support?)"
            )
    return out
