"""Snakemake script: fit, scans (stat+syst, stat-only), pulls and impacts of one workspace dataset."""

from nsbi import workspace as W
from nsbi.analysis import fit_and_scan, write_fit_outputs
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.fit") as log:
    sm = snakemake
    ws = W.load(sm.input.ws)
    out = fit_and_scan(ws, sm.wildcards.dataset, sm.params.scan, minos=sm.params.minos)
    res = out["fit"]
    log.info("%r\nfit status %s, -2lnL %.6f", out["model"], res.status, res.twice_nll)
    for name, value, err in zip(res.names, res.values, res.errors):
        log.info("  %-24s %12.5f +- %.5f", name, value, err)
    log.info("intervals stat+syst %s, stat-only %s", out["scan"].intervals, out["scan_stat_only"].intervals)
    write_fit_outputs(out, sm.output, poi_label=sm.params.poi_label)
