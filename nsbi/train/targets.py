"""Training / evaluation targets derived from the analysis configuration (plain functions
used by rules/train.smk and rules/evaluate.smk).

Targets: ``{process}`` (ratio ``p_c / p_ref`` for every Monte Carlo sample) and
``{process}__{systematic}_{direction}`` (``p_c(x|alpha_k^+-) / p_c(x)`` for every weight-
or tree-based systematic affecting the process and every direction it defines).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import config as ncfg
from .defaults import DEFAULT_SETTINGS

__all__ = [
    "member_dir",
    "n_folds",
    "n_members",
    "parse_target",
    "ratio_processes",
    "reference",
    "syst_targets",
    "target_names",
    "training_features",
    "training_settings",
    "unbinned_regions",
]

_TRAINER_KEYS = set(DEFAULT_SETTINGS) | {
    "hidden",
    "activation",
    "optimizer",
    "learning_rate",
    "batch_size",
    "max_epochs",
    "patience",
    "validation_fraction",
    "weight_decay",
}


def training_features(cfg: Mapping[str, Any]) -> list[str]:
    t = cfg.get("training", {})
    return list(t.get("features") or [f["name"] for f in cfg["features"]])


def training_settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Settings for :func:`nsbi.train.train_ratio` from ``cfg["training"]``."""
    t = dict(cfg.get("training", {}))
    out = {k: v for k, v in t.items() if k in _TRAINER_KEYS or k == "model"}
    return out


def n_members(cfg) -> int:
    return int(cfg.get("training", {}).get("members", 5))


def n_folds(cfg) -> int:
    return int(cfg.get("training", {}).get("folds", 5))


def reference(cfg: Mapping[str, Any]) -> dict[str, float]:
    """Reference mixture {sample: coefficient} (:func:`nsbi.config.reference_mixture`)."""
    return ncfg.reference_mixture(cfg)


def unbinned_regions(cfg) -> list[str]:
    return [r["name"] for r in cfg["regions"] if r.get("type") == "unbinned"]


def ratio_processes(cfg) -> list[str]:
    """Every Monte Carlo sample, basis and background: the unbinned model needs r_c = p_c/p_ref
    of each process it sums over (a background only has coefficient 1)."""
    return list(ncfg.mc_samples(cfg))


def syst_targets(cfg) -> list[tuple[str, str, str]]:
    """(process, systematic, direction) for every shape systematic of every ratio process."""
    out = []
    for proc in ratio_processes(cfg):
        for name in ncfg.shape_systematics(cfg, proc):
            syst = ncfg.systematic(cfg, name)
            out += [(proc, name, d) for d in ncfg.DIRECTIONS if d in syst]
    return out


def target_names(cfg) -> list[str]:
    return ratio_processes(cfg) + [f"{p}__{s}_{d}" for p, s, d in syst_targets(cfg)]


def parse_target(target: str) -> tuple[str, str | None, str | None]:
    """``"S"`` -> ("S", None, None); ``"S__kfactor_up"`` -> ("S", "kfactor", "up")."""
    if "__" not in target:
        return target, None, None
    proc, var = target.split("__", 1)
    syst, direction = ncfg.split_variation(var)
    return proc, syst, direction


def member_dir(results: str, region: str, target: str, member: int) -> str:
    proc, syst, direction = parse_target(target)
    if syst is None:
        return f"{results}/train/{region}/ratio/{proc}/{member}"
    return f"{results}/train/{region}/syst/{proc}/{syst}_{direction}/{member}"
