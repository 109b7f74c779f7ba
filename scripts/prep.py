"""Snakemake script: the events of one region for one (process, variation)."""

from nsbi.evaluate import classifier_scores
from nsbi.io import read_parquet
from nsbi.prep import split_region, write_prepared
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.prep") as log:
    sm = snakemake
    w, region = sm.wildcards, sm.params.region
    label = f"region '{w.region}', sample '{w.process}', variation '{w.variation}'"
    columns = read_parquet(sm.input.sample)
    scores = None
    if sm.input.classifier:
        scores = classifier_scores(
            list(sm.input.classifier), columns, sm.params.folds, sm.params.out_of_fold, intra_op_threads=sm.threads
        )
    result = split_region(columns, region["selection"], region["key"], scores, label)
    meta = {"region": w.region, "process": w.process, "variation": w.variation}
    summary = write_prepared(result, sm.output.parquet, sm.output.yields, meta)
    log.info(
        "%s: %d events, sum of weights %.6g (%d negative)",
        label,
        summary["n_events"],
        summary["sumw"],
        summary["n_negative"],
    )
