"""Data preparation on small synthetic ROOT files (flat, jagged and NanoAOD-like)."""

import json

import awkward as ak
import numpy as np
import pytest
import uproot

from nsbi.io import read_parquet, write_root_tree
from nsbi.prep import PrepError, prepare, write_prepared

N = 5000


def _make_events(seed=3, n=N):
    rng = np.random.default_rng(seed)
    nlep = rng.integers(2, 5, n)
    pt = ak.unflatten(rng.exponential(30.0, nlep.sum()) + 5.0, nlep)
    return {
        "event_number": np.arange(n, dtype=np.uint64) + 1000,
        "m4l": rng.uniform(200.0, 1000.0, n),
        "y4l": rng.normal(0.0, 1.5, n),
        "weight": rng.normal(1.0, 2.0, n),  # many negative weights, like an interference sample
        "lep_pt": pt,
    }


@pytest.fixture(scope="module")
def ntuple(tmp_path_factory):
    path = tmp_path_factory.mktemp("root") / "sample.root"
    ev = _make_events()
    write_root_tree(path, "events", ev)
    assert uproot.open(path).classnames() == {"events;1": "TTree"}
    return str(path), ev


def _spec(path, **over):
    spec = dict(
        files=[path],
        tree="events",
        weight="weight * 2",
        features={"m4l": "m4l", "lead_pt": "max(lep_pt)", "sub_pt": "lep_pt[1]", "nlep": "count(lep_pt)"},
        selections={"preselection": "m4l > 220", "regions[0].selection": "abs(y4l) < 1.2"},
        event_key="event_number",
        step_size=700,
        keys={"files": "samples[0].files", "tree": "input.tree", "weight": "samples[0].weight", "features": "features"},
        label="test",
    )
    spec.update(over)
    return spec


def test_features_selection_and_weights_match_numpy(ntuple):
    path, ev = ntuple
    out = prepare(**_spec(path))
    sel = (ev["m4l"] > 220) & (np.abs(ev["y4l"]) < 1.2)
    np.testing.assert_array_equal(out["m4l"], ev["m4l"][sel])
    np.testing.assert_array_equal(out["weight"], 2 * ev["weight"][sel])
    np.testing.assert_array_equal(out["event_key"], ev["event_number"][sel])
    pts = ev["lep_pt"][sel]
    np.testing.assert_array_equal(out["lead_pt"], ak.to_numpy(ak.max(pts, axis=1)))
    np.testing.assert_array_equal(out["sub_pt"], ak.to_numpy(pts[:, 1]))
    np.testing.assert_array_equal(out["nlep"], ak.to_numpy(ak.num(pts)))
    assert out["event_key"].dtype == np.uint64
    assert (out["weight"] < 0).sum() > 100  # negative weights pass through


def test_chunked_equals_single_pass(ntuple):
    path, _ = ntuple
    a = prepare(**_spec(path, step_size=333))
    b = prepare(**_spec(path, step_size=10 * N))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_write_outputs_roundtrip(ntuple, tmp_path):
    path, _ = ntuple
    out = prepare(**_spec(path))
    summary = write_prepared(out, tmp_path / "p.parquet", tmp_path / "p.yields.json", {"region": "SR"})
    back = read_parquet(tmp_path / "p.parquet")
    for k in out:
        np.testing.assert_array_equal(back[k], out[k])
    y = json.loads((tmp_path / "p.yields.json").read_text())
    assert y == summary
    assert y["sumw"] == pytest.approx(out["weight"].sum())
    assert y["sumw2"] == pytest.approx((out["weight"] ** 2).sum())
    assert y["n_negative"] == int((out["weight"] < 0).sum())
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize(
    "over, message",
    [
        (dict(files=["missing.root"]), r"config key 'samples\[0\]\.files': input file 'missing.root' does not exist"),
        (dict(tree="nominal"), r"config key 'input\.tree': file '.*' has no tree 'nominal' \(trees: events\)"),
        (  # a missing branch is reported under the expression that reads it, not the files
            dict(weight="weight * w_kfac"),
            r"config key 'samples\[0\]\.weight' \('weight \* w_kfac'\) reads branch\(es\) w_kfac, missing from "
            r"tree 'events' in '.*' \(a file of config key 'samples\[0\]\.files'\)",
        ),
        (
            dict(
                features={"m4l": "m4l", "lead_pt": "max(lep_ptt)"},
                keys={
                    "files": "samples[3].files",
                    "features": {"m4l": "features[0].name", "lead_pt": "features[4].expr"},
                },
            ),
            r"config key 'features\[4\]\.expr' \('max\(lep_ptt\)'\) reads branch\(es\) lep_ptt "
            r"\(close matches in the tree: lep_pt, nlep_pt\), missing from tree 'events'",
        ),
        (
            dict(selections={"preselection": "m4l > 220", "samples[2].selection": "abs(y4ll) < 2 and m4ll > 3"}),
            r"config key 'samples\[2\]\.selection' \('abs\(y4ll\) < 2 and m4ll > 3'\) reads branch\(es\) m4ll, "
            r"y4ll \(close matches in the tree: m4l, y4l\)",
        ),
        (  # a variation's weight: the systematic's key
            dict(weight="weight * w_up", keys={"weight": "systematics[1].up.weight", "files": "samples[0].files"}),
            r"config key 'systematics\[1\]\.up\.weight' \('weight \* w_up'\) reads branch\(es\) w_up",
        ),
        (
            dict(features={"bad": "log(m4l - 500)"}),
            r"config key 'features\.bad': feature 'bad' = 'log\(m4l - 500\)' is NaN/inf",
        ),
        (
            dict(features={"pts": "lep_pt"}),
            r"config key 'features\.pts': feature 'pts' is not a single number per event",
        ),
        (
            dict(selections={"regions[1].selection": "m4l > 5000"}),
            r"config keys 'regions\[1\]\.selection': no event selected",
        ),
        (dict(weight="0 * weight"), r"config key 'samples\[0\]\.weight': all selected event weights are zero"),
        (dict(weight="weight +"), r"config key 'samples\[0\]\.weight': invalid syntax"),
    ],
)
def test_bad_input_errors_name_key_and_file(ntuple, over, message):
    path, _ = ntuple
    with pytest.raises(PrepError, match=message):
        prepare(**_spec(path, **over))


