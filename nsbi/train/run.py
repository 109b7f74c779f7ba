"""File-level drivers used by the Snakemake scripts (plain functions, testable without
Snakemake).  Output layout of one ensemble member (``out_dir``)::

    model.onnx      raw features -> log r (or class probabilities); metadata in
                    metadata_props["nsbi"] (features, target, member, n_folds, seed, ...)
    history.json    per-epoch losses, best epoch, event counts, standardisation, settings
    metrics.csv     Lightning CSVLogger output
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path, write_json
from ..onnx_export import export_onnx
from . import kfold
from .data import concat_samples, mixture, read_sample, sample_arrays
from .trainer import train_classifier, train_ratio

__all__ = ["run_train_classifier", "run_train_ratio"]

log = logging.getLogger(__name__)


def _read(paths: Sequence[str | Path], columns) -> list[dict[str, np.ndarray]]:
    return [read_sample(p, columns) for p in paths]


def _check_samples(samples, features, n_folds, what):
    for name, s in samples.items():
        try:
            sample_arrays(s, features, need_key=n_folds > 1)
        except (KeyError, ValueError) as e:
            raise type(e)(f"{what} {name}: {e}") from None


def _finish(module, history, out_dir, features, meta, check_X):
    out_dir = Path(out_dir)
    meta = dict(meta, features=list(features))
    export_onnx(module, out_dir / "model.onnx", len(features), check_inputs=check_X, metadata=meta)
    write_json(history, out_dir / "history.json")
    # CSVLogger writes metrics.csv (+ hparams.yaml) directly into out_dir
    if not (out_dir / "metrics.csv").exists():
        with atomic_path(out_dir / "metrics.csv") as tmp:
            tmp.write_text("epoch,step,train_loss,val_loss\n")
    log.info(
        "member %s: %d epochs, best epoch %d, best validation loss %.6g -> %s",
        meta.get("member"),
        history["epochs_run"],
        history["best_epoch"],
        history["best_val_loss"],
        out_dir / "model.onnx",
    )


def _check_rows(samples: Sequence[Mapping[str, np.ndarray]], features, n: int = 2000, seed: int = 0):
    X = np.concatenate([sample_arrays(s, features)[0] for s in samples])
    if len(X) > n:
        X = X[np.random.default_rng(seed).choice(len(X), n, replace=False)]
    return X


def run_train_ratio(
    num_path: str | Path,
    den_paths: Mapping[str, str | Path],
    out_dir: str | Path,
    features: Sequence[str],
    settings: Mapping[str, Any],
    member: int,
    n_folds: int,
    base_seed: int,
    target: str,
    coefficients: Mapping[str, float] | None = None,
    normalise_components: bool = True,
) -> dict[str, Any]:
    """Train ensemble member ``member`` of ``log p_num / p_den`` and write ``out_dir``.

    ``den_paths``: component name -> prepared parquet; with more than one component (or
    ``coefficients``) the denominator is the mixture ``sum_k a_k p_k / sum_k a_k`` of the
    unit-normalised components (:func:`nsbi.train.data.mixture`).  For a systematic ratio
    ``num_path`` is the varied sample and ``den_paths = {process: nominal}``.
    """
    features = list(features)
    cols = features + ["weight"] + (["event_key"] if n_folds > 1 else [])
    num = read_sample(num_path, cols)
    comps = {k: read_sample(p, cols) for k, p in den_paths.items()}
    _check_samples({"numerator": num}, features, n_folds, "sample")
    _check_samples(comps, features, n_folds, "denominator component")
    if coefficients is None:
        coefficients = {k: 1.0 for k in comps}
    den = (
        mixture(comps, coefficients, normalise=normalise_components)
        if len(comps) > 1 or set(coefficients) != set(comps)
        else next(iter(comps.values()))
    )
    seed = kfold.member_seed(base_seed, member)
    out_dir = Path(out_dir)
    if out_dir.exists():
        for stale in ("metrics.csv", "hparams.yaml"):
            if (out_dir / stale).exists():
                (out_dir / stale).unlink()
    module, history = train_ratio(
        num, den, features, settings, seed=seed, member=member, n_folds=n_folds, log_dir=out_dir
    )
    history.update(
        target=target,
        numerator=str(num_path),
        denominator={k: str(v) for k, v in den_paths.items()},
        coefficients=dict(coefficients),
    )
    meta = {
        "kind": "ratio",
        "target": target,
        "member": int(member),
        "n_folds": int(n_folds),
        "seed": seed,
        "output": "log_ratio",
    }
    _finish(module, history, out_dir, features, meta, _check_rows([num, den], features, seed=seed))
    return history


def run_train_classifier(
    class_paths: Mapping[str, Sequence[str | Path]],
    out_dir: str | Path,
    features: Sequence[str],
    settings: Mapping[str, Any],
    member: int,
    n_folds: int,
    base_seed: int,
    target: str = "region",
) -> dict[str, Any]:
    """Train member ``member`` of the multi-class region classifier; ``class_paths``: class
    name -> prepared parquet files whose events (raw weights) form the class."""
    features = list(features)
    cols = features + ["weight"] + (["event_key"] if n_folds > 1 else [])
    classes = {name: concat_samples(_read(paths, cols)) for name, paths in class_paths.items()}
    _check_samples(classes, features, n_folds, "class")
    seed = kfold.member_seed(base_seed, member)
    module, history = train_classifier(
        classes, features, settings, seed=seed, member=member, n_folds=n_folds, log_dir=out_dir
    )
    history.update(target=target, class_inputs={k: [str(p) for p in v] for k, v in class_paths.items()})
    meta = {
        "kind": "classifier",
        "target": target,
        "member": int(member),
        "n_folds": int(n_folds),
        "seed": seed,
        "classes": list(classes),
        "output": "probabilities",
    }
    _finish(module, history, out_dir, features, meta, _check_rows(list(classes.values()), features, seed=seed))
    return history
