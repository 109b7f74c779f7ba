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


# further POIs (morphing.pois[1:]): a profile scan of each, and the configured 2-D scans
OTHER_POIS = ncfg.poi_names(config)[1:]
POI_CFG = {p["name"]: p for p in config["morphing"]["pois"]}
SCAN2D = {tuple(s["pois"]): s for s in config["fit"]["scan2d"]}


wildcard_constraints:
    poi=_alternatives(OTHER_POIS) or "(?!)",
    poix=_alternatives(ncfg.poi_names(config)),
    poiy=_alternatives(ncfg.poi_names(config)),


rule scan_poi:
    input:
        ws=f"{RESULTS}/workspace/{{kind}}.json",
        side=lambda w: ws_side_files(w.kind),
        code=code_inputs("scripts/scan_poi.py"),
    output:
        json=f"{RESULTS}/fit/{{kind}}/{{dataset}}/scan_{{poi}}.json",
        plot=report(
            f"{RESULTS}/fit/{{kind}}/{{dataset}}/scan_{{poi}}.png", category="Fit", subcategory="{kind} {dataset}"
        ),
    log:
        f"{RESULTS}/logs/fit/{{kind}}/{{dataset}}_scan_{{poi}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fit/{{kind}}/{{dataset}}_scan_{{poi}}.tsv"
    priority: 10
    conda:
        CONDA_ENV
    threads: 1
    params:
        scan=lambda w: POI_CFG[w.poi].get("scan"),
        label=lambda w: ncfg.poi_labels(config)[w.poi],
    script:
        "../scripts/scan_poi.py"


rule scan2d:
    input:
        ws=f"{RESULTS}/workspace/{{kind}}.json",
        side=lambda w: ws_side_files(w.kind),
        code=code_inputs("scripts/scan2d.py"),
    output:
        json=f"{RESULTS}/fit/{{kind}}/{{dataset}}/scan2d/{{poix}}__{{poiy}}.json",
        plot=report(
            f"{RESULTS}/fit/{{kind}}/{{dataset}}/scan2d/{{poix}}__{{poiy}}.png",
            category="Fit",
            subcategory="{kind} {dataset}",
        ),
    log:
        f"{RESULTS}/logs/fit/{{kind}}/{{dataset}}_scan2d_{{poix}}__{{poiy}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fit/{{kind}}/{{dataset}}_scan2d_{{poix}}__{{poiy}}.tsv"
    priority: 10
    conda:
        CONDA_ENV
    threads: 1
    params:
        pois=lambda w: [w.poix, w.poiy],
        x=lambda w: SCAN2D[(w.poix, w.poiy)]["x"],
        y=lambda w: SCAN2D[(w.poix, w.poiy)]["y"],
        labels=poi_labels,
    script:
        "../scripts/scan2d.py"


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
