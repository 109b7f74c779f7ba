"""Snakemake reruns exactly what a change invalidates (params, inputs, nsbi code), and an
interrupted run resumes with only the incomplete jobs and gives identical results."""

import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest
from conftest import ROOT, SNAKEMAKE, TEST_CONFIG, job_counts, snakemake

from nsbi import config as ncfg

pytestmark = pytest.mark.slow

PREP_RULES = {"simulate_sample", "simulate_data", "select", "prep", "train_region", "prep_summary", "plot_datamc"}


def test_training_setting_change_reruns_training_and_downstream_only(test_run, tmp_path):
    work, _ = test_run
    changed = tmp_path / "changed.yaml"
    changed.write_text(TEST_CONFIG.read_text().replace("learning_rate: 0.001", "learning_rate: 0.002"))
    proc = snakemake("-n", "--configfile", str(changed), "--directory", str(work))
    out = proc.stdout + proc.stderr
    counts = job_counts(out)
    cfg = ncfg.load(TEST_CONFIG)
    assert counts["train_ratio"] == 4 * cfg["training"]["members"]
    assert counts["train_syst"] > 0 and counts["evaluate_target"] > 0 and counts["workspace_nsbi"] == 1
    assert counts["fit"] == 2  # the NSBI workspace on both datasets; the histogram fits stay
    assert not PREP_RULES & set(counts), f"data preparation would rerun: {counts}"
    assert "workspace_hist" not in counts
    assert "Params have changed since last execution" in out


def test_editing_fit_module_reruns_only_fit_rules(test_run):
    """Snakemake records input checksums: a touched but unchanged module reruns nothing, an
    edited one reruns exactly the rules that import it."""
    work, _ = test_run
    module = ROOT / "nsbi" / "fit.py"
    original = module.read_bytes()
    st = os.stat(module)
    try:
        os.utime(module, (time.time(), time.time()))
        touched = snakemake("-n", "--configfile", str(TEST_CONFIG), "--directory", str(work))
        module.write_bytes(original + b"\n# edited by tests/test_reruns.py\n")
        proc = snakemake("-n", "--configfile", str(TEST_CONFIG), "--directory", str(work))
    finally:
        module.write_bytes(original)
        os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert "Nothing to be done" in touched.stdout + touched.stderr
    out = proc.stdout + proc.stderr
    counts = job_counts(out)
    assert counts.get("fit") == 6  # nsbi, hist and oracle workspaces on both datasets
    assert counts.get("linearity") == 1  # the Asimov bias test fits with nsbi.fit too
    assert set(counts) <= {"fit", "compare_scans", "pyhf_check", "closure_summary", "linearity", "all"}, counts
    assert re.search(r"Updated input files: .*nsbi/fit\.py", out)


def test_interrupted_run_resumes_with_incomplete_jobs_only(test_run, tmp_path):
    work, cfg = test_run
    resumed = tmp_path / "resumed"
    shutil.copytree(work, resumed, symlinks=True)
    res = resumed / ncfg.results_dir(cfg)
    # retrain the ratio ensembles (--forcerun) and interrupt the run during training
    cmd = [
        *SNAKEMAKE,
        "-s",
        str(ROOT / "Snakefile"),
        "--configfile",
        str(TEST_CONFIG),
        "--directory",
        str(resumed),
        "--cores",
        "1",
        "--forcerun",
        "train_ratio",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = ""
    for line in proc.stdout:  # interrupt as soon as the first training job has started
        log += line
        if "rule train_ratio" in line:
            time.sleep(1.0)
            proc.send_signal(signal.SIGINT)
            break
    log += proc.stdout.read()
    proc.wait(timeout=120)
    assert "train_ratio" in log and proc.returncode != 0, log[-2000:]
    again = snakemake(
        "--configfile", str(TEST_CONFIG), "--directory", str(resumed), "--cores", "2", "--rerun-incomplete"
    )
    counts = job_counts(again.stdout + again.stderr)
    # only the interrupted training job (and what depends on it) runs again
    assert 1 <= counts.get("train_ratio", 0) <= 2, counts
    assert "train_syst" not in counts and not PREP_RULES & set(counts), counts
    for kind in ("nsbi", "hist"):
        for dataset in ("asimov", "observed"):
            a = json.loads((work / ncfg.results_dir(cfg) / f"fit/{kind}/{dataset}/fit.json").read_text())
            b = json.loads((res / f"fit/{kind}/{dataset}/fit.json").read_text())
            assert a["values"] == b["values"] and a["twice_nll"] == b["twice_nll"], (kind, dataset)
