"""Published pyhf likelihoods: a background-only workspace plus a patchset (or a JSON Patch) whose
patches add the signal and remove validation-region channels but leave their observations, as
on HEPData. nsbi loads what pyhf loads (ignored observations: one warning), gives pyhf's
-2lnL and best fit, and fails where pyhf fails, naming the file, point or channel."""

import copy
import json
import warnings

import numpy as np
import pytest

from nsbi import workspace as W
from nsbi.cli import main
from nsbi.pyhf_check import MODIFIER_SETTINGS, to_pyhf_pars
from nsbi.pyhf_import import apply_patch, apply_patchset, read_pyhf_workspace

pyhf = pytest.importorskip("pyhf")


def _bkg(name, data, extra=()):
    return {
        "name": name,
        "data": list(data),
        "modifiers": [
            {"name": "lumi", "type": "lumi", "data": None},
            {"name": "jes", "type": "normsys", "data": {"hi": 1.08, "lo": 0.95}},
            *extra,
        ],
    }


BKG_ONLY = {
    "channels": [
        {
            "name": "CR",
            "samples": [
                _bkg("ttbar", [200.0], [{"name": "mu_ttbar", "type": "normfactor", "data": None}]),
            ],
        },
        {
            "name": "SR",
            "samples": [
                _bkg(
                    "ttbar",
                    [12.0, 7.0, 3.0],
                    [
                        {"name": "mu_ttbar", "type": "normfactor", "data": None},
                        {
                            "name": "shape",
                            "type": "histosys",
                            "data": {"hi_data": [13.0, 7.5, 2.8], "lo_data": [11.2, 6.4, 3.3]},
                        },
                        {"name": "staterror_SR", "type": "staterror", "data": [1.1, 0.9, 0.6]},
                    ],
                ),
                _bkg(
                    "other", [4.0, 2.0, 1.5], [{"name": "staterror_SR", "type": "staterror", "data": [0.8, 0.5, 0.4]}]
                ),
            ],
        },
        {
            "name": "VR1",
            "samples": [
                _bkg("ttbar", [80.0, 40.0], [{"name": "vr_only", "type": "normsys", "data": {"hi": 1.2, "lo": 0.8}}])
            ],
        },
        {"name": "VR2", "samples": [_bkg("ttbar", [30.0], [{"name": "mu_ttbar", "type": "normfactor", "data": None}])]},
    ],
    "observations": [
        {"name": "CR", "data": [210.0]},
        {"name": "SR", "data": [19.0, 12.0, 6.0]},
        {"name": "VR1", "data": [85.0, 37.0]},
        {"name": "VR2", "data": [33.0]},
    ],
    "measurements": [
        {
            "name": "NormalMeasurement",
            "config": {
                "poi": "mu_SIG",
                "parameters": [
                    {"name": "lumi", "auxdata": [1.0], "sigmas": [0.017], "bounds": [[0.915, 1.085]], "inits": [1.0]},
                    {"name": "mu_SIG", "bounds": [[0.0, 8.0]], "inits": [1.0]},
                    {"name": "vr_only", "fixed": True},  # its channel is removed by the patches
                ],
            },
        },
        {
            "name": "FixedJES",
            "config": {
                "poi": "mu_SIG",
                "parameters": [
                    {"name": "lumi", "auxdata": [1.0], "sigmas": [0.017], "bounds": [[0.915, 1.085]], "inits": [1.0]},
                    {"name": "jes", "fixed": True, "inits": [0.5]},
                ],
            },
        },
    ],
    "version": "1.0.0",
}

POINTS = {"C1N2_300_100": ([300, 100], [3.0, 4.0, 2.5], [1.5]), "C1N2_500_0": ([500, 0], [0.5, 1.5, 2.0], [0.2])}


def _signal(sr, cr):
    mods = [
        {"name": "mu_SIG", "type": "normfactor", "data": None},
        {"name": "lumi", "type": "lumi", "data": None},
        {"name": "sig_theory", "type": "normsys", "data": {"hi": 1.1, "lo": 0.88}},
    ]
    return [
        {"op": "add", "path": "/channels/1/samples/0", "value": {"name": "signal", "data": sr, "modifiers": mods}},
        {"op": "add", "path": "/channels/0/samples/-", "value": {"name": "signal", "data": cr, "modifiers": mods}},
        # published patches remove validation regions, but not their observations
        {"op": "remove", "path": "/channels/3"},
        {"op": "remove", "path": "/channels/2"},
    ]


