import numpy as np

# Validation on the built-in simulator: the oracle workspace (every learned ratio replaced by
# the exact one) fitted by the same code, and the NSBI / oracle / histogram comparison.


rule oracle_table:
    input:
        events=f"{RESULTS}/eval/{{region}}/{{dataset}}/events.parquet",
        code=code_inputs("scripts/oracle_table.py"),
    output:
        f"{RESULTS}/oracle/{{region}}/{{dataset}}.parquet",
    log:
        f"{RESULTS}/logs/oracle/{{region}}/{{dataset}}.log",
    conda:
        CONDA_ENV
    params:
        processes=ncfg.mc_samples(config),
        reference=canonical(ntgt.reference(config)),
        systematics=[list(t) for t in ntgt.syst_targets(config)],
        lumi_ifb=config["simulation"]["lumi_ifb"],
    script:
        "../scripts/oracle_table.py"


rule workspace_oracle:
    input:
        tables=[f"{RESULTS}/oracle/{r}/{d}.parquet" for r in UNBINNED for d in WS_DATASETS],
        yields=[f"{RESULTS}/prep/{r}/{p}/{v}.yields.json" for r, p, v in ncfg.prep_targets(config)],
        binned=prep_parquets(BINNED),
        code=code_inputs("scripts/workspace_build.py"),
    output:
        ws=f"{RESULTS}/workspace/oracle.json",
        side=ws_side_files("oracle"),
    log:
        f"{RESULTS}/logs/workspace/oracle.log",
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


rule closure_summary:
    input:
        scans=[f"{RESULTS}/fit/{k}/asimov/{s}.json" for k in WS_KINDS for s in ("scan", "scan_stat_only")],
        code=code_inputs("scripts/closure_summary.py"),
    output:
        summary=f"{RESULTS}/validation/closure.json",
        plot=report(f"{RESULTS}/validation/closure_scans.png", category="Validation", subcategory="oracle closure"),
    log:
        f"{RESULTS}/logs/validation/closure.log",
    conda:
        CONDA_ENV
    params:
        kinds=WS_KINDS,
        target_ratio=1.05,
        poi_label=poi_label,
    script:
        "../scripts/closure_summary.py"


rule closure2d:
    input:
        scans=lambda w: [f"{RESULTS}/fit/{k}/asimov/scan2d/{w.poix}__{w.poiy}.json" for k in WS_KINDS],
        code=code_inputs("scripts/closure2d.py"),
    output:
        summary=f"{RESULTS}/validation/closure2d/{{poix}}__{{poiy}}.json",
        plot=report(
            f"{RESULTS}/validation/closure2d/{{poix}}__{{poiy}}.png",
            category="Validation",
            subcategory="oracle closure",
        ),
    log:
        f"{RESULTS}/logs/validation/closure2d_{{poix}}__{{poiy}}.log",
    conda:
        CONDA_ENV
    params:
        kinds=WS_KINDS,
        target_ratio=1.10,
        axis_labels=lambda w: [poi_labels(w)[w.poix], poi_labels(w)[w.poiy]],
    script:
        "../scripts/closure2d.py"


# --- Neyman construction with pseudo-experiments: one job per (POI grid point, toy batch)
VAL = config["validation"]
VAL_WS = f"{RESULTS}/workspace/{VAL['workspace']}.json"
VAL_DATASET = "observed" if ncfg.data_sample(config) else "asimov"
VAL_GRID = [float(x) for x in np.linspace(VAL["grid"]["low"], VAL["grid"]["high"], VAL["grid"]["points"])]


wildcard_constraints:
    ipoint=r"\d+",
    batch=r"\d+",


rule neyman_chunk:
    input:
        ws=VAL_WS,
        side=ws_side_files(VAL["workspace"]),
        code=code_inputs("scripts/neyman_chunk.py"),
    output:
        f"{RESULTS}/validation/neyman/chunks/point{{ipoint}}_b{{batch}}.json",
    log:
        f"{RESULTS}/logs/validation/neyman/point{{ipoint}}_b{{batch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/validation/neyman/point{{ipoint}}_b{{batch}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        poi_value=lambda w: VAL_GRID[int(w.ipoint)],
        n=VAL["toys"]["per_batch"],
        seed=VAL["toys"]["seed"],
        kind=VAL["kind"],
        focus=VAL.get("focus"),
        nuisances=VAL["nuisances"],
        dataset=VAL_DATASET,
        batch_size=VAL["fit_batch_size"],
    script:
        "../scripts/neyman_chunk.py"


