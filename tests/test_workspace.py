"""Workspace schema, IO with hashed side files, pyhf import/export, builders."""

import json

import numpy as np
import pytest

from nsbi import workspace as W


def _events(n, seed):
    rng = np.random.default_rng(seed)
    ev = {"weight": rng.uniform(0.5, 1.5, n)}
    for p in ("S", "B"):
        ev[f"logr_{p}"] = rng.normal(0, 0.3, n)
        ev[f"logr_{p}__LES_up"] = rng.normal(0, 0.05, n)
        ev[f"logr_{p}__LES_down"] = rng.normal(0, 0.05, n)
    return ev


def _build():
    hist = W.binned_channel_from_histograms(
        "SR_hist",
        nominal={"S": [2.0, 5.0], "B": [40.0, 30.0]},
        variations={"B": {"LES": ([44.0, 31.0], [37.0, 29.0])}},
        morphing={"S": "mu", "B": "1"},
        sumw2={"S": [0.1, 0.3], "B": [4.0, 3.0]},
    )
    return W.build_workspace(
        unbinned={
            "SR": {
                "processes": {
                    "S": {
                        "sumw": {"nominal": 20.0, "LES_up": 21.0, "LES_down": 19.5},
                        "morphing": "mu",
                        "eventsys": ["LES"],
                    },
                    "B": {"yield": 100.0, "normsys": {"qcd": (1.1, 0.9)}, "eventsys": ["LES"]},
                }
            }
        },
        binned=[hist],
        datasets={
            "asimov": {"SR": _events(500, 1), "SR_hist": [42.0, 35.0]},
            "observed": {"SR": _events(120, 2), "SR_hist": [40.0, 37.0]},
        },
        poi="mu",
        lumi=("lumi", 1.0, 0.02),
    )


@pytest.mark.parametrize("fmt", ["npz", "parquet"])
def test_round_trip(tmp_path, fmt):
    ws = _build()
    m0 = ws.model("asimov")
    W.save(ws, tmp_path / "ws.json", fmt=fmt)
    spec = json.loads((tmp_path / "ws.json").read_text())
    ref = spec["observations"][0]["channels"][0]["events"]
    assert ref["format"] == fmt and not ref["path"].startswith("/")
    ws2 = W.load(tmp_path / "ws.json")
    m1 = ws2.model("asimov")
    assert m1.par_names == m0.par_names
    p = m0.init + 0.1
    assert m1.twice_nll(p) == pytest.approx(m0.twice_nll(p), rel=1e-13)
    # kappa from sumw and the histogram split: normsys LES on S = 21/20
    s = next(c for c in ws2.spec["channels"] if c["name"] == "SR")["samples"][0]
    assert {"name": "LES", "type": "normsys", "data": {"hi": 1.05, "lo": 0.975}} in s["modifiers"]
    # saving again gives identical side files (deterministic hashes)
    W.save(ws2, tmp_path / "ws.json", fmt=fmt)
    assert json.loads((tmp_path / "ws.json").read_text()) == spec


def test_hash_mismatch(tmp_path):
    W.save(_build(), tmp_path / "ws.json")
    f = tmp_path / "ws.observed.SR.npz"
    ev = dict(np.load(f))
    ev["weight"][0] += 1.0
    with open(f, "wb") as fh:
        np.savez(fh, **ev)
    with pytest.raises(W.WorkspaceError, match=r"sha256 mismatch.*ws\.observed\.SR\.npz"):
        W.load(tmp_path / "ws.json")


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda s: s.pop("version"), r"\$\.version"),
        (
            lambda s: s["channels"][0]["samples"][0].__setitem__("yield", "ten"),
            r"\$\.channels\[0\]\.samples\[0\]\.yield",
        ),
        (
            lambda s: s["channels"][1]["samples"][1]["modifiers"].append(
                {"name": "x", "type": "normsys", "data": {"hi": 1.1}}
            ),
            r"\$\.channels\[1\]\.samples\[1\]\.modifiers\[\d+\]\.data.*'lo'",
        ),
        (
            lambda s: s["channels"][1]["samples"][0]["modifiers"].append({"name": "x", "type": "bogus"}),
            r"modifiers\[\d+\]\.type",
        ),
        (lambda s: s["observations"][0]["channels"][0]["events"].__setitem__("sha256", "xyz"), r"events\.sha256"),
        (
            lambda s: s["channels"][1]["samples"][1].__setitem__("data", [1.0]),
            r"\$\.channels\[1\]\.samples\[1\]\.data: 1 bins",
        ),
        (lambda s: s["observations"][0]["channels"][1].__setitem__("name", "nope"), r"unknown channel 'nope'"),
    ],
)
def test_schema_errors_name_the_key(tmp_path, mutate, match):
    W.save(_build(), tmp_path / "ws.json")
    spec = json.loads((tmp_path / "ws.json").read_text())
    mutate(spec)
    (tmp_path / "bad.json").write_text(json.dumps(spec))
    with pytest.raises(W.WorkspaceError, match=match):
        W.load(tmp_path / "bad.json")


