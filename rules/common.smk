# Helpers shared by all rules: target expansion from the config, wildcard constraints,
# per-rule source-code inputs. The logic lives in nsbi.config; this file only wires it.
import json
import re
from pathlib import Path

import nsbi.config as ncfg

RESULTS = ncfg.results_dir(config)
# conda environment used with `--sdm conda` (relative to the rules/ directory)
CONDA_ENV = "../envs/nsbi.yaml"
SIMDIR = config["simulation"]["output_dir"]


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
    """The config sections a rule depends on, as canonical params (so editing them reruns it)."""
    return canonical({**{k: config[k] for k in keys}, **extra})


def nsbi_sources(*modules):
    """Source files of nsbi modules a rule runs, declared as inputs so that editing one
    reruns exactly the rules that use it (Snakemake does not track imported code)."""
    out = []
    for m in modules:
        path = Path(workflow.basedir) / "nsbi" / m
        out += sorted(map(str, path.glob("*.py"))) if path.is_dir() else [f"{path}.py"]
    return out


def prep_outputs():
    return [
        f"{RESULTS}/prep/{region}/{process}/{variation}.{ext}"
        for region, process, variation in ncfg.prep_targets(config)
        for ext in ("parquet", "yields.json")
    ]


def datamc_plots():
    return [
        f"{RESULTS}/plots/datamc/{r['name']}/{f['name']}.png" for r in config["regions"] for f in config["features"]
    ]


def all_targets():
    # functions defined by the stage rule files included after this one
    return (
        prep_outputs()
        + [f"{RESULTS}/prep/yields.json"]
        + datamc_plots()
        + eval_outputs()
        + diagnostics_outputs()
        + fit_outputs()
    )
