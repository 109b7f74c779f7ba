"""Training of the NSBI density-ratio classifiers and the region classifier."""

from .data import concat_samples, mixture, read_sample
from .kfold import (
    evaluation_mask,
    fold_of,
    member_seed,
    members_for_fold,
    splitmix64,
    training_mask,
)
from .models import RatioModuleBase, available_models, get_model, register_model
from .trainer import (
    DEFAULT_SETTINGS,
    train_classifier,
    train_ratio,
    weight_variation_pair,
)

__all__ = [
    "DEFAULT_SETTINGS",
    "RatioModuleBase",
    "available_models",
    "concat_samples",
    "evaluation_mask",
    "fold_of",
    "get_model",
    "member_seed",
    "members_for_fold",
    "mixture",
    "read_sample",
    "register_model",
    "splitmix64",
    "train_classifier",
    "train_ratio",
    "training_mask",
    "weight_variation_pair",
]
