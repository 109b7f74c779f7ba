"""`nsbi check`: every input problem of a config in one call, each naming the config key and
the file; the messages are those the select jobs raise."""

import json
import shutil
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import yaml

from nsbi import config as ncfg
from nsbi.check import ERROR, NOTE, check_config, format_report, simulator_outputs
from nsbi.cli import main
from nsbi.io import write_root_tree
from nsbi.prep import PrepError, prep_spec, select_chunks

ROOT = Path(__file__).resolve().parents[1]
MC = ["S", "SBI", "B", "qqZZ"]
DEMO_DIR = "results/hzz4l_test/ntuples"  # where config/test.yaml reads its ntuples


def _columns(n=20, seed=0, drop=()):
    """The branches config/test.yaml reads, for ``n`` events (all but ``drop``)."""
    rng = np.random.default_rng(seed)
    cols = {"event_number": np.arange(n, dtype=np.uint64), "lep_pt": ak.Array([[40.0, 30.0, 20.0, 10.0]] * n)}
    names = ["m4l", "mZ1", "mZ2", "cos_theta_star", "cos_theta1", "cos_theta2", "phi", "phi1", "pt4l", "y4l"]
    names += ["weight"] + [f"weight_{s}_{d}" for s in ("kfactor", "qcdscale") for d in ("up", "down")]
    cols.update({name: rng.uniform(0.0, 1.0, n) for name in names})
    return {k: v for k, v in cols.items() if k not in drop}


@pytest.fixture(scope="module")
def good_ntuples(tmp_path_factory):
    """Every input of config/test.yaml: nominal and LES-varied files per MC sample, and data."""
    d = tmp_path_factory.mktemp("ntuples")
    for s in MC:
        for suffix in ("", "_LES_up", "_LES_down"):
            write_root_tree(d / f"{s}{suffix}.root", "events", _columns())
    write_root_tree(d / "data.root", "events", _columns())
    return d


@pytest.fixture
def ntuples(good_ntuples, tmp_path):
    """A copy of the good inputs that a test may damage."""
    return Path(shutil.copytree(good_ntuples, tmp_path / "ntuples"))


def _raw_config(ntuples, simulation=False):
    """config/test.yaml reading its ntuples from ``ntuples`` (simulator off by default)."""
    raw = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    raw["simulation"]["enabled"] = simulation
    raw["simulation"]["output_dir"] = str(ntuples)
    for s in raw["samples"]:
        s["files"] = [f.replace(DEMO_DIR, str(ntuples)) for f in s["files"]]
    for syst in raw["systematics"]:
        for d in ("up", "down"):
            if "files" in syst.get(d, {}):
                syst[d]["files"] = [f.replace(DEMO_DIR, str(ntuples)) for f in syst[d]["files"]]
    return raw


def _write_config(raw, path):
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    return path


def _load(raw, tmp_path):
    return ncfg.load(_write_config(raw, tmp_path / "config.yaml"))


def _break(ntuples, raw):
    """Several problems at once, in different samples and variations."""
    raw["systematics"][1]["up"]["weight"] = "weight_kfactor_upp"  # a weight systematic's branch, misspelled
    raw["samples"][1]["files"] = [str(ntuples / "SBI_missing.root")]  # a missing file
    raw["samples"][3]["tree"] = "evts"  # a wrong tree name (also read by qqZZ's LES variations)
    raw["features"][8]["expr"] = "pt4l"
    write_root_tree(ntuples / "B_LES_up.root", "events", _columns(drop=["pt4l"]))  # a varied file lacks a branch
    (ntuples / "data.root").write_bytes(b"not a ROOT file")  # an unreadable file
    return raw


def test_clean_config_has_no_problem(ntuples, tmp_path):
    cfg = _load(_raw_config(ntuples), tmp_path)
    assert check_config(cfg) == []
    assert format_report([]) == "OK: no problem found"


