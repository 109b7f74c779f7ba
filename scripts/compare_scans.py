"""Snakemake script: NSBI vs histogram profile scans (stat+syst and stat-only) on one plot."""

from nsbi.analysis import compare_scans, scan_from_dict
from nsbi.io import read_json, write_json
from nsbi.plotting.fit_plots import plot_scan
from nsbi.workflow import job_logging

SCAN_NUMBERS = ("values", "twice_nll", "delta_twice_nll", "best", "best_twice_nll", "intervals")

with job_logging(snakemake, "nsbi.fit") as log:
    sm = snakemake
    # scan JSON stores non-finite numbers (e.g. an interval end not crossed in the range) as null
    raw = {n: read_json(p, nan_keys=SCAN_NUMBERS) for n, p in zip(sm.params.names, sm.input.scans)}
    summary = compare_scans(raw)
    scans = [scan_from_dict(s) for s in raw.values()]
    plot_scan(scans, sm.output.plot, labels=sm.params.labels, poi_label=sm.params.poi_label)
    write_json(summary, sm.output.summary)
    for name, row in summary.items():
        log.info(
            "%-22s best %.4f  68%% width %s  95%% width %s", name, row["best"], row.get("width_68"), row.get("width_95")
        )
