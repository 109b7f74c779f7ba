"""Summaries of scans: interval widths, expected significance, NSBI/oracle ratio."""

import numpy as np
import pytest

from nsbi.analysis import closure_report, expected_significance


def _scan(sigma, best=1.0):
    mu = np.linspace(0.0, 3.0, 301)
    d = ((mu - best) / sigma) ** 2
    lo68, hi68 = best - sigma, best + sigma
    lo95, hi95 = best - 1.959964 * sigma, best + 1.959964 * sigma
    return {
        "poi": "mu",
        "mode": "profile",
        "values": mu.tolist(),
        "twice_nll": d.tolist(),
        "delta_twice_nll": d.tolist(),
        "best": best,
        "best_twice_nll": 0.0,
        "intervals": {"68": [lo68, hi68], "95": [max(lo95, np.nan), hi95]},
    }


def test_expected_significance_of_parabola():
    assert expected_significance(_scan(0.5), 0.0) == pytest.approx(2.0, rel=1e-3)
    assert expected_significance(_scan(0.25), 0.0) == pytest.approx(4.0, rel=1e-3)
    assert expected_significance(_scan(0.5), 5.0) is None


def test_closure_report_ratio_and_target():
    scans = {
        ("nsbi", "scan"): _scan(0.52),
        ("oracle", "scan"): _scan(0.5),
        ("hist", "scan"): _scan(0.8),
        ("nsbi", "scan_stat_only"): _scan(0.6),
        ("oracle", "scan_stat_only"): _scan(0.5),
    }
    r = closure_report(scans, target_ratio=1.05)
    assert r["nsbi_over_oracle_width_68_stat_syst"] == pytest.approx(1.04)
    assert r["within_target_stat_syst"] is True
    assert r["nsbi_over_oracle_width_68_stat_only"] == pytest.approx(1.2)
    assert r["within_target_stat_only"] is False
    assert r["scans"]["hist_stat_syst"]["width_68"] == pytest.approx(1.6)
    # narrower than the physical limit by more than 5 % is outside the target too
    scans[("nsbi", "scan")] = _scan(0.45)
    r = closure_report(scans, target_ratio=1.05)
    assert r["nsbi_over_oracle_width_68_stat_syst"] == pytest.approx(0.9)
    assert r["within_target_stat_syst"] is False
    assert r["scans"]["oracle_stat_syst"]["expected_significance_poi0"] == pytest.approx(2.0, rel=1e-3)
