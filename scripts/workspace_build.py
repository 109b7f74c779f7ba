"""Snakemake script: assemble the NSBI workspace from evaluation tables and prep outputs."""

import json

from nsbi import workspace as W
from nsbi.build import build_nsbi_workspace
from nsbi.evaluate import read_table
from nsbi.io import read_parquet
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.workspace") as log:
    sm = snakemake
    targets = [tuple(t) for t in sm.params.targets]
    yields = {t: json.load(open(p))["sumw"] for t, p in zip(targets, sm.input.yields)}
    tables = {}
    it = iter(sm.input.tables)
    for region in sm.params.unbinned:
        for dataset in sm.params.datasets:
            tables.setdefault(region, {})[dataset] = read_table(next(it))
    prep = {}
    for path in sm.input.binned:
        region, process, variation = path.split("/")[-3], path.split("/")[-2], path.split("/")[-1][: -len(".parquet")]
        prep.setdefault(region, {})[(process, variation)] = read_parquet(path)
    ws = build_nsbi_workspace(sm.params.cfg, yields, tables, prep, reference=sm.params.reference)
    for region, corr in ws.spec["metadata"]["log_normalisation"].items():
        log.info("%s: log normalisation of the learned ratios %s", region, corr)
    W.save(ws, sm.output.ws)
    log.info("wrote %s: %r", sm.output.ws, ws)
