"""Evaluation of the exported ONNX models with onnxruntime and ensemble aggregation.

Per-event outputs for the statistical model (one parquet per unbinned region and
dataset, see :func:`write_region_table`)::

    weight, process, event_key,
    logr_{process}                  log p_c(x) / p_ref(x)           (ensemble aggregate)
    logr_{process}__{syst}_up/down  log g_ck(x) = log p_c(x|a_k+-) / p_c(x)
    spread_{...}                    per-event std of the members' *ratios* r (not log r)

Ensembles: ``logr_members[m, i]`` holds member ``m``'s ``log r`` for event ``i`` or NaN
where member ``m`` does not evaluate event ``i`` (out-of-fold evaluation, see
:mod:`nsbi.train.kfold`).  :func:`aggregate` combines the members' ratios
``r = exp(log r)`` with the mean (default) or the median and returns ``log`` of it, plus
the standard deviation (``ddof=0``) of the ratios.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from .io import atomic_path
from .train import kfold
from .train.data import EVENT_KEY, WEIGHT

__all__ = [
    "OnnxModel",
    "aggregate",
    "build_dataset",
    "check_files",
    "classifier_scorer",
    "classifier_scores",
    "column_names",
    "evaluate_classifier",
    "evaluate_ensemble",
    "evaluate_ensemble_file",
    "evaluate_member",
    "load_member_predictions",
    "member_mask",
    "read_table",
    "save_member_predictions",
    "select_providers",
    "target_name",
    "write_region_table",
]

log = logging.getLogger(__name__)
AGGREGATIONS = ("mean", "median")


# --------------------------------------------------------------------------- onnxruntime
def select_providers(prefer_gpu: bool = True, logger: logging.Logger | None = None) -> list[str]:
    """``["CUDAExecutionProvider", "CPUExecutionProvider"]`` when CUDA is available in
    onnxruntime (and ``prefer_gpu``), else ``["CPUExecutionProvider"]``; logs one line."""
    import onnxruntime as ort

    avail = ort.get_available_providers()
    if prefer_gpu and "CUDAExecutionProvider" in avail:
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    (logger or log).info("onnxruntime providers: %s (available: %s)", providers[0], ", ".join(avail))
    return providers


class OnnxModel:
    """An exported nsbi model: ``model(X) -> output`` with raw float features."""

    def __init__(self, path: str | Path, intra_op_threads: int = 1, providers: Sequence[str] | None = None):
        import onnxruntime as ort

        from .onnx_export import INPUT_NAME, OUTPUT_NAME, read_metadata

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"model file not found: {self.path}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(intra_op_threads)
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(self.path), sess_options=so, providers=list(providers or select_providers())
        )
        self.input_name, self.output_name = INPUT_NAME, OUTPUT_NAME
        self.metadata = read_metadata(self.path)
        self.n_features = self.session.get_inputs()[0].shape[1]

    @property
    def features(self) -> list[str] | None:
        return self.metadata.get("features")

    def __call__(self, X: np.ndarray, batch_size: int = 65536) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or (isinstance(self.n_features, int) and X.shape[1] != self.n_features):
            raise ValueError(f"{self.path}: expected input (N, {self.n_features}), got {X.shape}")
        if len(X) == 0:
            out = self.session.run([self.output_name], {self.input_name: np.zeros((1, X.shape[1]), np.float32)})[0]
            return np.zeros((0,) + out.shape[1:], np.float64)
        outs = [
            self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(X[i : i + batch_size])})[0]
            for i in range(0, len(X), int(batch_size))
        ]
        return np.concatenate(outs).astype(np.float64)


def check_files(paths: Sequence[str | Path], what: str = "ensemble member") -> list[Path]:
    """Raise FileNotFoundError naming the first missing file (members are never skipped)."""
    out = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise FileNotFoundError(f"missing {what} file: {p}")
        out.append(p)
    return out


# --------------------------------------------------------------------------- evaluation
def member_mask(event_key, member: int, n_folds: int, out_of_fold: bool = True) -> np.ndarray:
    """Events member ``member`` evaluates: its held-out fold (``out_of_fold``, for MC that
    may have been used in training) or all events (data)."""
    n = len(event_key)
    if not out_of_fold or n_folds == 1:
        return np.ones(n, bool)
    return kfold.evaluation_mask(event_key, member, n_folds)


def _features_matrix(sample: Mapping[str, np.ndarray], features: Sequence[str]) -> np.ndarray:
    """The ``(N, n_features)`` float32 input of the models, filled column by column (no
    float32 copy of each column on the way)."""
    missing = [f for f in features if f not in sample]
    if missing:
        raise KeyError(f"dataset lacks feature column(s) {missing}")
    n = len(sample[features[0]]) if len(features) else 0
    X = np.empty((n, len(features)), np.float32)
    for j, f in enumerate(features):
        X[:, j] = sample[f]
    return X


def _model_features(models: Sequence[OnnxModel], features):
    if features is None:
        feats = [m.features for m in models]
        if any(f is None for f in feats):
            raise ValueError("feature list not given and not stored in the ONNX metadata")
        features = feats[0]
    for m in models:
        if m.features is not None and list(m.features) != list(features):
            raise ValueError(f"{m.path}: trained on features {m.features}, expected {list(features)}")
    return list(features)


def evaluate_member(
    model_path,
    sample: Mapping[str, np.ndarray],
    member: int,
    n_folds: int,
    out_of_fold: bool = True,
    features: Sequence[str] | None = None,
    intra_op_threads: int = 1,
    providers=None,
    batch_size: int = 65536,
) -> np.ndarray:
    """``log r`` of one ratio member for every event (NaN where it does not evaluate)."""
    model = OnnxModel(check_files([model_path])[0], intra_op_threads, providers)
    features = _model_features([model], features)
    key = np.asarray(sample[EVENT_KEY]) if (out_of_fold and n_folds > 1) else np.zeros(len(sample[WEIGHT]), np.uint64)
    mask = member_mask(key, member, n_folds, out_of_fold)
    out = np.full(len(mask), np.nan)
    if mask.any():
        out[mask] = model(_features_matrix(sample, features)[mask], batch_size)
    return out


def evaluate_ensemble(
    model_paths: Sequence[str | Path],
    sample: Mapping[str, np.ndarray],
    n_folds: int,
    out_of_fold: bool = True,
    features: Sequence[str] | None = None,
    intra_op_threads: int = 1,
    prefer_gpu: bool = True,
    batch_size: int = 65536,
) -> np.ndarray:
    """``(n_members, N)`` array of per-member ``log r`` (member ``m`` = ``model_paths[m]``),
    NaN where a member does not evaluate an event.  All files must exist."""
    models = _ensemble_models(model_paths, n_folds, out_of_fold, intra_op_threads, prefer_gpu)
    features = _model_features(models, features)
    X = _features_matrix(sample, features)
    out = np.full((len(models), len(X)), np.nan)
    _ensemble_into(out, models, X, sample, n_folds, out_of_fold, batch_size)
    return out


def evaluate_ensemble_file(
    model_paths: Sequence[str | Path],
    path: str | Path,
    n_folds: int,
    out_of_fold: bool = True,
    features: Sequence[str] | None = None,
    intra_op_threads: int = 1,
    prefer_gpu: bool = True,
    batch_size: int = 65536,
) -> np.ndarray:
    """:func:`evaluate_ensemble` of the events of a parquet file, read row group by row group
    with only the columns it needs (the features, and ``event_key`` for out-of-fold
    evaluation) into a preallocated ``(n_members, N)`` output: memory is the output plus one
    row group, not the file's table. On onnxruntime's CPU provider an event's result does not
    depend on the batch it is evaluated in, so the numbers are those of
    :func:`evaluate_ensemble` on the whole table, bit for bit (tested); a GPU provider may
    choose other kernels for other batch sizes (differences of float32 rounding)."""
    from .io import iter_parquet, parquet_columns, parquet_num_rows

    models = _ensemble_models(model_paths, n_folds, out_of_fold, intra_op_threads, prefer_gpu)
    features = _model_features(models, features)
    columns = list(features) + ([EVENT_KEY] if out_of_fold and n_folds > 1 else [])
    present = set(parquet_columns(path))
    missing = [c for c in columns if c not in present]
    if missing:
        raise KeyError(f"dataset {path} lacks column(s) {missing}")
    out = np.full((len(models), parquet_num_rows(path)), np.nan)
    start = 0
    for group in iter_parquet(path, columns):
        X = _features_matrix(group, features)
        _ensemble_into(out[:, start : start + len(X)], models, X, group, n_folds, out_of_fold, batch_size)
        start += len(X)
    return out


def _ensemble_models(model_paths, n_folds: int, out_of_fold: bool, intra_op_threads: int, prefer_gpu: bool):
    """The members' sessions (every file must exist; the k-fold setup is checked)."""
    paths = check_files(model_paths)
    kfold.check_kfold(n_folds, len(paths) if out_of_fold else None)
    providers = select_providers(prefer_gpu)
    return [OnnxModel(p, intra_op_threads, providers) for p in paths]


