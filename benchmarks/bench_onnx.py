#!/usr/bin/env python
"""ONNX inference and CPU training throughput of the density-ratio MLP.

Inference: an MLP with the default architecture (``nsbi.train.DEFAULT_SETTINGS``: hidden
64x64x64, SiLU, built-in standardisation) is exported with ``nsbi.onnx_export.export_onnx``
and evaluated with ``nsbi.evaluate.OnnxModel`` (onnxruntime, 1 intra-op thread: per core) on
``--events`` events, for one member and for an ensemble of ``--members`` members. The
reference is a plain numpy float32 chain with the same layer sizes and the same operations
(standardise, matmul + bias, SiLU) with single-threaded BLAS, interleaved in the same process
(minimum of ``--repeat``). Target: ONNX within 2x of the numpy chain.

Training: ``nsbi.train.train_ratio`` (Lightning, CPU, 1 torch thread) on two Gaussian classes
of ``--train-events`` events each; the time per epoch is the difference between a run with
``--epochs`` epochs and a run with 1 epoch (so set-up and the final restore are excluded).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # per-core figures
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from _common import print_machine, table, timed_min  # noqa: E402

NF = 10


def _module(seed: int, settings: dict):
    import torch

    from nsbi.train.models import build_model

    torch.manual_seed(seed)
    return build_model(
        "mlp", n_features=NF, mean=np.linspace(-1, 1, NF), std=np.linspace(0.5, 2, NF), settings=settings
    )


def _numpy_chain(module):
    """(standardise, [W, b] per Linear) in float32 from the torch module."""
    import torch

    lin = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    Ws = [
        (m.weight.detach().numpy().T.astype(np.float32).copy(), m.bias.detach().numpy().astype(np.float32)) for m in lin
    ]
    mean = getattr(module, "feature_mean", None)
    scale = getattr(module, "feature_scale", None)
    mean = np.zeros(NF, np.float32) if mean is None else mean.detach().numpy().astype(np.float32)
    scale = np.ones(NF, np.float32) if scale is None else scale.detach().numpy().astype(np.float32)

    def run(X, batch=65536):
        outs = []
        for i in range(0, len(X), batch):
            h = (X[i : i + batch] - mean) * scale
            for j, (W, b) in enumerate(Ws):
                h = h @ W + b
                if j < len(Ws) - 1:
                    h = h / (1.0 + np.exp(-h))  # SiLU
            outs.append(h[:, 0])
        return np.concatenate(outs)

    return run


def inference(n: int, members: int, repeat: int) -> list[dict]:
    from nsbi.evaluate import OnnxModel
    from nsbi.onnx_export import export_onnx
    from nsbi.train import DEFAULT_SETTINGS

    settings = dict(DEFAULT_SETTINGS, zero_init_output=False)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, NF)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        mods = [_module(100 + i, settings) for i in range(members)]
        paths = [export_onnx(m, Path(d) / f"m{i}.onnx", NF) for i, m in enumerate(mods)]
        onnx = [OnnxModel(p, intra_op_threads=1, providers=["CPUExecutionProvider"]) for p in paths]
        chains = [_numpy_chain(m) for m in mods]
        ref = mods[0](__import__("torch").as_tensor(X[:1000])).detach().numpy()
        agree = float(np.max(np.abs(onnx[0](X[:1000]) - ref)))
        agree_np = float(np.max(np.abs(chains[0](X[:1000]) - ref)))
        t = timed_min(
            {
                "onnx1": lambda: onnx[0](X),
                "np1": lambda: chains[0](X),
                "onnxN": lambda: [o(X) for o in onnx],
                "npN": lambda: [c(X) for c in chains],
            },
            repeat,
        )
    hidden = settings["hidden"]
    return [
        {
            "what": f"1 member ({NF}-{'-'.join(map(str, hidden))}-1)",
            "onnx_evs": n / t["onnx1"],
            "np_evs": n / t["np1"],
            "ratio": t["onnx1"] / t["np1"],
            "max_abs_diff_torch": agree,
            "np_diff": agree_np,
        },
        {
            "what": f"ensemble of {members}",
            "onnx_evs": n / t["onnxN"],
            "np_evs": n / t["npN"],
            "ratio": t["onnxN"] / t["npN"],
            "max_abs_diff_torch": agree,
            "np_diff": agree_np,
        },
    ]


def training(n: int, epochs: int) -> dict:
    import torch

    from nsbi.train import train_ratio

    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    feats = [f"x{i}" for i in range(NF)]

    def sample(shift):
        X = rng.normal(shift, 1.0, size=(n, NF))
        s = {f: X[:, i] for i, f in enumerate(feats)}
        s["weight"] = np.ones(n)
        return s

    num, den = sample(0.2), sample(0.0)
    times = {1: float("inf"), epochs: float("inf")}
    for e in (1, 1, epochs, 1, epochs):  # warm-up first; min of two runs each
        settings = {
            "max_epochs": e,
            "patience": 10 * epochs,
            "progress_bar": False,
            "num_threads": 1,
            "accelerator": "cpu",
        }
        t0 = time.perf_counter()
        train_ratio(num, den, feats, settings=settings, seed=3)
        times[e] = min(times[e], time.perf_counter() - t0)
    per_epoch = (times[epochs] - times[1]) / (epochs - 1)
    n_train = int(2 * n * 0.8)
    return {
        "events_per_class": n,
        "train_events": n_train,
        "epochs": epochs,
        "total_s": times[epochs],
        "setup_plus_1_epoch_s": times[1],
        "epoch_s": per_epoch,
        "train_evs": n_train / per_epoch,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=float, default=2e5)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--train-events", type=float, default=2e5, help="events per class")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--skip-training", action="store_true")
    a = ap.parse_args()
    print_machine()
    rows = inference(int(a.events), a.members, a.repeat)
    print(
        f"\nONNX inference, {int(a.events):.0e} events, 1 thread (min of {a.repeat}; numpy chain in the same process)"
    )
    print(
        table(
            rows,
            [
                ("what", "model", ""),
                ("onnx_evs", "ONNX events/s", ".3g"),
                ("np_evs", "numpy events/s", ".3g"),
                ("ratio", "time ratio ONNX/numpy", ".2f"),
                ("max_abs_diff_torch", "max|ONNX-torch|", ".1e"),
            ],
        )
    )
    if not a.skip_training:
        r = training(int(a.train_events), a.epochs)
        print(f"\nTraining (Lightning, CPU, 1 thread, batch 4096, {r['train_events']} training events)")
        print(
            table(
                [r],
                [
                    ("epochs", "epochs", "d"),
                    ("total_s", "total [s]", ".2f"),
                    ("setup_plus_1_epoch_s", "set-up + 1 epoch [s]", ".2f"),
                    ("epoch_s", "per epoch [s]", ".3f"),
                    ("train_evs", "training events/s", ".3g"),
                ],
            )
        )


if __name__ == "__main__":
    main()
