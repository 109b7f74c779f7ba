"""Snakemake script: cross-check every binned channel of a workspace against pyhf (fails on disagreement)."""

import json

from nsbi import workspace as W
from nsbi.build import pyhf_comparable
from nsbi.io import write_json
from nsbi.pyhf_check import compare
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.pyhf") as log:
    sm = snakemake
    s = sm.params.settings
    ws = W.load(sm.input.ws)
    spec = pyhf_comparable(ws.spec, sm.config)
    if not spec["channels"]:
        report = {"ok": True, "skipped": "no binned channels"}
    else:
        report = compare(
            W.Workspace(spec),
            n_random=s["random_points"],
            seed=s["seed"],
            rtol_nll=s["rtol_nll"],
            tol_fit=s["rtol_fit"],
            raise_on_fail=False,
        )
    write_json(report, sm.output[0])
    log.info("pyhf cross-check of %s: ok=%s", sm.input.ws, report["ok"])
    if not report["ok"]:
        log.error("report (the output file is removed by Snakemake on failure):\n%s", json.dumps(report, indent=1))
    if not report["ok"]:
        raise RuntimeError(f"binned part of {sm.input.ws} disagrees with pyhf: {report['failures']}")
