# Data preparation: one job per (region, process, variation).
from nsbi.prep import prep_spec


rule prep:
    output:
        parquet=f"{RESULTS}/prep/{{region}}/{{process}}/{{variation}}.parquet",
        yields=f"{RESULTS}/prep/{{region}}/{{process}}/{{variation}}.yields.json",
    input:
        files=lambda w: ncfg.variation_inputs(config, w.process, w.variation)["files"],
        code=nsbi_sources("prep", "io", "expr"),
    params:
        spec=lambda w: canonical(prep_spec(config, w.region, w.process, w.variation)),
    log:
        f"{RESULTS}/logs/prep/{{region}}/{{process}}/{{variation}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prep/{{region}}/{{process}}/{{variation}}.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/prep.py"


rule prep_summary:
    output:
        f"{RESULTS}/prep/yields.json",
    input:
        yields=lambda w: [p for p in prep_outputs() if p.endswith(".yields.json")],
    params:
        targets=[list(t) for t in ncfg.prep_targets(config)],
    log:
        f"{RESULTS}/logs/prep/summary.log",
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/prep_summary.py"
