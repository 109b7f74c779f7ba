"""Density-ratio training: loss, weights, registry, determinism, exact-ratio closure."""

import logging
import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal, norm

from nsbi.train import models, train_classifier, train_ratio, weight_variation_pair
from nsbi.train.data import mixture
from nsbi.train.models import (
    normalise_class_weights,
    weighted_bce,
    weighted_cross_entropy,
)

torch.set_num_threads(1)
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

FAST = {
    "hidden": [32, 32],
    "batch_size": 512,
    "learning_rate": 3e-3,
    "max_epochs": 30,
    "patience": 5,
    "progress_bar": False,
}


def _predict(module, X):
    with torch.no_grad():
        return module(torch.as_tensor(np.asarray(X, dtype=np.float32))).numpy().astype(np.float64)


# --------------------------------------------------------------------------- loss & weights
def test_weighted_bce_hand_computation():
    logits = [0.3, -1.2, 2.0, 0.0]
    y = [1, 0, 1, 0]
    w = [0.5, 2.0, -1.0, 0.25]
    sig = lambda z: 1.0 / (1.0 + math.exp(-z))
    terms = [wi * -(math.log(sig(z)) if yi == 1 else math.log(1.0 - sig(z))) for z, yi, wi in zip(logits, y, w)]
    expected = sum(terms) / 4
    got = weighted_bce(torch.tensor(logits), torch.tensor(y), torch.tensor(w)).item()
    assert got == pytest.approx(expected, rel=1e-6)
    # the row form used in training: (w_num, w_den) = (w y, w (1 - y))
    yt, wt = torch.tensor(y, dtype=torch.float64), torch.tensor(w, dtype=torch.float64)
    paired = models.paired_weighted_bce(torch.tensor(logits, dtype=torch.float64), wt * yt, wt * (1 - yt)).item()
    assert paired == pytest.approx(expected, rel=1e-12)
    # one row holding the same event in both classes: minimum at logit = log(w_num / w_den)
    z = torch.linspace(-2, 2, 4001, dtype=torch.float64)
    vals = torch.stack(
        [models.paired_weighted_bce(zi.reshape(1), torch.tensor([1.3]), torch.tensor([0.7])) for zi in z]
    )
    assert z[vals.argmin()].item() == pytest.approx(math.log(1.3 / 0.7), abs=1e-3)


def test_weighted_cross_entropy_hand_computation():
    logits = np.array([[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]])
    y = [2, 0]
    w = [1.5, -0.5]
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = (-1.5 * logp[0, 2] + 0.5 * logp[1, 0]) / 2
    got = weighted_cross_entropy(torch.tensor(logits), torch.tensor(y), torch.tensor(w)).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_normalise_class_weights():
    w = np.array([1.0, 3.0, -1.0, 2.0, 2.0])
    y = np.array([0, 0, 0, 1, 1])
    out = normalise_class_weights(w, y)
    assert out[y == 0].sum() == pytest.approx(2.5) and out[y == 1].sum() == pytest.approx(2.5)
    assert np.allclose(out[y == 0] / w[y == 0], 2.5 / 3.0)  # shape within a class untouched
    with pytest.raises(ValueError, match="class 1"):
        normalise_class_weights(np.array([1.0, -1.0]), np.array([0, 1]))


def test_mixture_coefficients():
    a = {"x": np.array([1.0, 2.0]), "weight": np.array([2.0, 2.0])}
    b = {"x": np.array([5.0]), "weight": np.array([10.0])}
    m = mixture({"A": a, "B": b}, {"A": 1.0, "B": 3.0})
    assert np.allclose(m["weight"], [0.5, 0.5, 3.0]) and np.allclose(m["x"], [1, 2, 5])
    raw = mixture({"A": a, "B": b}, {"A": 1.0, "B": 3.0}, normalise=False)
    assert np.allclose(raw["weight"], [2, 2, 30])
    with pytest.raises(KeyError, match="C"):
        mixture({"A": a}, {"C": 1.0})


