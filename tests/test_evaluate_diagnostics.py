"""Diagnostics: calibration, closure chi2, normalisation, oracle RMS, plots + summary."""

import json

import numpy as np
import pytest
from scipy.stats import norm

from nsbi.plotting import diag


def _gauss(seed=0, n=20000, mu=0.5):
    rng = np.random.default_rng(seed)
    ref = {"x": rng.normal(0, 1, n), "weight": rng.uniform(0.5, 1.5, n)}
    c = {"x": rng.normal(mu, 1, n), "weight": rng.uniform(0.5, 1.5, n)}
    exact = lambda s: norm.logpdf(s["x"], mu, 1) - norm.logpdf(s["x"], 0, 1)
    return ref, c, exact


def test_calibration_of_exact_classifier():
    ref, c, exact = _gauss()
    logit = np.concatenate([exact(ref), exact(c)])
    y = np.r_[np.zeros(len(ref["x"])), np.ones(len(c["x"]))]
    w = np.r_[ref["weight"], c["weight"]]
    cur = diag.calibration_curve(logit, y, w, bins=10)
    good = cur["error"] < 0.05
    assert good.sum() >= 6
    pull = (cur["fraction"][good] - cur["mean_s"][good]) / cur["error"][good]
    assert np.all(np.abs(pull) < 4.5)


def test_closure_and_normalisation():
    ref, c, exact = _gauss(1)
    h = diag.closure_histograms(ref["x"], ref["weight"], exact(ref), c["x"], c["weight"], bins=15)
    assert h["ndf"] == 15
    assert h["chi2_ndf"] < 2.5  # exact ratio closes (expectation 1)
    bad = diag.closure_histograms(ref["x"], ref["weight"], np.zeros(len(ref["x"])), c["x"], c["weight"], bins=15)
    assert bad["chi2_ndf"] > 20
    n = diag.normalisation_check(ref["weight"], exact(ref), c["weight"])
    assert abs(n["residual"]) < 4 * n["residual_error"]
    assert n["predicted_sum_c_w"] == pytest.approx(n["sum_c_w"] * (1 + n["residual"]))
    # hand case: sum w r = 1*2 + 2*0.5 = 3 = sum w
    hand = diag.normalisation_check([1.0, 2.0], np.log([2.0, 0.5]))
    assert hand["sum_ref_w_r"] == pytest.approx(3.0) and hand["residual"] == pytest.approx(0.0, abs=1e-15)


def test_oracle_rms_hand():
    out = diag.oracle_rms([1.0, 2.0], [0.0, 0.0])
    assert out["rms"] == pytest.approx(np.sqrt(2.5)) and out["bias"] == pytest.approx(1.5)
    out = diag.oracle_rms([1.0, 2.0], [0.0, 0.0], weights=[3.0, -1.0])
    assert out["rms"] == pytest.approx(np.sqrt((3 + 4) / 4))


def test_read_metrics_csv(tmp_path):
    p = tmp_path / "metrics.csv"
    p.write_text("epoch,step,train_loss,val_loss\n0,3,,0.6\n0,3,0.7,\n1,7,,0.5\n1,7,0.65,\n")
    h = diag.read_metrics_csv(p)
    assert h == {"epoch": [0, 1], "train_loss": [0.7, 0.65], "val_loss": [0.6, 0.5]}


def test_ratio_diagnostics_files(tmp_path):
    ref, c, exact = _gauss(2, n=3000)
    rng = np.random.default_rng(0)
    logr_ref = exact(ref) + rng.normal(0, 0.05, 3000)
    hist = {"m0": {"epoch": [0, 1, 2], "train_loss": [0.7, 0.69, 0.68], "val_loss": [0.71, 0.7, 0.7]}}
    summary = diag.ratio_diagnostics(
        tmp_path / "S",
        "S",
        ["x"],
        ref,
        logr_ref,
        c,
        exact(c),
        spread_ref=np.full(3000, 0.01),
        histories=hist,
        exact_log_ratio=exact,
    )
    for f in ("loss.png", "calibration.png", "closure_x.png", "spread.png", "oracle.png", "summary.json"):
        assert (tmp_path / "S" / f).stat().st_size > 0, f
    js = json.loads((tmp_path / "S" / "summary.json").read_text())
    assert js["oracle"]["rms"] == pytest.approx(0.05, rel=0.1)
    assert set(js) >= {"closure", "normalisation", "oracle", "spread", "target"}
    assert summary["closure"]["x"]["ndf"] == 20
