# Training (DRAFT by the training helper; the lead wires it into the Snakefile).
# One job per ensemble member: ratio models log p_c/p_ref and systematic models log g_ck,
# per unbinned region. Member m holds out k-fold fold m % folds; its seed is seed + m.

TRAIN_FEATURES = ntgt.training_features(config)
TRAIN_SETTINGS = canonical(ntgt.training_settings(config))
TRAIN_REFERENCE = ntgt.reference(config)
N_MEMBERS = ntgt.n_members(config)
N_FOLDS = ntgt.n_folds(config)
TRAIN_SEED = int(config["training"]["seed"])


wildcard_constraints:
    member=r"\d+",
    direction="up|down",
    systematic=(
        _alternatives(s["name"] for s in config["systematics"]) if config.get("systematics") else "NO_SYSTEMATICS"
    ),


rule train_ratio:
    input:
        num=f"{RESULTS}/prep/{{region}}/{{process}}/nominal.parquet",
        den=[f"{RESULTS}/prep/{{region}}/{k}/nominal.parquet" for k in TRAIN_REFERENCE],
        code=code_inputs("scripts/train_ratio.py"),
    output:
        onnx=f"{RESULTS}/train/{{region}}/ratio/{{process}}/{{member}}/model.onnx",
        history=f"{RESULTS}/train/{{region}}/ratio/{{process}}/{{member}}/history.json",
    log:
        f"{RESULTS}/logs/train/{{region}}/ratio/{{process}}/{{member}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{region}}/ratio/{{process}}/{{member}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        kind="ratio",
        target=lambda w: w.process,
        member=lambda w: int(w.member),
        components=list(TRAIN_REFERENCE),
        coefficients=canonical(TRAIN_REFERENCE),
        features=TRAIN_FEATURES,
        settings=TRAIN_SETTINGS,
        folds=N_FOLDS,
        seed=TRAIN_SEED,
    script:
        "../scripts/train_ratio.py"


rule train_syst:
    input:
        num=f"{RESULTS}/prep/{{region}}/{{process}}/{{systematic}}_{{direction}}.parquet",
        den=[f"{RESULTS}/prep/{{region}}/{{process}}/nominal.parquet"],
        code=code_inputs("scripts/train_ratio.py"),
    output:
        onnx=f"{RESULTS}/train/{{region}}/syst/{{process}}/{{systematic}}_{{direction}}/{{member}}/model.onnx",
        history=f"{RESULTS}/train/{{region}}/syst/{{process}}/{{systematic}}_{{direction}}/{{member}}/history.json",
    log:
        f"{RESULTS}/logs/train/{{region}}/syst/{{process}}/{{systematic}}_{{direction}}/{{member}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{region}}/syst/{{process}}/{{systematic}}_{{direction}}/{{member}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        kind="syst",
        target=lambda w: f"{w.process}__{w.systematic}_{w.direction}",
        member=lambda w: int(w.member),
        components=lambda w: [w.process],
        coefficients=None,
        features=TRAIN_FEATURES,
        settings=TRAIN_SETTINGS,
        folds=N_FOLDS,
        seed=TRAIN_SEED,
    script:
        "../scripts/train_ratio.py"
