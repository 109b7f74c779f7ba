"""Snakemake script: region-classifier scores (score_<class>, region) for one prepared sample."""
from nsbi.evaluate import run_evaluate_classifier
from nsbi.workflow import job_logging

smk = snakemake  # noqa: F821
with job_logging(smk, "nsbi.evaluate") as log:
    p = smk.params
    counts = run_evaluate_classifier(list(smk.input.models), smk.input.sample, smk.output[0], int(p.folds),
                                     bool(p.out_of_fold), intra_op_threads=max(1, int(smk.threads)))
    log.info("region assignment: %s", counts)