def _ensemble_into(out: np.ndarray, models, X: np.ndarray, sample, n_folds: int, out_of_fold: bool, batch_size: int):
    """Fill ``out[m, i]`` with member ``m``'s ``log r`` of event ``i`` (features ``X[i]``,
    key ``sample["event_key"][i]``) where the member evaluates it (its held-out fold, or every
    event), leaving the rest of ``out`` as it is."""
    n = len(X)
    if out_of_fold and n_folds > 1:
        folds = kfold.fold_of(np.asarray(sample[EVENT_KEY]), n_folds)
    for m, model in enumerate(models):
        mask = np.ones(n, bool) if not (out_of_fold and n_folds > 1) else folds == kfold.held_out_fold(m, n_folds)
        if mask.all():
            out[m] = model(X, batch_size)
        elif mask.any():
            out[m, mask] = model(X[mask], batch_size)


def evaluate_classifier(
    model_paths,
    sample,
    n_folds: int,
    out_of_fold: bool = True,
    features=None,
    intra_op_threads: int = 1,
    prefer_gpu: bool = True,
) -> np.ndarray:
    """Mean class probabilities ``(N, n_classes)`` over the members that evaluate each event."""
    paths = check_files(model_paths)
    kfold.check_kfold(n_folds, len(paths) if out_of_fold else None)
    providers = select_providers(prefer_gpu)
    models = [OnnxModel(p, intra_op_threads, providers) for p in paths]
    return _classifier_probs(models, sample, n_folds, out_of_fold, features)


