"""End-to-end run of the test config on a real single-node SLURM cluster on localhost.

The cluster (munged, slurmctld, slurmd from Debian's slurm-wlm) is started by
tests/slurm/cluster.sh and stopped afterwards. Skipped, with the reason, only where SLURM
cannot be installed (not root, or no apt).
"""

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import yaml
from conftest import ROOT, TEST_CONFIG, snakemake

from nsbi import config as ncfg
from nsbi.io import read_parquet

CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
# rules that request a GPU in profiles/slurm; the test node has no GRES
GPU_RULES = ["train_ratio", "train_syst", "train_region", "evaluate_target"]
# the single test node has 2 cores and ~23 GB: shrink the per-rule requests of the profile (every
# rule is sized there, tests/test_profiles.py) to one core and 2 GB, so that jobs run side by side
SIZED = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())["set-resources"]
SMALL = [f"{r}:{k}={v}" for r in SIZED for k, v in (("mem_mb", 2000), ("cpus_per_task", 1))]
ONE_THREAD = [f"{r}=1" for r in SIZED]  # and tell each job it has one thread, as the profile pairs them

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if shutil.which("slurmctld") is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.skip("SLURM is not installed and cannot be installed here (needs root and apt-get)")
        proc = subprocess.run([str(CLUSTER), "install"], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"SLURM could not be installed: {proc.stderr[-500:]}")
    state = tmp_path_factory.mktemp("slurm")
    subprocess.run([str(CLUSTER), "start", str(state)], check=True)
    try:
        yield {"SLURM_CONF": str(state / "slurm.conf")}
    finally:
        subprocess.run([str(CLUSTER), "stop", str(state)], check=False)


def _without_timings(obj):
    """JSON content without wall-clock fields (e.g. the toy chunks' 'seconds')."""
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return "nan"  # NaN != NaN, but two NaNs are the same result here
    return obj


def _one_output_per_rule(work) -> dict[str, str]:
    """One output file of every rule of the finished run (``--detailed-summary``), picked
    deterministically: the job that writes it will run again when the file is removed."""
    proc = snakemake("--configfile", str(TEST_CONFIG), "--directory", str(work), "--detailed-summary")
    lines = proc.stdout.splitlines()
    header = lines[0].split("\t")
    col_file, col_rule = header.index("output_file"), header.index("rule")
    by_rule: dict[str, list[str]] = {}
    for line in lines[1:]:
        fields = line.split("\t")
        if len(fields) == len(header) and (work / fields[col_file]).is_file():
            by_rule.setdefault(fields[col_rule], []).append(fields[col_file])
    return {rule: sorted(files)[0] for rule, files in by_rule.items()}


def _rule_depths(work) -> dict[str, int]:
    """Longest path from a source rule in the rule graph (``--rulegraph``): a job's ancestors
    all belong to rules of smaller depth."""
    dot = snakemake("--configfile", str(TEST_CONFIG), "--directory", str(work), "--rulegraph").stdout
    names = dict(re.findall(r"^\s*(\d+)\[label = \"(\w+)\"", dot, flags=re.M))
    parents: dict[str, set[str]] = {n: set() for n in names.values()}
    for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, flags=re.M):
        parents[names[b]].add(names[a])
    depth: dict[str, int] = {}

    def visit(rule):
        if rule not in depth:
            depth[rule] = 1 + max((visit(p) for p in parents[rule]), default=-1)
        return depth[rule]

    for rule in parents:
        visit(rule)
    return depth


def test_slurm_jobs_reproduce_the_local_run(slurm, test_run, tmp_path):
    """One job of every rule of the test config goes through sbatch on a real SLURM cluster, in a
    copy of the shared local run, and writes exactly the files the local run wrote.

    Rerunning one job per rule (instead of the whole DAG a second time) exercises every rule's
    resources, script and environment under SLURM at a fraction of the cost; the local run
    itself is checked end to end by tests/test_workflow.py. The picked files are removed and
    written again layer by layer, deepest rules first (one Snakemake call per depth of the
    rule graph): a job rerun earlier is then never an ancestor of a later one, so no job other
    than the picked ones runs."""
    local, cfg = test_run
    work = tmp_path / "slurm-run"
    shutil.copytree(local, work, symlinks=True)
    picks = _one_output_per_rule(work)
    assert {"simulate_sample", "select", "train_region", "prep", "train_ratio", "train_syst", "fit"} <= set(picks)
    assert {"neyman_chunk", "coverage_chunk", "linearity", "pyhf_check"} <= set(picks), sorted(picks)
    depth = _rule_depths(work)
    out = ""
    for level in sorted({depth[r] for r in picks}, reverse=True):
        targets = sorted(path for rule, path in picks.items() if depth[rule] == level)
        for path in targets:  # removed only now: deeper jobs may read a sibling (e.g. a workspace side file)
            (work / path).unlink()
        proc = snakemake(
            "--profile",
            str(ROOT / "profiles" / "slurm"),
            "--configfile",
            str(TEST_CONFIG),
            "--directory",
            str(work),
            "--slurm-no-account",
            "--slurm-status-command",
            "squeue",
            "--slurm-init-seconds-before-status-checks",
            "1",
            "--jobs",
            "4",
            "--set-resources",
            *[f"{r}:gpu=0" for r in GPU_RULES],
            *SMALL,
            "--set-threads",
            *ONE_THREAD,
            "--default-resources",
            "mem_mb=2000",
            "--",
            *targets,
            env=slurm,
        )
        out += proc.stdout + proc.stderr
    jobids = re.findall(r"submitted with SLURM jobid (\d+)", out)
    local_rules = set(re.findall(r"^localrule (\w+):", out, flags=re.M))  # summaries run on the submit host
    assert local_rules < set(picks), local_rules
    assert len(jobids) == len(picks) - len(local_rules), (
        f"expected one sbatch job per rule ({len(picks)}):\n{out[-3000:]}"
    )
    sq = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%i"], capture_output=True, text=True, env={**os.environ, **slurm}
    )
    assert set(jobids) <= set(sq.stdout.split()), "job ids reported by Snakemake are unknown to SLURM"

    res_local, res_slurm = local / ncfg.results_dir(cfg), work / ncfg.results_dir(cfg)
    files = sorted(p.relative_to(res_local) for p in res_local.rglob("*") if p.suffix in (".parquet", ".json"))
    assert files
    for path in picks.values():  # the removed files were written again, by SLURM jobs
        assert (work / path).is_file(), f"{path} was not written by the SLURM run"
    for rel in files:
        assert (res_slurm / rel).exists(), f"{rel} missing from the SLURM run"
        if rel.suffix == ".parquet":
            a, b = read_parquet(res_local / rel), read_parquet(res_slurm / rel)
            assert a.keys() == b.keys()
            for k in a:
                np.testing.assert_array_equal(a[k], b[k], err_msg=str(rel))
        else:
            a, b = (json.loads((r / rel).read_text()) for r in (res_local, res_slurm))
            assert _without_timings(a) == _without_timings(b), str(rel)