rule coverage_chunk:
    input:
        ws=VAL_WS,
        side=ws_side_files(VAL["workspace"]),
        code=code_inputs("scripts/neyman_chunk.py"),
    output:
        f"{RESULTS}/validation/coverage/chunks/point{{ipoint}}_b{{batch}}.json",
    log:
        f"{RESULTS}/logs/validation/coverage/point{{ipoint}}_b{{batch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/validation/coverage/point{{ipoint}}_b{{batch}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        poi_value=lambda w: float(VAL["coverage"]["poi_true"][int(w.ipoint)]),
        n=VAL["coverage"]["per_batch"],
        seed=VAL["coverage"]["seed"],
        kind=VAL["kind"],
        focus=VAL.get("focus"),
        nuisances=VAL["nuisances"],
        dataset=VAL_DATASET,
        batch_size=VAL["fit_batch_size"],
    script:
        "../scripts/neyman_chunk.py"


rule neyman_gather:
    input:
        chunks=[
            f"{RESULTS}/validation/neyman/chunks/point{i}_b{b}.json"
            for i in range(len(VAL_GRID))
            for b in range(VAL["toys"]["batches"])
        ],
        ws=VAL_WS,
        side=ws_side_files(VAL["workspace"]),
        code=code_inputs("scripts/neyman_gather.py"),
    output:
        belt=f"{RESULTS}/validation/neyman/belt.json",
        plot=report(f"{RESULTS}/validation/neyman/belt.png", category="Validation", subcategory="Neyman construction"),
    log:
        f"{RESULTS}/logs/validation/neyman_gather.log",
    conda:
        CONDA_ENV
    threads: 2
    params:
        grid=VAL_GRID,
        fine=[float(x) for x in np.linspace(VAL["grid"]["low"], VAL["grid"]["high"], VAL["observed_points"])],
        cls=VAL["cls"],
        kind=VAL["kind"],
        focus=VAL.get("focus"),
        dataset=VAL_DATASET,
        poi_label=poi_label,
    script:
        "../scripts/neyman_gather.py"


rule coverage:
    input:
        chunks=[
            f"{RESULTS}/validation/coverage/chunks/point{i}_b{b}.json"
            for i in range(len(VAL["coverage"]["poi_true"]))
            for b in range(VAL["coverage"]["batches"])
        ],
        belt=f"{RESULTS}/validation/neyman/belt.json",
        code=code_inputs("scripts/coverage.py"),
    output:
        summary=f"{RESULTS}/validation/coverage.json",
        plot=report(f"{RESULTS}/validation/coverage.png", category="Validation", subcategory="coverage"),
    log:
        f"{RESULTS}/logs/validation/coverage.log",
    conda:
        CONDA_ENV
    params:
        cls=VAL["cls"],
        poi_label=poi_label,
    script:
        "../scripts/coverage.py"


rule linearity:
    input:
        ws=VAL_WS,
        side=ws_side_files(VAL["workspace"]),
        code=code_inputs("scripts/linearity.py"),
    output:
        summary=f"{RESULTS}/validation/linearity.json",
        plot=report(f"{RESULTS}/validation/linearity.png", category="Validation", subcategory="bias and linearity"),
    log:
        f"{RESULTS}/logs/validation/linearity.log",
    benchmark:
        f"{RESULTS}/benchmarks/validation/linearity.tsv"
    priority: 10  # before the toy chunks, so that it does not run alone at the end
    conda:
        CONDA_ENV
    threads: 1  # as fast as on two (demo: 32 s on one core, 34 s on two)
    params:
        injected=VAL["linearity"],
        nuisances=VAL["linearity_nuisances"],
        poi_init=config["morphing"]["poi_init"],
        dataset=VAL_DATASET,
        poi_label=poi_label,
    script:
        "../scripts/linearity.py"


