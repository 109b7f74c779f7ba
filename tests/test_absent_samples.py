"""A sample absent from a binned region (no selected event, or zero total weight, for the
nominal or a variation) is left out of that region's channel, with a warning and a record in
the workspace metadata; the workspace still agrees with pyhf. A region empty for every MC
sample is an error naming its selection."""

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from nsbi import config as ncfg
from nsbi import workspace as W
from nsbi.build import absent_samples, build_histogram_workspace, pyhf_comparable
from nsbi.pyhf_check import compare

TEST_CONFIG = Path(__file__).resolve().parents[1] / "config" / "test.yaml"


@pytest.fixture(scope="module")
def cfg():
    return ncfg.load(TEST_CONFIG)


def _columns(rng, n, scale):
    return {"m4l": rng.uniform(226.0, 985.0, n), "weight": scale * rng.uniform(0.5, 1.5, n)}


def _prep(cfg, empty=()):
    """Prepared columns of every (region, process, variation); ``empty`` lists the (region,
    process, variation) left with no event ("n") or with zero weights ("w")."""
    rng = np.random.default_rng(7)
    prep = {}
    for r in cfg["regions"]:
        for s in cfg["samples"]:
            for var in ncfg.variations(cfg, s["name"]):
                cols = _columns(rng, 400, 0.05 if s["type"] != "data" else 1.0)
                for region, proc, v, how in empty:
                    if (region, proc, v) == (r["name"], s["name"], var):
                        cols = (
                            {k: c[:0] for k, c in cols.items()}
                            if how == "n"
                            else {**cols, "weight": 0 * cols["weight"]}
                        )
                prep.setdefault(r["name"], {})[(s["name"], var)] = cols
    return prep


def test_absent_samples_are_left_out_of_the_binned_channel_and_agree_with_pyhf(cfg, caplog):
    # S selects no event in the control region; SBI's kfactor_down variation has only zero weights there
    empty = [("CRqq", "S", "nominal", "n"), ("CRqq", "SBI", "kfactor_down", "w")]
    prep = _prep(cfg, empty)
    with caplog.at_level(logging.WARNING, logger="nsbi.build"):
        ws = build_histogram_workspace(cfg, prep)
    channels = {c["name"]: [s["name"] for s in c["samples"]] for c in ws.spec["channels"]}
    assert sorted(channels["CRqq"]) == ["B", "qqZZ"]
    assert sorted(channels["SR"]) == ["B", "S", "SBI", "qqZZ"]
    assert ws.spec["metadata"]["absent_samples"] == [
        {"region": "CRqq", "sample": "S", "variations": ["nominal"]},
        {"region": "CRqq", "sample": "SBI", "variations": ["kfactor_down"]},
    ]
    assert "region 'CRqq': sample 'S'" in caplog.text and "variation 'nominal'" in caplog.text
    assert "region 'CRqq': sample 'SBI'" in caplog.text and "variation 'kfactor_down'" in caplog.text
    # the Asimov counts of the control region are the prediction of the samples left in it
    crqq = next(c for c in ws.spec["channels"] if c["name"] == "CRqq")
    asimov = next(o for o in ws.spec["observations"] if o["name"] == "asimov")
    counts = next(c["data"] for c in asimov["channels"] if c["name"] == "CRqq")
    coeff = {"B": 0.0, "qqZZ": 1.0}  # mu = poi_init = 1: f_B = 1 - sqrt(mu) = 0
    expected = sum(coeff[s["name"]] * np.asarray(s["data"]) for s in crqq["samples"])
    np.testing.assert_allclose(counts, expected, rtol=1e-12)
    # the model evaluates, and its binned part agrees with pyhf
    W.Workspace(ws.spec).model(dataset="asimov")
    report = compare(W.Workspace(pyhf_comparable(ws.spec, cfg)), n_random=3, seed=5, raise_on_fail=False)
    assert report["ok"], report["failures"]


