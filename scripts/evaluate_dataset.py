"""Snakemake script: build a region dataset (asimov = all MC of the region, observed = data)."""

from nsbi.evaluate import run_build_dataset
from nsbi.workflow import job_logging

smk = snakemake
with job_logging(smk, "nsbi.evaluate") as log:
    p = smk.params
    paths = dict(zip(p.samples, list(smk.input.samples)))
    info = run_build_dataset(smk.wildcards.dataset, paths, smk.output[0], p.features)
    log.info(
        "%s dataset of region %s: %d events, sum of weights %.6g",
        smk.wildcards.dataset,
        smk.wildcards.region,
        info["n_events"],
        info["sumw"],
    )
