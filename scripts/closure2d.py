"""Snakemake script: NSBI vs oracle vs histogram on the Asimov dataset in 2-D (68 % / 95 %
region areas of one pair of POIs, and their ratios to the oracle's), with the contours overlaid."""

import json

from nsbi.analysis import closure2d_report
from nsbi.io import read_json, write_json
from nsbi.plotting.fit_plots import plot_scan2d
from nsbi.scan2d import Scan2DResult
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.validation") as log:
    sm, p = snakemake, snakemake.params
    scans = {
        k: Scan2DResult.from_dict(read_json(f, nan_keys=("twice_nll", "delta_twice_nll")))
        for k, f in zip(p.kinds, sm.input.scans)
    }
    report = closure2d_report(scans, target_ratio=p.target_ratio)
    write_json(report, sm.output.summary)
    plot_scan2d(list(scans.values()), sm.output.plot, labels=list(scans), axis_labels=p.axis_labels)
    log.info("%s", json.dumps(report, indent=1))
