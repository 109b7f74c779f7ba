"""Agreement with pyhf for every binned modifier type and a multi-channel model."""

import copy

import pytest

from nsbi.pyhf_check import compare


def _ws(samples, obs, params=(), channels=None):
    chans = channels or [{"name": "SR", "samples": samples}]
    return {
        "channels": chans,
        "observations": obs if isinstance(obs[0], dict) else [{"name": "SR", "data": obs}],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": list(params)}}],
        "version": "1.0.0",
    }


SIG = {"name": "sig", "data": [5.0, 10.0, 3.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]}
LUMI = {"name": "lumi", "auxdata": [1.0], "sigmas": [0.03], "bounds": [[0.8, 1.2]], "inits": [1.0]}

CASES = {
    "normsys": (
        [
            {
                "name": "bkg",
                "data": [50.0, 60.0, 20.0],
                "modifiers": [{"name": "ns", "type": "normsys", "data": {"hi": 1.15, "lo": 0.8}}],
            }
        ],
        [],
    ),
    "histosys": (
        [
            {
                "name": "bkg",
                "data": [50.0, 60.0, 20.0],
                "modifiers": [
                    {
                        "name": "hs",
                        "type": "histosys",
                        "data": {"hi_data": [55.0, 62.0, 18.0], "lo_data": [46.0, 57.0, 23.0]},
                    }
                ],
            }
        ],
        [],
    ),
    "staterror": (
        [
            {
                "name": "bkg",
                "data": [50.0, 60.0, 0.0],
                "modifiers": [{"name": "stat", "type": "staterror", "data": [3.0, 4.0, 0.0]}],
            },
            {
                "name": "bkg2",
                "data": [10.0, 0.0, 0.0],
                "modifiers": [{"name": "stat", "type": "staterror", "data": [1.0, 0.0, 0.0]}],
            },
        ],
        [],
    ),
    "shapesys": (
        [
            {
                "name": "bkg",
                "data": [50.0, 60.0, 0.0],
                "modifiers": [{"name": "ss", "type": "shapesys", "data": [5.0, 0.0, 1.0]}],
            }
        ],
        [],
    ),
    "lumi": (
        [{"name": "bkg", "data": [50.0, 60.0, 20.0], "modifiers": [{"name": "lumi", "type": "lumi", "data": None}]}],
        [LUMI],
    ),
    "shapefactor": (
        [
            {
                "name": "bkg",
                "data": [50.0, 60.0, 20.0],
                "modifiers": [{"name": "sf", "type": "shapefactor", "data": None}],
            }
        ],
        [],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_single_modifier(case):
    bkgs, params = CASES[case]
    sig = copy.deepcopy(SIG)
    if case == "lumi":
        sig["modifiers"].append({"name": "lumi", "type": "lumi", "data": None})
    spec = _ws([sig] + bkgs, [57.0, 74.0, 21.0], params)
    rep = compare(spec, n_random=4, seed=1, fit=case != "shapefactor")
    assert rep["ok"], rep["failures"]
    assert all(r["rel_diff"] < 1e-8 for r in rep["nll"])


def test_shapefactor_fit_with_control_region():
    # a shapefactor alone is degenerate with mu; constrain it with a control region
    sr = {
        "name": "SR",
        "samples": [
            copy.deepcopy(SIG),
            {
                "name": "bkg",
                "data": [50.0, 60.0, 20.0],
                "modifiers": [{"name": "sf", "type": "shapefactor", "data": None}],
            },
        ],
    }
    cr = {
        "name": "CR",
        "samples": [
            {
                "name": "bkg",
                "data": [100.0, 120.0, 40.0],
                "modifiers": [{"name": "sf", "type": "shapefactor", "data": None}],
            }
        ],
    }
    spec = _ws(
        None,
        [{"name": "SR", "data": [57.0, 74.0, 21.0]}, {"name": "CR", "data": [103.0, 115.0, 44.0]}],
        channels=[sr, cr],
    )
    rep = compare(spec, n_random=3, seed=2)
    assert rep["ok"], rep["failures"]


def test_multichannel_all_modifiers():
    sr = {
        "name": "SR",
        "samples": [
            {
                "name": "sig",
                "data": [5.0, 10.0, 3.0],
                "modifiers": [
                    {"name": "mu", "type": "normfactor", "data": None},
                    {"name": "lumi", "type": "lumi", "data": None},
                    {"name": "syst_a", "type": "normsys", "data": {"hi": 1.1, "lo": 0.85}},
                    {"name": "stat_SR", "type": "staterror", "data": [0.5, 1.0, 0.3]},
                ],
            },
            {
                "name": "bkg",
                "data": [50.0, 60.0, 0.0],
                "modifiers": [
                    {"name": "lumi", "type": "lumi", "data": None},
                    {
                        "name": "syst_a",
                        "type": "histosys",
                        "data": {"hi_data": [55, 62, 0.0], "lo_data": [46, 57, 0.0]},
                    },
                    {"name": "syst_b", "type": "normsys", "data": {"hi": 1.2, "lo": 0.9}},
                    {"name": "stat_SR", "type": "staterror", "data": [2.0, 0.0, 0.0]},
                    {"name": "shp", "type": "shapesys", "data": [3.0, 5.0, 1.0]},
                ],
            },
        ],
    }
    cr = {
        "name": "CR",
        "samples": [
            {
                "name": "bkg",
                "data": [100.0, 80.0],
                "modifiers": [
                    {"name": "sf", "type": "shapefactor", "data": None},
                    {"name": "syst_b", "type": "normsys", "data": {"hi": 1.05, "lo": 0.97}},
                    {"name": "stat_CR", "type": "staterror", "data": [4.0, 3.0]},
                ],
            }
        ],
    }
    spec = _ws(
        None,
        [{"name": "SR", "data": [58, 71, 2]}, {"name": "CR", "data": [97, 85]}],
        [LUMI, {"name": "mu", "bounds": [[0, 5]], "inits": [1.0]}],
        channels=[sr, cr],
    )
    rep = compare(spec, n_random=6, seed=3)
    assert rep["ok"], rep["failures"]
    assert len(rep["nll"]) == 7


def test_mismatch_raises():
    from nsbi.pyhf_check import PyhfMismatch

    spec = _ws([copy.deepcopy(SIG), {"name": "bkg", "data": [50.0, 60.0, 20.0], "modifiers": []}], [57.0, 74.0, 21.0])
    with pytest.raises(PyhfMismatch):
        compare(spec, n_random=1, fit=False, rtol_nll=-1.0)  # impossible tolerance


def test_staterror_name_shared_across_channels():
    """pyhf accepts one staterror name in several channels (HistFactory exports do this): its
    parameter set has one gamma per bin of each channel using it, channel after channel, each
    with the relative uncertainty of its own channel's samples. nsbi loads such a workspace and
    agrees with pyhf (values at random points, fit, errors); channels of different bin counts."""
    import pyhf

    def ch(name, noms, uncs):
        samples = []
        for s, (nom, unc) in enumerate(zip(noms, uncs)):
            mods = [{"name": "stat_all", "type": "staterror", "data": unc}]
            if s == 0:
                mods.append({"name": "mu", "type": "normfactor", "data": None})
            samples.append({"name": f"s{s}", "data": nom, "modifiers": mods})
        return {"name": name, "samples": samples}

    chans = [
        ch("A", [[5.0, 8.0], [40.0, 30.0]], [[0.5, 1.0], [4.0, 2.0]]),
        ch("B", [[2.0, 3.0, 1.0], [60.0, 50.0, 20.0]], [[0.4, 0.2, 0.3], [3.0, 6.0, 2.5]]),
        {
            "name": "C",
            "samples": [
                {"name": "s1", "data": [90.0], "modifiers": [{"name": "k", "type": "normfactor", "data": None}]}
            ],
        },
    ]
    spec = _ws(
        None,
        [{"name": "A", "data": [47, 36]}, {"name": "B", "data": [65, 49, 24]}, {"name": "C", "data": [95]}],
        [{"name": "mu", "bounds": [[0, 5]], "inits": [1.0]}],
        channels=chans,
    )
    assert pyhf.Workspace(spec).model().config.param_set("stat_all").n_parameters == 5
    rep = compare(spec, n_random=6, seed=5)
    assert rep["ok"], rep["failures"]
