"""Snakemake script: CLs upper limits and discovery significance of one workspace and dataset (asymptotic)."""

from nsbi import workspace as W
from nsbi.io import write_json
from nsbi.limits import limits_summary
from nsbi.plotting.limits import plot_cls
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.limits") as log:
    p = snakemake.params
    ws = W.load(snakemake.input.ws)
    summary, limit = limits_summary(
        ws, snakemake.wildcards.dataset, cl=p.settings["cl"], test_stat=p.settings["test_stat"], asimov_poi=p.asimov_poi
    )
    write_json(summary, snakemake.output.json)
    plot_cls(limit.scan, snakemake.output.plot, limit=limit, poi_label=p.poi_label)
    e, s = limit.expected, summary["significance"]
    log.info(
        "%s: observed %g%% CL upper limit %.6g, expected %.6g [%.6g, %.6g]",
        limit.poi,
        100 * limit.cl,
        limit.observed,
        e[2],
        e[1],
        e[3],
    )
    log.info("discovery: q0 = %.6g, Z = %.4g (expected %.4g)", s["q0"], s["z"], s["z_expected"][2])
