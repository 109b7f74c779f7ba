# Statistical model inputs: the NSBI workspace (unbinned SR from the evaluation tables,
# binned CRs from histograms) and the histogram-analysis baseline on the same events.
rule workspace_nsbi:
    input:
        tables=[f"{RESULTS}/eval/{r}/{d}.parquet" for r in UNBINNED for d in WS_DATASETS],
        yields=[f"{RESULTS}/prep/{r}/{p}/{v}.yields.json" for r, p, v in ncfg.prep_targets(config)],
        binned=prep_parquets(BINNED),
        code=code_inputs("scripts/workspace_build.py"),
    output:
        ws=f"{RESULTS}/workspace/nsbi.json",
        side=ws_side_files("nsbi"),
    log:
        f"{RESULTS}/logs/workspace/nsbi.log",
    conda:
        CONDA_ENV
    params:
        cfg=config_subset("analysis", "input", "samples", "systematics", "regions", "morphing"),
        reference=canonical(ntgt.reference(config)),
        targets=[list(t) for t in ncfg.prep_targets(config)],
        unbinned=UNBINNED,
        datasets=WS_DATASETS,
    script:
        "../scripts/workspace_build.py"


rule workspace_hist:
    input:
        binned=prep_parquets(UNBINNED + BINNED),
        code=code_inputs("scripts/workspace_hist.py"),
    output:
        ws=f"{RESULTS}/workspace/hist.json",
    log:
        f"{RESULTS}/logs/workspace/hist.log",
    conda:
        CONDA_ENV
    params:
        cfg=config_subset(
            "analysis",
            "input",
            "samples",
            "systematics",
            "regions",
            "morphing",
            fit={"histogram_baseline": config["fit"]["histogram_baseline"]},
        ),
    script:
        "../scripts/workspace_hist.py"
