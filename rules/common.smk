# Helpers shared by all rules: target expansion from the config, wildcard constraints,
# per-rule source-code inputs (computed from the scripts' imports). The logic lives in
# nsbi.config and nsbi.codedeps; this file only wires it.
import json
import os
import re
from pathlib import Path

import nsbi.config as ncfg
from nsbi.codedeps import script_dependencies

RESULTS = ncfg.results_dir(config)
# conda environment used with `--sdm conda` (relative to the rules/ directory)
CONDA_ENV = "../envs/nsbi.yaml"
SIMDIR = config["simulation"]["output_dir"]


# Plot label of the POI (morphing.poi_label, default from the POI's name) and legend label of the
# data. Given to params as functions: Snakemake formats plain string params with the wildcards,
# which would read the braces of a LaTeX label such as "$\mu_{\mathrm{off}}$" as a wildcard.
def poi_label(wildcards):
    return ncfg.poi_label(config)


def poi_labels(wildcards):
    return ncfg.poi_labels(config)


def data_label(wildcards):
    return ncfg.data_label(config)


# workspaces: datasets, unbinned and binned regions, kinds (the oracle needs the built-in simulator)
WS_DATASETS = ["asimov"] + (["observed"] if ncfg.data_sample(config) else [])
UNBINNED = [r["name"] for r in config["regions"] if r["type"] == "unbinned"]
BINNED = [r["name"] for r in config["regions"] if r["type"] == "binned"]
# the oracle workspace (exact ratios) exists for the built-in simulator only
WS_KINDS = ["nsbi", "hist"] + (["oracle"] if config["simulation"]["enabled"] else [])


def ws_side_files(kind):
    """The event files of a workspace's unbinned datasets: written with its JSON (which records
    their sha256), and read by every job that reads the workspace."""
    if kind == "hist":
        return []
    return [f"{RESULTS}/workspace/{kind}.{d}.{r}.npz" for d in WS_DATASETS for r in UNBINNED]


def _alternatives(names):
    """Regex matching exactly one of the configured names."""
    return "|".join(re.escape(n) for n in sorted(set(names), key=lambda n: (-len(n), n)))


ALL_VARIATIONS = sorted({v for s in config["samples"] for v in ncfg.variations(config, s["name"])})


wildcard_constraints:
    region=_alternatives(r["name"] for r in config["regions"]),
    process=_alternatives(s["name"] for s in config["samples"]),
    variation=_alternatives(ALL_VARIATIONS),
    simprocess=_alternatives(config["simulation"]["processes"]),


def canonical(obj):
    """Plain data with sorted keys, so Snakemake's params comparison is stable."""
    return json.loads(json.dumps(obj, sort_keys=True))


def config_subset(*keys, **extra):
    """The config sections a rule depends on, as canonical params (so editing them reruns it).
    Plot labels (``label``, ``morphing.poi_label``) are left out: they change no number, so
    editing one reruns only the plots (which take them as their own params)."""
    return canonical(ncfg.without_labels({**{k: config[k] for k in keys}, **extra}))


def code_inputs(script):
    """The source files of the workflow's packages that ``script`` (relative to the
    workflow directory) imports, directly or indirectly: declared as the rule's ``code``
    input so that editing one reruns exactly the rules whose scripts run it (Snakemake
    tracks the script itself, not the modules it imports). Computed from the imports in
    the code (nsbi.codedeps), once per script and workflow load."""
    path = os.path.normpath(os.path.join(workflow.basedir, script))
    if path not in _CODE_INPUTS:
        _CODE_INPUTS[path] = script_dependencies(path, workflow.basedir)
    return _CODE_INPUTS[path]


_CODE_INPUTS = {}


def prep_outputs():
    return [
        f"{RESULTS}/prep/{region}/{process}/{variation}.{ext}"
        for region, process, variation in ncfg.prep_targets(config)
        for ext in ("parquet", "yields.json")
    ]


# rules/plots.smk
def datamc_plots():
    return [f"{RESULTS}/plots/datamc/{r['name']}/{f}.png" for r in config["regions"] for f in FEATURES + SCORES]


def all_targets():
    # functions defined by the stage rule files included after this one
    return (
        prep_outputs()
        + [f"{RESULTS}/prep/yields.json"]
        + datamc_plots()
        + eval_outputs()
        + diagnostics_outputs()
        + fit_outputs()
        + validation_outputs()
    )


# --- helpers of the stage rule files (they use constants those files define)


# rules/train.smk
def train_members(region, target):
    return [f"{ntgt.member_dir(RESULTS, region, target, m)}/model.onnx" for m in range(N_MEMBERS)]