def test_one_call_reports_every_problem_with_key_and_file(ntuples, tmp_path):
    cfg = _load(_break(ntuples, _raw_config(ntuples)), tmp_path)
    problems = check_config(cfg)
    assert all(p.severity == ERROR for p in problems)
    messages = [p.message for p in problems]
    expected = [  # (config key, file) of every problem, each once
        ("systematics[1].up.weight", "S.root", "reads branch(es) weight_kfactor_upp"),
        ("systematics[1].up.weight", "B.root", "reads branch(es) weight_kfactor_upp"),
        ("samples[1].files", "SBI_missing.root", "does not exist"),
        ("samples[3].tree", "qqZZ.root", "has no tree 'evts' (trees: events)"),
        ("samples[3].tree", "qqZZ_LES_up.root", "has no tree 'evts'"),
        ("samples[3].tree", "qqZZ_LES_down.root", "has no tree 'evts'"),
        ("features[8].expr", "B_LES_up.root", "reads branch(es) pt4l"),
        ("samples[4].files", "data.root", "as a ROOT file"),
    ]
    assert len(messages) == len(expected) == len(set(messages)), "\n".join(messages)
    for key, name, what in expected:
        hits = [m for m in messages if f"config key '{key}'" in m and f"{ntuples / name}'" in m and what in m]
        assert len(hits) == 1, (key, name, messages)
    # a missing branch of a variation's file: the expression's key and the files' key
    (varied,) = [m for m in messages if "B_LES_up.root" in m]
    assert varied.startswith("config key 'features[8].expr' ('pt4l') reads branch(es) pt4l")
    assert varied.endswith(
        f", missing from tree 'events' in '{ntuples / 'B_LES_up.root'}' (a file of config key 'systematics[0].up.files')"
    )
    assert "; " not in varied  # no other expression reads pt4l
    # the SBI file is read by three jobs; its problem is reported once, for all three
    (missing,) = [p for p in problems if "SBI_missing" in p.message]
    assert missing.jobs == (("SBI", "nominal"), ("SBI", "kfactor_up"), ("SBI", "kfactor_down"))
    # the nominal file is shared by the weight variations: only kfactor_up reads the misspelled branch
    (weight,) = [p for p in problems if f"{ntuples / 'S.root'}'" in p.message]
    assert weight.jobs == (("S", "kfactor_up"),)
    assert "close matches in the tree: weight_kfactor_down, weight_kfactor_up" in weight.message

    # each message is exactly what the select job raises
    for p in problems:
        for job in p.jobs:
            with pytest.raises(PrepError) as err:
                select_chunks(**prep_spec(cfg, *job))
            assert str(err.value) == p.message

    report = format_report(problems)
    lines = report.splitlines()
    assert len(lines) == 10  # one line per problem, though uproot's reason for data.root spans lines
    assert lines[0] == "8 problem(s):"
    assert [line.split(".", 1)[0].strip() for line in lines[1:9]] == [str(i) for i in range(1, 9)]
    assert lines[-1] == "FAILED: 8 problem(s) to fix before running the workflow"


def test_expression_errors_are_collected(ntuples, tmp_path):
    cfg = _load(_raw_config(ntuples), tmp_path)
    # nsbi.config.load rejects such expressions; a config built in code may still hold them
    cfg["features"][0]["expr"] = "m4l +"
    cfg["systematics"][2]["up"]["weight"] = "weight_qcdscale_up *"
    messages = [p.message for p in check_config(cfg)]
    assert len(messages) == 2
    assert messages[0].startswith("config key 'features[0].expr': invalid syntax in 'm4l +'")
    assert messages[1].startswith("config key 'systematics[2].up.weight': invalid syntax")


def test_simulator_outputs_are_notes_not_problems(tmp_path):
    sim_dir = tmp_path / "sim"
    raw = _raw_config(sim_dir, simulation=True)
    cfg = _load(raw, tmp_path)
    assert len(simulator_outputs(cfg)) == 13
    problems = check_config(cfg)
    assert len(problems) == 13 and all(p.severity == NOTE for p in problems)
    assert problems[0].message == (
        f"config key 'samples[0].files': '{sim_dir / 'S.root'}' does not exist yet: the built-in simulator "
        "writes it (simulation.enabled), its tree and branches are checked once it exists"
    )
    assert format_report(problems).splitlines()[-1] == "OK: no problem found (13 note(s))"

    # a file the simulator does not write is a problem; a simulated file that exists is checked
    raw["samples"][3]["files"] = [str(sim_dir / "ZZ.root")]
    sim_dir.mkdir()
    write_root_tree(sim_dir / "S.root", "events", _columns(drop=["mZ1"]))
    problems = check_config(_load(raw, tmp_path))
    errors = [p.message for p in problems if p.severity == ERROR]
    assert len(errors) == 2
    assert errors[0].startswith(
        "config key 'features[1].name' ('mZ1') reads branch(es) mZ1 (close matches in the tree: mZ2)"
    )
    assert errors[1] == f"config key 'samples[3].files': input file '{sim_dir / 'ZZ.root'}' does not exist"


