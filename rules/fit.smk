# Fits, profile-likelihood scans, pulls and impacts of the NSBI and histogram workspaces,
# their comparison, and the pyhf cross-check of every binned channel (fails on disagreement).


wildcard_constraints:
    kind="|".join(WS_KINDS),


rule fit:
    input:
        ws=f"{RESULTS}/workspace/{{kind}}.json",
        side=lambda w: ws_side_files(w.kind),
        code=code_inputs("scripts/fit.py"),
    output:
        fit=f"{RESULTS}/fit/{{kind}}/{{dataset}}/fit.json",
        scan=f"{RESULTS}/fit/{{kind}}/{{dataset}}/scan.json",
        scan_stat=f"{RESULTS}/fit/{{kind}}/{{dataset}}/scan_stat_only.json",
        impacts=f"{RESULTS}/fit/{{kind}}/{{dataset}}/impacts.json",
        scan_plot=report(f"{RESULTS}/fit/{{kind}}/{{dataset}}/scan.png", category="Fit", subcategory="{kind} {dataset}"),
        pulls_plot=report(
            f"{RESULTS}/fit/{{kind}}/{{dataset}}/pulls.png", category="Fit", subcategory="{kind} {dataset}"
        ),
        impacts_plot=report(
            f"{RESULTS}/fit/{{kind}}/{{dataset}}/impacts.png", category="Fit", subcategory="{kind} {dataset}"
        ),
    log:
        f"{RESULTS}/logs/fit/{{kind}}/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fit/{{kind}}/{{dataset}}.tsv"
    # the analysis result first: a fit waiting behind the toy jobs is the run's serial tail
    priority: 10
    conda:
        CONDA_ENV
    # one thread: the fit's XLA work is not faster on two (demo nsbi Asimov fit 4.1 s on one
    # core, 4.1 s on two), and a second core held idle stalls the toy jobs that could use it
    threads: 1
    params:
        scan=canonical(config["fit"]["scan"]),
        minos=config["fit"]["minos"],
        poi_label=poi_label,
    script:
        "../scripts/fit.py"


rule compare_scans:
    input:
        scans=[f"{RESULTS}/fit/{k}/{{dataset}}/{s}.json" for k in WS_KINDS for s in ("scan", "scan_stat_only")],
        code=code_inputs("scripts/compare_scans.py"),
    output:
        summary=f"{RESULTS}/fit/compare_{{dataset}}.json",
        plot=report(f"{RESULTS}/fit/compare_{{dataset}}.png", category="Fit", subcategory="NSBI vs histogram"),
    log:
        f"{RESULTS}/logs/fit/compare_{{dataset}}.log",
    conda:
        CONDA_ENV
    params:
        names=[f"{k}_{s}" for k in WS_KINDS for s in ("scan", "scan_stat_only")],
        labels=[f"{lab} {s}" for lab in WS_KINDS for s in ("stat+syst", "stat only")],
        poi_label=poi_label,
    script:
        "../scripts/compare_scans.py"


rule pyhf_check:
    input:
        ws=f"{RESULTS}/workspace/{{kind}}.json",
        side=lambda w: ws_side_files(w.kind),
        code=code_inputs("scripts/pyhf_check.py"),
    output:
        f"{RESULTS}/fit/pyhf_check_{{kind}}.json",
    log:
        f"{RESULTS}/logs/fit/pyhf_check_{{kind}}.log",
    conda:
        CONDA_ENV
    params:
        settings=canonical(config["fit"]["pyhf_check"]),
    script:
        "../scripts/pyhf_check.py"


if ncfg.limit_targets(config):

    rule limits:
        input:
            ws=f"{RESULTS}/workspace/{{kind}}.json",
            side=lambda w: ws_side_files(w.kind),
            code=code_inputs("scripts/limits.py"),
        output:
            json=f"{RESULTS}/fit/{{kind}}/{{dataset}}/limits.json",
            plot=report(f"{RESULTS}/fit/{{kind}}/{{dataset}}/cls.png", category="Fit", subcategory="{kind} {dataset}"),
        log:
            f"{RESULTS}/logs/fit/{{kind}}/{{dataset}}_limits.log",
        benchmark:
            f"{RESULTS}/benchmarks/fit/{{kind}}/{{dataset}}_limits.tsv"
        conda:
            CONDA_ENV
        threads: 2
        params:
            settings=canonical({k: config["fit"]["limits"][k] for k in ("cl", "test_stat")}),
            asimov_poi=config["morphing"]["poi_init"],
            poi_label=poi_label,
        script:
            "../scripts/limits.py"
