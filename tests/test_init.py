"""`nsbi init`: a config skeleton from real ROOT files, valid once its placeholders are filled."""

import re

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml

from nsbi import config as ncfg
from nsbi.cli import main
from nsbi.init import PLACEHOLDER, InitError, inspect_file, placeholders, skeleton, write_skeleton
from nsbi.io import write_root_tree
from nsbi.prep import prepare_from_config

N = 300


def _flat(path, seed, data=False):
    """A flat ntuple: float and int branches, a jagged jets_pt (counter njets_pt), weights
    with an up/down variation (not in data) and the event number."""
    rng = np.random.default_rng(seed)
    njet = rng.integers(0, 4, N)
    cols = {
        "m4l": rng.uniform(200.0, 1000.0, N),
        "pt4l": rng.exponential(40.0, N).astype(np.float32),
        "nlep": rng.integers(4, 6, N).astype(np.int32),
        "event_number": np.arange(N, dtype=np.int64) + 1000 * seed,
        "pass_trigger": rng.random(N) > 0.1,
        "jets_pt": ak.unflatten(rng.exponential(30.0, int(njet.sum())) + 20.0, njet),
    }
    if not data:
        cols |= {
            "weight": rng.uniform(0.5, 1.5, N),
            "weight_kfactor_up": rng.uniform(0.5, 1.5, N),
            "weight_kfactor_down": rng.uniform(0.5, 1.5, N),
        }
    write_root_tree(path, "events", cols)
    return str(path)


@pytest.fixture
def ntuples(tmp_path, monkeypatch):
    """ggH-signal.root, bkg.root and data.root in the working directory (relative paths, as a
    user in the analysis directory gives them)."""
    monkeypatch.chdir(tmp_path)
    return [_flat("ggH-signal.root", 1), _flat("bkg.root", 2), _flat("data.root", 3, data=True)]


def _fill(text, types, coefficients, observable, low, high):
    """Replace the placeholders as a user would: analysis name, sample types, coefficients (a
    background's entry deleted), the histogram baseline."""
    text = text.replace(f"analysis: {PLACEHOLDER}", "analysis: my_analysis")
    for name, kind in types.items():
        text = re.sub(rf"(- name: {name}\n    type: ){PLACEHOLDER}", rf"\g<1>{kind}", text)
    for name, coefficient in coefficients.items():
        line = f'    {name}: "{PLACEHOLDER}"\n'
        assert line in text
        text = text.replace(line, "" if coefficient is None else line.replace(PLACEHOLDER, coefficient))
    text = text.replace(f'observable: "{PLACEHOLDER}"', f'observable: "{observable}"')
    return text.replace(f"low: {PLACEHOLDER}, high: {PLACEHOLDER}", f"low: {low}, high: {high}")


def _uncomment_systematics(text):
    """The commented example systematics made the systematics, as a user would."""
    head, rest = text.split("systematics: []\n# systematics:\n")
    lines = rest.splitlines()
    n = next(i for i, line in enumerate(lines) if not line.startswith("#   "))
    return head + "systematics:\n" + "\n".join([line[2:] for line in lines[:n]] + lines[n:]) + "\n"


def test_inspect_file_finds_tree_weights_event_key_and_jagged_branches(ntuples):
    info = inspect_file("ggH-signal.root")
    assert info["trees"] == {"events": N} and info["tree"] == "events" and info["entries"] == N
    assert info["format"] == "flat"
    assert info["weights"][0] == "weight"
    assert set(info["weights"]) == {"weight", "weight_kfactor_up", "weight_kfactor_down"}
    assert info["event_keys"] == ["event_number"]
    b = info["branches"]
    assert b["jets_pt"]["jagged"] and b["jets_pt"]["kind"] == "float" and b["jets_pt"]["counter"] == "njets_pt"
    assert (b["m4l"]["kind"], b["m4l"]["jagged"], b["m4l"]["type"]) == ("float", False, "double")
    assert (b["pt4l"]["kind"], b["pt4l"]["type"]) == ("float", "float")
    assert b["nlep"]["kind"] == b["event_number"]["kind"] == "int"
    assert b["pass_trigger"]["kind"] == "bool"
    # data: no weight branch, same event number
    data = inspect_file("data.root")
    assert data["weights"] == [] and data["event_keys"] == ["event_number"]


