"""Snakemake script: per-event table (weight, logr_*, spread_*) of a region dataset."""

from nsbi.evaluate import run_region_table
from nsbi.workflow import job_logging

smk = snakemake
with job_logging(smk, "nsbi.evaluate") as log:
    p = smk.params
    paths = dict(zip(p.targets, list(smk.input.targets)))
    out = run_region_table(smk.input.events, paths, smk.output[0], keep_features=p.keep_features)
    log.info("wrote %s with %d targets", out, len(paths))
