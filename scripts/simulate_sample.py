"""Snakemake script: simulate one process (nominal + LES variations) as ROOT ntuples."""

from pathlib import Path

from nsbi.simulate import write_sample
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.simulate") as log:
    s = snakemake.params.settings
    out = snakemake.output
    log.info("simulating %s: %d events, seed %d, %.1f/fb", s["process"], s["n_events"], s["seed"], s["lumi_ifb"])
    paths = write_sample(
        s["process"],
        Path(out.nominal).parent,
        n_events=s["n_events"],
        seed=s["seed"],
        lumi_ifb=s["lumi_ifb"],
        tree=s["tree"],
    )
    expected = {Path(p).resolve() for p in (out.nominal, out.les_up, out.les_down)}
    if {Path(p).resolve() for p in paths} != expected:
        raise RuntimeError(f"simulator wrote {paths}, expected {sorted(map(str, expected))}")
    log.info("wrote %s", ", ".join(map(str, paths)))
