# Fits, profile-likelihood scans, pulls and impacts of the NSBI and histogram workspaces,
# their comparison, and the pyhf cross-check of every binned channel (fails on disagreement).


wildcard_constraints:
    kind="|".join(WS_KINDS),


rule fit:
    output:
        fit=f"{RESULTS}/fit/{{kind}}/{{dataset}}/fit.json",
        scan=f"{RESULTS}/fit/{{kind}}/{{dataset}}/scan.json",
        scan_stat=f"{RESULTS}/fit/{{kind}}/{{dataset}}/scan_stat_only.json",
        impacts=f"{RESULTS}/fit/{{kind}}/{{dataset}}/impacts.json",
        scan_plot=report(f"{RESULTS}/fit/{{kind}}/{{dataset}}/scan.png", category="Fit", subcategory="{kind} {dataset}"),
        pulls_plot=report(f"{RESULTS}/fit/{{kind}}/{{dataset}}/pulls.png", category="Fit", subcategory="{kind} {dataset}"),
        impacts_plot=report(f"{RESULTS}/fit/{{kind}}/{{dataset}}/impacts.png", category="Fit", subcategory="{kind} {dataset}"),
    input:
        ws=f"{RESULTS}/workspace/{{kind}}.json",
        code=nsbi_sources("analysis", "fit", "model", "interpolation", "workspace", "plotting/fit_plots"),
    params:
        scan=canonical(config["fit"]["scan"]),
        minos=config["fit"]["minos"],
    log:
        f"{RESULTS}/logs/fit/{{kind}}/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fit/{{kind}}/{{dataset}}.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/fit.py"


rule compare_scans:
    output:
        summary=f"{RESULTS}/fit/compare_{{dataset}}.json",
        plot=report(f"{RESULTS}/fit/compare_{{dataset}}.png", category="Fit", subcategory="NSBI vs histogram"),
    input:
        scans=[f"{RESULTS}/fit/{k}/{{dataset}}/{s}.json" for k in WS_KINDS for s in ("scan", "scan_stat_only")],
        code=nsbi_sources("analysis", "plotting/fit_plots"),
    params:
        names=[f"{k}_{s}" for k in WS_KINDS for s in ("scan", "scan_stat_only")],
        labels=[f"{lab} {s}" for lab in WS_KINDS for s in ("stat+syst", "stat only")],
    log:
        f"{RESULTS}/logs/fit/compare_{{dataset}}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/compare_scans.py"


rule pyhf_check:
    output:
        f"{RESULTS}/fit/pyhf_check_{{kind}}.json",
    input:
        ws=f"{RESULTS}/workspace/{{kind}}.json",
        code=nsbi_sources("pyhf_check", "build", "model", "interpolation", "workspace", "fit"),
    params:
        settings=canonical(config["fit"]["pyhf_check"]),
    log:
        f"{RESULTS}/logs/fit/pyhf_check_{{kind}}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/pyhf_check.py"
