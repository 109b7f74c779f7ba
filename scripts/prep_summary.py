"""Snakemake script: collect all prep yields into one table (JSON)."""

import json

from nsbi.io import write_json
from nsbi.prep import is_absent
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.prep") as log:
    table = {}
    for (region, process, variation), path in zip(snakemake.params.targets, snakemake.input.yields):
        with open(path) as fh:
            y = json.load(fh)
        # absent: the sample has no event (or only zero weights) in this (binned) region
        entry = {k: y[k] for k in ("sumw", "sumw2", "n_events", "n_negative")} | {"absent": is_absent(y)}
        table.setdefault(region, {}).setdefault(process, {})[variation] = entry
        note = "  (absent from the region)" if entry["absent"] else ""
        log.info("%-6s %-6s %-14s sumw=%10.4g  n=%d%s", region, process, variation, y["sumw"], y["n_events"], note)
    write_json(table, snakemake.output[0])
