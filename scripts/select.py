"""Snakemake script: select one (process, variation) -> parquet + yields JSON."""

from nsbi.prep import prepare, write_prepared
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.prep") as log:
    spec = snakemake.params.spec
    log.info("%s from %s (tree %s)", spec["label"], ", ".join(spec["files"]), spec["tree"])
    result = prepare(**spec)
    w = snakemake.wildcards
    meta = {"process": w.process, "variation": w.variation, "features": sorted(spec["features"])}
    summary = write_prepared(result, snakemake.output.parquet, snakemake.output.yields, meta)
    log.info(
        "selected %d events, sum of weights %.6g (%d negative)",
        summary["n_events"],
        summary["sumw"],
        summary["n_negative"],
    )
