"""File-level drivers (what the Snakemake scripts call) on small synthetic parquet files,
and the config -> target expansion."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from nsbi import evaluate as ev
from nsbi.io import write_parquet
from nsbi.onnx_export import read_metadata
from nsbi.train import run as trun
from nsbi.train import targets as ntgt

torch.set_num_threads(1)
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

SETTINGS = {"hidden": [8], "max_epochs": 2, "batch_size": 256, "progress_bar": False}
FEATURES = ["m4l", "y4l"]


def _write(path, n, seed, mu=0.0, key0=0, weight=None):
    rng = np.random.default_rng(seed)
    cols = {
        "m4l": rng.normal(400 + 50 * mu, 60, n),
        "y4l": rng.normal(mu, 1, n),
        "weight": np.full(n, 0.01) if weight is None else weight,
        "event_key": np.arange(key0, key0 + n, dtype=np.uint64),
    }
    write_parquet(cols, path)
    return path


@pytest.fixture()
def prep(tmp_path):
    d = tmp_path / "prep"
    d.mkdir()
    return {
        "S": _write(d / "S.parquet", 800, 0, mu=0.5, key0=0),
        "B": _write(d / "B.parquet", 900, 1, key0=10_000),
        "qqZZ": _write(d / "qqZZ.parquet", 700, 2, mu=-0.3, key0=20_000),
        "data": _write(d / "data.parquet", 300, 3, key0=30_000, weight=np.ones(300)),
    }


def test_train_evaluate_pipeline(tmp_path, prep):
    k, members = 2, 2
    paths = []
    for m in range(members):
        out = tmp_path / "train" / "SR" / "ratio" / "S" / str(m)
        h = trun.run_train_ratio(
            prep["S"],
            {"B": prep["B"], "qqZZ": prep["qqZZ"]},
            out,
            FEATURES,
            SETTINGS,
            member=m,
            n_folds=k,
            base_seed=100,
            target="S",
            coefficients={"B": 1.0, "qqZZ": 2.0},
        )
        assert (out / "model.onnx").is_file() and (out / "metrics.csv").is_file()
        js = json.loads((out / "history.json").read_text())
        assert js["seed"] == 100 + m and js["held_out_fold"] == m % k and js["coefficients"] == {"B": 1.0, "qqZZ": 2.0}
        meta = read_metadata(out / "model.onnx")
        assert meta["features"] == FEATURES and meta["member"] == m and meta["target"] == "S"
        assert h["classes"][1]["n_train"] + h["classes"][1]["n_val"] < 800  # k-fold held out part of S
        paths.append(out / "model.onnx")

    events = tmp_path / "eval" / "SR" / "asimov" / "events.parquet"
    info = ev.run_build_dataset("asimov", {"S": prep["S"], "B": prep["B"]}, events, FEATURES)
    assert info["n_events"] == 1700 and info["sumw"] == pytest.approx(17.0)
    npz = tmp_path / "eval" / "SR" / "asimov" / "logr" / "S.npz"
    ev.run_evaluate_target(events, paths, npz, n_folds=k, out_of_fold=True)
    z = ev.load_member_predictions(npz)
    assert z["logr_members"].shape == (2, 1700) and np.all(np.isfinite(z["logr_members"]).sum(0) == 1)
    # with one member per fold the aggregate is that member's prediction and the spread 0
    np.testing.assert_allclose(z["logr"], np.nanmax(z["logr_members"], axis=0))
    table = ev.run_region_table(events, {"S": npz, "S__kfactor_up": npz}, tmp_path / "eval" / "SR" / "asimov.parquet")
    t = ev.read_table(table)
    assert set(t) == {
        "weight",
        "process",
        "event_key",
        "logr_S",
        "spread_S",
        "logr_S__kfactor_up",
        "spread_S__kfactor_up",
    }
    assert list(np.unique(t["process"])) == ["B", "S"]

    # observed: every member evaluates every data event
    obs = tmp_path / "eval" / "SR" / "observed" / "events.parquet"
    ev.run_build_dataset("observed", {"data": prep["data"]}, obs, FEATURES)
    npz_obs = tmp_path / "obs_S.npz"
    ev.run_evaluate_target(obs, paths, npz_obs, n_folds=k, out_of_fold=False, aggregation="median")
    assert np.all(np.isfinite(ev.load_member_predictions(npz_obs)["logr_members"]))

    # a missing member is an error naming the file
    with pytest.raises(FileNotFoundError, match="ratio/S/5/model.onnx"):
        ev.run_evaluate_target(
            events,
            paths + [tmp_path / "train/SR/ratio/S/5/model.onnx"],
            tmp_path / "x.npz",
            n_folds=k,
            out_of_fold=True,
        )


def test_diagnostics_driver(tmp_path, prep):
    from nsbi.plotting.diag import run_ratio_diagnostics

    paths, hists = [], []
    for m in range(2):
        out = tmp_path / "m" / str(m)
        trun.run_train_ratio(
            prep["S"], {"B": prep["B"]}, out, FEATURES, SETTINGS, member=m, n_folds=2, base_seed=0, target="S"
        )
        paths.append(out / "model.onnx")
        hists.append(out / "metrics.csv")
    summary = run_ratio_diagnostics(
        tmp_path / "diag", "S", prep["S"], {"B": prep["B"]}, paths, FEATURES, 2, history_paths=hists
    )
    assert set(summary["closure"]) == set(FEATURES)
    assert (tmp_path / "diag" / "summary.json").is_file() and (tmp_path / "diag" / "loss.png").is_file()
    assert np.isfinite(summary["normalisation"]["residual"])
    # two members trained on different folds disagree somewhere: the spread is not zero
    assert summary["spread"]["q90_relative"] > 0


def test_region_classifier_driver(tmp_path, prep):
    paths = []
    for m in range(2):
        out = tmp_path / "region" / str(m)
        trun.run_train_classifier(
            {"ggF": [prep["S"], prep["B"]], "qqZZ": [prep["qqZZ"]]},
            out,
            FEATURES,
            SETTINGS,
            member=m,
            n_folds=2,
            base_seed=5,
        )
        assert read_metadata(out / "model.onnx")["classes"] == ["ggF", "qqZZ"]
        paths.append(out / "model.onnx")
    # the production path (scripts/prep.py): scores per event, class names from the ONNX metadata
    sample = ev.read_table(prep["qqZZ"])
    scores = ev.classifier_scores(paths, sample, 2, True)
    assert set(scores) == {"score_ggF", "score_qqZZ"} and len(scores["score_ggF"]) == 700
    np.testing.assert_allclose(scores["score_ggF"] + scores["score_qqZZ"], 1.0, atol=1e-6)


def test_targets_from_config():
    import nsbi.config as ncfg

    cfg = ncfg.load(Path(__file__).resolve().parents[1] / "config" / "test.yaml")
    assert ntgt.unbinned_regions(cfg) == ["SR"]
    assert ntgt.reference(cfg) == {"SBI": 1.0, "qqZZ": 1.0}
    names = ntgt.target_names(cfg)
    assert names[:4] == ["S", "SBI", "B", "qqZZ"]
    assert "qqZZ__qcdscale_up" in names and "S__kfactor_down" in names and "S__qcdscale_up" not in names
    assert not any("lumi" in n for n in names)  # normalisation-only
    assert ntgt.parse_target("SBI__LES_down") == ("SBI", "LES", "down")
    assert ntgt.member_dir("R", "SR", "SBI__LES_down", 1) == "R/train/SR/syst/SBI/LES_down/1"
    assert ntgt.member_dir("R", "SR", "B", 0) == "R/train/SR/ratio/B/0"
    s = ntgt.training_settings(cfg)
    assert s["hidden"] == [16, 16] and "members" not in s and "reference" not in s
