"""Training of density-ratio classifiers and of the multi-class region classifier.

:func:`train_ratio` fits ``s(x) = p_num / (p_num + p_den)`` with the signed-weight BCE
(see :mod:`nsbi.train.models` for why negative weights are handled correctly); the
trained module's ``forward`` returns the logit, which is ``log r(x) = log p_num(x)/p_den(x)``
of the *normalised* densities (class weights are normalised to equal totals).

Typical targets:

* basis process ``c`` vs the reference ``p_ref`` (``num = sample_c``,
  ``den = mixture({...}, coefficients)`` -- see :func:`nsbi.train.data.mixture`);
* systematic ratio ``p_c(x|alpha_k^+-) / p_c(x)``: ``num`` = the varied sample, ``den``
  = the nominal one.  For weight systematics both are the *same events* with different
  weights (:func:`weight_variation_pair`), for tree/file systematics different events.
  Same events (identical unique ``event_key`` sets and identical features) are detected
  and *paired*: one training row per event carrying both weights, so that the loss of
  each event is minimised exactly at its weight ratio (far less noise than two
  independent copies; ``history["paired"]``).

Reproducibility: for a given seed, CPU training is bit-for-bit reproducible
(``lightning.seed_everything``, seeded validation split and batch order,
``deterministic=True``, ``num_workers=0``).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
)

from . import kfold
from .data import WEIGHT, sample_arrays
from .defaults import DEFAULT_SETTINGS
from .models import build_model, normalise_class_weights

__all__ = [
    "DEFAULT_SETTINGS",
    "TrainingError",
    "resolve_settings",
    "train_classifier",
    "train_ratio",
    "weight_variation_pair",
]

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    pass


def resolve_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults overlaid with ``settings`` (unknown keys are kept for custom models)."""
    out = dict(DEFAULT_SETTINGS)
    out.update(dict(settings or {}))
    vf = float(out["validation_fraction"])
    if not 0 < vf < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {vf}")
    for k in ("batch_size", "max_epochs", "patience"):
        if int(out[k]) < 1:
            raise ValueError(f"{k} must be >= 1, got {out[k]}")
    return out


def weight_variation_pair(sample: Mapping[str, np.ndarray], varied_weight: np.ndarray):
    """(num, den) for a weight systematic: the same events, ``num`` with the varied weights."""
    num = dict(sample)
    num[WEIGHT] = np.asarray(varied_weight, dtype=np.float64)
    if num[WEIGHT].shape != np.shape(sample[WEIGHT]):
        raise ValueError("varied weights and sample differ in length")
    return num, dict(sample)


# --------------------------------------------------------------------------- data
class _Tensors(Dataset):
    """Map-style dataset that returns whole mini-batches ``(x, a, b)`` for a list of indices
    (binary: ``a, b`` = numerator / denominator weight of the row; multi-class: label, weight)."""

    def __init__(self, X, a, b):
        self.X = torch.as_tensor(X, dtype=torch.float32)
        self.a = torch.as_tensor(a)
        self.b = torch.as_tensor(b, dtype=torch.float32)
        if self.a.is_floating_point():
            self.a = self.a.to(torch.float32)

    def __len__(self):
        return len(self.X)

    def __getitem__(self, idx):
        idx = torch.as_tensor(idx, dtype=torch.long)
        return self.X[idx], self.a[idx], self.b[idx]