def test_skeleton_filled_is_a_valid_config_whose_inputs_read(ntuples, capsys):
    assert main(["init", *ntuples, "-o", "config/my.yaml"]) == 0
    text = open("config/my.yaml").read()
    lines = placeholders(text)
    assert f"replace FILL_ME on line(s) {', '.join(map(str, lines))}" in capsys.readouterr().err
    raw = yaml.safe_load(text)
    assert raw["analysis"] == PLACEHOLDER
    assert raw["input"] == {"tree": "events", "format": "flat", "step_size": 200000, "event_key": "event_number"}
    assert [(s["name"], s["type"], s["files"], s["weight"]) for s in raw["samples"]] == [
        ("ggH_signal", PLACEHOLDER, ["ggH-signal.root"], "weight"),
        ("bkg", PLACEHOLDER, ["bkg.root"], "weight"),
        ("data", "data", ["data.root"], "1"),
    ]
    # every scalar numeric branch is a feature, except weights and the event number; the
    # jagged jets_pt is no plain feature but a commented expression
    assert [f["name"] for f in raw["features"]] == ["m4l", "pt4l", "nlep", "njets_pt"]
    assert "# not listed, weights and ids: event_number, weight, weight_kfactor_up, weight_kfactor_down" in text
    assert "# not listed, boolean flags (for selections, e.g. preselection): pass_trigger" in text
    assert '  # - {name: jets_pt_max, expr: "max(jets_pt, default=0)"}' in text
    assert "jets_pt (double[], counter njets_pt)" in text
    assert raw["morphing"]["coefficients"] == {"ggH_signal": PLACEHOLDER, "bkg": PLACEHOLDER}
    assert "simulation" not in raw  # not required: its default is disabled

    # left in, a placeholder fails the validation naming its key
    with pytest.raises(ncfg.ConfigError, match="FILL_ME"):
        ncfg.load("config/my.yaml")

    # filled in, the file validates and every sample's inputs read
    filled = _fill(
        text,
        {"ggH_signal": "basis", "bkg": "background"},
        {"ggH_signal": "mu", "bkg": None},
        observable="m4l",
        low=200,
        high=1000,
    )
    assert placeholders(filled) == []
    assert all(line.lstrip().startswith("#") for line in filled.splitlines() if PLACEHOLDER in line)
    open("filled.yaml", "w").write(filled)
    cfg = ncfg.load("filled.yaml")
    assert ncfg.basis_samples(cfg) == ["ggH_signal"] and ncfg.background_samples(cfg) == ["bkg"]
    assert ncfg.data_sample(cfg) == "data" and cfg["morphing"]["coefficients"] == {"ggH_signal": "mu"}
    assert cfg["fit"]["histogram_baseline"] == {"observable": "m4l", "binning": {"bins": 20, "low": 200, "high": 1000}}
    for name in ("ggH_signal", "bkg", "data"):
        out = prepare_from_config(cfg, name, "nominal")
        assert len(out["weight"]) == N and set(out) >= {"m4l", "pt4l", "nlep", "njets_pt", "event_key"}

    # the commented examples are valid too: the weight systematic found in the files and the
    # jagged feature
    assert "#   - name: kfactor" in filled and "#     samples: [ggH_signal, bkg]" in filled
    examples = _uncomment_systematics(filled)
    examples = examples.replace("  # - {name: jets_pt_max", "  - {name: jets_pt_max")
    open("examples.yaml", "w").write(examples)
    cfg = ncfg.load("examples.yaml")
    assert [s["name"] for s in cfg["systematics"]] == ["kfactor", "lumi", "JES"]
    assert cfg["systematics"][0]["up"] == {"weight": "weight_kfactor_up"}
    assert cfg["features"][-1] == {"name": "jets_pt_max", "expr": "max(jets_pt, default=0)"}
    out = prepare_from_config(cfg, "ggH_signal", "kfactor_up")
    assert np.all(out["jets_pt_max"] >= 0) and len(out["jets_pt_max"]) == N


