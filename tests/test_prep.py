"""Data preparation on small synthetic ROOT files (flat, jagged and NanoAOD-like)."""

import gc
import json
import logging

import awkward as ak
import numpy as np
import pytest
import uproot

from nsbi import io as nio
from nsbi.io import read_parquet, write_root_tree
from nsbi.prep import (
    PrepError,
    is_absent,
    prepare,
    select_to_files,
    split_region,
    split_region_to_files,
    write_prepared,
)

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


def _nanoaod_file(path, n=800, seed=5):
    """A small NanoAOD-like file: event ids, genWeight and a Muon collection (nMuon, Muon_*)."""
    rng = np.random.default_rng(seed)
    nmu = rng.integers(0, 4, n)
    m = nmu.sum()
    muons = ak.unflatten(
        ak.zip(
            {
                "pt": (rng.exponential(25.0, m) + 3.0).astype(np.float32),  # NanoAOD stores float32
                "eta": rng.uniform(-2.4, 2.4, m).astype(np.float32),
                "phi": rng.uniform(-np.pi, np.pi, m).astype(np.float32),
                "mass": np.full(m, 0.1057, dtype=np.float32),
                "charge": rng.choice([-1, 1], m).astype(np.int32),
            }
        ),
        nmu,
    )
    cols = {
        "run": np.ones(n, dtype=np.uint32),
        "luminosityBlock": np.ones(n, dtype=np.uint32),
        "event": np.arange(n, dtype=np.uint64),
        "genWeight": rng.normal(1.0, 0.1, n).astype(np.float32),
        "Muon": muons,
    }
    write_root_tree(path, "Events", cols)
    assert {"nMuon", "Muon_pt"} <= set(uproot.open(path)["Events"].keys())
    return nmu, muons


def _nano_spec(path, **over):
    spec = dict(
        files=[str(path)],
        tree="Events",
        weight="genWeight",
        features={"lead_mu_pt": "max(Muon.pt)", "sub_mu_eta": "Muon.eta[1] * 0.5", "n_mu": "count(Muon.pt)"},
        selections={"preselection": "count(Muon.pt) >= 2 && sum(Muon.charge) == 0 || count(Muon.pt) == 3"},
        event_key="event",
        step_size=300,
        fmt="nanoaod",
    )
    spec.update(over)
    return spec


def test_nanoaod_input(tmp_path):
    nmu, muons = _nanoaod_file(tmp_path / "nano.root")
    out = prepare(**_nano_spec(tmp_path / "nano.root"))
    sel = ((nmu >= 2) & (ak.to_numpy(ak.sum(muons.charge, axis=1)) == 0)) | (nmu == 3)
    np.testing.assert_array_equal(out["n_mu"], nmu[sel])
    # computed in float64 from the float32 branch values
    lead = ak.to_numpy(ak.max(ak.values_astype(muons.pt[sel], np.float64), axis=1))
    np.testing.assert_array_equal(out["lead_mu_pt"], lead)
    np.testing.assert_array_equal(
        out["sub_mu_eta"], ak.to_numpy(ak.values_astype(muons.eta[sel], np.float64)[:, 1]) * 0.5
    )
    np.testing.assert_array_equal(out["event_key"], np.arange(len(nmu))[sel])


@pytest.mark.filterwarnings("ignore:Missing cross-reference:RuntimeWarning")  # coffea: collections the file lacks
def test_nanoaod_reading_equals_coffea_nanoevents(tmp_path):
    """The reference reader: coffea's NanoEvents on the same file gives the same collection."""
    nanoevents = pytest.importorskip("coffea.nanoevents")
    from nsbi.io import iterate_chunks

    path = tmp_path / "nano.root"
    _nanoaod_file(path, n=300)
    events = nanoevents.NanoEventsFactory.from_root(
        {str(path): "Events"}, schemaclass=nanoevents.NanoAODSchema, mode="eager"
    ).events()
    names = ["Muon.pt", "Muon.eta", "Muon.charge", "event", "genWeight"]
    (ns,) = [ns for _, ns in iterate_chunks([str(path)], "Events", names, step_size=10**6, fmt="nanoaod")]
    assert ns["Muon.pt"].tolist() == events.Muon.pt.tolist()
    assert ns["Muon.eta"].tolist() == events.Muon.eta.tolist()
    assert ns["Muon.charge"].tolist() == events.Muon.charge.tolist()
    np.testing.assert_array_equal(ak.to_numpy(ns["event"]), ak.to_numpy(events.event))
    np.testing.assert_array_equal(ak.to_numpy(ns["genWeight"]), ak.to_numpy(events.genWeight))