def _classifier_probs(models, sample, n_folds: int, out_of_fold: bool, features=None) -> np.ndarray:
    features = _model_features(models, features)
    X = _features_matrix(sample, features)
    n = len(X)
    key = np.asarray(sample[EVENT_KEY]) if (out_of_fold and n_folds > 1) else np.zeros(n, np.uint64)
    total, count = None, np.zeros(n)
    for m, model in enumerate(models):
        mask = member_mask(key, m, n_folds, out_of_fold)
        if not mask.any():
            continue
        p = model(X[mask])
        if total is None:
            total = np.zeros((n, p.shape[1]))
        total[mask] += p
        count[mask] += 1
    if total is None or np.any(count == 0):
        raise ValueError("some events are evaluated by no classifier member")
    return total / count[:, None]


def aggregate(logr_members: np.ndarray, method: str = "mean"):
    """Combine members: returns ``(log r_agg, spread, n_used)``.

    ``r_agg`` is the mean (or median) over the members' ratios ``exp(logr)`` that are
    finite for the event (NaN = not evaluated); ``spread`` is their std (ddof=0).
    Raises if an event has no member."""
    if method not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {method!r}; choose from {AGGREGATIONS}")
    a = np.atleast_2d(np.asarray(logr_members, dtype=np.float64))
    ok = np.isfinite(a)
    n_used = ok.sum(axis=0)
    if np.any(n_used == 0):
        raise ValueError(f"{int((n_used == 0).sum())} event(s) have no ensemble member evaluation")
    if np.any(np.isinf(a)):
        raise ValueError("infinite log-ratio in member predictions")
    shift = np.nanmax(a, axis=0)  # work with r / max_m r to avoid overflow
    r_shift = np.where(ok, np.exp(np.where(ok, a - shift, 0.0)), np.nan)
    if method == "mean":
        agg = shift + np.log(np.nanmean(r_shift, axis=0))
    else:
        agg = shift + np.log(np.nanmedian(r_shift, axis=0))
    with np.errstate(over="ignore"):
        spread = np.exp(shift) * np.nanstd(r_shift, axis=0)
    return agg, spread, n_used


