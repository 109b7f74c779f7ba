"""Training of the NSBI density-ratio classifiers and the region classifier.

The names below are imported lazily (PEP 562): ``import nsbi.train`` (which every
``nsbi.train.<submodule>`` import runs) stays light, so the workflow can read
:mod:`nsbi.train.targets` when it loads without importing torch or Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule defining it
_EXPORTS = {
    "concat_samples": "data",
    "mixture": "data",
    "read_sample": "data",
    "evaluation_mask": "kfold",
    "fold_of": "kfold",
    "member_seed": "kfold",
    "members_for_fold": "kfold",
    "splitmix64": "kfold",
    "training_mask": "kfold",
    "RatioModuleBase": "models",
    "available_models": "models",
    "get_model": "models",
    "register_model": "models",
    "DEFAULT_SETTINGS": "defaults",
    "train_classifier": "trainer",
    "train_ratio": "trainer",
    "weight_variation_pair": "trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