# --------------------------------------------------------------------------- modules & registry
def test_shapes_and_standardisation():
    mean, std = np.array([100.0, -3.0]), np.array([50.0, 0.01])
    mod = models.build_model("mlp", n_features=2, mean=mean, std=std, settings={"hidden": [8]})
    x = torch.randn(7, 2)
    assert mod(x).shape == (7,)
    z = mod.standardise(torch.tensor([[150.0, -3.02]]))
    assert np.allclose(z.numpy(), [[1.0, -2.0]], atol=1e-5)
    mc = models.build_model("mlp_multiclass", n_features=2, mean=mean, std=std, settings={"hidden": [8]}, n_outputs=3)
    p = mc(x)
    assert p.shape == (7, 3) and torch.allclose(p.sum(1), torch.ones(7))
    m2 = models.build_model("mlp", n_features=2, mean=None, std=None, settings={"hidden": 5, "layers": 2})
    assert sum(isinstance(layer, torch.nn.Linear) for layer in m2.net) == 3
    # default: the output layer starts at zero, i.e. log r = 0 before training
    assert torch.all(mod(x) == 0)
    m3 = models.build_model(
        "mlp", n_features=2, mean=mean, std=std, settings={"hidden": [8], "zero_init_output": False}
    )
    assert torch.any(m3(x) != 0)


def test_registry():
    @models.register_model("test_linear_ratio")
    class LinearRatio(models.RatioModuleBase):
        def build_network(self, n_features, n_outputs, settings):
            return torch.nn.Linear(n_features, n_outputs)

    assert "test_linear_ratio" in models.available_models()
    assert models.get_model("test_linear_ratio") is LinearRatio
    with pytest.raises(ValueError, match="already registered"):
        models.register_model("test_linear_ratio")(type("Other", (models.RatioModuleBase,), {}))
    with pytest.raises(KeyError, match="registered models"):
        models.get_model("nope")
    with pytest.raises(TypeError):
        models.register_model("x")(int)
    # a registered user model is used by train_ratio; for 1D Gaussians of equal width the
    # exact log-ratio is linear, so a linear model recovers it
    rng = np.random.default_rng(5)
    n = 4000
    num = {"x": rng.normal(0.5, 1, n), "weight": np.ones(n)}
    den = {"x": rng.normal(0.0, 1, n), "weight": np.ones(n)}
    mod, _ = train_ratio(num, den, ["x"], dict(FAST, model="test_linear_ratio", learning_rate=3e-2), seed=0)
    assert isinstance(mod, LinearRatio)
    x = np.linspace(-2, 2, 9)
    assert np.sqrt(np.mean((_predict(mod, x[:, None]) - (0.5 * x - 0.125)) ** 2)) < 0.1


# --------------------------------------------------------------------------- training
def _gauss_pair(seed, n=3000):
    rng = np.random.default_rng(seed)
    num = {"x": rng.normal(0.4, 1, n), "weight": rng.uniform(0.5, 1.5, n), "event_key": np.arange(n, dtype=np.uint64)}
    den = {
        "x": rng.normal(0.0, 1.2, n),
        "weight": rng.uniform(0.5, 1.5, n),
        "event_key": np.arange(n, 2 * n, dtype=np.uint64),
    }
    return num, den


def test_determinism(tmp_path):
    num, den = _gauss_pair(0, 1500)
    s = dict(FAST, max_epochs=3)
    m1, h1 = train_ratio(num, den, ["x"], s, seed=7, member=1, n_folds=3)
    m2, h2 = train_ratio(num, den, ["x"], s, seed=7, member=1, n_folds=3)
    m3, _ = train_ratio(num, den, ["x"], s, seed=8, member=1, n_folds=3)
    sd1, sd2, sd3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    assert h1["val_loss"] == h2["val_loss"]
    assert not all(torch.equal(sd1[k], sd3[k]) for k in sd1)


def test_history_logging_and_early_stopping(tmp_path):
    num, den = _gauss_pair(1, 1000)
    # learning rate 0: the validation loss never improves -> stops after `patience` more epochs
    mod, h = train_ratio(
        num, den, ["x"], dict(FAST, learning_rate=0.0, patience=2, max_epochs=20), seed=0, log_dir=tmp_path / "log"
    )
    assert h["epochs_run"] == 3 and h["best_epoch"] == 0
    assert len(h["train_loss"]) == len(h["val_loss"]) == 3
    text = (tmp_path / "log" / "metrics.csv").read_text()
    assert "val_loss" in text and "train_loss" in text
    assert h["classes"][0]["n_train"] + h["classes"][0]["n_val"] == 1000
    assert h["classes"][0]["n_val"] == 200
    # the training-set standardisation is stored in the module
    assert np.allclose(1.0 / mod.feature_scale.numpy(), h["feature_std"], rtol=1e-6)


