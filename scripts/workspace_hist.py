"""Snakemake script: the histogram-analysis baseline workspace (same events and systematics)."""

from nsbi import workspace as W
from nsbi.build import build_histogram_workspace
from nsbi.io import read_parquet
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.workspace") as log:
    sm = snakemake
    prep = {}
    for path in sm.input.binned:
        region, process, variation = path.split("/")[-3], path.split("/")[-2], path.split("/")[-1][: -len(".parquet")]
        prep.setdefault(region, {})[(process, variation)] = read_parquet(path)
    ws = build_histogram_workspace(sm.params.cfg, prep)
    W.save(ws, sm.output.ws)
    log.info("wrote %s: %r", sm.output.ws, ws)