def test_pyhf_round_trip():
    import pyhf

    pspec = {
        "channels": [
            {
                "name": "SR",
                "samples": [
                    {
                        "name": "sig",
                        "data": [5.0, 10.0],
                        "modifiers": [{"name": "mu", "type": "normfactor", "data": None}],
                    },
                    {
                        "name": "bkg",
                        "data": [50.0, 60.0],
                        "modifiers": [
                            {"name": "ns", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
                            {"name": "st", "type": "staterror", "data": [2.0, 3.0]},
                        ],
                    },
                ],
            }
        ],
        "observations": [{"name": "SR", "data": [55.0, 70.0]}],
        "measurements": [
            {"name": "A", "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [[0, 5]]}]}},
            {"name": "B", "config": {"poi": "mu", "parameters": []}},
        ],
        "version": "1.0.0",
    }
    ws = W.from_pyhf(pspec, measurement="A")
    assert ws.measurements == ["A"] and ws.datasets == ["observed"]
    back = W.to_pyhf(ws)
    assert pyhf.Workspace(back)  # valid
    assert back["channels"] == pspec["channels"] and back["observations"] == pspec["observations"]
    assert back["measurements"] == pspec["measurements"][:1]
    # morphing that pyhf cannot express is rejected, unbinned channels dropped with a warning
    with pytest.warns(UserWarning, match="unbinned"):
        with pytest.raises(W.WorkspaceError, match="no pyhf equivalent"):
            bad = _build().spec
            bad["channels"][1]["samples"][0]["morphing"] = "mu - sqrt(mu)"
            W.to_pyhf(W.Workspace(bad, events=_build()._events))


def test_save_keeps_json_format_and_writes_atomically(tmp_path):
    """The workspace JSON goes through nsbi.io.write_json with indent=1 and insertion order;
    side files and JSON are written atomically (no temporary files left)."""
    ws = _build()
    path = W.save(ws, tmp_path / "ws.json")
    text = path.read_text()
    spec = json.loads(text)
    assert text == json.dumps(spec, indent=1) + "\n"
    assert list(spec) != sorted(spec)  # insertion order kept, not sorted
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_save_rejects_non_finite_numbers(tmp_path):
    """Non-finite numbers become null in strict JSON; the schema rejects them at save time
    instead of writing a workspace that cannot be loaded."""
    ws = _build()
    ws.spec["channels"][1]["samples"][0]["data"][0] = float("nan")
    with pytest.raises(W.WorkspaceError):
        W.save(ws, tmp_path / "ws.json")
    assert not (tmp_path / "ws.json").exists()


def _mutations(spec):
    """Single edits of a valid workspace: each breaks the schema, except the last (valid)."""
    import copy

    def edit(f):
        s = copy.deepcopy(spec)
        f(s)
        return s

    b, u = spec["channels"][1], spec["channels"][0]
    assert b["type"] == "binned" and u["type"] == "unbinned"
    return [
        edit(lambda s: s.pop("channels")),
        edit(lambda s: s.__setitem__("extra", 1)),
        edit(lambda s: s["channels"][0].__setitem__("name", "1bad name")),
        edit(lambda s: s["channels"][0]["samples"][0].__setitem__("yield", "ten")),
        edit(lambda s: s["channels"][1]["samples"][0]["data"].__setitem__(0, "x")),
        edit(lambda s: s["channels"][1]["samples"][1]["modifiers"].append({"name": "x", "type": "bogus"})),
        edit(lambda s: s["channels"][1]["samples"][1]["modifiers"].append({"name": "x", "type": "normsys"})),
        edit(
            lambda s: s["channels"][1]["samples"][1]["modifiers"].append(
                {"name": "x", "type": "histosys", "data": {"hi_data": [1.0, 2.0]}}
            )
        ),
        edit(lambda s: s["channels"][1]["samples"][1]["modifiers"][0].__setitem__("data", {"hi": 1.1, "lo": "a"})),
        edit(lambda s: s["measurements"][0]["config"]["parameters"].append({"name": "mu", "bounds": [[0.0]]})),
        edit(lambda s: s["observations"][0]["channels"][0]["events"].__setitem__("sha256", "xyz")),
        edit(lambda s: s["channels"][1]["samples"][1]["modifiers"].append({"name": "ok", "type": "lumi"})),
    ]


def test_fast_schema_check_agrees_with_jsonschema(tmp_path):
    """nsbi.workspace.validate accepts a workspace by a compiled (fastjsonschema) check and
    explains a rejection with jsonschema: the two must agree on every edit of a valid
    workspace, or a fast acceptance would let an invalid workspace through."""
    import jsonschema

    W.save(_build(), tmp_path / "ws.json")
    spec = json.loads((tmp_path / "ws.json").read_text())
    full = jsonschema.Draft202012Validator(W.schema())
    cases = [spec, *_mutations(spec)]
    verdicts = [(W.schema_accepts("nsbi-workspace-1.0.0", W.schema(), s), full.is_valid(s)) for s in cases]
    assert all(fast == slow for fast, slow in verdicts), verdicts
    assert [slow for _, slow in verdicts] == [True] + [False] * (len(cases) - 2) + [True]


def test_pyhf_workspace_is_read_without_importing_pyhf(tmp_path):
    """A valid pyhf workspace is checked against pyhf's schema files without importing pyhf
    (0.5 s of every command-line fit); an invalid one still gets pyhf's own message."""
    import subprocess
    import sys

    pspec = {
        "channels": [
            {
                "name": "SR",
                "samples": [
                    {"name": "b", "data": [5.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]}
                ],
            }
        ],
        "observations": [{"name": "SR", "data": [4.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }
    (tmp_path / "ws.json").write_text(json.dumps(pspec))
    code = (
        "import json, sys; from nsbi import workspace as W; "
        f"ws = W.from_pyhf(json.load(open({str(tmp_path / 'ws.json')!r}))); "
        "print(ws.measurements, 'pyhf' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["['m']", "False"]
    pspec["channels"][0]["samples"][0]["modifiers"][0]["type"] = "normfactr"
    with pytest.raises(W.WorkspaceError, match=r"not a valid pyhf workspace: at \$\.channels"):
        W.from_pyhf(pspec)