# --- Neyman region for a pair of POIs (validation.region2d): one job per grid node and batch
R2 = VAL.get("region2d")
if R2:
    R2_X, R2_Y = ncfg.grid_values(R2["x"]), ncfg.grid_values(R2["y"])
    R2_NODES = [{R2["pois"][0]: a, R2["pois"][1]: b} for a in R2_X for b in R2_Y]
    R2_COVERAGE = [dict(zip(R2["pois"], map(float, p))) for p in R2["coverage"]["points"]]

    wildcard_constraints:
        inode=r"\d+",

    rule region2d_chunk:
        input:
            ws=VAL_WS,
            side=ws_side_files(VAL["workspace"]),
            code=code_inputs("scripts/region2d_chunk.py"),
        output:
            f"{RESULTS}/validation/region2d/chunks/node{{inode}}_b{{batch}}.json",
        log:
            f"{RESULTS}/logs/validation/region2d/node{{inode}}_b{{batch}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/validation/region2d/node{{inode}}_b{{batch}}.tsv"
        conda:
            CONDA_ENV
        threads: 1
        params:
            point=lambda w: R2_NODES[int(w.inode)],
            index=lambda w: int(w.inode),
            batch=lambda w: int(w.batch),
            n=R2["toys"]["per_batch"],
            seed=R2["toys"]["seed"],
            nuisances=VAL["nuisances"],
            dataset=VAL_DATASET,
            batch_size=VAL["fit_batch_size"],
        script:
            "../scripts/region2d_chunk.py"

    rule region2d_coverage_chunk:
        input:
            ws=VAL_WS,
            side=ws_side_files(VAL["workspace"]),
            code=code_inputs("scripts/region2d_chunk.py"),
        output:
            f"{RESULTS}/validation/region2d/coverage/point{{ipoint}}.json",
        log:
            f"{RESULTS}/logs/validation/region2d/coverage_point{{ipoint}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/validation/region2d/coverage_point{{ipoint}}.tsv"
        conda:
            CONDA_ENV
        threads: 1
        params:
            point=lambda w: R2_COVERAGE[int(w.ipoint)],
            index=lambda w: R2_NODES.index(R2_COVERAGE[int(w.ipoint)]),
            batch=0,
            n=R2["coverage"]["per_batch"],
            seed=R2["coverage"]["seed"],
            nuisances=VAL["nuisances"],
            dataset=VAL_DATASET,
            batch_size=VAL["fit_batch_size"],
        script:
            "../scripts/region2d_chunk.py"

    R2_LEARNED = R2["method"] == "quantile_regression"
    R2_LEARN = R2["learned"]
    R2_AUDIT = ncfg.region2d_audit_points(config)
    R2_BOX = ncfg.region2d_box(config)

    rule region2d_learned_toys:
        input:
            ws=VAL_WS,
            side=ws_side_files(VAL["workspace"]),
            code=code_inputs("scripts/learned_toys.py"),
        output:
            f"{RESULTS}/validation/region2d/learned/toys/b{{batch}}.json",
        log:
            f"{RESULTS}/logs/validation/region2d/learned_toys_b{{batch}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/validation/region2d/learned_toys_b{{batch}}.tsv"
        conda:
            CONDA_ENV
        threads: 1
        params:
            pois=R2["pois"],
            low=R2_BOX[0],
            high=R2_BOX[1],
            n=R2_LEARN["toys"]["per_batch"],
            seed=R2_LEARN["toys"]["seed"],
            kind="t",
            focus=None,
            nuisances=VAL["nuisances"],
            dataset=VAL_DATASET,
            batch_size=VAL["fit_batch_size"],
        script:
            "../scripts/learned_toys.py"

    rule region2d_audit_chunk:
        input:
            ws=VAL_WS,
            side=ws_side_files(VAL["workspace"]),
            code=code_inputs("scripts/region2d_chunk.py"),
        output:
            f"{RESULTS}/validation/region2d/learned/audit/point{{ipoint}}.json",
        log:
            f"{RESULTS}/logs/validation/region2d/audit_point{{ipoint}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/validation/region2d/audit_point{{ipoint}}.tsv"
        conda:
            CONDA_ENV
        threads: 1
        params:
            point=lambda w: dict(zip(R2["pois"], R2_AUDIT[int(w.ipoint)])),
            index=lambda w: int(w.ipoint),
            batch=0,
            n=R2_LEARN["audit"]["per_point"],
            seed=R2_LEARN["audit"]["seed"],
            nuisances=VAL["nuisances"],
            dataset=VAL_DATASET,
            batch_size=VAL["fit_batch_size"],
        script:
            "../scripts/region2d_chunk.py"

    rule region2d:
        input:
            chunks=(
                [
                    f"{RESULTS}/validation/region2d/chunks/node{i}_b{b}.json"
                    for i in range(len(R2_NODES))
                    for b in range(R2["toys"]["batches"])
                ]
                if not R2_LEARNED
                else []
            ),
            toys=(
                [f"{RESULTS}/validation/region2d/learned/toys/b{b}.json" for b in range(R2_LEARN["toys"]["batches"])]
                if R2_LEARNED
                else []
            ),
            audit=(
                [f"{RESULTS}/validation/region2d/learned/audit/point{i}.json" for i in range(len(R2_AUDIT))]
                if R2_LEARNED
                else []
            ),
            coverage=[f"{RESULTS}/validation/region2d/coverage/point{i}.json" for i in range(len(R2_COVERAGE))],
            ws=VAL_WS,
            side=ws_side_files(VAL["workspace"]),
            code=code_inputs("scripts/region2d.py"),
        output:
            json=f"{RESULTS}/validation/region2d/region.json",
            plot=report(
                f"{RESULTS}/validation/region2d/region.png", category="Validation", subcategory="2-D Neyman region"
            ),
        log:
            f"{RESULTS}/logs/validation/region2d.log",
        benchmark:
            f"{RESULTS}/benchmarks/validation/region2d.tsv"
        conda:
            CONDA_ENV
        threads: 1
        params:
            pois=R2["pois"],
            x=R2["x"],
            y=R2["y"],
            cls=VAL["cls"],
            datasets=WS_DATASETS,
            labels=poi_labels,
            method=R2["method"],
            box=R2_BOX,
            network=R2_LEARN["network"],
            tolerance=R2_LEARN["audit"]["tolerance"],
        script:
            "../scripts/region2d.py"


