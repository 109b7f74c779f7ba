"""Snakemake script: select one (process, variation) -> parquet + yields JSON (streamed chunk by chunk)."""

from nsbi.prep import select_to_files
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.prep") as log:
    spec = snakemake.params.spec
    log.info("%s from %s (tree %s)", spec["label"], ", ".join(spec["files"]), spec["tree"])
    w = snakemake.wildcards
    meta = {"process": w.process, "variation": w.variation, "features": sorted(spec["features"])}
    summary = select_to_files(snakemake.output.parquet, snakemake.output.yields, meta, **spec)
    log.info(
        "selected %d events, sum of weights %.6g (%d negative)",
        summary["n_events"],
        summary["sumw"],
        summary["n_negative"],
    )
