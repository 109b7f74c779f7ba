"""Snakemake script: the Neyman region of validation.region2d for the observed and Asimov data
(2-D profile scans on its grid) from the toys at its nodes or from learned critical values
(audited; the job fails when the audit does), Wilks' region, the coverage at true nodes, and
their plot."""

import json

from nsbi import workspace as W
from nsbi.analysis import scan_pair
from nsbi.io import write_json
from nsbi.learned_critical import learned_region
from nsbi.neyman2d import coverage_2d, gather_region
from nsbi.plotting.intervals import plot_region2d
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.neyman") as log:
    sm, p = snakemake, snakemake.params
    ws = W.load(sm.input.ws)
    scans = {d: scan_pair(ws, d, p.pois, p.x, p.y).to_dict() for d in p.datasets}
    if p.method == "quantile_regression":
        net = dict(p.network)
        seed = net.pop("seed")
        toys = [json.loads(open(f).read()) for f in sm.input.toys]
        region = learned_region(toys, list(sm.input.audit), p.cls, *p.box, scans, seed, net, p.tolerance)
        log.info("audit: %s", json.dumps(region["audit"]))
        if not region["audit"]["passed"]:
            raise RuntimeError(
                f"the learned critical values fail their audit: max |pull| {region['audit']['max_abs_pull']:.2f} > "
                f"validation.region2d.learned.audit.tolerance {p.tolerance} (details in this log)"
            )
    else:
        region = gather_region(list(sm.input.chunks), scans, p.cls)
    region["coverage"] = coverage_2d(list(sm.input.coverage), region) if sm.input.coverage else None
    write_json(region, sm.output.json)
    plot_region2d(region, sm.output.plot, axis_labels=[p.labels[n] for n in p.pois])
    for d, ds in region["datasets"].items():
        log.info("%s: %s", d, {k: r["area_ratio_toys_over_asymptotic"] for k, r in ds["regions"].items()})
