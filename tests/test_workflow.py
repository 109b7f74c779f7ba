"""The Snakemake workflow: DAG shape (dry run) and an end-to-end run on config/test.yaml."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import uproot
from conftest import ROOT, job_counts, snakemake

from nsbi import config as ncfg
from nsbi import fit as F
from nsbi import workspace as W
from nsbi.io import read_parquet
from nsbi.train import targets as ntgt


@pytest.mark.parametrize("configfile", ["config/config.yaml", "config/test.yaml"])
def test_dry_run_has_one_prep_job_per_region_process_variation(configfile, tmp_path):
    proc = snakemake("-n", "--configfile", str(ROOT / configfile), "--directory", str(tmp_path))
    out = proc.stdout + proc.stderr
    counts = job_counts(out)
    cfg = ncfg.load(ROOT / configfile)
    expected = {
        (r["name"], s["name"], v)
        for r in cfg["regions"]
        for s in cfg["samples"]
        for v in ncfg.variations(cfg, s["name"])
    }
    assert counts["prep"] == len(expected) == 42
    assert counts["simulate_sample"] == len(cfg["simulation"]["processes"])
    jobs = set(re.findall(r"prep/(\w+)/(\w+)/(\w+)\.parquet", out))
    assert jobs == expected
    # selection: one job per (process, variation); region classifier: one per fold
    assert counts["select"] == len({(p, v) for _, p, v in expected}) == 21
    assert counts["train_region"] == cfg["region_classifier"]["folds"]
    # training: one job per (process, member) and per (process, systematic, direction, member)
    members = cfg["training"]["members"]
    basis = ntgt.ratio_processes(cfg)  # every MC sample (qqZZ: basis in the demo, background in the test config)
    assert basis == ncfg.mc_samples(cfg)
    syst = [(p, s, d) for p in basis for s in ncfg.shape_systematics(cfg, p) for d in ("up", "down")]
    assert counts["train_ratio"] == len(basis) * members
    assert counts["train_syst"] == len(syst) * members
    ratio_jobs = set(re.findall(r"train/SR/ratio/(\w+)/(\d+)/model\.onnx", out))
    assert ratio_jobs == {(p, str(m)) for p in basis for m in range(members)}
    syst_jobs = set(re.findall(r"train/SR/syst/(\w+)/(\w+)_(up|down)/(\d+)/model\.onnx", out))
    assert syst_jobs == {(p, s, d, str(m)) for p, s, d in syst for m in range(members)}
    # the statistical model: NSBI, histogram and oracle workspaces fitted on both datasets
    # and pyhf-checked; toys: one job per (POI grid point, batch)
    assert counts["fit"] == 6 and counts["pyhf_check"] == 3
    v = cfg["validation"]
    assert counts["neyman_chunk"] == v["grid"]["points"] * v["toys"]["batches"]


def test_default_config_is_the_demo(tmp_path):
    proc = snakemake("-n", "--directory", str(tmp_path))
    assert "results/hzz4l/prep/SR/S/nominal.parquet" in proc.stdout + proc.stderr


def test_invalid_config_fails_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "config/test.yaml").read_text().replace("members: 2", "members: two"))
    proc = snakemake("-n", "--configfile", str(bad), "--directory", str(tmp_path), check=False)
    assert proc.returncode != 0
    assert "config key 'training.members': 'two' is not of type 'integer'" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_end_to_end_prep_yields_match_direct_computation(test_run):
    work, cfg = test_run
    res = work / ncfg.results_dir(cfg)
    table = json.loads((res / "prep/yields.json").read_text())
    for region, process, variation in ncfg.prep_targets(cfg):
        cols = read_parquet(res / f"prep/{region}/{process}/{variation}.parquet")
        assert set(cols) == {f["name"] for f in cfg["features"]} | {"weight", "event_key", "score_ggF", "score_qqZZ"}
        assert table[region][process][variation]["n_events"] == len(cols["weight"]) > 0
    # independent check with plain numpy on the ROOT file: the preselected S nominal yield,
    # and the regions (score_ggF >= 0.5 / < 0.5) partition it
    with uproot.open(work / cfg["samples"][0]["files"][0]) as fh:
        ev = fh["events"].arrays(library="np")
    lep_pt = ev["lep_pt"]
    presel = (
        (ev["m4l"] > 225)
        & (ev["m4l"] < 990)
        & (ev["mZ1"] > 77)
        & (ev["mZ1"] < 105)
        & (ev["mZ2"] > 77)
        & (ev["mZ2"] < 105)
        & np.array([len(p) == 4 and p.min() > 5 for p in lep_pt])
    )
    selected = json.loads((res / "select/S/nominal.yields.json").read_text())
    assert selected["sumw"] == pytest.approx(ev["weight"][presel].sum(), rel=1e-12)
    assert selected["n_events"] == presel.sum()
    for var, branch in (("nominal", "weight"), ("kfactor_up", "weight_kfactor_up")):
        total = table["SR"]["S"][var]["sumw"] + table["CRqq"]["S"][var]["sumw"]
        assert total == pytest.approx(ev[branch][presel].sum(), rel=1e-12)
    sr = read_parquet(res / "prep/SR/S/nominal.parquet")
    cr = read_parquet(res / "prep/CRqq/S/nominal.parquet")
    assert np.all(sr["score_ggF"] >= 0.5) and np.all(cr["score_ggF"] < 0.5)
    assert len(np.intersect1d(sr["event_key"], cr["event_key"])) == 0
    # weight systematics keep the events, tree systematics change them
    nom = read_parquet(res / "prep/SR/B/nominal.parquet")
    kup = read_parquet(res / "prep/SR/B/kfactor_up.parquet")
    np.testing.assert_array_equal(nom["event_key"], kup["event_key"])
    assert np.all(kup["weight"] >= nom["weight"])
    les = read_parquet(res / "prep/SR/B/LES_up.parquet")
    common, i, j = np.intersect1d(nom["event_key"], les["event_key"], return_indices=True)
    np.testing.assert_allclose(les["m4l"][j] / nom["m4l"][i], 1.005, rtol=1e-9)
    # the pseudo-data are unweighted
    data = read_parquet(res / "prep/SR/data/nominal.parquet")
    assert np.all(data["weight"] == 1.0)


@pytest.mark.slow
def test_datamc_plots_are_written(test_run):
    work, cfg = test_run
    res = work / ncfg.results_dir(cfg)
    scores = [f"score_{c}" for c in cfg["region_classifier"]["classes"]]
    for region in cfg["regions"]:
        for name in [f["name"] for f in cfg["features"]] + scores:  # features and region-classifier outputs
            png = res / f"plots/datamc/{region['name']}/{name}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # network outputs and sensitivity maps of the unbinned region
    net = res / "plots/network/SR"
    for c in ntgt.ratio_processes(cfg):
        assert (net / f"logr_{c}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((net / "summary.json").read_text())
    for value in cfg["plots"]["sensitivity"]["poi_values"]:
        assert (net / f"sensitivity_mu_{value:g}.png").is_file()
        # the Asimov at mu = 1 disfavours mu != 1: -2 Delta lnL > 0 (nuisance parameters fixed)
        assert summary["sensitivity"][f"{value:g}"]["asimov_twice_delta_nll_fixed_nuisances"] > 0


@pytest.mark.slow
def test_second_run_is_a_no_op(test_run):
    work, _ = test_run
    proc = snakemake("-n", "--configfile", str(ROOT / "config/test.yaml"), "--directory", str(work))
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_report_collects_plots_by_stage(test_run, tmp_path):
    work, _ = test_run
    report = tmp_path / "report.zip"
    snakemake("--configfile", str(ROOT / "config/test.yaml"), "--directory", str(work), "--report", str(report))
    import zipfile

    names = zipfile.ZipFile(report).namelist()
    assert any(n.endswith("m4l.png") for n in names)  # data vs MC
    assert any("closure_m4l" in n for n in names)  # density-ratio diagnostics
    assert any(n.endswith("scan.png") for n in names)  # fits


# runs Snakemake in this interpreter and reports, at exit, the heavy modules it imported
# and the CPU time it used
_IMPORT_PROBE = """
import atexit, resource, sys

