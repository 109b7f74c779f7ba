# Evaluation + diagnostics (included after rules/train.smk).
# Per unbinned region and dataset (asimov: all MC of the region, observed: data):
#   eval/{region}/{dataset}/events.parquet      the events (features, weight, event_key, process)
#   eval/{region}/{dataset}/logr/{target}.npz   all members of one target (NaN = not evaluated)
#   eval/{region}/{dataset}.parquet             weight, process, event_key, logr_*, spread_*
# MC (asimov) is evaluated out-of-fold; data by every member.
EVAL_DATASETS = ["asimov"] + (["observed"] if ncfg.data_sample(config) else [])
EVAL_AGGREGATE = config["training"].get("aggregate", "mean")


wildcard_constraints:
    dataset="asimov|observed",
    target=_alternatives(ntgt.target_names(config)),


rule evaluate_dataset:
    input:
        samples=lambda w: [f"{RESULTS}/prep/{w.region}/{s}/nominal.parquet" for s in eval_dataset_samples(w)],
        code=code_inputs("scripts/evaluate_dataset.py"),
    output:
        f"{RESULTS}/eval/{{region}}/{{dataset}}/events.parquet",
    log:
        f"{RESULTS}/logs/eval/{{region}}/{{dataset}}/events.log",
    conda:
        CONDA_ENV
    params:
        samples=eval_dataset_samples,
        features=TRAIN_FEATURES,
    script:
        "../scripts/evaluate_dataset.py"


rule evaluate_target:
    input:
        events=f"{RESULTS}/eval/{{region}}/{{dataset}}/events.parquet",
        models=lambda w: train_members(w.region, w.target),
        code=code_inputs("scripts/evaluate_target.py"),
    output:
        f"{RESULTS}/eval/{{region}}/{{dataset}}/logr/{{target}}.npz",
    log:
        f"{RESULTS}/logs/eval/{{region}}/{{dataset}}/{{target}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/eval/{{region}}/{{dataset}}/{{target}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        folds=N_FOLDS,
        out_of_fold=lambda w: w.dataset == "asimov",
        aggregate=EVAL_AGGREGATE,
    script:
        "../scripts/evaluate_target.py"


rule evaluate_table:
    input:
        events=f"{RESULTS}/eval/{{region}}/{{dataset}}/events.parquet",
        targets=lambda w: [f"{RESULTS}/eval/{w.region}/{w.dataset}/logr/{t}.npz" for t in ntgt.target_names(config)],
        code=code_inputs("scripts/evaluate_table.py"),
    output:
        f"{RESULTS}/eval/{{region}}/{{dataset}}.parquet",
    log:
        f"{RESULTS}/logs/eval/{{region}}/{{dataset}}/table.log",
    conda:
        CONDA_ENV
    params:
        targets=ntgt.target_names(config),
        keep_features=[],
    script:
        "../scripts/evaluate_table.py"


DIAG_PLOTS = ["loss", "calibration", "spread"] + [f"closure_{f}" for f in TRAIN_FEATURES]
DIAG_PLOTS += ["oracle"] if config["simulation"]["enabled"] else []


rule evaluate_diagnostics:
    input:
        unpack(_diag_inputs),
        models=lambda w: train_members(w.region, w.target),
        histories=lambda w: train_histories(w.region, w.target),
        code=code_inputs("scripts/evaluate_diagnostics.py"),
    output:
        summary=f"{RESULTS}/diagnostics/{{region}}/{{target}}/summary.json",
        plots=report(
            [f"{RESULTS}/diagnostics/{{region}}/{{target}}/{p}.png" for p in DIAG_PLOTS],
            category="Density ratios",
            subcategory="{region} {target}",
        ),
    log:
        f"{RESULTS}/logs/diagnostics/{{region}}/{{target}}.log",
    conda:
        CONDA_ENV
    params:
        target=lambda w: w.target,
        components=lambda w: (
            list(TRAIN_REFERENCE) if ntgt.parse_target(w.target)[1] is None else [ntgt.parse_target(w.target)[0]]
        ),
        coefficients=lambda w: canonical(TRAIN_REFERENCE) if ntgt.parse_target(w.target)[1] is None else None,
        features=TRAIN_FEATURES,
        folds=N_FOLDS,
        aggregate=EVAL_AGGREGATE,
        feature_labels=canonical({f["name"]: f.get("label", f["name"]) for f in config["features"]}),
        oracle=_diag_oracle,
    script:
        "../scripts/evaluate_diagnostics.py"


rule evaluate_diagnostics_summary:
    input:
        # the summaries first: the script pairs list(input) with params.summary_keys
        [
            f"{RESULTS}/diagnostics/{r}/{t}/summary.json"
            for r in ntgt.unbinned_regions(config)
            for t in ntgt.target_names(config)
        ],
        code=code_inputs("scripts/evaluate_diagnostics_summary.py"),
    output:
        f"{RESULTS}/diagnostics/summary.json",
    log:
        f"{RESULTS}/logs/diagnostics/summary.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        summary_keys=[f"{r}/{t}" for r in ntgt.unbinned_regions(config) for t in ntgt.target_names(config)],
    script:
        "../scripts/evaluate_diagnostics_summary.py"


# data vs MC of the network outputs and the per-event sensitivity map of each unbinned region
SENSITIVITY = config["plots"]["sensitivity"]
SENS_X = SENSITIVITY.get("x", TRAIN_FEATURES[0])
SENS_Y = SENSITIVITY.get("y", TRAIN_FEATURES[1 % len(TRAIN_FEATURES)])
POI = config["morphing"]["poi"]


rule plot_network:
    input:
        events=f"{RESULTS}/eval/{{region}}/asimov/events.parquet",
        table=f"{RESULTS}/eval/{{region}}/asimov.parquet",
        data=[f"{RESULTS}/eval/{{region}}/observed.parquet"] if "observed" in EVAL_DATASETS else [],
        code=code_inputs("scripts/plot_network.py"),
    output:
        logr=report(
            [f"{RESULTS}/plots/network/{{region}}/logr_{c}.png" for c in ntgt.ratio_processes(config)],
            category="Network outputs",
            subcategory="{region}",
            caption="../report/network.rst",
        ),
        sensitivity=report(
            [f"{RESULTS}/plots/network/{{region}}/sensitivity_{POI}_{v:g}.png" for v in SENSITIVITY["poi_values"]],
            category="Network outputs",
            subcategory="{region}",
            caption="../report/network.rst",
        ),
        summary=f"{RESULTS}/plots/network/{{region}}/summary.json",
    log:
        f"{RESULTS}/logs/plots/network_{{region}}.log",
    conda:
        CONDA_ENV
    params:
        processes=ntgt.ratio_processes(config),
        coefficients=canonical(config["morphing"]["coefficients"]),
        poi=POI,
        other_pois={n: v for n, v in ncfg.poi_inits(config).items() if n != POI},
        poi_ref=config["morphing"]["poi_init"],
        poi_values=SENSITIVITY["poi_values"],
        reference=canonical(TRAIN_REFERENCE),
        x=SENS_X,
        y=SENS_Y,
        bins=SENSITIVITY["bins"],
        labels=canonical({f["name"]: f.get("label", f["name"]) for f in config["features"]}),
        sample_labels=canonical({s["name"]: s.get("label", s["name"]) for s in config["samples"]}),
        region_label=lambda w: next(r.get("label", r["name"]) for r in config["regions"] if r["name"] == w.region),
        poi_label=poi_label,
        data_label=data_label,
    script:
        "../scripts/plot_network.py"