def test_stdout_without_output_file(ntuples, capsys):
    assert main(["init", *ntuples]) == 0
    assert capsys.readouterr().out == skeleton(ntuples)


def test_file_with_two_trees_needs_tree(tmp_path, capsys):
    path = str(tmp_path / "syst.root")
    with uproot.recreate(path) as fh:
        for tree in ("nominal", "JES_up"):
            fh.mktree(tree, {"x": "f8", "evt": "i8", "w_mc": "f4"})
            fh[tree].extend({"x": np.ones(4), "evt": np.arange(4), "w_mc": np.ones(4, dtype=np.float32)})
    with pytest.raises(InitError, match=r"several trees: nominal \(4 entries\), JES_up \(4 entries\); choose one"):
        inspect_file(path)
    assert main(["init", path]) == 1
    err = capsys.readouterr().err
    assert "nsbi init: error:" in err and "nominal" in err and "JES_up" in err and "--tree" in err
    with pytest.raises(InitError, match=r"has no tree 'Events'; its trees: nominal \(4 entries\), JES_up"):
        inspect_file(path, tree="Events")

    assert main(["init", path, "--tree", "nominal"]) == 0
    text = capsys.readouterr().out
    raw = yaml.safe_load(text)
    assert raw["input"]["tree"] == "nominal" and raw["input"]["event_key"] == "evt"
    assert raw["samples"][0]["weight"] == "w_mc" and [f["name"] for f in raw["features"]] == ["x"]
    assert "# other trees in the files: JES_up" in text and "#     up:   {tree: JES_up}" in text


def test_overwrite_needs_force(ntuples, capsys):
    out = write_skeleton(ntuples[:1], "my.yaml")
    out.write_text("analysis: mine\n")
    with pytest.raises(InitError, match=r"'my\.yaml' exists; not overwritten without --force"):
        write_skeleton(ntuples, "my.yaml")
    assert main(["init", *ntuples, "-o", "my.yaml"]) == 1
    assert "'my.yaml' exists" in capsys.readouterr().err
    assert out.read_text() == "analysis: mine\n"
    assert main(["init", *ntuples, "-o", "my.yaml", "--force"]) == 0
    assert out.read_text() == skeleton(ntuples)


