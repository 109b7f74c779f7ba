"""Default training settings, in a module of their own: the workflow reads them when it
loads (rules/train.smk), and must not import torch or Lightning to do so."""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_SETTINGS"]

DEFAULT_SETTINGS: dict[str, Any] = {
    "model": "mlp",
    "hidden": [64, 64, 64],
    "activation": "silu",
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "weight_decay": 0.0,
    "batch_size": 4096,
    "max_epochs": 50,
    "patience": 5,
    "min_delta": 0.0,
    "lr_decay": None,  # {factor, patience, min_lr}: ReduceLROnPlateau on the validation loss
    "validation_fraction": 0.2,
    "progress_bar": True,
    "deterministic": True,
    "accelerator": "auto",
    "num_threads": None,  # torch intra-op threads (None: leave as is)
    "zero_init_output": True,  # MLP output layer starts at zero: log r = 0
}
