# Control plots of the prepared samples: data vs MC per region and feature.
FEATURES = [f["name"] for f in config["features"]]


rule plot_datamc:
    output:
        report(
            expand(f"{RESULTS}/plots/datamc/{{{{region}}}}/{{feature}}.png", feature=FEATURES),
            category="Data preparation",
            subcategory="{region}",
            caption="../report/datamc.rst",
        ),
    input:
        mc=lambda w: [f"{RESULTS}/prep/{w.region}/{s}/nominal.parquet" for s in ncfg.mc_samples(config)],
        data=lambda w: [f"{RESULTS}/prep/{w.region}/{ncfg.data_sample(config)}/nominal.parquet"] if ncfg.data_sample(config) else [],
        code=nsbi_sources("plotting/datamc"),
    params:
        mc_samples=ncfg.mc_samples(config),
        data_sample=ncfg.data_sample(config),
        features=FEATURES,
        labels={f["name"]: f.get("label", f["name"]) for f in config["features"]},
        sample_labels={s["name"]: s.get("label", s["name"]) for s in config["samples"]},
        coefficients=canonical(config["morphing"]["coefficients"]),
        poi=config["morphing"]["poi"],
        poi_value=config["morphing"]["poi_init"],
        region_label=lambda w: next(r.get("label", r["name"]) for r in config["regions"] if r["name"] == w.region),
    log:
        f"{RESULTS}/logs/plots/datamc_{{region}}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/plot_datamc.py"
