"""Evaluation with onnxruntime and ensemble aggregation."""

import logging

import numpy as np
import pytest
import torch

from nsbi import evaluate as ev
from nsbi.onnx_export import export_onnx
from nsbi.train import kfold, models

torch.set_num_threads(1)


def test_aggregate_against_numpy():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.5, (5, 40))
    a[rng.random((5, 40)) < 0.3] = np.nan
    a[0, :] = rng.normal(0, 0.5, 40)  # every event has at least one member
    for method in ("mean", "median"):
        agg, spread, n_used = ev.aggregate(a, method)
        for i in range(a.shape[1]):
            r = np.exp(a[:, i][np.isfinite(a[:, i])])
            expected = np.log(r.mean()) if method == "mean" else np.log(np.median(r))
            assert agg[i] == pytest.approx(expected, rel=1e-12, abs=1e-12)
            assert spread[i] == pytest.approx(np.std(r), rel=1e-12, abs=1e-15)
            assert n_used[i] == len(r)
    # a single member: aggregate = itself, spread 0
    agg, spread, _ = ev.aggregate(a[:1])
    np.testing.assert_allclose(agg, a[0], rtol=1e-12)
    assert np.all(spread == 0)
    # large log-ratios do not overflow in the mean
    agg, _, _ = ev.aggregate(np.array([[800.0], [800.0 + np.log(3.0)]]))
    assert agg[0] == pytest.approx(800.0 + np.log(2.0))


def test_aggregate_errors():
    with pytest.raises(ValueError, match="no ensemble member"):
        ev.aggregate(np.array([[0.1, np.nan], [0.2, np.nan]]))
    with pytest.raises(ValueError, match="unknown aggregation"):
        ev.aggregate(np.zeros((2, 2)), "max")


def _export_members(tmp_path, n_members, features=("a", "b")):
    paths, mods = [], []
    for m in range(n_members):
        torch.manual_seed(m)
        mod = models.build_model(
            "mlp",
            n_features=len(features),
            mean=[1.0, -1.0],
            std=[2.0, 0.5],
            settings={"hidden": [8], "zero_init_output": False},
        )
        paths.append(
            export_onnx(mod, tmp_path / f"m{m}" / "model.onnx", len(features), metadata={"features": list(features)})
        )
        mods.append(mod)
    return paths, mods


def _events(n, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "a": rng.normal(1, 2, n),
        "b": rng.normal(-1, 0.5, n),
        "weight": rng.uniform(-0.1, 1, n),
        "event_key": rng.integers(0, 2**62, n).astype(np.uint64),
    }


def test_evaluate_ensemble_out_of_fold(tmp_path, caplog):
    k, n_members = 2, 4
    paths, mods = _export_members(tmp_path, n_members)
    data = _events(500)
    with caplog.at_level(logging.INFO, logger="nsbi.evaluate"):
        pred = ev.evaluate_ensemble(paths, data, n_folds=k, out_of_fold=True, intra_op_threads=1)
    assert any("CPUExecutionProvider" in r.message for r in caplog.records)
    X = torch.as_tensor(np.stack([data["a"], data["b"]], 1), dtype=torch.float32)
    folds = kfold.fold_of(data["event_key"], k)
    for m, mod in enumerate(mods):
        ref = mod(X).detach().numpy()
        sel = folds == m % k
        np.testing.assert_allclose(pred[m, sel], ref[sel], atol=1e-5)
        assert np.all(np.isnan(pred[m, ~sel]))
        # single-member evaluation agrees
        one = ev.evaluate_member(paths[m], data, m, k)
        np.testing.assert_array_equal(np.isnan(one), np.isnan(pred[m]))
        np.testing.assert_allclose(one[sel], pred[m, sel])
    assert np.all(np.isfinite(pred).sum(0) == 2)
    full = ev.evaluate_ensemble(paths, data, n_folds=k, out_of_fold=False)
    assert np.all(np.isfinite(full))


def test_evaluating_a_file_by_row_group_equals_the_whole_table(tmp_path, monkeypatch):
    """evaluate_ensemble_file (what run_evaluate_target runs) reads only the features and, out of
    fold, event_key, row group by row group, and gives exactly the numbers of evaluate_ensemble
    on the whole table: onnxruntime's result for an event does not depend on its batch."""
    import pyarrow.parquet as pq

    from nsbi import io as nio

    monkeypatch.setattr(nio, "ROW_GROUP_ROWS", 64)
    k = 3
    paths, _ = _export_members(tmp_path, k)
    data = _events(1000)
    data["process"] = np.array(["S", "B"], dtype=object)[np.arange(1000) % 2]
    events = ev.write_region_table(tmp_path / "events.parquet", data, {}, extra_columns=["a", "b"])
    assert pq.ParquetFile(events).metadata.num_row_groups == 16  # 15 x 64 rows and 40
    whole = ev.read_table(events)
    read_columns = []
    iter_parquet = nio.iter_parquet

    def spy(path, columns=None):
        read_columns.append(list(columns))
        return iter_parquet(path, columns)

    monkeypatch.setattr(nio, "iter_parquet", spy)
    for n_folds, out_of_fold in ((k, True), (k, False), (1, True)):
        got = ev.evaluate_ensemble_file(paths[:n_folds] if out_of_fold else paths, events, n_folds, out_of_fold)
        ref = ev.evaluate_ensemble(paths[:n_folds] if out_of_fold else paths, whole, n_folds, out_of_fold)
        np.testing.assert_array_equal(got, ref)  # bit for bit, NaN where a member does not evaluate
    assert read_columns == [["a", "b", "event_key"], ["a", "b"], ["a", "b"]]
    ev.run_evaluate_target(events, paths, tmp_path / "S.npz", n_folds=k, out_of_fold=True)
    z = ev.load_member_predictions(tmp_path / "S.npz")
    np.testing.assert_array_equal(z["logr_members"], ev.evaluate_ensemble(paths, whole, k, True))
    assert read_columns[-1] == ["a", "b", "event_key"]
    # a dataset without a feature: the error names the file and the column
    ev.write_region_table(tmp_path / "no_b.parquet", data, {}, extra_columns=["a"])
    with pytest.raises(KeyError, match=r"no_b.parquet lacks column\(s\) \['b'\]"):
        ev.evaluate_ensemble_file(paths, tmp_path / "no_b.parquet", k)