@pytest.mark.parametrize("kind", ["flat", "jagged", "nanoaod"])
def test_prepared_output_does_not_depend_on_the_chunk_size(tmp_path, kind):
    """Step sizes 1, 2, 7 and one pass write byte-identical parquet files, also from float32
    branches (awkward's option handling used to promote some chunks to float64 only)."""
    path = tmp_path / "in.root"
    if kind == "nanoaod":
        _nanoaod_file(path, n=150)
        spec = _nano_spec(path)
    else:
        ev = _make_events(n=150)
        for k in ("m4l", "y4l", "weight"):
            ev[k] = ev[k].astype(np.float32)
        ev["lep_pt"] = ak.values_astype(ev["lep_pt"], np.float32)
        write_root_tree(path, "events", ev)
        feats = {"m4l": "m4l * 1.1", "y": "y4l / 7"}
        if kind == "jagged":
            feats = {
                "lead_pt": "max(lep_pt) / 3",
                "sub_pt": "lep_pt[1] * 0.7",
                "third": "where(count(lep_pt) > 2, lep_pt[2] * 1.3, -1)",
            }
        spec = _spec(str(path), features=feats)
    files, yields = {}, {}
    for step in (1, 2, 7, 10**6):
        select_to_files(
            tmp_path / f"s{step}.parquet", tmp_path / f"s{step}.json", {"kind": kind}, **dict(spec, step_size=step)
        )
        files[step] = (tmp_path / f"s{step}.parquet").read_bytes()
        yields[step] = json.loads((tmp_path / f"s{step}.json").read_text())
    assert yields[1]["n_events"] > 20
    assert all(files[s] == files[10**6] for s in files), [s for s in files if files[s] != files[10**6]]
    assert all(yields[s] == yields[10**6] for s in yields)
    # and the in-memory path writes the same file
    write_prepared(prepare(**dict(spec, step_size=3)), tmp_path / "mem.parquet", tmp_path / "mem.json", {"kind": kind})
    assert (tmp_path / "mem.parquet").read_bytes() == files[1]
    assert json.loads((tmp_path / "mem.json").read_text()) == yields[1]


@pytest.mark.parametrize("step", [1, 7, 333, 10**6])
def test_streamed_select_equals_the_one_shot_selection(ntuple, tmp_path, monkeypatch, step):
    """select_to_files (row groups of ROW_GROUP_ROWS rows, here 256) writes exactly the events,
    columns and dtypes prepare() returns, and the yields of those weights."""
    monkeypatch.setattr(nio, "ROW_GROUP_ROWS", 256)
    path, _ = ntuple
    ref = prepare(**_spec(path, step_size=10**6))
    summary = select_to_files(tmp_path / "s.parquet", tmp_path / "s.json", {"m": 1}, **_spec(path, step_size=step))
    back = read_parquet(tmp_path / "s.parquet")
    assert list(back) == list(ref)
    for k in ref:
        assert back[k].dtype == ref[k].dtype
        np.testing.assert_array_equal(back[k], ref[k])
    w = ref["weight"]
    assert summary["n_events"] == len(w) and summary["n_negative"] == int((w < 0).sum()) and summary["m"] == 1
    assert summary["sumw"] == pytest.approx(w.sum(), rel=1e-13) and summary["sumw2"] == pytest.approx(
        (w**2).sum(), rel=1e-13
    )
    assert [len(g["weight"]) for g in nio.iter_parquet(tmp_path / "s.parquet", ["weight"])][:-1] == [256] * (
        len(w) // 256
    )
    assert sorted(nio.read_parquet(tmp_path / "s.parquet", ["weight", "m4l"])) == ["m4l", "weight"]  # projection