def _patchset(bkg=BKG_ONLY):
    return {
        "metadata": {
            "description": "signal patchset for a test",
            "digests": {"sha256": pyhf.utils.digest(bkg, algorithm="sha256")},
            "labels": ["m_C1N2", "m_N1"],
            "references": {"hepdata": "ins1234567"},
        },
        "patches": [
            {"metadata": {"name": name, "values": vals}, "patch": _signal(sr, cr)}
            for name, (vals, sr, cr) in POINTS.items()
        ],
        "version": "1.0.0",
    }


@pytest.fixture
def files(tmp_path):
    ws, ps, patch = tmp_path / "BkgOnly.json", tmp_path / "patchset.json", tmp_path / "patch.json"
    ws.write_text(json.dumps(BKG_ONLY))
    ps.write_text(json.dumps(_patchset()))
    vals, sr, cr = POINTS["C1N2_300_100"]
    patch.write_text(json.dumps(_signal(sr, cr)))
    return ws, ps, patch


def _pyhf_model(point="C1N2_300_100", measurement=None):
    """pyhf's own way: PatchSet.apply (digest verified), then the model with explicit settings."""
    pws = pyhf.PatchSet(_patchset()).apply(BKG_ONLY, point)
    pm = pws.model(measurement_name=measurement, modifier_settings=MODIFIER_SETTINGS)
    return pm, pws.data(pm)


def _loaded(ws, ps, point="C1N2_300_100", measurement=None):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        spec, applied = read_pyhf_workspace(ws, patchset=ps, point=point)
        nws = W.from_pyhf(spec, measurement=measurement, source=str(ws), metadata={"patches_applied": applied})
    return nws, [w for w in rec if "ignoring the observations" in str(w.message)], rec


def test_patchset_point_loads_with_one_warning(files):
    ws, ps, _ = files
    nws, ignored, rec = _loaded(ws, ps)
    assert nws.channels == ["CR", "SR"]
    assert [c["name"] for c in nws.dataset("observed")["channels"]] == ["CR", "SR"]
    assert len(ignored) == 1, [str(w.message) for w in rec]
    msg = str(ignored[0].message)
    assert "'VR1'" in msg and "'VR2'" in msg and str(ws) in msg
    assert ignored[0].filename == __file__  # attributed to the caller, not to nsbi
    assert nws.spec["metadata"]["ignored_observations"] == ["VR1", "VR2"]
    assert nws.spec["metadata"]["patches_applied"][0]["point"] == "C1N2_300_100"
    # the background-only workspace itself converts too (its own observations all used)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*observations")
        assert W.from_pyhf(BKG_ONLY).channels == ["CR", "SR", "VR1", "VR2"]


@pytest.mark.parametrize("measurement", [None, "FixedJES"])
def test_twice_nll_equals_pyhf(files, measurement):
    ws, ps, _ = files
    nws, _, _ = _loaded(ws, ps, measurement=measurement)
    model = nws.model(measurement=measurement)
    pm, pdata = _pyhf_model(measurement=measurement)
    assert set(model.par_slices) == set(pm.config.par_order) and model.npars == pm.config.npars
    rng = np.random.default_rng(7)
    points = [model.init.copy()]
    for _ in range(6):
        p = model.init.copy()
        for i in np.flatnonzero(~model.fixed):
            lo, hi = model.bounds[i]
            p[i] = np.clip(p[i] + rng.uniform(-0.5, 0.5) * min(hi - lo, 2.0), lo + 1e-3, hi - 1e-3)
        points.append(p)
    for p in points:
        a = model.twice_nll(p)
        b = -2.0 * float(np.asarray(pm.logpdf(to_pyhf_pars(model, pm, p), pdata))[0])
        assert a == pytest.approx(b, rel=1e-8, abs=0)


def _pyhf_best_poi(point="C1N2_300_100"):
    pm, pdata = _pyhf_model(point)
    prev = pyhf.get_backend()
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-5, strategy=2))
    try:
        res = pyhf.infer.mle.fit(pdata, pm)
    finally:
        pyhf.set_backend(*prev)
    return float(np.asarray(res)[pm.config.poi_index])


FIT = ["--output", "json", "--tolerance", "1e-5", "--strategy", "2"]


