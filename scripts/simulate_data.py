"""Snakemake script: draw the pseudo-observed dataset from the built-in simulator."""

from nsbi.simulate import write_data
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.simulate") as log:
    s = snakemake.params.settings
    log.info("pseudo-data at mu=%g, mu_V=%s, nuisances=%s, seed %d", s["mu"], s.get("mu_V"), s["nuisances"], s["seed"])
    write_data(
        snakemake.output[0],
        mu=s["mu"],
        nuisances=s["nuisances"],
        seed=s["seed"],
        lumi_ifb=s["lumi_ifb"],
        tree=s["tree"],
        mu_v=s.get("mu_V"),
    )
    log.info("wrote %s", snakemake.output[0])
