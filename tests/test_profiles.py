"""The SLURM profile sizes every rule of the demo DAG: each rule that runs as a cluster job has
its own memory and run-time request in profiles/slurm (the default of 4 GB is not a measured
need), and the requests are ones SLURM and the plugin accept."""

import re

import yaml
from conftest import ROOT, snakemake

PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"
#: resources every cluster rule must request (sbatch --mem, --time, --cpus-per-task)
REQUIRED = ("mem_mb", "runtime", "cpus_per_task")


def _rule_bodies() -> dict[str, str]:
    """Every rule of the workflow files and its body (its indented block)."""
    out = {}
    for path in [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))]:
        text = path.read_text()
        heads = list(re.finditer(r"^( *)rule (\w+):\n", text, flags=re.M))  # rules inside `if` blocks too
        for i, m in enumerate(heads):
            end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
            body = text[m.end() : end]
            # the body ends at the first line indented no deeper than the rule itself
            stop = re.search(rf"^ {{0,{len(m.group(1))}}}\S", body, flags=re.M)
            out[m.group(2)] = body[: stop.start()] if stop else body
    return out


def _local_rules() -> set[str]:
    """Rules that never become cluster jobs: ``localrule: True``, or no script/shell/run
    (target rules such as ``all``)."""
    local = set()
    for name, body in _rule_bodies().items():
        if re.search(r"^\s+localrule:\s*True", body, flags=re.M) or not re.search(
            r"^\s+(script|shell|run|notebook|wrapper):", body, flags=re.M
        ):
            local.add(name)
    return local


def _demo_rules(tmp_path) -> set[str]:
    out = snakemake("-n", "--configfile", str(ROOT / "config" / "config.yaml"), "--directory", str(tmp_path)).stdout
    return set(re.findall(r"^(?:local)?rule (\w+):", out, flags=re.M))


def test_every_cluster_rule_of_the_demo_has_resources_in_the_profile(tmp_path):
    profile = yaml.safe_load(PROFILE.read_text())
    sized = profile["set-resources"]
    rules = _demo_rules(tmp_path)
    local = _local_rules()
    assert {"all", "prep_summary", "evaluate_diagnostics_summary"} <= local
    assert {"neyman_chunk", "coverage_chunk", "linearity", "neyman_gather", "fit"} <= rules
    missing = sorted(r for r in rules - local if r not in sized)
    assert not missing, f"rules without resources in {PROFILE.relative_to(ROOT)}: {missing}"
    incomplete = {r: sorted(set(REQUIRED) - set(sized[r])) for r in rules - local if set(REQUIRED) - set(sized[r])}
    assert not incomplete, f"rules missing {REQUIRED} in the profile: {incomplete}"
    stale = sorted(set(sized) - set(_rule_bodies()))
    assert not stale, f"profile sizes rules the workflow does not define: {stale}"


def test_profile_requests_are_well_formed():
    profile = yaml.safe_load(PROFILE.read_text())
    for rule, res in profile["set-resources"].items():
        for key, value in res.items():
            # numbers, or an expression of the retry attempt (evaluated by Snakemake)
            ok = isinstance(value, int) or re.fullmatch(r"\d+ \* attempt", str(value))
            assert ok, f"{rule}.{key}: {value!r}"
        mem = int(str(res["mem_mb"]).split()[0])
        assert 500 <= mem <= 64000, (rule, mem)
        assert int(str(res["cpus_per_task"]).split()[0]) >= 1


def test_every_job_is_told_as_many_threads_as_it_requests_cpus():
    """sbatch --cpus-per-task and the job's ``threads`` (which nsbi.workflow.limit_threads hands
    to torch, OpenMP/BLAS and XLA) must agree: fewer threads waste the allocation, more
    oversubscribe it."""
    profile = yaml.safe_load(PROFILE.read_text())
    cpus = {r: res["cpus_per_task"] for r, res in profile["set-resources"].items()}
    assert profile["set-threads"] == cpus
