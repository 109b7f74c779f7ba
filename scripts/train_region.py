"""Snakemake script: train one member of the multi-class region classifier."""

from nsbi.train.run import run_train_classifier
from nsbi.workflow import job_logging

smk = snakemake
with job_logging(smk, "nsbi.train") as log:
    p = smk.params
    # params.classes: {class: [process, ...]}; input.samples is ordered like params.class_inputs
    paths = list(smk.input.samples)
    class_paths, i = {}, 0
    for name, procs in p.classes.items():
        class_paths[name] = paths[i : i + len(procs)]
        i += len(procs)
    out_dir = str(smk.output.onnx).rsplit("/", 1)[0]
    h = run_train_classifier(class_paths, out_dir, p.features, p.settings, int(p.member), int(p.folds), int(p.seed))
    log.info("region classifier member %s: best validation loss %.6g", p.member, h["best_val_loss"])