def test_cli_exit_codes_and_report(ntuples, tmp_path, capsys):
    good = _write_config(_raw_config(ntuples), tmp_path / "good.yaml")
    assert main(["check", str(good)]) == 0
    assert capsys.readouterr().out == f"config: {good}\nOK: no problem found\n"

    bad = _write_config(_break(ntuples, _raw_config(ntuples)), tmp_path / "bad.yaml")
    out_file = tmp_path / "check.json"
    assert main(["check", str(bad), "-o", str(out_file)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "8 problem(s):" and lines[2].startswith("  1. config key '")
    assert lines[-1].startswith("FAILED: 8 problem(s)")
    saved = json.loads(out_file.read_text())
    assert saved["ok"] is False and len(saved["problems"]) == 8 and saved["notes"] == []

    assert main(["check", str(bad), "--output", "json"]) == 1
    printed = json.loads(capsys.readouterr().out)
    assert printed == saved

    # a config that does not validate: one problem, naming the key
    raw = _raw_config(ntuples)
    raw["samples"][0]["type"] = "signal"
    invalid = _write_config(raw, tmp_path / "invalid.yaml")
    assert main(["check", str(invalid)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "1 problem(s):"
    assert out[2].startswith(f"  1. {invalid}: config key 'samples[0].type': 'signal' is not one of")
    assert main(["check", str(tmp_path / "nope.yaml")]) == 1
    assert f"config file '{tmp_path / 'nope.yaml'}' does not exist" in capsys.readouterr().out
    # a skeleton of `nsbi init` with a placeholder left (the analysis name would validate)
    text = good.read_text().replace("analysis: hzz4l_test", "analysis: FILL_ME  # e.g. hzz4l")
    assert text != good.read_text()
    (tmp_path / "skeleton.yaml").write_text(text)
    assert main(["check", str(tmp_path / "skeleton.yaml")]) == 1
    line = 1 + text.splitlines().index("analysis: FILL_ME  # e.g. hzz4l")
    assert f"FILL_ME left on line(s) {line} (from `nsbi init`)" in capsys.readouterr().out


def test_cli_directory_reads_relative_paths_there(good_ntuples, tmp_path, capsys):
    raw = _raw_config("ntuples")  # relative paths, as in the demo configs
    work = tmp_path / "work"
    shutil.copytree(good_ntuples, work / "ntuples")
    cfg = _write_config(raw, tmp_path / "rel.yaml")
    assert main(["check", str(cfg), "--directory", str(work)]) == 0
    assert main(["check", str(cfg)]) == 1  # not found from the current directory
    assert "13 problem(s):" in capsys.readouterr().out


def test_workflow_checks_every_input_before_any_job(ntuples, tmp_path):
    """The Snakefile's onstart handler runs the same checks when a run starts: several broken
    inputs stop it within seconds, every problem named with its key and file, before any job
    has run; a dry run does not open the files."""
    import time

    from conftest import snakemake

    raw = _raw_config(ntuples)
    raw["systematics"][1]["up"]["weight"] = "weight_kfactor_upp"
    raw["samples"][3]["tree"] = "evts"
    cfg = _write_config(raw, tmp_path / "broken.yaml")
    work = tmp_path / "work"
    work.mkdir()
    assert snakemake("-n", "--configfile", str(cfg), "--directory", str(work)).returncode == 0
    start = time.perf_counter()
    proc = snakemake("--cores", "2", "--configfile", str(cfg), "--directory", str(work), check=False)
    elapsed = time.perf_counter() - start
    print(f"time to the first error: {elapsed:.1f} s")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config key 'systematics[1].up.weight' ('weight_kfactor_upp') reads branch(es) weight_kfactor_upp" in out
    assert str(ntuples / "S.root") in out and str(ntuples / "B.root") in out
    assert "config key 'samples[3].tree': file" in out and "has no tree 'evts'" in out
    assert not (work / "results").exists() or not any((work / "results").rglob("*.parquet")), "jobs ran"
    assert "rule select" not in out and "rule simulate" not in out
