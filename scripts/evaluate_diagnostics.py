"""Snakemake script: diagnostics of one ratio target (plots + summary.json)."""

from nsbi.plotting.diag import run_ratio_diagnostics
from nsbi.workflow import job_logging

smk = snakemake
with job_logging(smk, "nsbi.diagnostics") as log:
    p = smk.params
    out_dir = str(smk.output.summary).rsplit("/", 1)[0]
    summary = run_ratio_diagnostics(
        out_dir,
        p.target,
        smk.input.num,
        dict(zip(p.components, list(smk.input.den))),
        list(smk.input.models),
        p.features,
        int(p.folds),
        coefficients=p.coefficients,
        history_paths=list(smk.input.histories),
        feature_labels=p.feature_labels,
        oracle_spec=p.oracle or None,
        aggregation=p.aggregate,
    )
    log.info(
        "closure chi2/ndf: %s; normalisation residual %.3g",
        {k: round(v["chi2_ndf"], 2) for k, v in summary["closure"].items()},
        summary["normalisation"]["residual"],
    )