def test_learning_rate_decay_on_plateau():
    num, den = _gauss_pair(1, 1000)
    lr0 = 3e-2
    # patience 0: the rate halves after every epoch whose validation loss is not a new best
    # (torch's default relative threshold 1e-4); large rate so that some epochs are not
    s = dict(FAST, learning_rate=lr0, max_epochs=12, patience=20, lr_decay={"factor": 0.5, "patience": 0})
    _, h = train_ratio(num, den, ["x"], s, seed=2)
    lr, val = h["learning_rate"], h["val_loss"]
    assert len(lr) == len(val) == 12 and lr[0] == pytest.approx(lr0)
    expected, best = [lr0], math.inf
    for v in val[:-1]:
        improved = v < best * (1 - 1e-4)
        best = min(best, v)
        expected.append(expected[-1] * (1.0 if improved else 0.5))
    assert lr == pytest.approx(expected, rel=1e-12)
    assert min(lr) < lr0  # the case is not trivial: some epochs did not improve
    # without lr_decay the rate is constant
    _, h = train_ratio(num, den, ["x"], dict(s, lr_decay=None, max_epochs=4), seed=2)
    assert h["learning_rate"] == pytest.approx([lr0] * 4, rel=1e-12)


def test_gaussian_1d_ratio_vs_analytic():
    num, den = _gauss_pair(2, 5000)
    mod, _ = train_ratio(num, den, ["x"], FAST, seed=3)
    x = np.random.default_rng(9).normal(0, 1.2, 4000)
    x = x[np.abs(x) < 2.5]
    exact = norm.logpdf(x, 0.4, 1) - norm.logpdf(x, 0.0, 1.2)
    rms = np.sqrt(np.mean((_predict(mod, x[:, None]) - exact) ** 2))
    assert rms < 0.1, rms  # stated tolerance: RMS(log r) < 0.1 for 5000 + 5000 events


def test_gaussian_2d_ratio_vs_analytic():
    rng = np.random.default_rng(4)
    n = 5000
    cov_num = np.array([[1.0, 0.5], [0.5, 1.0]])
    a = rng.multivariate_normal([0.3, -0.2], cov_num, n)
    b = rng.normal(0, 1, (n, 2))
    num = {"x1": a[:, 0], "x2": a[:, 1], "weight": np.ones(n)}
    den = {"x1": b[:, 0], "x2": b[:, 1], "weight": np.ones(n)}
    mod, _ = train_ratio(num, den, ["x1", "x2"], FAST, seed=0)
    xt = rng.normal(0, 1, (3000, 2))
    xt = xt[np.all(np.abs(xt) < 2, axis=1)]
    exact = multivariate_normal([0.3, -0.2], cov_num).logpdf(xt) - multivariate_normal([0, 0], np.eye(2)).logpdf(xt)
    rms = np.sqrt(np.mean((_predict(mod, xt) - exact) ** 2))
    assert rms < 0.15, rms  # stated tolerance: RMS(log r) < 0.15 in the central region


def test_negative_weights_exact_ratio():
    """num = 1.5 N(0,1) - 0.5 N(0,0.5) (a non-negative density built from a signed-weight
    mixture, like an interference sample) vs den = N(0,1).  Exact ratio
    r(x) = 1.5 - 0.5 N(x;0,0.5)/N(x;0,1), from 0.5 at x=0 to 1.5 in the tails.
    Signed-weight BCE recovers it; dropping the signs (|w|) does not."""
    rng = np.random.default_rng(0)
    n = 6000
    num = {
        "x": np.concatenate([rng.normal(0, 1, n), rng.normal(0, 0.5, n)]),
        "weight": np.concatenate([np.full(n, 1.5 / n), np.full(n, -0.5 / n)]),
    }
    den = {"x": rng.normal(0, 1, 2 * n), "weight": np.ones(2 * n)}
    xt = rng.normal(0, 1, 5000)
    xt = xt[np.abs(xt) < 2.5]
    exact = np.log(1.5 - 0.5 * norm.pdf(xt, 0, 0.5) / norm.pdf(xt, 0, 1))

    mod, _ = train_ratio(num, den, ["x"], FAST, seed=1)
    rms = np.sqrt(np.mean((_predict(mod, xt[:, None]) - exact) ** 2))
    assert rms < 0.15, rms  # stated tolerance

    naive = dict(num, weight=np.abs(num["weight"]))
    mod_abs, _ = train_ratio(naive, den, ["x"], FAST, seed=1)
    rms_abs = np.sqrt(np.mean((_predict(mod_abs, xt[:, None]) - exact) ** 2))
    assert rms_abs > 0.35, rms_abs  # |w| learns (0.75 + 0.5 exp(-1.5 x^2)): wrong


