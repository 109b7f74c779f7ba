"""Snakemake script: exact (oracle) log-ratios for the events of one region dataset."""

from nsbi.evaluate import read_table
from nsbi.io import write_parquet
from nsbi.oracle_tables import oracle_table
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.oracle") as log:
    sm = snakemake
    events = read_table(sm.input.events)
    p = sm.params
    table = oracle_table(events, p.processes, p.reference, [tuple(t) for t in p.systematics], p.lumi_ifb)
    write_parquet(table, sm.output[0])
    log.info(
        "oracle log-ratios for %d events: %s", len(table["weight"]), sorted(k for k in table if k.startswith("logr_"))
    )
