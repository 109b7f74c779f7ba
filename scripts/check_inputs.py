"""Snakemake script: every cheap input check of the config at once (nsbi.check), before any select job runs."""

from nsbi.check import ERROR, check_config, format_report
from nsbi.io import write_json
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.check") as log:
    problems = check_config(snakemake.params.cfg)
    report = format_report(problems)
    errors = [p.to_dict() for p in problems if p.severity == ERROR]
    if errors:
        log.error("input check:\n%s", report)
        raise RuntimeError(f"{len(errors)} problem(s) with the inputs (see {snakemake.log[0]}):\n{report}")
    log.info("input check:\n%s", report)
    write_json({"ok": True, "problems": [], "notes": [p.to_dict() for p in problems]}, snakemake.output[0])