def target_name(process: str, systematic: str | None = None, direction: str | None = None) -> str:
    """``S`` or ``S__kfactor_up`` -- used in file names and column names."""
    if systematic is None:
        return process
    if direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
    return f"{process}__{systematic}_{direction}"


def column_names(target: str) -> tuple[str, str]:
    """(``logr_{target}``, ``spread_{target}``)."""
    return f"logr_{target}", f"spread_{target}"


# --------------------------------------------------------------------------- datasets & IO
def build_dataset(kind: str, samples: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Region dataset: ``"asimov"`` = all given MC samples with their weights (``process``
    column = sample name); ``"observed"`` = the data sample with weight 1."""
    from .train.data import concat_samples

    if kind == "asimov":
        parts = []
        for name, s in samples.items():
            s = dict(s)
            s["process"] = np.full(len(s[WEIGHT]), name, dtype=object)
            parts.append(s)
        return concat_samples(parts)
    if kind == "observed":
        if len(samples) != 1:
            raise ValueError(f"observed dataset needs exactly one (data) sample, got {sorted(samples)}")
        ((name, s),) = samples.items()
        s = dict(s)
        s[WEIGHT] = np.ones(len(s[WEIGHT]))
        s["process"] = np.full(len(s[WEIGHT]), name, dtype=object)
        return s
    raise ValueError(f"unknown dataset kind {kind!r} (asimov, observed)")


def save_member_predictions(
    path: str | Path, logr_members: np.ndarray, model_paths: Sequence[str | Path], method: str = "mean"
) -> Path:
    """Write ``logr_members`` (M, N), the aggregate and the spread to an ``.npz``."""
    path = Path(path)
    agg, spread, n_used = aggregate(logr_members, method)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh,
            logr_members=np.asarray(logr_members, np.float64),
            logr=agg,
            spread=spread,
            n_used=n_used,
            models=np.asarray([str(p) for p in model_paths]),
            aggregation=np.asarray(method),
        )
    return path


def load_member_predictions(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing prediction file: {path}")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def write_region_table(
    path: str | Path,
    dataset: Mapping[str, np.ndarray],
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
    extra_columns: Sequence[str] = (),
) -> Path:
    """Parquet with ``weight``, ``process``, ``event_key``, ``extra_columns`` and for each
    target ``logr_{target}``/``spread_{target}`` (``predictions[target] = (logr, spread)``),
    in row groups of :data:`nsbi.io.ROW_GROUP_ROWS` rows (so that
    :func:`evaluate_ensemble_file` reads the region dataset in bounded memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from . import io as nio

    path = Path(path)
    n = len(dataset[WEIGHT])
    cols = {WEIGHT: np.asarray(dataset[WEIGHT], np.float64)}
    if "process" in dataset:
        cols["process"] = pa.array([str(p) for p in dataset["process"]], pa.string())
    if EVENT_KEY in dataset:
        cols[EVENT_KEY] = np.asarray(dataset[EVENT_KEY]).astype(np.uint64)
    for c in extra_columns:
        cols[c] = np.asarray(dataset[c])
    for target, (logr, spread) in predictions.items():
        lc, sc = column_names(target)
        for name, arr in ((lc, logr), (sc, spread)):
            arr = np.asarray(arr, np.float64)
            if arr.shape != (n,):
                raise ValueError(f"column {name}: shape {arr.shape}, expected ({n},)")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"column {name} has non-finite values")
            cols[name] = arr
    table = pa.table(cols)
    with atomic_path(path) as tmp:  # row groups of ROW_GROUP_ROWS: a reader by row group holds that many rows
        pq.write_table(table, tmp, row_group_size=nio.ROW_GROUP_ROWS)
    return path


def read_table(path: str | Path) -> dict[str, np.ndarray]:
    from .train.data import read_sample

    return read_sample(path)


# --------------------------------------------------------------------------- file-level drivers
def run_build_dataset(
    kind: str, sample_paths: Mapping[str, str | Path], out_path: str | Path, features: Sequence[str]
) -> dict[str, int]:
    """Write the region dataset parquet (``asimov``: all MC samples of the region;
    ``observed``: data) with the features, ``weight``, ``event_key`` and ``process``."""
    from .train.data import read_sample

    cols = list(features) + [WEIGHT, EVENT_KEY]
    samples = {name: read_sample(p, cols) for name, p in sample_paths.items()}
    ds = build_dataset(kind, samples)
    write_region_table(out_path, ds, {}, extra_columns=list(features))
    return {"n_events": len(ds[WEIGHT]), "sumw": float(np.sum(ds[WEIGHT]))}


def run_evaluate_target(
    events_path: str | Path,
    model_paths: Sequence[str | Path],
    out_path: str | Path,
    n_folds: int,
    out_of_fold: bool,
    aggregation: str = "mean",
    intra_op_threads: int = 1,
    prefer_gpu: bool = True,
) -> dict[str, float]:
    """Evaluate every member of one target on a region dataset and write the ``.npz``
    (per-member ``logr_members`` with NaN where not evaluated, ``logr``, ``spread``). The
    dataset is read row group by row group, only its feature columns and ``event_key``
    (:func:`evaluate_ensemble_file`)."""
    paths = check_files(model_paths)
    events = check_files([events_path], "dataset")[0]
    pred = evaluate_ensemble_file(
        paths, events, n_folds, out_of_fold, intra_op_threads=intra_op_threads, prefer_gpu=prefer_gpu
    )
    save_member_predictions(out_path, pred, paths, aggregation)
    agg, spread, n_used = aggregate(pred, aggregation)
    return {
        "n_events": int(pred.shape[1]),
        "members_per_event_min": int(n_used.min()) if len(n_used) else 0,
        "median_relative_spread": float(np.median(spread / np.exp(agg))) if len(agg) else 0.0,
    }


def run_region_table(
    events_path: str | Path,
    target_paths: Mapping[str, str | Path],
    out_path: str | Path,
    keep_features: Sequence[str] = (),
) -> Path:
    """Assemble the per-region table for the statistical model from the target ``.npz``
    files (``target_paths``: target name, e.g. ``S`` or ``S__kfactor_up`` -> file)."""
    events = read_table(check_files([events_path], "dataset")[0])
    n = len(events[WEIGHT])
    preds = {}
    for target, p in target_paths.items():
        z = load_member_predictions(p)
        if z["logr"].shape != (n,):
            raise ValueError(f"{p}: {z['logr'].shape[0]} events, dataset {events_path} has {n}")
        preds[target] = (z["logr"], z["spread"])
    return write_region_table(out_path, events, preds, extra_columns=list(keep_features))


def classifier_scores(
    model_paths: Sequence[str | Path],
    sample: Mapping[str, np.ndarray],
    n_folds: int,
    out_of_fold: bool,
    intra_op_threads: int = 1,
) -> dict[str, np.ndarray]:
    """``{"score_<class>": probability}`` per event from the region-classifier members
    (class names from the ONNX metadata; out-of-fold for MC, every member for data)."""
    return classifier_scorer(model_paths, n_folds, out_of_fold, intra_op_threads)(sample)


def classifier_scorer(
    model_paths: Sequence[str | Path], n_folds: int, out_of_fold: bool, intra_op_threads: int = 1
) -> Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]:
    """:func:`classifier_scores` as a function of the events, with the members loaded once
    (for scoring a file row group by row group)."""
    paths = check_files(model_paths, "region-classifier member")
    kfold.check_kfold(n_folds, len(paths) if out_of_fold else None)
    providers = select_providers(True)
    models = [OnnxModel(p, intra_op_threads, providers) for p in paths]
    classes = models[0].metadata.get("classes")
    if not classes:
        raise ValueError(f"{paths[0]}: no class names in the ONNX metadata")

    def score(sample: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        probs = _classifier_probs(models, sample, n_folds, out_of_fold)
        return {f"score_{c}": probs[:, i] for i, c in enumerate(classes)}

    return score