def test_nanoaod_collections_and_ids(tmp_path, monkeypatch):
    """NanoAOD-style input: nMuon + Muon_* is read as the collection Muon.pt; run and lumi
    block ids are no features; genWeight is the weight and event the event key."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(7)
    nmu = rng.integers(0, 4, N)
    m = int(nmu.sum())
    muons = ak.zip({"pt": rng.exponential(25.0, m).astype(np.float32), "charge": rng.choice([-1, 1], m)})
    cols = {
        "run": np.ones(N, dtype=np.uint32),
        "luminosityBlock": np.ones(N, dtype=np.uint32),
        "event": np.arange(N, dtype=np.uint64),
        "genWeight": np.ones(N, dtype=np.float32),
        "MET_pt": rng.exponential(30.0, N).astype(np.float32),
        "Muon": ak.unflatten(muons, nmu),
    }
    write_root_tree("ZZTo4L.root", "Events", cols)
    info = inspect_file("ZZTo4L.root")
    assert info["format"] == "nanoaod" and info["branches"]["Muon_pt"]["counter"] == "nMuon"
    text = skeleton(["ZZTo4L.root"])
    raw = yaml.safe_load(text)
    assert raw["input"]["format"] == "nanoaod" and raw["input"]["event_key"] == "event"
    assert raw["samples"][0]["weight"] == "genWeight"
    assert [f["name"] for f in raw["features"]] == ["MET_pt", "nMuon"]
    assert "# Muon (counter nMuon): Muon.pt, Muon.charge" in text
    assert '# - {name: Muon_pt_max, expr: "max(Muon.pt, default=0)"}' in text
    filled = _fill(text, {"ZZTo4L": "basis"}, {"ZZTo4L": "mu"}, "MET_pt", 0, 300)
    filled = filled.replace("  # - {name: Muon_pt_max", "  - {name: Muon_pt_max")
    open("nano.yaml", "w").write(filled)
    cfg = ncfg.load("nano.yaml")
    out = prepare_from_config(cfg, "ZZTo4L", "nominal")
    np.testing.assert_allclose(out["Muon_pt_max"], ak.to_numpy(ak.fill_none(ak.max(cols["Muon"].pt, axis=1), 0)))


def test_sample_names_and_data_files(tmp_path, monkeypatch):
    """Names are file stems made config names; several data files form the one data sample;
    no weight branch: weight "1" with a TODO."""
    monkeypatch.chdir(tmp_path)
    paths = [_flat("mc16a.ZZ-4l.root", 1), _flat("123.root", 2), _flat("data15.root", 3, True)]
    paths.append(_flat("data16.root", 4, True))
    write_root_tree("noweight.root", "events", {"x": np.ones(3), "eventNumber": np.arange(3, dtype=np.int32)})
    raw = yaml.safe_load(skeleton(paths))
    assert [(s["name"], s["type"], s["files"]) for s in raw["samples"]] == [
        ("mc16a_ZZ_4l", PLACEHOLDER, ["mc16a.ZZ-4l.root"]),
        ("sample_123", PLACEHOLDER, ["123.root"]),
        ("data", "data", ["data15.root", "data16.root"]),
    ]
    text = skeleton(["noweight.root", "noweight.root"])
    raw = yaml.safe_load(text)
    assert [s["name"] for s in raw["samples"]] == ["noweight", "noweight_2"]
    assert raw["samples"][0]["weight"] == "1" and "TODO: no weight branch found" in text
    assert raw["input"]["event_key"] == "eventNumber"


def test_unreadable_inputs_are_named(tmp_path):
    with pytest.raises(InitError, match="no such file: 'nope.root'"):
        inspect_file("nope.root")
    bad = tmp_path / "bad.root"
    bad.write_text("not ROOT")
    with pytest.raises(InitError, match="cannot be read as a ROOT file"):
        inspect_file(bad)
    with pytest.raises(InitError, match="no input file"):
        skeleton([])


def test_weight_variations_become_example_systematics(tmp_path, monkeypatch):
    """Up/down weight pairs (weight_pileup_up/_down, w_JESUp/w_JESDown) are the commented
    weight systematics; the nominal weight is the sample's weight."""
    monkeypatch.chdir(tmp_path)
    names = ["weight_pileup_up", "weight_pileup_down", "w_JESUp", "w_JESDown", "weight_pileup", "weight"]
    cols = {n: np.ones(4) for n in names} | {"x": np.ones(4), "evt": np.arange(4, dtype=np.int64)}
    write_root_tree("ttZ.root", "events", cols)
    assert inspect_file("ttZ.root")["weights"][:2] == ["weight", "weight_pileup"]
    text = skeleton(["ttZ.root"])
    assert yaml.safe_load(text)["samples"][0]["weight"] == "weight"
    filled = _uncomment_systematics(_fill(text, {"ttZ": "basis"}, {"ttZ": "mu"}, "x", 0, 2))
    syst = {s["name"]: s for s in ncfg.validate(yaml.safe_load(filled))["systematics"]}
    assert syst["w_JES"]["up"] == {"weight": "w_JESUp"} and syst["w_JES"]["down"] == {"weight": "w_JESDown"}
    assert syst["pileup"]["up"] == {"weight": "weight_pileup_up"} and syst["pileup"]["samples"] == ["ttZ"]


def test_rntuple_fields(tmp_path):
    """A dict assigned to a file key is an RNTuple in uproot 5; its fields are inspected alike."""
    path = str(tmp_path / "sig.root")
    with uproot.recreate(path) as fh:
        fh["t"] = {"x": np.ones(3), "event": np.arange(3), "jets_pt": ak.Array([[1.0], [], [2.0, 3.0]])}
    info = inspect_file(path)
    assert info["trees"] == {"t": 3}
    assert info["branches"]["jets_pt"]["jagged"] and info["branches"]["jets_pt"]["kind"] == "float"
    assert info["event_keys"] == ["event"] and info["weights"] == []
    raw = yaml.safe_load(skeleton([path]))
    assert [f["name"] for f in raw["features"]] == ["x"] and raw["input"]["event_key"] == "event"
