"""Snakemake script: coverage of the toy-based and asymptotic intervals at the true POI values."""

import json

from nsbi.io import write_json
from nsbi.neyman import coverage_from_chunks
from nsbi.plotting.intervals import plot_coverage
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.neyman") as log:
    sm = snakemake
    cov = coverage_from_chunks(list(sm.input.chunks), sm.input.belt, sm.params.cls)
    write_json(cov, sm.output.summary)
    plot_coverage(cov, sm.output.plot, poi_label=sm.params.poi_label)
    log.info("%s", json.dumps(cov)[:2000])
