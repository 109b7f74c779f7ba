# Control plots of the prepared samples: data vs MC per region, for each feature and each
# region-classifier output (score_<class>).
FEATURES = [f["name"] for f in config["features"]]
SCORES = [f"score_{c}" for c in config["region_classifier"]["classes"]] if config.get("region_classifier") else []
PLOT_LABELS = {f["name"]: f.get("label", f["name"]) for f in config["features"]}
PLOT_LABELS.update({s: f"region classifier: $p$({s[len('score_'):]})" for s in SCORES})


rule plot_datamc:
    input:
        mc=lambda w: [f"{RESULTS}/prep/{w.region}/{s}/nominal.parquet" for s in ncfg.region_samples(config, w.region)],
        data=lambda w: (
            [f"{RESULTS}/prep/{w.region}/{ncfg.data_sample(config)}/nominal.parquet"]
            if ncfg.data_sample(config)
            else []
        ),
        code=code_inputs("scripts/plot_datamc.py"),
    output:
        report(
            expand(f"{RESULTS}/plots/datamc/{{{{region}}}}/{{feature}}.png", feature=FEATURES + SCORES),
            category="Data preparation",
            subcategory="{region}",
            caption="../report/datamc.rst",
        ),
    log:
        f"{RESULTS}/logs/plots/datamc_{{region}}.log",
    conda:
        CONDA_ENV
    params:
        mc_samples=lambda w: ncfg.region_samples(config, w.region),
        data_sample=ncfg.data_sample(config),
        features=FEATURES + SCORES,
        labels=canonical(PLOT_LABELS),
        sample_labels={s["name"]: s.get("label", s["name"]) for s in config["samples"]},
        coefficients=canonical(config["morphing"]["coefficients"]),
        poi=config["morphing"]["poi"],
        other_pois={n: v for n, v in ncfg.poi_inits(config).items() if n != config["morphing"]["poi"]},
        poi_label=poi_label,
        poi_value=config["morphing"]["poi_init"],
        data_label=data_label,
        region_label=lambda w: next(r.get("label", r["name"]) for r in config["regions"] if r["name"] == w.region),
    script:
        "../scripts/plot_datamc.py"
