# Data preparation in two steps (every input has been checked at once when the run starts: the
# onstart handler of the Snakefile, nsbi.check):
#   select: one job per (process, variation): preselection, features, weights
#   prep:   one job per (region, process, variation): region selection on the features and,
#           when configured, on the region classifier's scores score_<class>
# plus the optional multi-class region classifier (one member per fold).
from nsbi.prep import prep_spec, region_spec
from nsbi.train import targets as ntgt

REGION_CLF = config.get("region_classifier")
RC_FOLDS = int(REGION_CLF["folds"]) if REGION_CLF else 0
# one class order for the params and the input list (canonical() sorts the class names)
RC_CLASSES = canonical(REGION_CLF["classes"]) if REGION_CLF else {}
RC_MODELS = [f"{RESULTS}/train/region_classifier/{m}/model.onnx" for m in range(RC_FOLDS)]


rule select:
    input:
        files=lambda w: ncfg.variation_inputs(config, w.process, w.variation)["files"],
        code=code_inputs("scripts/select.py"),
    output:
        parquet=f"{RESULTS}/select/{{process}}/{{variation}}.parquet",
        yields=f"{RESULTS}/select/{{process}}/{{variation}}.yields.json",
    log:
        f"{RESULTS}/logs/select/{{process}}/{{variation}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/select/{{process}}/{{variation}}.tsv"
    conda:
        CONDA_ENV
    params:
        spec=lambda w: canonical(prep_spec(config, w.process, w.variation)),
    script:
        "../scripts/select.py"


rule prep:
    input:
        sample=f"{RESULTS}/select/{{process}}/{{variation}}.parquet",
        classifier=RC_MODELS,
        code=code_inputs("scripts/prep.py"),
    output:
        parquet=f"{RESULTS}/prep/{{region}}/{{process}}/{{variation}}.parquet",
        yields=f"{RESULTS}/prep/{{region}}/{{process}}/{{variation}}.yields.json",
    log:
        f"{RESULTS}/logs/prep/{{region}}/{{process}}/{{variation}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prep/{{region}}/{{process}}/{{variation}}.tsv"
    conda:
        CONDA_ENV
    params:
        region=lambda w: region_spec(config, w.region),
        folds=RC_FOLDS,
        # MC events are scored by the classifier member that did not train on them
        out_of_fold=lambda w: w.process != ncfg.data_sample(config),
    script:
        "../scripts/prep.py"


if REGION_CLF:

    rule train_region:
        input:
            samples=[f"{RESULTS}/select/{p}/nominal.parquet" for procs in RC_CLASSES.values() for p in procs],
            code=code_inputs("scripts/train_region.py"),
        output:
            onnx=f"{RESULTS}/train/region_classifier/{{member}}/model.onnx",
            history=f"{RESULTS}/train/region_classifier/{{member}}/history.json",
        log:
            f"{RESULTS}/logs/train/region_classifier/{{member}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/train/region_classifier/{{member}}.tsv"
        conda:
            CONDA_ENV
        threads: 1
        params:
            classes=RC_CLASSES,
            member=lambda w: int(w.member),
            features=REGION_CLF.get("features") or [f["name"] for f in config["features"]],
            settings=canonical(
                {k: v for k, v in REGION_CLF.items() if k not in ("classes", "features", "folds", "seed")}
            ),
            folds=RC_FOLDS,
            seed=REGION_CLF["seed"],
        script:
            "../scripts/train_region.py"


rule prep_summary:
    input:
        yields=lambda w: [p for p in prep_outputs() if p.endswith(".yields.json")],
        code=code_inputs("scripts/prep_summary.py"),
    output:
        f"{RESULTS}/prep/yields.json",
    log:
        f"{RESULTS}/logs/prep/summary.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        targets=[list(t) for t in ncfg.prep_targets(config)],
    script:
        "../scripts/prep_summary.py"
