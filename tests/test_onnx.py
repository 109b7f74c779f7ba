"""ONNX export: torch <-> onnxruntime agreement (standardisation inside), dynamic batch,
metadata, atomic writes and the mismatch error."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from nsbi.onnx_export import OnnxMismatchError, export_onnx, read_metadata
from nsbi.train import models

torch.set_num_threads(1)


def _run(path, X):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    return sess.run(["y"], {"x": np.asarray(X, np.float32)})[0]


def _raw_features(n, seed=0):
    rng = np.random.default_rng(seed)
    # very different scales: m4l-like, angle-like, tiny-width feature
    return np.stack([rng.uniform(220, 1000, n), rng.uniform(-np.pi, np.pi, n), rng.normal(-3.0, 0.01, n)], axis=1)


def test_ratio_model_matches_torch(tmp_path):
    X = _raw_features(2000)
    torch.manual_seed(0)
    mod = models.build_model(
        "mlp",
        n_features=3,
        mean=X.mean(0),
        std=X.std(0),
        settings={"hidden": [16, 16], "activation": "silu", "zero_init_output": False},
    )
    path = export_onnx(
        mod,
        tmp_path / "sub" / "model.onnx",
        3,
        check_inputs=X[:500],
        metadata={"features": ["a", "b", "c"], "target": "S"},
    )
    assert path.is_file()
    ref = mod(torch.as_tensor(X, dtype=torch.float32)).detach().numpy()
    assert np.std(ref) > 1e-3  # a non-trivial function
    for batch in (1, 7, 2000):  # dynamic batch axis
        got = _run(path, X[:batch])
        assert got.shape == (batch,)
        np.testing.assert_allclose(got, ref[:batch], atol=1e-5, rtol=1e-5)
    # the standardisation is inside the graph: the raw features differ wildly in scale
    # and a model without the buffers would give different outputs
    assert read_metadata(path) == {"features": ["a", "b", "c"], "target": "S"}
    assert not list(tmp_path.joinpath("sub").glob("*.tmp"))


def test_standardisation_is_in_graph(tmp_path):
    """A linear 'network' with identity weights exposes the standardisation exactly."""

    @models.register_model("test_identity_onnx")
    class Identity(models.RatioModuleBase):
        def build_network(self, n_features, n_outputs, settings):
            lin = torch.nn.Linear(n_features, n_outputs, bias=False)
            with torch.no_grad():
                lin.weight.fill_(1.0)
            return lin

    mean, std = np.array([500.0, 0.0, -3.0]), np.array([200.0, 2.0, 0.01])
    mod = models.build_model("test_identity_onnx", n_features=3, mean=mean, std=std, settings={})
    X = _raw_features(100, seed=1)
    path = export_onnx(mod, tmp_path / "id.onnx", 3)
    expected = ((X - mean) / std).sum(axis=1)
    np.testing.assert_allclose(_run(path, X), expected, rtol=1e-5, atol=1e-4)


def test_multiclass_export(tmp_path):
    mod = models.build_model(
        "mlp_multiclass",
        n_features=2,
        mean=[1.0, 2.0],
        std=[3.0, 4.0],
        settings={"hidden": [8], "zero_init_output": False},
        n_outputs=3,
    )
    X = np.random.default_rng(2).normal(0, 5, (300, 2))
    path = export_onnx(mod, tmp_path / "region.onnx", 2, check_inputs=X)
    got = _run(path, X)
    assert got.shape == (300, 3)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(got, mod(torch.as_tensor(X, dtype=torch.float32)).detach().numpy(), atol=1e-5)


def test_mismatch_raises_and_leaves_no_file(tmp_path):
    class Drifting(torch.nn.Module):
        """Output depends on a Python-side counter: the traced graph freezes its value."""

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 1)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return self.lin(x).squeeze(-1) + float(self.calls)

    target = tmp_path / "bad.onnx"
    with pytest.raises(OnnxMismatchError, match="disagrees with torch"):
        export_onnx(Drifting(), target, 2)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_wrong_check_shape(tmp_path):
    mod = models.build_model(
        "mlp", n_features=2, mean=None, std=None, settings={"hidden": [4], "zero_init_output": False}
    )
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        export_onnx(mod, tmp_path / "m.onnx", 2, check_inputs=np.zeros((5, 3)))


def test_trained_model_roundtrip(tmp_path):
    """Train briefly, export, compare on the training events (1e-5)."""
    from nsbi.train import train_ratio

    rng = np.random.default_rng(3)
    n = 1000
    num = {"m4l": rng.uniform(220, 1000, n), "phi": rng.uniform(-3, 3, n), "weight": np.ones(n)}
    den = {"m4l": rng.uniform(220, 900, n), "phi": rng.uniform(-3, 3, n), "weight": np.ones(n)}
    mod, _ = train_ratio(
        num, den, ["m4l", "phi"], {"hidden": [8], "max_epochs": 2, "batch_size": 256, "progress_bar": False}, seed=0
    )
    X = np.stack([num["m4l"], num["phi"]], axis=1)
    path = export_onnx(mod, tmp_path / "m.onnx", 2, check_inputs=X)
    np.testing.assert_allclose(
        _run(path, X), mod(torch.as_tensor(X, dtype=torch.float32)).detach().numpy(), atol=1e-5, rtol=1e-5
    )
