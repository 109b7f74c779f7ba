"""Snakemake script: the events of one region for one (process, variation), row group by row group."""

from nsbi.evaluate import classifier_scorer
from nsbi.prep import split_region_to_files
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.prep") as log:
    sm = snakemake
    w, region = sm.wildcards, sm.params.region
    label = f"region '{w.region}', sample '{w.process}', variation '{w.variation}'"
    scorer = None
    if sm.input.classifier:
        scorer = classifier_scorer(
            list(sm.input.classifier), sm.params.folds, sm.params.out_of_fold, intra_op_threads=sm.threads
        )
    meta = {"region": w.region, "process": w.process, "variation": w.variation}
    summary = split_region_to_files(
        sm.input.sample,
        sm.output.parquet,
        sm.output.yields,
        region["selection"],
        region["key"],
        scorer,
        label,
        meta,
        allow_empty=region["allow_empty"],
    )
    log.info(
        "%s: %d events, sum of weights %.6g (%d negative)",
        label,
        summary["n_events"],
        summary["sumw"],
        summary["n_negative"],
    )