# --- learned critical values (validation.method: quantile_regression)
LEARN = VAL["learned"]
AUDIT_POINTS = ncfg.audit_points(config)
LEARN_RANGE = ncfg.learned_range(config)


rule learned_toys:
    input:
        ws=VAL_WS,
        side=ws_side_files(VAL["workspace"]),
        code=code_inputs("scripts/learned_toys.py"),
    output:
        f"{RESULTS}/validation/learned/toys/b{{batch}}.json",
    log:
        f"{RESULTS}/logs/validation/learned/toys_b{{batch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/validation/learned/toys_b{{batch}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        low=LEARN_RANGE[0],
        high=LEARN_RANGE[1],
        pois=None,
        n=LEARN["toys"]["per_batch"],
        seed=LEARN["toys"]["seed"],
        kind=VAL["kind"],
        focus=VAL.get("focus"),
        nuisances=VAL["nuisances"],
        dataset=VAL_DATASET,
        batch_size=VAL["fit_batch_size"],
    script:
        "../scripts/learned_toys.py"


rule learned_audit_chunk:
    input:
        ws=VAL_WS,
        side=ws_side_files(VAL["workspace"]),
        code=code_inputs("scripts/neyman_chunk.py"),
    output:
        f"{RESULTS}/validation/learned/audit/point{{ipoint}}_b{{batch}}.json",
    log:
        f"{RESULTS}/logs/validation/learned/audit_point{{ipoint}}_b{{batch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/validation/learned/audit_point{{ipoint}}_b{{batch}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        poi_value=lambda w: AUDIT_POINTS[int(w.ipoint)],
        n=LEARN["audit"]["per_point"],
        seed=LEARN["audit"]["seed"],
        kind=VAL["kind"],
        focus=VAL.get("focus"),
        nuisances=VAL["nuisances"],
        dataset=VAL_DATASET,
        batch_size=VAL["fit_batch_size"],
    script:
        "../scripts/neyman_chunk.py"


rule learned_critical:
    input:
        toys=[f"{RESULTS}/validation/learned/toys/b{b}.json" for b in range(LEARN["toys"]["batches"])],
        audit=[f"{RESULTS}/validation/learned/audit/point{i}_b0.json" for i in range(len(AUDIT_POINTS))],
        ws=VAL_WS,
        side=ws_side_files(VAL["workspace"]),
        code=code_inputs("scripts/learned_critical.py"),
    output:
        json=f"{RESULTS}/validation/learned/critical.json",
        plot=report(
            f"{RESULTS}/validation/learned/critical.png", category="Validation", subcategory="learned critical values"
        ),
    log:
        f"{RESULTS}/logs/validation/learned_critical.log",
    benchmark:
        f"{RESULTS}/benchmarks/validation/learned_critical.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        low=LEARN_RANGE[0],
        high=LEARN_RANGE[1],
        fine=[float(x) for x in np.linspace(VAL["grid"]["low"], VAL["grid"]["high"], VAL["observed_points"])],
        cls=VAL["cls"],
        network=LEARN["network"],
        tolerance=LEARN["audit"]["tolerance"],
        kind=VAL["kind"],
        focus=VAL.get("focus"),
        dataset=VAL_DATASET,
        poi_label=poi_label,
    script:
        "../scripts/learned_critical.py"