def test_missing_member_is_an_error(tmp_path):
    paths, _ = _export_members(tmp_path, 2)
    missing = tmp_path / "m7" / "model.onnx"
    with pytest.raises(FileNotFoundError, match="m7/model.onnx"):
        ev.evaluate_ensemble([paths[0], missing, paths[1]], _events(10), n_folds=1)
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        ev.load_member_predictions(tmp_path / "nope.npz")


def test_feature_mismatch(tmp_path):
    paths, _ = _export_members(tmp_path, 1)
    with pytest.raises(ValueError, match="trained on features"):
        ev.evaluate_ensemble(paths, _events(10), n_folds=1, features=["b", "a"])


def test_predictions_and_region_table_roundtrip(tmp_path):
    paths, _ = _export_members(tmp_path, 3)
    data = _events(200)
    data["process"] = np.array(["S"] * 100 + ["B"] * 100, dtype=object)
    pred = ev.evaluate_ensemble(paths, data, n_folds=3)
    npz = ev.save_member_predictions(tmp_path / "pred" / "S.npz", pred, paths, "median")
    loaded = ev.load_member_predictions(npz)
    np.testing.assert_array_equal(loaded["logr_members"], pred)
    agg, spread, _ = ev.aggregate(pred, "median")
    np.testing.assert_allclose(loaded["logr"], agg)
    target = ev.target_name("S", "kfactor", "up")
    assert target == "S__kfactor_up"
    out = ev.write_region_table(
        tmp_path / "SR" / "asimov.parquet", data, {"S": (loaded["logr"], loaded["spread"]), target: (agg, spread)}
    )
    table = ev.read_table(out)
    assert {
        "weight",
        "process",
        "event_key",
        "logr_S",
        "spread_S",
        "logr_S__kfactor_up",
        "spread_S__kfactor_up",
    } <= set(table)
    np.testing.assert_array_equal(table["weight"], data["weight"])
    np.testing.assert_array_equal(table["event_key"], data["event_key"])
    assert list(table["process"][:2]) == ["S", "S"]
    with pytest.raises(ValueError, match="non-finite"):
        ev.write_region_table(tmp_path / "bad.parquet", data, {"S": (np.full(200, np.nan), spread)})


def test_build_dataset():
    s = _events(5)
    b = _events(3, seed=1)
    asimov = ev.build_dataset("asimov", {"S": s, "B": b})
    assert list(asimov["process"]) == ["S"] * 5 + ["B"] * 3
    np.testing.assert_array_equal(asimov["weight"], np.concatenate([s["weight"], b["weight"]]))
    obs = ev.build_dataset("observed", {"data": s})
    assert np.all(obs["weight"] == 1.0)
    with pytest.raises(ValueError):
        ev.build_dataset("toys", {"S": s})


def test_classifier_evaluation_and_regions(tmp_path):
    mods = []
    paths = []
    for m in range(2):
        torch.manual_seed(10 + m)
        mod = models.build_model(
            "mlp_multiclass",
            n_features=2,
            mean=None,
            std=None,
            settings={"hidden": [8], "zero_init_output": False},
            n_outputs=3,
        )
        paths.append(export_onnx(mod, tmp_path / f"r{m}.onnx", 2, metadata={"features": ["a", "b"]}))
        mods.append(mod)
    data = _events(300)
    X = torch.as_tensor(np.stack([data["a"], data["b"]], 1), dtype=torch.float32)
    p = ev.evaluate_classifier(paths, data, n_folds=2)
    folds = kfold.fold_of(data["event_key"], 2)
    expected = np.where((folds == 0)[:, None], mods[0](X).detach().numpy(), mods[1](X).detach().numpy())
    np.testing.assert_allclose(p, expected, atol=1e-5)
    p_data = ev.evaluate_classifier(paths, data, n_folds=2, out_of_fold=False)
    np.testing.assert_allclose(p_data, 0.5 * (mods[0](X) + mods[1](X)).detach().numpy(), atol=1e-5)
