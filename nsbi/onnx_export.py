"""Export of trained modules to ONNX (the only artefact downstream stages consume).

The exported graph takes **raw** features ``x`` (float32, shape ``(batch, n_features)``,
dynamic batch axis) -- the standardisation is a part of the module -- and returns ``y``:
the logit ``log r`` (shape ``(batch,)``) for ratio models or the class probabilities
``(batch, n_classes)`` for classifiers.  After writing, the file is loaded with
onnxruntime and its output compared with the torch output on a sample of events;
the file is written atomically (:func:`nsbi.io.atomic_path`), so a failed export
never leaves a truncated ``model.onnx`` behind. The metadata is strict JSON
(:func:`nsbi.io.json_text`: non-finite numbers stored as null).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .io import atomic_path, json_text

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "OnnxMismatchError", "export_onnx", "read_metadata"]

INPUT_NAME = "x"
OUTPUT_NAME = "y"


class OnnxMismatchError(RuntimeError):
    """ONNX and torch outputs differ beyond tolerance."""


def _export(module: torch.nn.Module, path: str, example: torch.Tensor, opset: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            path,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=int(opset),
            do_constant_folding=True,
            dynamo=False,
        )


def export_onnx(
    module: torch.nn.Module,
    path: str | Path,
    n_features: int,
    opset: int = 17,
    check_inputs: np.ndarray | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    metadata: Mapping[str, Any] | None = None,
    n_check: int = 1000,
    seed: int = 0,
) -> Path:
    """Export ``module`` (raw features -> output) to ``path`` and verify it.

    ``check_inputs``: raw feature rows to compare torch and onnxruntime on (e.g. a
    sample of real events); without it ``n_check`` rows are drawn around the module's
    standardisation (``feature_mean`` +- 3 ``1/feature_scale``) when available, else
    standard normal.  Raises :class:`OnnxMismatchError` if
    ``|onnx - torch| > atol + rtol |torch|`` anywhere.  ``metadata`` (JSON-serialisable)
    is stored in the model's ``metadata_props`` under ``nsbi``.
    """
    import onnx
    import onnxruntime as ort

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.cpu().eval()
    n_features = int(n_features)
    if check_inputs is None:
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((int(n_check), n_features))
        mean = getattr(module, "feature_mean", None)
        scale = getattr(module, "feature_scale", None)
        if mean is not None and scale is not None:
            z = mean.detach().cpu().numpy() + 2.0 * z / scale.detach().cpu().numpy()
        check_inputs = z
    xin = np.ascontiguousarray(np.asarray(check_inputs, dtype=np.float32))
    if xin.ndim != 2 or xin.shape[1] != n_features:
        raise ValueError(f"check inputs must have shape (N, {n_features}), got {xin.shape}")

    with atomic_path(path) as tmp_path:
        tmp = str(tmp_path)
        with torch.no_grad():
            _export(module, tmp, torch.as_tensor(xin[: max(2, min(len(xin), 8))]), opset)
            ref = module(torch.as_tensor(xin)).detach().cpu().numpy()
        model = onnx.load(tmp)
        onnx.checker.check_model(model)
        if metadata is not None:
            entry = model.metadata_props.add()
            entry.key, entry.value = "nsbi", json_text(dict(metadata), indent=None)
            onnx.save(model, tmp)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(tmp, sess_options=so, providers=["CPUExecutionProvider"])
        got = sess.run([OUTPUT_NAME], {INPUT_NAME: xin})[0]
        if got.shape != ref.shape:
            raise OnnxMismatchError(f"ONNX output shape {got.shape} != torch output shape {ref.shape} ({path})")
        diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
        bad = diff > atol + rtol * np.abs(ref)
        if not np.all(np.isfinite(got)) or bad.any():
            raise OnnxMismatchError(
                f"ONNX export of {path} disagrees with torch: max |diff| = {np.nanmax(diff):.3g} "
                f"on {int(bad.sum())} of {bad.size} outputs (atol={atol}, rtol={rtol})"
            )
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``nsbi`` metadata JSON stored by :func:`export_onnx` ({} if none)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for p in model.metadata_props:
        if p.key == "nsbi":
            return json.loads(p.value)
    return {}
