"""K-fold assignment: stable hash, member <-> fold mapping, out-of-fold evaluation."""

import numpy as np
import pytest
import torch

from nsbi.train import kfold

torch.set_num_threads(1)

MASK64 = (1 << 64) - 1


def _splitmix64_reference(x: int) -> int:
    """Independent pure-Python (big int) SplitMix64 finaliser."""
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def test_splitmix64_known_values():
    # first two outputs of the SplitMix64 generator seeded with 0 (published reference values)
    assert int(kfold.splitmix64(np.uint64(0))) == 0xE220A8397B1DCDAF
    assert int(kfold.splitmix64(np.uint64(0x9E3779B97F4A7C15))) == 0x6E789E6AA1B965F4


def test_splitmix64_matches_bigint_reference():
    rng = np.random.default_rng(1)
    keys = np.concatenate(
        [
            rng.integers(0, 2**63, 200, dtype=np.uint64) * np.uint64(2) + np.uint64(1),
            np.array([0, 1, 2, MASK64], dtype=np.uint64),
        ]
    )
    got = kfold.splitmix64(keys)
    assert got.dtype == np.uint64
    assert [int(g) for g in got] == [_splitmix64_reference(int(k)) for k in keys]
    # integer dtypes other than uint64 give the same answer
    assert np.array_equal(
        kfold.splitmix64(np.arange(50, dtype=np.int64)), kfold.splitmix64(np.arange(50, dtype=np.uint64))
    )


def test_fold_of_deterministic_and_balanced():
    keys = np.arange(100_000, dtype=np.uint64)  # consecutive keys must still spread evenly
    f = kfold.fold_of(keys, 5)
    assert np.array_equal(f, kfold.fold_of(keys.copy(), 5))
    counts = np.bincount(f, minlength=5)
    # multinomial: each count ~ 20000 +- 126; 6 sigma
    assert np.all(np.abs(counts - 20_000) < 6 * np.sqrt(100_000 * 0.2 * 0.8))
    assert [int(x) for x in f[:5]] == [_splitmix64_reference(k) % 5 for k in range(5)]
    assert np.all(kfold.fold_of(keys, 1) == 0)


def test_bad_inputs():
    with pytest.raises(ValueError):
        kfold.fold_of(np.array([-1, 2]), 3)
    with pytest.raises(TypeError):
        kfold.fold_of(np.array([1.5]), 3)
    with pytest.raises(ValueError):
        kfold.fold_of(np.array([1]), 0)
    with pytest.raises(ValueError, match="n_members"):
        kfold.check_kfold(5, 3)


@pytest.mark.parametrize("n_folds,n_members", [(2, 2), (3, 6), (4, 5), (1, 3)])
def test_member_fold_property(n_folds, n_members):
    keys = np.random.default_rng(3).integers(0, 2**62, 5000).astype(np.uint64)
    evaluated_by = np.zeros(len(keys), int)
    for m in range(n_members):
        tr = kfold.training_mask(keys, m, n_folds)
        ev = kfold.evaluation_mask(keys, m, n_folds)
        if n_folds > 1:
            assert not np.any(tr & ev), "a member evaluates an event it was trained on"
            assert np.all(tr | ev)
        evaluated_by += ev
    assert np.all(evaluated_by >= 1)
    folds = kfold.fold_of(keys, n_folds)
    for f in range(n_folds):
        ms = kfold.members_for_fold(f, n_folds, n_members)
        assert np.all(evaluated_by[folds == f] == len(ms))
        for m in ms:
            assert not np.any(kfold.training_mask(keys, m, n_folds)[folds == f]) or n_folds == 1


def test_member_seed():
    assert [kfold.member_seed(100, m) for m in range(3)] == [100, 101, 102]


@pytest.fixture
def used_rows(monkeypatch):
    """The feature rows the production trainer actually trains and validates on: every
    ``_Tensors`` dataset ``_fit`` builds (training + validation) is recorded per call."""
    from nsbi.train import trainer

    calls: list[np.ndarray] = []

    class Recording(trainer._Tensors):
        def __init__(self, X, a, b):
            calls.append(np.asarray(X, np.float64).copy())
            super().__init__(X, a, b)

    monkeypatch.setattr(trainer, "_Tensors", Recording)

    def take() -> set[float]:
        rows = np.concatenate(calls)
        calls.clear()
        return set(rows[:, 0].tolist())

    return take


def test_trained_members_never_evaluate_their_training_events(tmp_path, used_rows):
    """End to end: train members with train_ratio (k=3), record which events the production
    training path used (training + validation sets), evaluate with evaluate_ensemble and check
    no event is evaluated by a member that saw it, and every event by exactly one member."""
    from nsbi.evaluate import evaluate_ensemble
    from nsbi.onnx_export import export_onnx
    from nsbi.train import trainer

    rng = np.random.default_rng(0)
    n = 600
    num = {"x": rng.normal(0.3, 1, n), "weight": np.ones(n), "event_key": np.arange(n, dtype=np.uint64)}
    den = {"x": rng.normal(0, 1, n), "weight": np.ones(n), "event_key": np.arange(n, 2 * n, dtype=np.uint64)}
    k, n_members = 3, 3
    paths, used = [], []
    settings = {"hidden": [4], "max_epochs": 1, "batch_size": 256, "progress_bar": False}
    for m in range(n_members):
        module, _ = trainer.train_ratio(num, den, ["x"], settings, seed=m, member=m, n_folds=k)
        used.append(used_rows())
        paths.append(export_onnx(module, tmp_path / f"{m}.onnx", 1, metadata={"features": ["x"]}))
    events = {
        "x": np.concatenate([num["x"], den["x"]]),
        "weight": np.ones(2 * n),
        "event_key": np.concatenate([num["event_key"], den["event_key"]]),
    }
    pred = evaluate_ensemble(paths, events, n_folds=k, out_of_fold=True)
    assert pred.shape == (n_members, 2 * n)
    for m in range(n_members):
        evaluated = set(events["x"][np.isfinite(pred[m])].tolist())
        assert evaluated and not (evaluated & used[m])
        assert len(used[m]) + len(evaluated) == 2 * n
    assert np.all(np.isfinite(pred).sum(axis=0) == 1)
    # data (never used in training): every member evaluates every event
    assert np.all(np.isfinite(evaluate_ensemble(paths, events, n_folds=k, out_of_fold=False)))


def test_classifier_members_train_only_outside_their_held_out_fold(used_rows):
    """train_classifier (multi-class path): member m trains and validates on exactly the events
    outside fold m % k, i.e. never on the events the evaluation assigns to it."""
    from nsbi.evaluate import member_mask
    from nsbi.train import trainer

    rng = np.random.default_rng(1)
    n, k = 300, 3
    classes = {
        c: {"x": rng.normal(i, 1, n), "weight": np.ones(n), "event_key": np.arange(i * n, (i + 1) * n, dtype=np.uint64)}
        for i, c in enumerate(("a", "b", "c"))
    }
    x = np.concatenate([s["x"] for s in classes.values()])
    keys = np.concatenate([s["event_key"] for s in classes.values()])
    settings = {"hidden": [4], "max_epochs": 1, "batch_size": 256, "progress_bar": False}
    for m in range(k):
        trainer.train_classifier(classes, ["x"], settings, seed=m, member=m, n_folds=k)
        used = used_rows()
        evaluated = set(x[member_mask(keys, m, k)].tolist())
        assert used == set(x[kfold.training_mask(keys, m, k)].tolist())
        assert evaluated and not (used & evaluated) and len(used) + len(evaluated) == 3 * n
