#!/usr/bin/env python
"""Reading inputs in the select stage: NanoAOD vs flat vs a bare ``uproot.iterate``.

Writes a NanoAOD-like file of ``--events`` events (Muon, Electron and Jet collections with
float32 fields counted by nMuon/nElectron/nJet, event ids, genWeight) and prepares the same
features from it four ways, each in its own process (peak RSS = VmHWM of that process):

* ``nanoaod``: :func:`nsbi.prep.prepare` with ``fmt="nanoaod"`` (fields as ``Muon.pt``);
* ``flat``: the same file and features through the flat path (branches as ``Muon_pt``);
* ``uproot``: a bare ``uproot.iterate`` over the same branches, same step size (the floor);
* ``nanoevents``: the previous NanoAOD path, coffea's NanoEvents built per chunk (only with
  coffea installed; it is the tests' reference reader, not an nsbi dependency).

Printed: wall time (minimum over ``--repeat`` runs, each run a fresh process), peak RSS, and the
ratios nanoaod/flat and each/uproot (targets: nanoaod within 2x of flat in time and memory,
nanoaod and flat within 3x of uproot).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import print_machine, run_worker, table, vm_hwm_mb

COLLECTIONS = {"Muon": (1.2, 5.0), "Electron": (1.0, 7.0), "Jet": (4.0, 25.0)}  # mean count, pt floor
FIELDS = ("pt", "eta", "phi", "mass")
FEATURES = {
    "lead_mu_pt": "max(Muon.pt, default=0)",
    "n_jet": "count(Jet.pt)",
    "ht": "sum(Jet.pt)",
    "lead_jet_eta": "Jet.eta[0]",
    "lead_el_pt": "max(Electron.pt, default=0)",
}
SELECTION = "count(Muon.pt) + count(Electron.pt) >= 1 && count(Jet.pt) >= 1"


def make_file(path: Path, n: int, seed: int = 1) -> None:
    import awkward as ak

    from nsbi.io import write_root_tree

    rng = np.random.default_rng(seed)
    cols = {
        "run": np.ones(n, dtype=np.uint32),
        "luminosityBlock": np.ones(n, dtype=np.uint32),
        "event": np.arange(n, dtype=np.uint64),
        "genWeight": rng.normal(1.0, 0.2, n).astype(np.float32),
    }
    for name, (mean, floor) in COLLECTIONS.items():
        counts = rng.poisson(mean, n)
        m = int(counts.sum())
        fields = {
            "pt": rng.exponential(30.0, m) + floor,
            "eta": rng.uniform(-2.5, 2.5, m),
            "phi": rng.uniform(-np.pi, np.pi, m),
            "mass": rng.exponential(5.0, m),
        }
        rec = {k: v.astype(np.float32) for k, v in fields.items()}
        rec["charge"] = rng.choice([-1, 1], m).astype(np.int32)  # NanoEvents' leptons need it
        cols[name] = ak.unflatten(ak.zip(rec), counts)
    write_root_tree(path, "Events", cols)


def worker(mode: str, path: str, step: int) -> dict:
    import uproot  # imports are not timed

    from nsbi.prep import prepare

    if mode == "nanoevents":
        import warnings

        from coffea.nanoevents import NanoAODSchema, NanoEventsFactory
    t0 = time.perf_counter()
    if mode in ("nanoaod", "flat"):
        nano = mode == "nanoaod"

        def flat(text: str) -> str:
            for c in COLLECTIONS:
                text = text.replace(f"{c}.", f"{c}_")
            return text

        out = prepare(
            files=[path],
            tree="Events",
            weight="genWeight",
            features={k: v if nano else flat(v) for k, v in FEATURES.items()},
            selections={"preselection": SELECTION if nano else flat(SELECTION)},
            event_key="event",
            step_size=step,
            fmt=mode,
        )
        n = len(out["weight"])
    elif mode == "uproot":
        branches = ["event", "genWeight"] + [f"{c}_{f}" for c in COLLECTIONS for f in ("pt", "eta")]
        n = 0
        for chunk in uproot.iterate({path: "Events"}, expressions=branches, step_size=step, library="ak"):
            n += len(chunk)
    else:  # the previous implementation: NanoEvents per chunk
        with uproot.open(path) as fh:
            total = fh["Events"].num_entries
        n = 0
        for start in range(0, total, step):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ev = NanoEventsFactory.from_root(
                    {path: "Events"},
                    schemaclass=NanoAODSchema,
                    entry_start=start,
                    entry_stop=min(start + step, total),
                    mode="eager",
                ).events()
            n += len(ev) + 0 * (len(ev.Muon.pt) + len(ev.Jet.pt) + len(ev.Electron.pt))
    return {"seconds": time.perf_counter() - t0, "rss_mb": vm_hwm_mb(), "events": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=float, default=2e5)
    ap.add_argument("--step", type=int, default=50000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--worker", nargs=3, metavar=("MODE", "PATH", "STEP"))
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker[0], a.worker[1], int(a.worker[2]))))
        return
    print_machine()
    modes = ["nanoaod", "flat", "uproot"]
    try:
        import coffea.nanoevents  # noqa: F401

        modes.append("nanoevents")
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nano.root"
        make_file(path, int(a.events))
        size_mb = path.stat().st_size / 1e6
        best: dict[str, dict] = {}
        for _ in range(a.repeat):  # interleaved, fresh processes
            for mode in modes:
                r = run_worker(Path(__file__), [mode, str(path), a.step])
                if mode not in best or r["seconds"] < best[mode]["seconds"]:
                    best[mode] = {**r, "rss_mb": min(r["rss_mb"], best.get(mode, r)["rss_mb"])}
    print(f"\n{int(a.events)} events, {size_mb:.0f} MB file, step {a.step}, best of {a.repeat} fresh processes\n")
    base = best["uproot"]
    rows = [
        {
            "mode": m,
            "s": r["seconds"],
            "rss": r["rss_mb"],
            "t_up": r["seconds"] / base["seconds"],
            "m_up": r["rss_mb"] / base["rss_mb"],
            "events": r["events"],
        }
        for m, r in best.items()
    ]
    cols = [
        ("mode", "path", ""),
        ("s", "wall [s]", ".2f"),
        ("rss", "peak RSS [MB]", ".0f"),
        ("t_up", "time / uproot", ".2f"),
        ("m_up", "RSS / uproot", ".2f"),
        ("events", "events out", "d"),
    ]
    print(table(rows, cols))
    nano, flat = best["nanoaod"], best["flat"]
    print(
        f"\nnanoaod / flat: time {nano['seconds'] / flat['seconds']:.2f}x, RSS {nano['rss_mb'] / flat['rss_mb']:.2f}x"
        " (target <= 2x)"
    )
    if "nanoevents" in best:
        print(
            f"previous path (NanoEvents per chunk) / nanoaod: time {best['nanoevents']['seconds'] / nano['seconds']:.1f}x"
        )


if __name__ == "__main__":
    sys.exit(main())