def test_multiple_files_are_concatenated(ntuple, tmp_path):
    path, ev = ntuple
    second = tmp_path / "second.root"
    ev2 = _make_events(seed=4, n=1200)
    write_root_tree(second, "events", ev2)
    out = prepare(**_spec(path, files=[path, str(second)]))
    one = prepare(**_spec(path))
    two = prepare(**_spec(str(second)))
    np.testing.assert_array_equal(out["m4l"], np.concatenate([one["m4l"], two["m4l"]]))


def test_nanoaod_input_via_coffea(tmp_path):
    rng = np.random.default_rng(5)
    n = 800
    nmu = rng.integers(0, 4, n)
    m = nmu.sum()
    muons = ak.unflatten(
        ak.zip(
            {
                "pt": rng.exponential(25.0, m) + 3.0,
                "eta": rng.uniform(-2.4, 2.4, m),
                "phi": rng.uniform(-np.pi, np.pi, m),
                "mass": np.full(m, 0.1057),
                "charge": rng.choice([-1, 1], m).astype(np.int32),
            }
        ),
        nmu,
    )
    path = tmp_path / "nano.root"
    cols = {
        "run": np.ones(n, dtype=np.uint32),
        "luminosityBlock": np.ones(n, dtype=np.uint32),
        "event": np.arange(n, dtype=np.uint64),
        "genWeight": rng.normal(1.0, 0.1, n),
        "Muon": muons,
    }
    write_root_tree(path, "Events", cols)
    assert {"nMuon", "Muon_pt"} <= set(uproot.open(path)["Events"].keys())
    spec = dict(
        files=[str(path)],
        tree="Events",
        weight="genWeight",
        features={"lead_mu_pt": "max(Muon.pt)", "n_mu": "count(Muon.pt)"},
        selections={"preselection": "count(Muon.pt) >= 2"},
        event_key="event",
        step_size=300,
        fmt="nanoaod",
    )
    out = prepare(**spec)
    sel = nmu >= 2
    np.testing.assert_array_equal(out["n_mu"], nmu[sel])
    np.testing.assert_allclose(out["lead_mu_pt"], ak.to_numpy(ak.max(muons.pt[sel], axis=1)), rtol=1e-6)
    np.testing.assert_array_equal(out["event_key"], np.arange(n)[sel])


def test_empty_jagged_lists_explain_the_nan_and_default_fills_them(tmp_path):
    """max()/min() of an empty list and x[i] past its end are NaN: the error names the term, how
    many events it hits and what to write; max(x, default=v) gives v for those events."""
    rng = np.random.default_rng(7)
    n = 400
    njet = rng.integers(0, 3, n)  # about a third of the events have no jet
    ev = {
        "event_number": np.arange(n, dtype=np.uint64),
        "m4l": rng.uniform(250.0, 900.0, n),
        "y4l": rng.normal(0.0, 1.0, n),
        "weight": np.ones(n),
        "jet_pt": ak.unflatten(rng.exponential(40.0, njet.sum()) + 20.0, njet),
    }
    path = tmp_path / "jets.root"
    write_root_tree(path, "events", ev)
    base = dict(_spec(str(path)), selections={"preselection": "m4l > 0"})
    keys = {"files": "samples[0].files", "features": {"lead_jet": "features[2].expr"}}
    with pytest.raises(PrepError) as err:
        prepare(**dict(base, features={"lead_jet": "max(jet_pt)"}, keys=keys))
    empty = int((njet == 0).sum())
    assert f"config key 'features[2].expr': feature 'lead_jet' = 'max(jet_pt)' is NaN/inf for {empty}" in str(err.value)
    assert f"max(jet_pt) has no value for {empty} of them (list too short); use max(jet_pt, default=<value>)" in str(
        err.value
    )
    assert "count(jet_pt) > 0" in str(err.value)
    with pytest.raises(
        PrepError, match=rf"jet_pt\[1\] has no value for {int((njet < 2).sum())} of them.*count\(jet_pt\) >= 2"
    ):
        prepare(**dict(base, features={"sub_jet": "jet_pt[1]"}))
    out = prepare(**dict(base, features={"lead_jet": "max(jet_pt, default=-1)", "low_jet": "min(jet_pt, default=0)"}))
    pts = ev["jet_pt"]
    np.testing.assert_array_equal(
        out["lead_jet"], np.where(njet > 0, ak.to_numpy(ak.fill_none(ak.max(pts, axis=1), -1.0)), -1.0)
    )
    np.testing.assert_array_equal(
        out["low_jet"], np.where(njet > 0, ak.to_numpy(ak.fill_none(ak.min(pts, axis=1), 0.0)), 0.0)
    )
