# Validation on the built-in simulator: the oracle workspace (every learned ratio replaced by
# the exact one) fitted by the same code, and the NSBI / oracle / histogram comparison.


rule oracle_table:
    output:
        f"{RESULTS}/oracle/{{region}}/{{dataset}}.parquet",
    input:
        events=f"{RESULTS}/eval/{{region}}/{{dataset}}/events.parquet",
        code=nsbi_sources("oracle_tables", "simulate"),
    params:
        processes=ncfg.mc_samples(config),
        reference=canonical(ntgt.reference(config)),
        systematics=[list(t) for t in ntgt.syst_targets(config)],
        lumi_ifb=config["simulation"]["lumi_ifb"],
    log:
        f"{RESULTS}/logs/oracle/{{region}}/{{dataset}}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/oracle_table.py"


rule workspace_oracle:
    output:
        ws=f"{RESULTS}/workspace/oracle.json",
        side=[f"{RESULTS}/workspace/oracle.{d}.{r}.npz" for d in WS_DATASETS for r in UNBINNED],
    input:
        tables=[f"{RESULTS}/oracle/{r}/{d}.parquet" for r in UNBINNED for d in WS_DATASETS],
        yields=[f"{RESULTS}/prep/{r}/{p}/{v}.yields.json" for r, p, v in ncfg.prep_targets(config)],
        binned=prep_parquets(BINNED),
        code=nsbi_sources("build", "workspace"),
    params:
        cfg=config_subset("analysis", "input", "samples", "systematics", "regions", "morphing"),
        reference=canonical(ntgt.reference(config)),
        targets=[list(t) for t in ncfg.prep_targets(config)],
        unbinned=UNBINNED,
        datasets=WS_DATASETS,
    log:
        f"{RESULTS}/logs/workspace/oracle.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/workspace_build.py"


rule closure_summary:
    output:
        summary=f"{RESULTS}/validation/closure.json",
        plot=report(f"{RESULTS}/validation/closure_scans.png", category="Validation", subcategory="oracle closure"),
    input:
        scans=[f"{RESULTS}/fit/{k}/asimov/{s}.json" for k in WS_KINDS for s in ("scan", "scan_stat_only")],
        code=nsbi_sources("analysis", "plotting/fit_plots"),
    params:
        kinds=WS_KINDS,
        target_ratio=1.05,
    log:
        f"{RESULTS}/logs/validation/closure.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/closure_summary.py"
