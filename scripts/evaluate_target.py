"""Snakemake script: evaluate all ensemble members of one target on a region dataset."""

from nsbi.evaluate import run_evaluate_target
from nsbi.workflow import job_logging

smk = snakemake
with job_logging(smk, "nsbi.evaluate") as log:
    p = smk.params
    info = run_evaluate_target(
        smk.input.events,
        list(smk.input.models),
        smk.output[0],
        n_folds=int(p.folds),
        out_of_fold=bool(p.out_of_fold),
        aggregation=p.aggregate,
        intra_op_threads=max(1, int(smk.threads)),
    )
    log.info("%s on %s/%s: %s", smk.wildcards.target, smk.wildcards.region, smk.wildcards.dataset, info)