def test_weight_systematic_ratio():
    """Target (b) for a weight systematic: the same events with varied weights
    w * (1 + 0.3 tanh x); exact g(x) = (1 + 0.3 tanh x) / E_den[1 + 0.3 tanh x].  With event
    keys the two samples are paired (one row per event carrying both weights), which makes
    the estimate almost noise-free."""
    rng = np.random.default_rng(6)
    n = 8000
    nominal = {"x": rng.normal(0.3, 1, n), "weight": np.ones(n), "event_key": np.arange(n, dtype=np.uint64)}
    num, den = weight_variation_pair(nominal, nominal["weight"] * (1 + 0.3 * np.tanh(nominal["x"])))
    # shuffle the numerator rows: pairing goes by event key, not by position
    perm = rng.permutation(n)
    num = {k: v[perm] for k, v in num.items()}
    mod, h = train_ratio(num, den, ["x"], dict(FAST, patience=10, max_epochs=40), seed=2)
    assert h["paired"]
    xt = rng.normal(0.3, 1, 4000)
    xt = xt[np.abs(xt - 0.3) < 2.5]
    norm_c = np.mean(1 + 0.3 * np.tanh(nominal["x"]))  # normalisation of the sample itself
    exact = np.log((1 + 0.3 * np.tanh(xt)) / norm_c)
    rms = np.sqrt(np.mean((_predict(mod, xt[:, None]) - exact) ** 2))
    assert rms < 0.01, rms
    # without event keys (unpaired rows) it still converges, with more noise
    unpaired = [{k: v for k, v in s.items() if k != "event_key"} for s in (num, den)]
    mod_u, h_u = train_ratio(*unpaired, ["x"], dict(FAST, patience=10, max_epochs=40), seed=2)
    assert not h_u["paired"]
    assert np.sqrt(np.mean((_predict(mod_u, xt[:, None]) - exact) ** 2)) < 0.06


def test_pairing_only_for_identical_events():
    from nsbi.train.trainer import _prepare_binary

    rng = np.random.default_rng(0)
    n = 500
    nom = {"x": rng.normal(0, 1, n), "weight": np.ones(n), "event_key": np.arange(n, dtype=np.uint64)}
    shifted = dict(nom, x=nom["x"] * 1.005)  # tree systematic: same keys, different features
    tr, va, _, paired = _prepare_binary(nom, shifted, ["x"], 0, 1, 0.2, 0)
    assert not paired and len(tr[0]) + len(va[0]) == 2 * n
    tr, va, _, paired = _prepare_binary(nom, dict(nom, weight=np.full(n, 2.0)), ["x"], 0, 1, 0.2, 0)
    assert paired and len(tr[0]) + len(va[0]) == n
    # class normalisation: both weight columns sum to N/2 in each set
    for X, w1, w0 in (tr, va):
        assert w1.sum() == pytest.approx(len(X) / 2) and w0.sum() == pytest.approx(len(X) / 2)


def test_region_classifier_posterior():
    """Three 1D Gaussian classes with class-normalised weights: the exact posterior is
    N_c(x) / sum_k N_k(x)."""
    rng = np.random.default_rng(8)
    n = 3000
    mus = [-1.5, 0.0, 1.5]
    classes = {
        f"c{i}": {"x": rng.normal(mu, 1, n), "weight": rng.uniform(0.1, 2.0, n) * (i + 1)} for i, mu in enumerate(mus)
    }
    mod, h = train_classifier(classes, ["x"], FAST, seed=0)
    assert h["class_names"] == ["c0", "c1", "c2"]
    xt = np.linspace(-3, 3, 61)
    dens = np.stack([norm.pdf(xt, mu, 1) for mu in mus], axis=1)
    exact = dens / dens.sum(axis=1, keepdims=True)
    p = _predict(mod, xt[:, None])
    assert p.shape == (61, 3)
    assert np.sqrt(np.mean((p - exact) ** 2)) < 0.05


def test_bad_settings():
    num, den = _gauss_pair(0, 100)
    with pytest.raises(ValueError, match="validation_fraction"):
        train_ratio(num, den, ["x"], dict(FAST, validation_fraction=1.5))
    with pytest.raises(KeyError, match="event_key|nope"):
        train_ratio(num, den, ["nope"], FAST)
    with pytest.raises(ValueError, match="activation"):
        train_ratio(num, den, ["x"], dict(FAST, activation="bogus"))