def report():
    heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "lightning", "jax", "jaxlib"})
    cpu = sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))
    print(f"IMPORT_PROBE heavy={','.join(heavy)} cpu={cpu:.2f}", file=sys.__stderr__)

atexit.register(report)
from snakemake.cli import main
sys.argv = ["snakemake", *sys.argv[1:]]
main()
"""


def test_dry_run_imports_neither_torch_nor_jax(tmp_path):
    """Loading the workflow (rules, targets, code inputs) needs only light modules."""
    cmd = [sys.executable, "-c", _IMPORT_PROBE, "-n", "-s", str(ROOT / "Snakefile")]
    cmd += ["--configfile", str(ROOT / "config/config.yaml"), "--directory", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    m = re.search(r"^IMPORT_PROBE heavy=(\S*) cpu=([\d.]+)$", proc.stderr, flags=re.M)
    assert m, proc.stderr[-2000:]
    assert m.group(1) == "", f"snakemake -n imported {m.group(1)}"
    assert job_counts(proc.stdout + proc.stderr)["train_ratio"] > 0
    print(f"snakemake -n on config/config.yaml: {m.group(2)} s CPU")


def test_lint_is_clean(tmp_path):
    proc = snakemake("--lint", "--configfile", str(ROOT / "config/test.yaml"), "--directory", str(tmp_path))
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_validation_outputs(test_run):
    work, cfg = test_run
    res = work / ncfg.results_dir(cfg)
    lin = json.loads((res / "validation/linearity.json").read_text())
    # Asimov datasets built by reweighting the MC with the model: the fit returns the injection
    v = cfg["validation"]
    assert len(lin["points"]) == len(v["linearity"]) + len(v["linearity_nuisances"]) and v["linearity_nuisances"]
    poi = cfg["morphing"]["poi"]
    assert lin["poi"] == poi
    for point in lin["points"]:  # the POI, and any shifted nuisance parameter to 1 % of its error
        assert point["fitted"][poi] == pytest.approx(point["injected"][poi], abs=1e-3)
        for name in point["shifted"]:
            assert abs(point["fitted"][name] - point["injected"][name]) < 0.01 * point["errors"][name], name
    belt = json.loads((res / "validation/neyman/belt.json").read_text())
    assert belt["poi"] == poi and len(belt["poi_values"]) == cfg["validation"]["grid"]["points"]
    # profiled generation point (the default): the conditional MLE of the nuisance parameters on the data
    assert v["nuisances"] == "profiled"
    chunk = json.loads((res / "validation/neyman/chunks/point1_b0.json").read_text())
    model = W.load(res / f"workspace/{v['workspace']}.json").model(dataset="observed")
    assert chunk["poi"] == poi and chunk["poi_index"] == 1
    cond = F.fit(model, fixed={model.poi_name: chunk["poi_value"]}, tolerance=1e-6, hesse=False)
    assert chunk["par_names"] == model.par_names
    np.testing.assert_allclose(chunk["theta"], cond.values, atol=1e-4)
    assert np.max(np.abs(np.array(chunk["theta"]) - model.init)) > 1e-3  # not the nominal point
    cov = json.loads((res / "validation/coverage.json").read_text())
    assert cov["points"][0]["n_toys"] == cfg["validation"]["coverage"]["per_batch"]
    assert cov["poi"] == poi and [p["poi_true"] for p in cov["points"]] == v["coverage"]["poi_true"]
    closure = json.loads((res / "validation/closure.json").read_text())
    assert {"nsbi_stat_syst", "oracle_stat_syst", "hist_stat_syst"} <= set(closure["scans"])
    # the oracle (exact ratios) recovers the nominal POI on its Asimov dataset
    assert closure["scans"]["oracle_stat_syst"]["best"] == pytest.approx(cfg["morphing"]["poi_init"], abs=1e-3)


@pytest.mark.slow
def test_diagnostics_summary_gates_on_the_oracle(test_run):
    """The diagnostics summary of the test run compares every ensemble with the simulator's
    exact ratio. With 4000 events and 3 epochs only the weight systematics (smooth functions
    of m4l) are learned precisely; tolerances: RMS(log g - log g_exact) < 0.1 for them, the
    normalisation residual of every target below 1 %. (tests/test_simulator_ratio.py checks a
    basis ratio with adequate statistics.)"""
    work, cfg = test_run
    summary = json.loads((work / ncfg.results_dir(cfg) / "diagnostics/summary.json").read_text())
    weight_systs = {s["name"] for s in cfg["systematics"] if s["type"] == "weight"}
    checked = 0
    for key, entry in summary.items():
        assert abs(entry["normalisation"]["residual"]) < 0.01, (key, entry["normalisation"])
        syst = key.split("__")[1].rsplit("_", 1)[0] if "__" in key else None
        if syst in weight_systs:
            assert entry["oracle"]["rms"] < 0.1, (key, entry["oracle"])
            checked += 1
    assert checked >= 8