def test_streamed_region_split_equals_split_region(ntuple, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(nio, "ROW_GROUP_ROWS", 300)
    path, _ = ntuple
    select_to_files(tmp_path / "sel.parquet", tmp_path / "sel.json", None, **_spec(path, step_size=500))
    cols = read_parquet(tmp_path / "sel.parquet")
    fake_scores = lambda c: {"score_a": 1.0 / (1.0 + np.exp(-(c["m4l"] - 500.0) / 50.0))}  # noqa: E731
    ref = split_region(cols, "(score_a > 0.3) & (lead_pt > 20)", "regions[0].selection", fake_scores(cols))
    summary = split_region_to_files(
        str(tmp_path / "sel.parquet"),
        tmp_path / "r.parquet",
        tmp_path / "r.json",
        "(score_a > 0.3) & (lead_pt > 20)",
        "regions[0].selection",
        fake_scores,
        "test",
        {"region": "SR"},
    )
    back = read_parquet(tmp_path / "r.parquet")
    assert list(back) == list(ref) and "score_a" in back
    for k in ref:
        np.testing.assert_array_equal(back[k], ref[k])
    assert summary["n_events"] == len(ref["weight"]) and summary["region"] == "SR"
    # an empty region: the error, and no file
    with pytest.raises(
        PrepError, match=r"config key 'regions\[1\]\.selection': region selection 'm4l > 1e9' selects no event"
    ):
        split_region_to_files(
            str(tmp_path / "sel.parquet"),
            tmp_path / "e.parquet",
            tmp_path / "e.json",
            "m4l > 1e9",
            "regions[1].selection",
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.parquet", "sel.json", "sel.parquet"]
    # ... unless the region is binned: then the sample is absent from it (a warning, empty files)
    with caplog.at_level(logging.WARNING, logger="nsbi.prep"):
        empty = split_region_to_files(
            str(tmp_path / "sel.parquet"),
            tmp_path / "e.parquet",
            tmp_path / "e.json",
            "m4l > 1e9",
            "regions[1].selection",
            label="region 'CR', sample 'S', variation 'nominal'",
            allow_empty=True,
        )
    assert empty["n_events"] == 0 and empty["sumw"] == 0.0 and is_absent(empty) and not is_absent(summary)
    back = read_parquet(tmp_path / "e.parquet")
    assert set(back) >= {"weight", "event_key", "m4l"} and all(len(v) == 0 for v in back.values())
    assert "regions[1].selection" in caplog.text and "sample 'S', variation 'nominal'" in caplog.text
    assert "absent from this binned region" in caplog.text


def test_select_memory_does_not_grow_with_the_input(tmp_path, monkeypatch):
    """Peak traced memory (numpy buffers) of the streamed select job is the same for an input
    twice as large; the one-shot prepare() grows with it (the measure can see growth)."""
    import tracemalloc

    monkeypatch.setattr(nio, "ROW_GROUP_ROWS", 2000)
    peaks = {}
    for n in (100_000, 200_000):
        path = tmp_path / f"in{n}.root"
        ev = _make_events(seed=1, n=n)
        with uproot.recreate(path) as fh:  # baskets of 5000 entries, as real files have (not one per branch)
            fh.mktree("events", {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in ev.items()})
            for s in range(0, n, 5000):
                fh["events"].extend({k: v[s : s + 5000] for k, v in ev.items()})
        spec = _spec(str(path), step_size=2000, selections={"preselection": "m4l > 0"})  # keeps every event
        select_to_files(tmp_path / "warm.parquet", tmp_path / "warm.json", None, **spec)  # caches, lazy imports
        for mode in ("stream", "one-shot"):
            gc.collect()  # the same garbage collections during the measure whatever ran before
            tracemalloc.start()
            if mode == "stream":
                select_to_files(tmp_path / f"o{n}.parquet", tmp_path / f"o{n}.json", None, **spec)
            else:
                prepare(**spec)
            peaks[mode, n] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    assert peaks["stream", 200_000] < 1.15 * peaks["stream", 100_000], peaks
    assert peaks["one-shot", 200_000] > 1.4 * peaks["one-shot", 100_000], peaks


def test_select_holds_about_one_chunk(tmp_path, monkeypatch):
    """Keeping every event, the streamed select job's peak traced memory (numpy buffers) grows
    by about one chunk per chunk of step size: the reader, the selection and the writer share
    the branches' arrays and let go of each chunk before the next is read (it grew by six
    chunks when uproot.iterate built a record array and the writer concatenated chunks)."""
    import tracemalloc

    monkeypatch.setattr(nio, "ROW_GROUP_ROWS", 2000)
    n, names = 120_000, [f"x{i}" for i in range(6)]
    rng = np.random.default_rng(4)
    ev = {"event_number": np.arange(n, dtype=np.uint64), "weight": rng.normal(1.0, 1.0, n)}
    ev.update({k: rng.normal(size=n) for k in names})
    path = tmp_path / "in.root"
    with uproot.recreate(path) as fh:
        fh.mktree("events", {k: v.dtype for k, v in ev.items()})
        for s in range(0, n, 5000):
            fh["events"].extend({k: v[s : s + 5000] for k, v in ev.items()})
    spec = _spec(str(path), weight="weight", features={k: k for k in names}, selections={"preselection": "x0 > -1e9"})
    select_to_files(tmp_path / "warm.parquet", tmp_path / "warm.json", None, **dict(spec, step_size=1000))
    peaks = {}
    for step in (20_000, 40_000):
        gc.collect()
        tracemalloc.start()
        select_to_files(tmp_path / "o.parquet", tmp_path / "o.json", None, **dict(spec, step_size=step))
        peaks[step] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    chunk_bytes = 20_000 * len(ev) * 8  # the difference between the two chunks
    assert peaks[40_000] - peaks[20_000] < 1.5 * chunk_bytes, (peaks, chunk_bytes)
