"""A density-ratio network trained on the built-in simulator reproduces the exact ratio.

SBI (gg -> 4l signal + background + interference, weighted) against qqZZ, all ten high-level features:
the network's log r(x) is compared with the simulator's exact log p_SBI(x)/p_qqZZ(x) on an
independent qqZZ sample (the events the fit evaluates the ratio on).
"""

import logging

import numpy as np
import torch

from nsbi.plotting.diag import oracle_rms, renormalise_log_ratio
from nsbi.simulate import physics as ph
from nsbi.simulate.generate import generate
from nsbi.simulate.oracle import Oracle
from nsbi.train import train_ratio

torch.set_num_threads(1)
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
FEATURES = list(ph.FEATURES)


def _sample(process, n, seed):
    a = generate(process, n, seed)
    out = {k: np.asarray(a[k], np.float64) for k in [*FEATURES, "weight"]}
    out["event_key"] = np.asarray(a["event_number"]).astype(np.uint64)
    return out


def test_sbi_over_qqzz_ratio_matches_the_simulator():
    num, den, test = _sample("SBI", 60_000, 1), _sample("qqZZ", 60_000, 2), _sample("qqZZ", 20_000, 3)
    settings = {
        "hidden": [64, 64],
        "batch_size": 512,
        "learning_rate": 3e-3,
        "max_epochs": 60,
        "patience": 5,
        "progress_bar": False,
    }
    module, _ = train_ratio(num, den, FEATURES, settings, seed=0)
    X = np.stack([test[f] for f in FEATURES], axis=1).astype(np.float32)
    with torch.no_grad():
        pred = module(torch.as_tensor(X)).numpy().ravel().astype(np.float64)
    exact = renormalise_log_ratio(Oracle().log_ratio("SBI", "qqZZ", test, norm=False), test["weight"])
    stats = oracle_rms(pred, exact, test["weight"])
    # stated tolerance for 60k + 60k weighted events: RMS of log r - log r_exact below 0.5,
    # mean below 0.1 (the demo config, 200k events per sample, reaches about 0.15)
    assert stats["n"] == len(pred)
    assert stats["rms"] < 0.5 and abs(stats["bias"]) < 0.1, stats
    # and the network is far better than no knowledge of the ratio (log r = const)
    assert (
        stats["rms"]
        < 0.5 * oracle_rms(np.full_like(exact, np.average(exact, weights=test["weight"])), exact, test["weight"])["rms"]
    )
