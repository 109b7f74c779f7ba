"""Snakemake script: merge the per-target diagnostics summaries into one JSON."""

import json

from nsbi.plotting.diag import write_summary
from nsbi.workflow import job_logging

smk = snakemake
with job_logging(smk, "nsbi.diagnostics"):
    merged = {}
    for key, path in zip(smk.params.summary_keys, list(smk.input)):
        with open(path) as fh:
            merged[key] = json.load(fh)
    write_summary(smk.output[0], merged)