def test_cli_fit_patchset_point_matches_pyhf_and_patch_file(files, capsys):
    ws, ps, patch = files
    with pytest.warns(UserWarning, match="ignoring the observations") as rec:
        assert main(["fit", str(ws), "--patchset", str(ps), "--point", "C1N2_300_100", *FIT]) == 0
    assert sum("ignoring the observations" in str(w.message) for w in rec) == 1
    out = json.loads(capsys.readouterr().out)
    mu = out["values"][out["names"].index("mu_SIG")]
    assert mu == pytest.approx(_pyhf_best_poi(), abs=1e-4)
    # the point by its values, and the same patch as a JSON Patch file: the same fit
    for extra in (["--patchset", str(ps), "--point", "300,100"], ["--patch", str(patch)]):
        with pytest.warns(UserWarning, match="VR1"):
            assert main(["fit", str(ws), *extra, *FIT]) == 0
        again = json.loads(capsys.readouterr().out)
        assert again["names"] == out["names"]
        np.testing.assert_allclose(again["values"], out["values"], rtol=1e-12, atol=1e-12)
        assert again["twice_nll"] == pytest.approx(out["twice_nll"], rel=1e-12)


def test_wrong_digest_names_patchset_file_and_point(files, tmp_path, capsys):
    ws, ps, _ = files
    other = copy.deepcopy(BKG_ONLY)
    other["observations"][1]["data"][0] = 20.0  # another background-only workspace
    ws2 = tmp_path / "other_bkg.json"
    ws2.write_text(json.dumps(other))
    assert main(["fit", str(ws2), "--patchset", str(ps), "--point", "C1N2_500_0", "--output", "json"]) == 1
    err = capsys.readouterr().err
    assert str(ps) in err and "C1N2_500_0" in err and str(ws2) in err and "digest" in err
    with pytest.raises(pyhf.exceptions.PatchSetVerificationError):  # pyhf refuses it too
        pyhf.PatchSet(_patchset()).apply(other, "C1N2_500_0")
    with pytest.raises(W.WorkspaceError, match="digest"):
        apply_patchset(other, _patchset(), "C1N2_500_0")


def test_unknown_point_lists_available_points(files, capsys):
    ws, ps, _ = files
    assert main(["inspect", str(ws), "--patchset", str(ps), "--point", "C1N2_999_1"]) == 1
    err = capsys.readouterr().err
    assert str(ps) in err and "C1N2_999_1" in err
    assert "C1N2_300_100 (m_C1N2=300, m_N1=100)" in err and "C1N2_500_0 (m_C1N2=500, m_N1=0)" in err
    assert main(["fit", str(ws), "--patchset", str(ps)]) == 1  # --point missing
    assert "--point" in capsys.readouterr().err