def _loader(ds: _Tensors, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    if shuffle:
        g = torch.Generator()
        g.manual_seed(int(seed))
        base = RandomSampler(ds, generator=g)
    else:
        base = SequentialSampler(ds)
    return DataLoader(ds, sampler=BatchSampler(base, int(batch_size), drop_last=False), batch_size=None, num_workers=0)


def _split(n: int, frac: float, rng: np.random.Generator):
    perm = rng.permutation(n)
    n_val = round(frac * n)
    if n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _class_arrays(sample, features, member, n_folds, label):
    X, w, key = sample_arrays(sample, features, need_key=n_folds > 1)
    if n_folds > 1:
        m = kfold.training_mask(key, member, n_folds)
        X, w, key = X[m], w[m], key[m]
    if len(w) < 2:
        raise TrainingError(f"class {label} has {len(w)} training events after k-fold selection")
    return X, w, key


def _pair(den, num):
    """Row alignment of two samples holding the *same events* (same unique event keys and
    identical features), as for a weight systematic; None otherwise (e.g. tree systematics,
    where the keys match but the features differ)."""
    (Xd, wd, kd), (Xn, wn, kn) = den, num
    if kd is None or kn is None or len(kd) != len(kn) or len(np.unique(kd)) != len(kd):
        return None
    od, on = np.argsort(kd, kind="stable"), np.argsort(kn, kind="stable")
    if not (np.array_equal(kd[od], kn[on]) and np.array_equal(Xd[od], Xn[on])):
        return None
    return Xd[od], wn[on], wd[od]


def _normalise_binary(w1, w0, where):
    n = len(w1)
    s1, s0 = w1.sum(), w0.sum()
    for name, tot in (("numerator", s1), ("denominator", s0)):
        if not (np.isfinite(tot) and tot > 0):
            raise TrainingError(
                f"cannot normalise class weights: {name} has non-positive total weight {tot!r} in the {where} set"
            )
    return w1 * (0.5 * n / s1), w0 * (0.5 * n / s0)


def _prepare_binary(den, num, features, member, n_folds, frac, seed):
    """Rows ``(x, w_num, w_den)``.  Samples of the same events (weight systematics) are
    *paired*: one row per event carrying both weights, so the per-event loss
    ``w_num log s + w_den log(1-s)`` is minimised exactly at the per-event weight ratio and
    the noise of unpaired sampling disappears.  Otherwise rows are the union of both
    samples (``w_den = 0`` for numerator rows and vice versa).  Training/validation split
    per class (stratified); weights normalised so both classes sum to ``N/2`` in each set."""
    rng = np.random.default_rng([int(seed), 0x5EED])
    d = _class_arrays(den, features, member, n_folds, "denominator")
    nm = _class_arrays(num, features, member, n_folds, "numerator")
    paired = _pair(d, nm)
    if paired is not None:
        X, w1, w0 = paired
        tr, va = _split(len(X), frac, rng)
        parts = [(X[tr], w1[tr], w0[tr]), (X[va], w1[va], w0[va])]
        info = [
            {
                "n_train": len(tr),
                "n_val": len(va),
                "sumw_train": float(w0[tr].sum()),
                "n_negative_train": int((w0[tr] < 0).sum()),
            },
            {
                "n_train": len(tr),
                "n_val": len(va),
                "sumw_train": float(w1[tr].sum()),
                "n_negative_train": int((w1[tr] < 0).sum()),
            },
        ]
    else:
        tr_parts, va_parts, info = [], [], []
        for is_num, (X, w, _) in enumerate((d, nm)):
            tr, va = _split(len(w), frac, rng)
            z = np.zeros(len(w))
            w1, w0 = (w, z) if is_num else (z, w)
            tr_parts.append((X[tr], w1[tr], w0[tr]))
            va_parts.append((X[va], w1[va], w0[va]))
            info.append(
                {
                    "n_train": len(tr),
                    "n_val": len(va),
                    "sumw_train": float(w[tr].sum()),
                    "n_negative_train": int((w[tr] < 0).sum()),
                }
            )
        parts = [tuple(np.concatenate([p[i] for p in ps]) for i in range(3)) for ps in (tr_parts, va_parts)]
    out = []
    for (X, w1, w0), where in zip(parts, ("training", "validation")):
        w1, w0 = _normalise_binary(w1, w0, where)
        out.append((X, w1, w0))
    return out[0], out[1], info, paired is not None


def _prepare_multiclass(classes, features, member, n_folds, frac, seed):
    rng = np.random.default_rng([int(seed), 0x5EED])
    parts_tr, parts_va, info = [], [], []
    for label, sample in enumerate(classes):
        X, w, _ = _class_arrays(sample, features, member, n_folds, label)
        tr, va = _split(len(w), frac, rng)
        y = np.full(len(w), label, dtype=np.int64)
        parts_tr.append((X[tr], y[tr], w[tr]))
        parts_va.append((X[va], y[va], w[va]))
        info.append(
            {
                "n_train": len(tr),
                "n_val": len(va),
                "sumw_train": float(w[tr].sum()),
                "n_negative_train": int((w[tr] < 0).sum()),
            }
        )
    out = []
    for parts in (parts_tr, parts_va):
        X, y, w = (np.concatenate([p[i] for p in parts]) for i in range(3))
        try:
            w = normalise_class_weights(w, y, len(classes))
        except ValueError as e:
            raise TrainingError(f"cannot normalise class weights: {e}") from e
        out.append((X, y, w))
    return out[0], out[1], info


# --------------------------------------------------------------------------- callback
class _History(Callback):
    """Records per-epoch losses and keeps the weights of the best validation epoch."""

    def __init__(self, min_delta: float = 0.0):
        self.epoch: list[int] = []
        self.train_loss: list[float] = []
        self.val_loss: list[float] = []
        self.learning_rate: list[float] = []
        self.best = math.inf
        self.best_epoch = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.min_delta = float(min_delta)

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        v = trainer.callback_metrics.get("val_loss")
        v = float(v) if v is not None else math.nan
        self.val_loss.append(v)
        self.epoch.append(int(trainer.current_epoch))
        # the rate this epoch was trained with (a plateau scheduler steps after this hook)
        self.learning_rate.append(
            float(trainer.optimizers[0].param_groups[0]["lr"]) if trainer.optimizers else math.nan
        )
        if math.isfinite(v) and v < self.best:
            self.best, self.best_epoch = v, int(trainer.current_epoch)
            self.best_state = {k: t.detach().cpu().clone() for k, t in pl_module.state_dict().items()}

    def on_train_epoch_end(self, trainer, pl_module):
        t = trainer.callback_metrics.get("train_loss")
        self.train_loss.append(float(t) if t is not None else math.nan)


# --------------------------------------------------------------------------- fit
def _fit(classes, features, settings, seed, member, n_folds, log_dir, n_outputs):
    s = resolve_settings(settings)
    kfold.check_kfold(n_folds)
    if s.get("num_threads"):
        torch.set_num_threads(int(s["num_threads"]))
    if str(s["accelerator"]) in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        # deterministic cuBLAS needs this; ops without a deterministic CUDA kernel warn
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        if s["deterministic"] is True:
            s["deterministic"] = "warn"
    features = list(features)
    frac = float(s["validation_fraction"])
    paired = False
    if n_outputs == 1:
        if len(classes) != 2:
            raise ValueError("a ratio model needs exactly two samples")
        (Xtr, atr, btr), (Xva, ava, bva), info, paired = _prepare_binary(
            classes[0], classes[1], features, member, n_folds, frac, seed
        )
    else:
        (Xtr, atr, btr), (Xva, ava, bva), info = _prepare_multiclass(classes, features, member, n_folds, frac, seed)
    mean = Xtr.mean(axis=0)
    std = Xtr.std(axis=0)

    L.seed_everything(int(seed), workers=True, verbose=False)
    module = build_model(s["model"], n_features=len(features), mean=mean, std=std, settings=s, n_outputs=n_outputs)
    hist = _History(s["min_delta"])
    callbacks = [
        EarlyStopping(
            monitor="val_loss",
            patience=int(s["patience"]),
            min_delta=float(s["min_delta"]),
            mode="min",
            check_finite=True,
        ),
        hist,
    ]
    logger = False
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        logger = CSVLogger(save_dir=str(log_dir), name="", version="")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*srun.*")
        trainer = _make_trainer(s, callbacks, logger, log_dir)
    train_dl = _loader(_Tensors(Xtr, atr, btr), s["batch_size"], True, seed)
    val_dl = _loader(_Tensors(Xva, ava, bva), s["batch_size"], False, seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*srun.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        trainer.fit(module, train_dl, val_dl)
    if hist.best_state is None:
        raise TrainingError("validation loss was never finite; training failed")
    module.load_state_dict(hist.best_state)
    module = module.cpu().eval()
    history = {
        "epoch": hist.epoch,
        "train_loss": hist.train_loss[: len(hist.epoch)],
        "val_loss": hist.val_loss,
        "learning_rate": hist.learning_rate,
        "best_epoch": hist.best_epoch,
        "best_val_loss": hist.best,
        "epochs_run": len(hist.epoch),
        "seed": int(seed),
        "member": int(member),
        "n_folds": int(n_folds),
        "held_out_fold": kfold.held_out_fold(member, n_folds),
        "features": features,
        "classes": info,
        "paired": bool(paired),
        "feature_mean": mean.tolist(),
        "feature_std": std.tolist(),
        "settings": {k: v for k, v in s.items() if isinstance(v, (int, float, str, bool, list, dict, type(None)))},
    }
    return module, history


def _make_trainer(s, callbacks, logger, log_dir):
    return L.Trainer(
        max_epochs=int(s["max_epochs"]),
        accelerator=s["accelerator"],
        devices=1,
        deterministic=s["deterministic"],
        callbacks=callbacks,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=bool(s["progress_bar"]),
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        default_root_dir=str(log_dir) if log_dir is not None else None,
    )


def train_ratio(
    num: Mapping[str, np.ndarray],
    den: Mapping[str, np.ndarray],
    features: Sequence[str],
    settings: Mapping[str, Any] | None = None,
    seed: int = 0,
    member: int = 0,
    n_folds: int = 1,
    log_dir: str | Path | None = None,
):
    """Train a density-ratio classifier ``log r(x) = log p_num(x) / p_den(x)``.

    Parameters
    ----------
    num, den : mappings ``column -> array`` with the feature columns, ``weight`` (signed)
        and -- if ``n_folds > 1`` -- ``event_key``.
    features : feature column names (the order of the ONNX input).
    settings : see :data:`DEFAULT_SETTINGS`; ``settings["model"]`` names a registered model.
    seed : seed of this member (e.g. ``kfold.member_seed(base_seed, member)``).
    member, n_folds : ensemble member index and number of folds; the member trains only
        on events with ``fold != member % n_folds`` (see :mod:`nsbi.train.kfold`).
    log_dir : directory for the member's CSVLogger (``metrics.csv``); None: no logging.

    Returns ``(module, history)``: the module (CPU, eval mode) restored to the epoch with
    the best validation loss; its ``forward`` maps raw features to ``log r``.
    """
    return _fit([den, num], features, settings, seed, member, n_folds, log_dir, n_outputs=1)


def train_classifier(
    classes: Mapping[str, Mapping[str, np.ndarray]],
    features: Sequence[str],
    settings: Mapping[str, Any] | None = None,
    seed: int = 0,
    member: int = 0,
    n_folds: int = 1,
    log_dir: str | Path | None = None,
):
    """Train a multi-class classifier (e.g. the region classifier) on ``{class name:
    sample}`` with class-normalised signed weights; the module's ``forward`` returns the
    class probabilities in the order of ``classes``.  ``settings["model"]`` defaults to
    ``"mlp_multiclass"``."""
    if len(classes) < 2:
        raise ValueError("a classifier needs at least two classes")
    s = dict(settings or {})
    s.setdefault("model", "mlp_multiclass")
    if s["model"] == "mlp":
        s["model"] = "mlp_multiclass"
    module, history = _fit(list(classes.values()), features, s, seed, member, n_folds, log_dir, n_outputs=len(classes))
    history["class_names"] = list(classes)
    return module, history
