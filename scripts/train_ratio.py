"""Snakemake script: train one ensemble member of a density-ratio model and export it.

Used for both kinds of ratio (params.kind):
  ratio: log p_c / p_ref   input.num = prep/{region}/{process}/nominal.parquet,
                           input.den = the reference components (params.components names them)
  syst:  log g_ck          input.num = prep/{region}/{process}/{systematic}_{direction}.parquet,
                           input.den = prep/{region}/{process}/nominal.parquet
Outputs: output.onnx (model.onnx); history.json and metrics.csv are written next to it.
"""

from nsbi.train.run import run_train_ratio
from nsbi.workflow import job_logging

smk = snakemake
with job_logging(smk, "nsbi.train") as log:
    p = smk.params
    den_paths = dict(zip(p.components, list(smk.input.den)))
    out_dir = str(smk.output.onnx).rsplit("/", 1)[0]
    log.info("training %s member %s (%d folds) on %s vs %s", p.target, p.member, p.folds, smk.input.num, den_paths)
    history = run_train_ratio(
        num_path=smk.input.num,
        den_paths=den_paths,
        out_dir=out_dir,
        features=p.features,
        settings=p.settings,
        member=int(p.member),
        n_folds=int(p.folds),
        base_seed=int(p.seed),
        target=p.target,
        coefficients=p.coefficients if p.kind == "ratio" else None,
    )
    log.info("done: best validation loss %.6g at epoch %d", history["best_val_loss"], history["best_epoch"])
