"""Deterministic k-fold assignment and ensemble-member <-> fold mapping.

Every event carries a ``uint64`` ``event_key`` (written by the prep stage).  Its fold is

    fold = splitmix64(event_key) % k

where ``splitmix64`` is the (bijective) SplitMix64 finaliser, vectorised in numpy
with wrapping uint64 arithmetic.  Python's ``hash()`` is never used (it is salted per
process for str/bytes and not meant to be stable).

Member <-> fold mapping (``k >= 2``)
------------------------------------
Ensemble member ``m`` *holds out* fold ``m % k``: it is trained (training + validation
split) only on events with ``fold != m % k``.  At evaluation time an event of fold ``f``
is evaluated only by members with ``m % k == f`` -- i.e. by members that never saw it.
With ``n_members = j * k`` every event is evaluated by exactly ``j`` members.

``k == 1`` disables k-folding: every member trains on every event, and evaluation of
training events is then *in-sample* (use it only for data that was not used in training,
or knowingly).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "check_kfold",
    "evaluation_mask",
    "fold_of",
    "held_out_fold",
    "member_seed",
    "members_for_fold",
    "splitmix64",
    "training_mask",
]

_C1 = np.uint64(0x9E3779B97F4A7C15)
_C2 = np.uint64(0xBF58476D1CE4E5B9)
_C3 = np.uint64(0x94D049BB133111EB)


def splitmix64(keys) -> np.ndarray:
    """SplitMix64 finaliser of ``keys`` (array-like of non-negative ints) -> uint64 array."""
    x = np.asarray(keys)
    if x.dtype != np.uint64:
        if np.issubdtype(x.dtype, np.signedinteger) and x.size and np.any(x < 0):
            raise ValueError("event keys must be non-negative integers")
        if not np.issubdtype(x.dtype, np.integer):
            raise TypeError(f"event keys must be integers, got dtype {x.dtype}")
        x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        z = x + _C1
        z = (z ^ (z >> np.uint64(30))) * _C2
        z = (z ^ (z >> np.uint64(27))) * _C3
        z = z ^ (z >> np.uint64(31))
    return z


def check_kfold(n_folds: int, n_members: int | None = None) -> None:
    if int(n_folds) != n_folds or n_folds < 1:
        raise ValueError(f"n_folds must be a positive integer, got {n_folds!r}")
    if n_members is not None:
        if int(n_members) != n_members or n_members < 1:
            raise ValueError(f"n_members must be a positive integer, got {n_members!r}")
        if n_folds > 1 and n_members < n_folds:
            raise ValueError(
                f"with k-folding every fold needs at least one member that did not see it: "
                f"n_members ({n_members}) must be >= n_folds ({n_folds})"
            )


def fold_of(event_key, n_folds: int) -> np.ndarray:
    """Fold index (int64 array) of each event; all zeros when ``n_folds == 1``."""
    check_kfold(n_folds)
    return (splitmix64(event_key) % np.uint64(n_folds)).astype(np.int64)


def held_out_fold(member: int, n_folds: int) -> int | None:
    """Fold that ensemble member ``member`` never sees (``None`` if ``n_folds == 1``)."""
    check_kfold(n_folds)
    return None if n_folds == 1 else int(member) % int(n_folds)


def training_mask(event_key, member: int, n_folds: int) -> np.ndarray:
    """Boolean mask of events member ``member`` may train (and validate) on."""
    folds = fold_of(event_key, n_folds)
    h = held_out_fold(member, n_folds)
    return np.ones(folds.shape, bool) if h is None else folds != h


def evaluation_mask(event_key, member: int, n_folds: int) -> np.ndarray:
    """Boolean mask of events member ``member`` evaluates out-of-fold (the complement of
    :func:`training_mask`; all True when ``n_folds == 1``)."""
    folds = fold_of(event_key, n_folds)
    h = held_out_fold(member, n_folds)
    return np.ones(folds.shape, bool) if h is None else folds == h


def members_for_fold(fold: int, n_folds: int, n_members: int) -> list[int]:
    """Members that evaluate events of ``fold`` (those that held it out)."""
    check_kfold(n_folds, n_members)
    if n_folds == 1:
        return list(range(n_members))
    return [m for m in range(n_members) if m % n_folds == fold]


def member_seed(base_seed: int, member: int) -> int:
    """Seed of ensemble member ``member``: ``base_seed + member``."""
    return int(base_seed) + int(member)
