"""Snakemake script: NSBI vs oracle vs histogram on the Asimov dataset (intervals, significance)."""

import json

from nsbi.analysis import closure_report, scan_from_dict
from nsbi.io import read_json, write_json
from nsbi.plotting.fit_plots import plot_scan
from nsbi.workflow import job_logging

SCAN_NUMBERS = ("values", "twice_nll", "delta_twice_nll", "best", "best_twice_nll", "intervals")

with job_logging(snakemake, "nsbi.validation") as log:
    sm = snakemake
    kinds = sm.params.kinds
    scans = {}
    it = iter(sm.input.scans)
    for kind in kinds:
        for mode in ("scan", "scan_stat_only"):
            # scan JSON stores non-finite numbers (interval ends not crossed in the range) as null
            scans[(kind, mode)] = read_json(next(it), nan_keys=SCAN_NUMBERS)
    report = closure_report(scans, target_ratio=sm.params.target_ratio)
    write_json(report, sm.output.summary)
    plot_scan(
        [scan_from_dict(s) for s in scans.values()],
        sm.output.plot,
        labels=[f"{k} {'stat+syst' if m == 'scan' else 'stat only'}" for k, m in scans],
        poi_label=sm.params.poi_label,
    )
    log.info("%s", json.dumps(report, indent=1))
