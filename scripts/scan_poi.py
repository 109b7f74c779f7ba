"""Snakemake script: profile scan of one further POI (morphing.pois[1:]) of one workspace
dataset, every other parameter profiled."""

from nsbi import workspace as W
from nsbi.analysis import scan_poi
from nsbi.io import write_json
from nsbi.plotting.fit_plots import plot_scan
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.fit") as log:
    sm, p = snakemake, snakemake.params
    res = scan_poi(W.load(sm.input.ws), sm.wildcards.dataset, sm.wildcards.poi, p.scan)
    write_json(res.to_dict(), sm.output.json)
    plot_scan(res, sm.output.plot, labels=[f"{sm.wildcards.kind} {sm.wildcards.dataset}"], poi_label=p.label)
    log.info("%s: best %.5g, intervals %s", sm.wildcards.poi, res.best, res.intervals)