# rules/train.smk
def train_histories(region, target):
    return [f"{ntgt.member_dir(RESULTS, region, target, m)}/history.json" for m in range(N_MEMBERS)]


# rules/train.smk
def train_outputs():
    return [p for r in ntgt.unbinned_regions(config) for t in ntgt.target_names(config) for p in train_members(r, t)]


# rules/evaluate.smk
def eval_dataset_samples(w):
    if w.dataset == "asimov":
        return ncfg.mc_samples(config)
    return [ncfg.data_sample(config)]


# rules/evaluate.smk
def eval_outputs():
    return [f"{RESULTS}/eval/{r}/{d}.parquet" for r in ntgt.unbinned_regions(config) for d in EVAL_DATASETS]


# rules/evaluate.smk
def diagnostics_outputs():
    return [f"{RESULTS}/diagnostics/summary.json"] + [
        f"{RESULTS}/plots/network/{r}/summary.json" for r in ntgt.unbinned_regions(config)
    ]


# rules/evaluate.smk
def _diag_inputs(w):
    proc, syst, direction = ntgt.parse_target(w.target)
    prep = f"{RESULTS}/prep/{w.region}"
    if syst is None:
        return {
            "num": f"{prep}/{proc}/nominal.parquet",
            "den": [f"{prep}/{k}/nominal.parquet" for k in TRAIN_REFERENCE],
        }
    return {"num": f"{prep}/{proc}/{syst}_{direction}.parquet", "den": [f"{prep}/{proc}/nominal.parquet"]}


# rules/evaluate.smk
def _diag_oracle(w):
    if not config.get("simulation", {}).get("enabled", False):
        return {}
    proc, syst, direction = ntgt.parse_target(w.target)
    if syst is None:
        return {"kind": "ratio", "process": proc}
    return {"kind": "syst", "process": proc, "systematic": syst, "direction": direction}


# rules/workspace.smk
def prep_parquets(regions):
    return [f"{RESULTS}/prep/{r}/{p}/{v}.parquet" for r, p, v in ncfg.prep_targets(config) if r in regions]


# rules/fit.smk
def fit_outputs():
    out = [f"{RESULTS}/fit/{k}/{d}/fit.json" for k in WS_KINDS for d in WS_DATASETS]
    out += [f"{RESULTS}/fit/compare_{d}.json" for d in WS_DATASETS]
    out += [f"{RESULTS}/fit/pyhf_check_{k}.json" for k in WS_KINDS]
    out += [f"{RESULTS}/fit/{k}/{d}/limits.json" for k, d in ncfg.limit_targets(config)]
    out += [
        f"{RESULTS}/fit/{k}/{d}/scan_{p}.json"
        for k in WS_KINDS
        for d in WS_DATASETS
        for p in ncfg.poi_names(config)[1:]
    ]
    out += [
        f"{RESULTS}/fit/{k}/{d}/scan2d/{a}__{b}.json"
        for k in WS_KINDS
        for d in WS_DATASETS
        for a, b in (s["pois"] for s in config["fit"]["scan2d"])
    ]
    if "oracle" in WS_KINDS:
        out.append(f"{RESULTS}/validation/closure.json")
        out += [
            f"{RESULTS}/validation/closure2d/{a}__{b}.json" for a, b in (s["pois"] for s in config["fit"]["scan2d"])
        ]
    return out


def validation_outputs():
    if config["validation"]["method"] == "quantile_regression":
        out = [f"{RESULTS}/validation/{n}.json" for n in ("learned/critical", "linearity")]
    else:
        out = [f"{RESULTS}/validation/{n}.json" for n in ("neyman/belt", "coverage", "linearity")]
    if config["validation"].get("region2d"):
        out.append(f"{RESULTS}/validation/region2d/region.json")
    return out


def check_code_inputs():
    """Fail the workflow load when a rule that runs a script does not declare exactly that
    script's code inputs as ``code=code_inputs(...)`` (e.g. after copying a rule and
    changing only its script)."""
    for r in workflow.rules:
        if r.script is None:
            continue
        rule_dir = r.basedir.get_path_or_uri(secret_free=True)
        script = os.path.relpath(os.path.normpath(os.path.join(rule_dir, r.script)), workflow.basedir)
        declared = [str(f) for f in getattr(r.input, "code", [])]
        if declared != code_inputs(script):
            raise WorkflowError(
                f"The code input of rule {r.name} must be code_inputs({script!r}), the modules its script imports"
            )