def test_inspect_lists_what_pyhf_inspect_lists(files, capsys):
    ws, ps, _ = files
    with pytest.warns(UserWarning, match="VR2"):
        assert main(["inspect", str(ws), "--patchset", str(ps), "--point", "C1N2_500_0", "--output", "json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["source"] == "pyhf"
    assert [(c["name"], c["bins"]) for c in info["channels"]] == [("CR", 1), ("SR", 3)]
    assert {(s["channel"], s["name"]) for s in info["samples"]} == {
        ("CR", "ttbar"),
        ("CR", "signal"),
        ("SR", "signal"),
        ("SR", "ttbar"),
        ("SR", "other"),
    }
    mods = {(m["name"], m["type"]) for m in info["modifiers"]}
    assert mods == {
        ("lumi", "lumi"),
        ("jes", "normsys"),
        ("mu_ttbar", "normfactor"),
        ("shape", "histosys"),
        ("staterror_SR", "staterror"),
        ("mu_SIG", "normfactor"),
        ("sig_theory", "normsys"),
    }
    pars = {p["name"]: p for p in info["parameters"]}
    assert pars["mu_SIG"]["bounds"] == [0.0, 8.0] and pars["mu_SIG"]["constraint"] == "none"
    assert pars["lumi"]["bounds"] == [0.915, 1.085] and pars["lumi"]["constraint"] == "normal"
    assert pars["staterror_SR[2]"]["modifiers"] == ["staterror"] and "vr_only" not in pars
    pm, _ = _pyhf_model("C1N2_500_0")
    assert info["poi"] == "mu_SIG" and len(info["parameters"]) == pm.config.npars
    assert info["measurements"] == ["NormalMeasurement", "FixedJES"]
    assert info["measurement_configs"][1]["parameters"] == ["lumi", "jes"]
    assert info["observations"] == [
        {"dataset": "observed", "channels": [{"name": "CR", "bins": 1}, {"name": "SR", "bins": 3}]}
    ]
    assert info["ignored_observations"] == ["VR1", "VR2"]
    assert info["patches_applied"][0]["values"] == [500, 0]
    # the measurement's settings: jes fixed at 0.5
    with pytest.warns(UserWarning, match="VR1"):
        assert (
            main(["inspect", str(ws), "--patchset", str(ps), "--point", "C1N2_500_0", "--measurement", "FixedJES"]) == 0
        )
    text = capsys.readouterr().out
    assert "(*) FixedJES" in text and "ignored (channel not in the model): VR1, VR2" in text
    assert any(line.split()[:2] == ["jes", "0.5"] and "(fixed)" in line for line in text.splitlines())


# ---------------------------------------------------------------- where pyhf fails, and only there
def _signal_ws():
    return apply_patch(BKG_ONLY, _signal(*POINTS["C1N2_300_100"][1:]))


def test_channel_without_observation_fails_as_in_pyhf():
    spec = _signal_ws()
    spec["observations"] = [o for o in spec["observations"] if o["name"] != "SR"]
    pws = pyhf.Workspace(spec)
    with pytest.raises(KeyError):
        pws.data(pws.model())
    with pytest.raises(W.WorkspaceError, match=r"no observation for channel\(s\) \['SR'\]"):
        W.from_pyhf(spec)


def test_wrong_number_of_bins_fails_as_in_pyhf():
    spec = _signal_ws()
    spec["observations"][1]["data"] = [19.0, 12.0]
    pws = pyhf.Workspace(spec)
    pm = pws.model()
    with pytest.raises(pyhf.exceptions.InvalidPdfData):
        pm.logpdf(pm.config.suggested_init(), pws.data(pm))
    with pytest.raises(
        W.WorkspaceError, match=r"\$\.observations\[1\]\.data: .*channel 'SR' has 2 bins, the channel has 3"
    ):
        W.from_pyhf(spec)


def test_duplicate_observation_uses_the_last_as_pyhf():
    spec = _signal_ws()
    spec["observations"].insert(0, {"name": "SR", "data": [1.0, 2.0, 3.0]})
    pws = pyhf.Workspace(spec)
    pm = pws.model(modifier_settings=MODIFIER_SETTINGS)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        nws = W.from_pyhf(spec)
    msgs = [str(w.message) for w in rec if issubclass(w.category, UserWarning)]
    assert sum("several observations for channel(s) ['SR']" in m for m in msgs) == 1
    assert sum("ignoring the observations" in m for m in msgs) == 1
    assert nws.observations()["SR"] == [19.0, 12.0, 6.0]
    model = nws.model()
    a = model.twice_nll(model.init)
    b = -2.0 * float(np.asarray(pm.logpdf(to_pyhf_pars(model, pm, model.init), pws.data(pm)))[0])
    assert a == pytest.approx(b, rel=1e-8)


def test_patch_errors_name_file_and_operation(files, tmp_path, capsys):
    ws, _, _ = files
    bad = tmp_path / "bad_patch.json"
    bad.write_text(json.dumps([{"op": "remove", "path": "/channels/2"}, {"op": "remove", "path": "/channels/7"}]))
    assert main(["fit", str(ws), "--patch", str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "operation 1 (remove /channels/7)" in err and str(ws) in err
    nsbi_ws = tmp_path / "nsbi.json"
    nsbi_ws.write_text(json.dumps({"version": "1.0.0", "channels": [{"name": "a", "type": "binned"}]}))
    assert main(["inspect", str(nsbi_ws), "--patch", str(bad)]) == 1
    assert "pyhf workspaces only" in capsys.readouterr().err
    # an invalid pyhf workspace: pyhf's schema error, naming the file and the place
    spec = copy.deepcopy(BKG_ONLY)
    spec["channels"][0]["samples"][0]["modifiers"][0]["type"] = "nosuchtype"
    with pytest.raises(W.WorkspaceError, match=r"not a valid pyhf workspace: at \$\.channels\[0\]"):
        W.from_pyhf(spec, source="x.json")