def test_a_region_empty_for_every_sample_is_an_error(cfg):
    empty = [("CRqq", p, v, "n") for p in ncfg.mc_samples(cfg) for v in ncfg.variations(cfg, p)]
    prep = _prep(cfg, empty)
    with pytest.raises(ncfg.ConfigError, match=r"config key 'regions\[1\]\.selection': region 'CRqq' selects no MC"):
        build_histogram_workspace(cfg, prep)
    # one empty variation is enough to make a sample absent; other samples stay
    prep = _prep(cfg, [("CRqq", "qqZZ", "qcdscale_up", "n")])
    assert absent_samples(cfg, "CRqq", prep["CRqq"]) == [
        {"region": "CRqq", "sample": "qqZZ", "variations": ["qcdscale_up"]}
    ]
    assert absent_samples(cfg, "SR", prep["SR"]) == []


def test_region_samples_restrict_a_binned_region(cfg):
    text = TEST_CONFIG.read_text()
    anchor = "    observable: m4l\n    binning: [225, 250, 275, 300, 350, 400, 500, 650, 990]\n"
    assert text.count(anchor) == 1
    listed = ncfg.validate(yaml.safe_load(text.replace(anchor, anchor + "    samples: [qqZZ, B]\n")))
    assert ncfg.region_samples(listed, "CRqq") == ["B", "qqZZ"]  # config order
    assert ncfg.region_samples(listed, "SR") == ncfg.mc_samples(listed)
    targets = ncfg.prep_targets(listed)
    assert {p for r, p, _ in targets if r == "CRqq"} == {"B", "qqZZ", "data"}
    assert {p for r, p, _ in targets if r == "SR"} == {"S", "SBI", "B", "qqZZ", "data"}
    # only the listed samples are prepared and modelled; the workspace agrees with pyhf
    prep = _prep(cfg)
    prep["CRqq"] = {k: v for k, v in prep["CRqq"].items() if k[0] in {"B", "qqZZ", "data"}}
    ws = build_histogram_workspace(listed, prep)
    crqq = next(c for c in ws.spec["channels"] if c["name"] == "CRqq")
    assert [s["name"] for s in crqq["samples"]] == ["B", "qqZZ"] and ws.spec["metadata"]["absent_samples"] == []
    report = compare(W.Workspace(pyhf_comparable(ws.spec, listed)), n_random=2, seed=6, raise_on_fail=False)
    assert report["ok"], report["failures"]


@pytest.mark.parametrize(
    ("region", "samples", "match"),
    [
        ("CRqq", "[qqZZ, data]", r"'regions\[1\]\.samples\[1\]': 'data' is not an MC sample"),
        ("CRqq", "[qqZ]", r"'regions\[1\]\.samples\[0\]': 'qqZ' is not an MC sample \(MC samples: S, SBI, B, qqZZ\)"),
        ("SR", "[S, SBI, B]", r"'regions\[0\]\.samples': only allowed for binned regions"),
    ],
)
def test_region_samples_errors(region, samples, match):
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    next(r for r in cfg["regions"] if r["name"] == region)["samples"] = yaml.safe_load(samples)
    with pytest.raises(ncfg.ConfigError, match=match):
        ncfg.validate(cfg)


def test_pyhf_check_of_background_only_control_regions(cfg):
    """Control regions that list only POI-independent samples: the pyhf comparison takes one of
    their parameters as pyhf's POI (which changes no value) and agrees."""
    text = TEST_CONFIG.read_text()
    anchor = "    observable: m4l\n    binning: [225, 250, 275, 300, 350, 400, 500, 650, 990]\n"
    listed = ncfg.validate(yaml.safe_load(text.replace(anchor, anchor + "    samples: [qqZZ]\n")))
    prep = _prep(cfg)
    prep["CRqq"] = {k: v for k, v in prep["CRqq"].items() if k[0] in {"qqZZ", "data"}}
    ws = build_histogram_workspace(listed, prep)
    spec = pyhf_comparable({**ws.spec, "channels": [c for c in ws.spec["channels"] if c["name"] == "CRqq"]}, listed)
    assert [s["name"] for c in spec["channels"] for s in c["samples"]] == ["qqZZ"]
    poi = spec["measurements"][0]["config"]["poi"]
    assert poi != "mu" and poi in {m["name"] for m in spec["channels"][0]["samples"][0]["modifiers"]}
    report = compare(W.Workspace(spec), n_random=2, seed=8, raise_on_fail=False)
    assert report["ok"], report["failures"]
